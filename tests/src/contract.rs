//! One set of routes everywhere: the code (each function's router), the OpenAPI document the
//! local server serves, `infra/template.yaml`, the sample events in `events/`, and the
//! `cargo lambda watch` router in the workspace metadata must all list the same routes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{Backend, spawn_app, test_context};

/// `(METHOD, /path/{param})`
pub type Route = (String, String);

const HTTP_METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The operations of an OpenAPI document.
fn operations(document: &Value) -> BTreeSet<Route> {
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"]
        .as_object()
        .expect("document without paths")
    {
        for method in HTTP_METHODS {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// A context to build the functions from without serving them: nothing is connected.
fn code_context() -> (adiuva_config::Context, crate::harness::TempDir) {
    let dir = crate::harness::TempDir::new();
    let context = test_context(
        "postgres://postgres@127.0.0.1:5432/unused",
        &[("ADIUVA_DATA_DIR", &dir.0.display().to_string())],
    );
    (context, dir)
}

/// Each function's routes, from its router (the code). Needs a runtime: the pool is lazy but
/// lives on tokio.
pub fn code_routes() -> BTreeMap<String, BTreeSet<Route>> {
    let (context, _dir) = code_context();
    local::functions(&context)
        .unwrap()
        .into_iter()
        .map(|(name, function)| {
            let document = serde_json::to_value(function.openapi()).unwrap();
            (name.to_owned(), operations(&document))
        })
        .collect()
}

fn all(routes: &BTreeMap<String, BTreeSet<Route>>) -> BTreeSet<Route> {
    routes.values().flatten().cloned().collect()
}

fn infra_routes() -> BTreeMap<String, BTreeSet<Route>> {
    let text = std::fs::read_to_string(workspace_root().join("infra/template.yaml"))
        .expect("infra/template.yaml");
    let template: yaml_serde::Value =
        yaml_serde::from_str(&text).expect("infra/template.yaml is not YAML");
    let mut routes: BTreeMap<String, BTreeSet<Route>> = BTreeMap::new();
    let resources = template["Resources"]
        .as_mapping()
        .expect("template without Resources");
    for (logical_id, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let Some(binary) = resource["Metadata"]["BuildProperties"]["Binary"].as_str() else {
            panic!("function {logical_id:?} has no Metadata.BuildProperties.Binary");
        };
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for event in events.values() {
            // Scheduled functions (the janitor) have no HTTP route and no router.
            if event["Type"].as_str() == Some("HttpApi") {
                let properties = &event["Properties"];
                let method = properties["Method"]
                    .as_str()
                    .expect("HttpApi event without Method");
                let path = properties["Path"]
                    .as_str()
                    .expect("HttpApi event without Path");
                routes
                    .entry(binary.to_owned())
                    .or_default()
                    .insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    routes
}

/// Every sample event, by function (its folder), as the route its `routeKey` names.
pub fn event_files() -> BTreeMap<String, BTreeMap<Route, PathBuf>> {
    let mut events: BTreeMap<String, BTreeMap<Route, PathBuf>> = BTreeMap::new();
    let root = workspace_root().join("events");
    for function in std::fs::read_dir(&root).expect("events/ folder") {
        let function = function.unwrap().path();
        if !function.is_dir() {
            continue;
        }
        let name = function.file_name().unwrap().to_string_lossy().into_owned();
        for file in std::fs::read_dir(&function).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let event: Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let Some((method, path)) = event["routeKey"]
                .as_str()
                .and_then(|key| key.split_once(' '))
            else {
                // Non-HTTP events (WebSocket, schedules) are checked by their own tests.
                continue;
            };
            let route = (method.to_owned(), path.to_owned());
            if let Some(previous) = events
                .entry(name.clone())
                .or_default()
                .insert(route.clone(), file.clone())
            {
                panic!("{route:?} has two sample events: {previous:?} and {file:?}");
            }
        }
    }
    events
}

/// The paths of the `cargo lambda watch` router, by function.
fn watch_routes() -> BTreeMap<String, BTreeSet<Route>> {
    let text = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    let router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"]
        .as_table()
        .expect("no [workspace.metadata.lambda.watch.router] in Cargo.toml");
    let mut routes: BTreeMap<String, BTreeSet<Route>> = BTreeMap::new();
    for (path, target) in router {
        let entries: Vec<(String, String)> = match target {
            toml::Value::String(function) => vec![("*".to_owned(), function.clone())],
            toml::Value::Array(items) => items
                .iter()
                .map(|item| {
                    let method = item["method"].as_str().unwrap_or("*").to_uppercase();
                    let function = item["function"]
                        .as_str()
                        .expect("router entry without function")
                        .to_owned();
                    (method, function)
                })
                .collect(),
            toml::Value::Table(item) => vec![(
                item.get("method")
                    .and_then(|m| m.as_str())
                    .unwrap_or("*")
                    .to_uppercase(),
                item["function"]
                    .as_str()
                    .expect("router entry without function")
                    .to_owned(),
            )],
            other => panic!("unexpected router entry for {path}: {other:?}"),
        };
        for (method, function) in entries {
            routes
                .entry(function)
                .or_default()
                .insert((method, normalize_watch_path(path)));
        }
    }
    routes
}

/// cargo-lambda writes parameters as `:id`; OpenAPI and API Gateway as `{id}`.
fn normalize_watch_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            match segment
                .strip_prefix('{')
                .or_else(|| segment.strip_prefix(':'))
            {
                Some(name) => format!("{{{}}}", name.trim_end_matches('}')),
                None => segment.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_served_openapi_document_has_every_route() {
    let app = spawn_app(Backend::Sqlite).await;
    let document: Value = app.get(local::OPENAPI_PATH).await.json().await.unwrap();
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    assert_eq!(document["info"]["title"], "Adiuva Cloud API");
    let code = all(&code_routes());
    assert!(!code.is_empty());
    assert_eq!(
        operations(&document),
        code,
        "the served document and the routers differ"
    );

    for (method, path) in &code {
        let operation = &document["paths"][path][method.to_lowercase()];
        let responses = operation["responses"]
            .as_object()
            .expect("operation without responses");
        assert!(
            !responses.is_empty(),
            "{method} {path} documents no response"
        );
    }
    for schema in ["AuthTokens", "UserProfile", "ErrorBody", "Credentials"] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    assert!(
        document["paths"]["/api/v1/auth/me"]["get"]["security"].is_array(),
        "me is not marked as authenticated"
    );
}

#[tokio::test]
async fn infra_declares_exactly_the_routes_of_each_function() {
    assert_eq!(
        infra_routes(),
        code_routes(),
        "infra/template.yaml and the routers differ"
    );
}

#[tokio::test]
async fn every_route_has_exactly_one_sample_event() {
    let events: BTreeMap<String, BTreeSet<Route>> = event_files()
        .into_iter()
        .map(|(function, files)| (function, files.into_keys().collect()))
        .collect();
    assert_eq!(events, code_routes(), "events/ and the routers differ");
}

#[tokio::test]
async fn the_cargo_lambda_watch_router_covers_every_route() {
    let watch = watch_routes();
    for (function, routes) in code_routes() {
        let served = watch.get(&function).cloned().unwrap_or_default();
        for (method, path) in routes {
            let covered = served.contains(&(method.clone(), path.clone()))
                || served.contains(&("*".to_owned(), path.clone()));
            assert!(
                covered,
                "cargo lambda watch does not route {method} {path} to {function}"
            );
        }
    }
}

#[test]
fn watch_paths_normalize() {
    assert_eq!(
        normalize_watch_path("/api/v1/storage/records/:id"),
        "/api/v1/storage/records/{id}"
    );
    assert_eq!(
        normalize_watch_path("/api/v1/storage/records/{id}"),
        "/api/v1/storage/records/{id}"
    );
}

/// Each route's policy is declared where its function registers it: the OpenAPI document
/// marks exactly the non-public operations as authenticated, and every declared route (with its
/// policy) is a documented operation and the other way round.
#[tokio::test]
async fn route_policies_are_declared_where_the_routes_are() {
    let (context, _dir) = code_context();
    let document = serde_json::to_value(local::openapi(&context).unwrap()).unwrap();
    let policies = declared_policies();
    assert_eq!(
        policies.keys().cloned().collect::<BTreeSet<_>>(),
        operations(&document),
        "the declared routes and the document differ"
    );
    for ((method, path), policy) in &policies {
        let operation = &document["paths"][path][method.to_lowercase()];
        let authenticated = operation["security"]
            .as_array()
            .is_some_and(|list| !list.is_empty());
        assert_eq!(
            policy.public, !authenticated,
            "{method} {path}: the declaration and the document disagree"
        );
        assert!(
            !policy.idempotent || method == "POST",
            "{method} {path}: only a POST is idempotent"
        );
    }
    let public: BTreeSet<&str> = policies
        .iter()
        .filter(|(_, policy)| policy.public)
        .map(|((_, path), _)| path.as_str())
        .collect();
    assert!(public.contains("/api/v1/auth/login") && public.contains("/api/v1/billing/webhook"));
    for ((method, path), policy) in &policies {
        assert_eq!(
            policy.public,
            public.contains(path.as_str()),
            "{method} {path} mixes public and authenticated methods"
        );
    }
    let idempotent = policies.values().filter(|policy| policy.idempotent).count();
    let admin = policies.values().filter(|policy| policy.admin).count();
    assert!(idempotent >= 14 && admin >= 5, "{idempotent} {admin}");
    // Browsing and installing plugins need the marketplace's tier (Power or Team), declared
    // with the routes; uninstalling and the developer's side need none.
    let gated: Vec<(&str, &str, &str)> = policies
        .iter()
        .filter_map(|((method, path), policy)| {
            Some((method.as_str(), path.as_str(), policy.feature?))
        })
        .collect();
    let marketplace = adiuva_access::tiers::Feature::PluginMarketplace.name();
    assert_eq!(
        gated,
        [
            ("GET", "/api/v1/plugins", marketplace),
            ("GET", "/api/v1/plugins/{id}", marketplace),
            ("POST", "/api/v1/plugins/{id}/install", marketplace),
        ]
    );
}

/// Every function's declared routes and their policies, by (METHOD, path).
pub fn declared_policies() -> BTreeMap<Route, adiuva_http::routes::Policy> {
    let (context, _dir) = code_context();
    local::functions(&context)
        .unwrap()
        .iter()
        .flat_map(|(_, function)| {
            function
                .policies()
                .routes()
                .map(|route| ((route.method.clone(), route.path.clone()), route.policy))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// CORS comes from one list: API Gateway's configuration in infra/ equals the code's, and it
/// allows every header parameter the API documents.
#[test]
fn cors_is_the_same_list_in_code_and_infra() {
    use adiuva_http::cors::{ALLOWED_HEADERS, ALLOWED_METHODS, EXPOSED_HEADERS, MAX_AGE};

    let text = std::fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    let template: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let cors = &template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"];
    let list = |key: &str| -> BTreeSet<String> {
        cors[key]
            .as_sequence()
            .unwrap_or_else(|| panic!("CorsConfiguration.{key} is not a list"))
            .iter()
            .map(|item| item.as_str().unwrap().to_lowercase())
            .collect()
    };
    let code = |items: &[&str]| -> BTreeSet<String> {
        items.iter().map(|item| item.to_lowercase()).collect()
    };
    assert_eq!(list("AllowHeaders"), code(ALLOWED_HEADERS));
    assert_eq!(list("ExposeHeaders"), code(EXPOSED_HEADERS));
    assert_eq!(list("AllowMethods"), code(ALLOWED_METHODS));
    assert_eq!(cors["MaxAge"].as_u64(), Some(MAX_AGE.as_secs()));
}

/// A browser may call every route: each method a route is declared with is one CORS allows
/// (a PATCH route behind a list without PATCH fails its preflight).
#[tokio::test]
async fn every_declared_method_is_allowed_by_cors() {
    let allowed: BTreeSet<&str> = adiuva_http::cors::ALLOWED_METHODS.iter().copied().collect();
    let missing: Vec<String> = declared_policies()
        .into_keys()
        .filter(|(method, _)| !allowed.contains(method.as_str()))
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    assert!(
        missing.is_empty(),
        "methods CORS does not allow: {missing:?}"
    );
}

#[tokio::test]
async fn every_documented_header_parameter_is_allowed_by_cors() {
    let (context, _dir) = code_context();
    let document = serde_json::to_value(local::openapi(&context).unwrap()).unwrap();
    let mut headers = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        // Stripe calls the webhook from its servers, never a browser.
        if path == "/api/v1/billing/webhook" {
            continue;
        }
        for method in HTTP_METHODS {
            for parameter in item[method]["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] == "header" {
                    headers.insert(parameter["name"].as_str().unwrap().to_lowercase());
                }
            }
        }
    }
    assert!(headers.contains("x-backup-chunk-count"), "{headers:?}");
    for header in headers {
        assert!(
            adiuva_http::cors::ALLOWED_HEADERS.contains(&header.as_str()),
            "{header} is read but not allowed by CORS"
        );
    }
}

/// The served document, completed by adiuva-http's contract with what the pipeline answers
/// before a handler runs: every authenticated operation lists 401, 429 and 503, every JSON body
/// 400, 413, 415 and 422, every idempotent route its `Idempotency-Key` header (bounded as the
/// limits crate checks it) and 409; each with the error schema.
#[tokio::test]
async fn every_operation_documents_what_the_pipeline_answers() {
    let policies = declared_policies();
    let app = spawn_app(Backend::Sqlite).await;
    let document: Value = app.get(local::OPENAPI_PATH).await.json().await.unwrap();
    let error_body = serde_json::json!({"$ref": "#/components/schemas/ErrorBody"});
    for (method, path) in operations(&document) {
        let operation = &document["paths"][&path][method.to_lowercase()];
        let responses = &operation["responses"];
        let route = format!("{method} {path}");
        let expect = |statuses: &[&str]| {
            for status in statuses {
                assert_eq!(
                    responses[*status]["content"]["application/json"]["schema"], error_body,
                    "{route} does not document {status} with the error body"
                );
            }
        };
        let policy = policies[&(method.clone(), path.clone())];
        if !policy.public {
            expect(&["401", "429", "503"]);
            assert!(
                responses["429"]["headers"]["Retry-After"].is_object(),
                "{route}: 429 without Retry-After"
            );
        }
        if operation["requestBody"]["content"]["application/json"].is_object() {
            expect(&["400", "413", "415", "422"]);
        }
        let idempotency_key = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|parameter| parameter["name"] == "Idempotency-Key");
        if policy.idempotent {
            expect(&["409"]);
            let key = idempotency_key.unwrap_or_else(|| panic!("{route}: no Idempotency-Key"));
            assert_eq!(key["in"], "header");
            assert_eq!(
                key["schema"]["maxLength"].as_u64(),
                Some(adiuva_limits::idempotency::MAX_KEY_LEN as u64),
                "{route}: the documented key length is not the checked one"
            );
        } else {
            assert!(
                idempotency_key.is_none(),
                "{route} documents an Idempotency-Key it ignores"
            );
        }
    }
}

/// Every documented path parameter is a `{name}` of its path and every `{name}` is documented,
/// required; query parameters are optional unless the route needs them (a query struct
/// documented as path parameters told clients to put `?page` in the path).
#[tokio::test]
async fn documented_parameters_are_where_the_routes_read_them() {
    let (context, _dir) = code_context();
    let document = serde_json::to_value(local::openapi(&context).unwrap()).unwrap();
    for (method, path) in operations(&document) {
        let operation = &document["paths"][&path][method.to_lowercase()];
        let placeholders: BTreeSet<String> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        let mut documented = BTreeSet::new();
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().unwrap().to_owned();
            match parameter["in"].as_str() {
                Some("path") => {
                    assert_eq!(
                        parameter["required"], true,
                        "{method} {path}: path parameter {name} is not required"
                    );
                    documented.insert(name);
                }
                Some("query" | "header") => {
                    let nullable = parameter["schema"]["type"]
                        .as_array()
                        .is_some_and(|types| types.iter().any(|t| t == "null"));
                    assert!(
                        !nullable,
                        "{method} {path}: parameter {name} may be null, which a query or header cannot be"
                    );
                }
                other => panic!("{method} {path}: parameter {name} in {other:?}"),
            }
        }
        assert_eq!(
            documented, placeholders,
            "{method} {path}: the path parameters and the path differ"
        );
    }
}

/// `EdgeProtection`: WAF counts each address on the auth routes (API Gateway's own throttle is
/// shared by every client), CloudFront sends the origin secret that `adiuva-lambda` checks
/// before it believes the viewer's address, and every function gets that secret.
#[test]
fn the_edge_throttles_each_address_on_the_auth_routes() {
    let text = std::fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    let template: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let resources = &template["Resources"];
    let acl = &resources["EdgeWebAcl"]["Properties"];
    assert_eq!(acl["Scope"].as_str(), Some("CLOUDFRONT"));
    let rule = &acl["Rules"][0];
    let rate = &rule["Statement"]["RateBasedStatement"];
    assert_eq!(rate["AggregateKeyType"].as_str(), Some("IP"));
    let scope = &rate["ScopeDownStatement"]["ByteMatchStatement"];
    assert_eq!(scope["SearchString"].as_str(), Some("/api/v1/auth/"));
    assert_eq!(scope["PositionalConstraint"].as_str(), Some("STARTS_WITH"));
    assert_eq!(
        rule["Action"]["Block"]["CustomResponse"]["ResponseCode"].as_u64(),
        Some(429)
    );
    let distribution = &resources["EdgeDistribution"]["Properties"]["DistributionConfig"];
    assert!(format!("{:?}", distribution["WebACLId"]).contains("EdgeWebAcl"));
    let header = &distribution["Origins"][0]["OriginCustomHeaders"][0];
    assert_eq!(header["HeaderName"].as_str(), Some("X-Origin-Verify"));
    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert!(
        !globals["EDGE_ORIGIN_SECRET"].is_null(),
        "the functions must get EDGE_ORIGIN_SECRET"
    );
}

/// Idempotency records, WebSocket connections, limit windows and chat slots expire through
/// the table's TTL: the template declares, and enables, the attribute the code writes.
#[test]
fn the_short_lived_table_expires_items_by_the_attribute_the_code_writes() {
    let text = std::fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    let template: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let table = &template["Resources"]["ShortLivedTable"];
    assert_eq!(table["Type"].as_str(), Some("AWS::DynamoDB::Table"));
    let ttl = &table["Properties"]["TimeToLiveSpecification"];
    assert_eq!(
        ttl["AttributeName"].as_str(),
        Some(adiuva_kv::TTL_ATTRIBUTE),
        "ShortLivedTable's TimeToLiveSpecification"
    );
    assert_eq!(
        ttl["Enabled"].as_bool(),
        Some(true),
        "the table's TTL is off"
    );
}

/// Each scheduled job has one EventBridge schedule on the janitor function, whose constant
/// input names it, and every schedule names a job the function knows.
#[test]
fn every_job_has_a_schedule_on_the_janitor_function() {
    let text = std::fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    let template: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let janitor = &template["Resources"]["JanitorFunction"];
    assert_eq!(
        janitor["Metadata"]["BuildProperties"]["Binary"].as_str(),
        Some("janitor")
    );
    let events = janitor["Properties"]["Events"]
        .as_mapping()
        .expect("JanitorFunction has no Events");
    let mut scheduled = Vec::new();
    for (name, event) in events {
        assert_eq!(event["Type"].as_str(), Some("Schedule"), "{name:?}");
        let properties = &event["Properties"];
        let schedule = properties["Schedule"].as_str().unwrap_or_default();
        assert!(
            schedule.starts_with("rate(") || schedule.starts_with("cron("),
            "{name:?}: {schedule}"
        );
        let input: serde_json::Value = serde_json::from_str(
            properties["Input"]
                .as_str()
                .unwrap_or_else(|| panic!("{name:?} has no constant Input naming its job")),
        )
        .unwrap();
        let job = janitor::Job::of_event(&input).unwrap_or_else(|err| panic!("{name:?}: {err}"));
        assert_eq!(input["job"].as_str(), Some(job.name()), "{name:?}");
        scheduled.push(job.name());
    }
    scheduled.sort_unstable();
    let mut jobs: Vec<&str> = janitor::Job::ALL.map(janitor::Job::name).to_vec();
    jobs.sort_unstable();
    assert_eq!(scheduled, jobs, "one schedule per job");
}

/// utoipa names a schema after its Rust type, and the merged document keeps one schema per
/// name: two functions' types of the same name but different shapes would silently answer
/// with the other's schema (account deletion's `Deleted` once documented vector deletion's
/// answer). Every name must mean one shape across the functions.
#[tokio::test]
async fn a_schema_name_means_one_shape_across_functions() {
    let (context, _dir) = code_context();
    let mut seen: BTreeMap<String, (String, Value)> = BTreeMap::new();
    for (name, function) in local::functions(&context).unwrap() {
        let document = serde_json::to_value(function.openapi()).unwrap();
        let Some(schemas) = document["components"]["schemas"].as_object() else {
            continue;
        };
        for (schema, shape) in schemas {
            match seen.get(schema) {
                Some((first, known)) => assert_eq!(
                    known, shape,
                    "schema {schema} differs between the {first} and {name} functions: \
                     give one of the types another name"
                ),
                None => {
                    seen.insert(schema.clone(), (name.to_owned(), shape.clone()));
                }
            }
        }
    }
    assert!(seen.len() > 20, "only {} schemas found", seen.len());
}
