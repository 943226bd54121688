//! The dependency rules of ARCHITECTURE.md, checked on the real graph (`cargo metadata`):
//! functions -> HTTP layer -> domain -> adapters, and nothing the other way.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Command;

use serde_json::Value;

use crate::contract::workspace_root;

/// The HTTP layer: the only shared crates that know axum, tower-http or lambda_http.
const HTTP_LAYER: &[&str] = &["adiuva-http", "adiuva-pipeline", "adiuva-lambda"];
/// What only the HTTP layer and the HTTP functions may depend on.
const HTTP_CRATES: &[&str] = &[
    "axum",
    "tower-http",
    "lambda_http",
    "adiuva-http",
    "adiuva-pipeline",
    "adiuva-lambda",
];

/// The workspace's crates and their normal (linked) dependencies, by package name.
struct Graph {
    /// Package name -> where it lives (`functions`, `shared`, `tests`) for workspace members.
    members: BTreeMap<String, String>,
    /// Package name -> names of its normal dependencies.
    deps: BTreeMap<String, BTreeSet<String>>,
    /// Workspace member -> the features its manifest turns on in its dependencies, as
    /// `dependency/feature`.
    dep_features: BTreeMap<String, BTreeSet<String>>,
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command.current_dir(workspace_root());
    command
}

/// `cargo metadata` of the workspace, resolved for this platform.
fn metadata() -> Value {
    let output = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn graph() -> Graph {
    let metadata = metadata();
    let name_of: BTreeMap<String, String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            (
                package["id"].as_str().unwrap().to_owned(),
                package["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let root = workspace_root();
    let members: BTreeMap<String, String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|package| {
            metadata["workspace_members"]
                .as_array()
                .unwrap()
                .contains(&package["id"])
        })
        .map(|package| {
            let manifest = std::path::PathBuf::from(package["manifest_path"].as_str().unwrap());
            let folder = manifest
                .strip_prefix(&root)
                .unwrap()
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .into_owned();
            (package["name"].as_str().unwrap().to_owned(), folder)
        })
        .collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"].as_array().unwrap() {
        let name = &name_of[node["id"].as_str().unwrap()];
        let linked = node["deps"].as_array().unwrap().iter().filter(|dep| {
            dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|kind| kind["kind"].is_null())
        });
        deps.entry(name.clone())
            .or_default()
            .extend(linked.map(|dep| name_of[dep["pkg"].as_str().unwrap()].clone()));
    }
    let dep_features = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|package| members.contains_key(package["name"].as_str().unwrap()))
        .map(|package| {
            let features = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|dep| {
                    let name = dep["name"].as_str().unwrap();
                    dep["features"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(move |feature| format!("{name}/{}", feature.as_str().unwrap()))
                })
                .collect();
            (package["name"].as_str().unwrap().to_owned(), features)
        })
        .collect();
    Graph {
        members,
        deps,
        dep_features,
    }
}

impl Graph {
    fn in_folder(&self, folder: &str) -> Vec<&str> {
        self.members
            .iter()
            .filter(|(_, f)| *f == folder)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The direct dependencies of `package` among `names`.
    fn direct_among(&self, package: &str, names: &[&str]) -> Vec<&String> {
        self.deps[package]
            .iter()
            .filter(|dep| names.contains(&dep.as_str()))
            .collect()
    }

    /// Everything `package` links, following normal dependencies, without going through
    /// `skip`.
    fn closure(&self, package: &str, skip: &[&str]) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([package.to_owned()]);
        while let Some(next) = queue.pop_front() {
            for dep in self.deps.get(&next).into_iter().flatten() {
                if !skip.contains(&dep.as_str()) && seen.insert(dep.clone()) {
                    queue.push_back(dep.clone());
                }
            }
        }
        seen
    }
}

#[test]
fn domain_and_adapter_crates_know_nothing_of_http() {
    let graph = graph();
    for package in graph.in_folder("shared") {
        if HTTP_LAYER.contains(&package) {
            continue;
        }
        let http = graph.direct_among(package, HTTP_CRATES);
        assert!(http.is_empty(), "{package} depends on {http:?}");
    }
}

#[test]
fn the_http_layer_depends_on_no_function() {
    let graph = graph();
    let functions = graph.in_folder("functions");
    for package in HTTP_LAYER {
        let wrong = graph.direct_among(package, &functions);
        assert!(wrong.is_empty(), "{package} depends on {wrong:?}");
    }
}

#[test]
fn no_function_depends_on_another() {
    let graph = graph();
    let functions = graph.in_folder("functions");
    assert!(functions.len() >= 10, "{functions:?}");
    for package in &functions {
        // The local server is every function in one process, not a Lambda.
        if *package == "local" {
            continue;
        }
        let wrong = graph.direct_among(package, &functions);
        assert!(wrong.is_empty(), "{package} depends on {wrong:?}");
    }
}

#[test]
fn janitor_and_chat_ws_link_no_http_framework() {
    let graph = graph();
    for package in ["janitor", "chat-ws"] {
        // qdrant-client's gRPC stack (tonic) lists axum for its server side, which the
        // janitor never uses; nothing of ours may bring it.
        let linked = graph.closure(package, &["tonic"]);
        for forbidden in [
            "axum",
            "lambda_http",
            "adiuva-http",
            "adiuva-pipeline",
            "adiuva-lambda",
        ] {
            assert!(!linked.contains(forbidden), "{package} links {forbidden}");
        }
        assert!(
            !graph.closure(package, &[]).contains("lambda_http"),
            "{package} links lambda_http"
        );
    }
}

/// The janitor's jobs purge sessions without the code that makes them: `adiuva-sessions`, not
/// adiuva-auth with its password hashing and access tokens.
#[test]
fn the_janitor_links_no_password_hashing_or_access_tokens() {
    let graph = graph();
    let linked = graph.closure("janitor", &[]);
    for forbidden in ["adiuva-auth", "bcrypt", "jsonwebtoken"] {
        assert!(!linked.contains(forbidden), "janitor links {forbidden}");
    }
    assert!(linked.contains("adiuva-sessions"));
}

#[test]
fn health_links_no_caller_store_or_client() {
    let graph = graph();
    let linked = graph.closure("health", &[]);
    for forbidden in [
        "adiuva-auth",
        "adiuva-pipeline",
        "adiuva-kv",
        "bcrypt",
        "jsonwebtoken",
        "async-openai",
        "reqwest",
        "qdrant-client",
        "aws-sdk-s3",
        "aws-sdk-dynamodb",
        "aws-sdk-apigatewaymanagement",
    ] {
        assert!(!linked.contains(forbidden), "health links {forbidden}");
    }
    assert!(linked.contains("adiuva-http") && linked.contains("lambda_http"));
}

/// What no Lambda needs: the OpenAPI document, the migrations, the SQLite driver. Cargo unifies
/// features only within one build, so `cargo lambda build -p <function>` builds none of them.
#[test]
fn only_the_local_server_and_the_tests_build_the_document_the_migrations_and_sqlite() {
    let graph = graph();
    for feature in [
        "adiuva-http/openapi",
        "adiuva-db/migrate",
        "adiuva-db/sqlite",
    ] {
        let users: Vec<&String> = graph
            .dep_features
            .iter()
            .filter(|(_, features)| features.contains(feature))
            .map(|(package, _)| package)
            .collect();
        assert_eq!(users, ["local", "tests"], "who turns on {feature}");
    }
}

#[test]
fn only_the_functions_that_bill_link_stripe() {
    let graph = graph();
    // billing and plugins sell; account ends a subscription before deleting the account; the
    // janitor makes the marketplace's owed transfers; teams ends a deleted team's subscription.
    const STRIPE_USERS: &[&str] = &["account", "billing", "janitor", "plugins", "teams", "local"];
    for package in graph.in_folder("functions") {
        if STRIPE_USERS.contains(&package) {
            continue;
        }
        assert!(
            !graph.closure(package, &[]).contains("async-stripe"),
            "{package} links async-stripe"
        );
    }
    for package in ["account", "billing", "janitor", "plugins", "teams"] {
        assert!(
            graph.closure(package, &[]).contains("async-stripe"),
            "{package}"
        );
    }
}

/// Sign-in with OpenID Connect (reqwest to the provider, ring's RSA and ECDSA verification of
/// its ID tokens) is the auth function's alone; access tokens stay HMAC everywhere.
#[test]
fn only_the_auth_function_links_openid_connect() {
    let graph = graph();
    const OIDC_USERS: &[&str] = &["auth", "local"];
    for package in graph.in_folder("functions") {
        let links = graph.closure(package, &[]).contains("adiuva-oidc");
        assert_eq!(
            links,
            OIDC_USERS.contains(&package),
            "{package} links adiuva-oidc: {links}"
        );
    }
    // The domain crate of accounts is in every authenticated binary: it must not bring it.
    assert!(!graph.closure("adiuva-auth", &[]).contains("adiuva-oidc"));
    assert!(!graph.closure("adiuva-oidc", &[]).contains("jsonwebtoken"));
}

/// The docs page's bundle (Scalar, 5 MB of JavaScript embedded in the binary) is the local
/// server's alone: no Lambda and no shared crate links it.
#[test]
fn only_the_local_server_links_the_docs_page() {
    let graph = graph();
    let mut packages = graph.in_folder("functions");
    packages.extend(graph.in_folder("shared"));
    for package in packages {
        let links = graph.closure(package, &[]).contains("scalar_api_reference");
        assert_eq!(links, package == "local", "{package}");
    }
}

/// The teams function links Stripe (a deleted team's subscription ends) and the storage domain
/// (its space is purged), but no vector store and no model client.
#[test]
fn teams_links_no_vector_store_or_model_client() {
    let graph = graph();
    let linked = graph.closure("teams", &[]);
    for forbidden in ["qdrant-client", "async-openai"] {
        assert!(!linked.contains(forbidden), "teams links {forbidden}");
    }
    for needed in [
        "adiuva-teams",
        "adiuva-pipeline",
        "adiuva-billing",
        "adiuva-storage",
    ] {
        assert!(linked.contains(needed), "teams does not link {needed}");
    }
}

/// The OpenAPI document is a feature, not a dependency: a crate that names utoipa (a domain
/// crate for its types' schemas, a function for its handlers' operations, the HTTP layer for
/// the document) does so optionally, behind its own `openapi` feature, which no default turns
/// on. Only the local server (which serves the document) and the tests (which check it) have
/// it outright.
#[test]
fn utoipa_is_behind_an_openapi_feature() {
    let metadata = metadata();
    let members = metadata["workspace_members"].as_array().unwrap();
    let mut gated = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        if !members.contains(&package["id"]) || ["local", "tests", "xtask"].contains(&name) {
            continue;
        }
        let utoipa: Vec<&Value> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|dep| dep["name"] == "utoipa")
            .collect();
        if utoipa.is_empty() {
            continue;
        }
        for dep in utoipa {
            assert_eq!(dep["optional"], true, "{name} depends on utoipa outright");
        }
        let features = package["features"].as_object().unwrap();
        for (feature, enables) in features {
            let enables_utoipa = enables
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e == "dep:utoipa");
            assert!(
                !enables_utoipa || feature == "openapi",
                "{name}'s feature {feature} turns utoipa on"
            );
        }
        let default = features.get("default").and_then(Value::as_array);
        assert!(
            default.is_none_or(|default| !default.iter().any(|e| e == "openapi")),
            "{name} documents by default"
        );
        gated.push(name.to_owned());
    }
    // The nine domain crates whose types are in the document, the HTTP layer and the eleven
    // HTTP functions.
    assert!(gated.len() >= 21, "{gated:?}");
    for package in [
        "adiuva-http",
        "adiuva-storage",
        "adiuva-marketplace",
        "health",
        "teams",
    ] {
        assert!(gated.contains(&package.to_owned()), "{package}: {gated:?}");
    }
}

/// What `.ci/run` builds for Lambda (every function but the local server, in one build, so
/// with their features unified) compiles nothing of utoipa: no handler's declaration and no
/// type's schema.
#[test]
fn a_lambda_build_compiles_no_utoipa() {
    let graph = graph();
    let mut command = cargo();
    command.args([
        "tree",
        "--locked",
        "--edges",
        "normal,build",
        "--prefix",
        "none",
    ]);
    command.args(["--format", "{p}"]);
    let functions: Vec<&str> = graph
        .in_folder("functions")
        .into_iter()
        .filter(|package| *package != "local")
        .collect();
    for function in &functions {
        command.args(["-p", function]);
    }
    let output = command.output().expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    for function in &functions {
        assert!(
            tree.lines()
                .any(|line| line.starts_with(&format!("{function} ")))
        );
    }
    let utoipa: Vec<&str> = tree
        .lines()
        .filter(|line| line.starts_with("utoipa"))
        .collect();
    assert!(utoipa.is_empty(), "a Lambda build compiles {utoipa:?}");
    // The local server's build does document.
    let output = cargo()
        .args(["tree", "--locked", "--edges", "normal", "--prefix", "none"])
        .args(["--format", "{p}", "-p", "local"])
        .output()
        .expect("cargo tree runs");
    let tree = String::from_utf8(output.stdout).unwrap();
    assert!(tree.lines().any(|line| line.starts_with("utoipa ")));
}
