//! Each function's Lambda handler fed with its sample events from `events/`, answering like the
//! local server does for the same requests.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use reqwest::Method;
use serde_json::Value;

use crate::backend_tests;
use crate::contract::{Route, event_files};
use crate::harness::{Backend, TestApp, spawn_app_with};
use crate::llm::{Reply, ScriptedLlm};
use crate::oidc::{FakeProvider, Person};
use crate::stripe::FakeStripe;

backend_tests!(lambda_handlers_answer_like_the_local_server);

/// The order that lets one user go through every route: sign up, publish a public key, run a
/// team (create, invite a second user who accepts, roles, keys, the log, its SSO, transfer; deleted
/// before the account), read playbooks, chat, pay for
/// a tier, use the marketplace (browse, install, rate; as a developer submit; as an admin
/// review), store, back up, search, manage the account (sessions, email, password, the
/// security log, a linked Google identity signing in), rotate, sign out, and delete the account.
/// A route whose sample event is not here yet (one `cargo xtask gen` wrote for a new route) is
/// still sent to both sides, signed in, right after [`UNLISTED_AFTER`]: both must answer it
/// alike, whatever the status. Listing it here makes the walk expect a success.
const SEQUENCE: &[(&str, &str, &str)] = &[
    ("health", "GET", "/api/v1/health"),
    ("health", "GET", "/api/v1/health/ready"),
    ("auth", "POST", "/api/v1/auth/register"),
    ("auth", "POST", "/api/v1/auth/login"),
    ("auth", "GET", "/api/v1/auth/me"),
    ("auth", "PUT", "/api/v1/auth/me/public-key"),
    ("teams", "POST", "/api/v1/teams"),
    ("teams", "GET", "/api/v1/teams"),
    ("teams", "GET", "/api/v1/teams/{id}"),
    ("teams", "PATCH", "/api/v1/teams/{id}"),
    ("teams", "POST", "/api/v1/teams/{id}/invitations"),
    ("teams", "GET", "/api/v1/teams/{id}/invitations"),
    ("teams", "POST", "/api/v1/teams/invitations/accept"),
    ("teams", "GET", "/api/v1/teams/{id}/members"),
    ("teams", "PATCH", "/api/v1/teams/{id}/members/{user_id}"),
    ("teams", "PUT", "/api/v1/teams/{id}/keys/{user_id}"),
    ("teams", "GET", "/api/v1/teams/{id}/keys/me"),
    ("teams", "GET", "/api/v1/teams/{id}/events"),
    ("teams", "PUT", "/api/v1/teams/{id}/sso"),
    ("teams", "GET", "/api/v1/teams/{id}/sso"),
    ("teams", "DELETE", "/api/v1/teams/{id}/sso"),
    (
        "teams",
        "DELETE",
        "/api/v1/teams/{id}/invitations/{invitation_id}",
    ),
    ("teams", "POST", "/api/v1/teams/{id}/transfer"),
    ("teams", "DELETE", "/api/v1/teams/{id}/members/{user_id}"),
    ("plans", "GET", "/api/v1/plans/playbook"),
    ("plans", "GET", "/api/v1/plans/playbook/{plan_id}"),
    ("chat", "POST", "/api/v1/chat"),
    ("chat", "GET", "/api/v1/chat/usage"),
    ("chat", "GET", "/api/v1/chat/agents"),
    ("chat", "GET", "/api/v1/chat/streams/{id}"),
    ("chat", "DELETE", "/api/v1/chat/streams/{id}"),
    ("billing", "POST", "/api/v1/billing/checkout"),
    ("billing", "POST", "/api/v1/billing/webhook"),
    ("billing", "GET", "/api/v1/billing/subscription"),
    ("billing", "GET", "/api/v1/billing/entitlements"),
    ("billing", "POST", "/api/v1/billing/portal"),
    ("billing", "DELETE", "/api/v1/billing/subscription"),
    ("billing", "PUT", "/api/v1/teams/{id}/seats"),
    ("plugins", "GET", "/api/v1/plugins"),
    ("plugins", "GET", "/api/v1/plugins/{id}"),
    ("plugins", "POST", "/api/v1/plugins/{id}/install"),
    ("plugins", "PUT", "/api/v1/plugins/{id}/rating"),
    ("plugins", "DELETE", "/api/v1/plugins/{id}/install"),
    ("plugins", "POST", "/api/v1/developer/connect"),
    ("plugins", "GET", "/api/v1/developer/account"),
    ("plugins", "POST", "/api/v1/plugins"),
    ("plugins", "GET", "/api/v1/developer/plugins"),
    ("plugins", "GET", "/api/v1/admin/plugins/queue"),
    ("plugins", "POST", "/api/v1/admin/plugins/{id}/review"),
    ("plugins", "POST", "/api/v1/admin/plugins/{id}/block"),
    ("auth", "POST", "/api/v1/admin/users/{id}/disable"),
    ("auth", "POST", "/api/v1/admin/users/{id}/enable"),
    ("plugins", "GET", "/api/v1/developer/earnings"),
    ("storage", "POST", "/api/v1/storage/records"),
    ("storage", "GET", "/api/v1/storage/records"),
    ("storage", "GET", "/api/v1/storage/records/{id}"),
    ("storage", "PUT", "/api/v1/storage/records/{id}"),
    ("storage", "GET", "/api/v1/storage/changes"),
    ("storage", "POST", "/api/v1/storage/uploads"),
    (
        "storage",
        "POST",
        "/api/v1/storage/uploads/{upload_id}/commit",
    ),
    ("storage", "DELETE", "/api/v1/storage/records/{id}"),
    ("storage", "POST", "/api/v1/teams/{id}/records"),
    ("storage", "GET", "/api/v1/teams/{id}/records"),
    ("storage", "GET", "/api/v1/teams/{id}/records/{record_id}"),
    ("storage", "PUT", "/api/v1/teams/{id}/records/{record_id}"),
    ("storage", "GET", "/api/v1/teams/{id}/changes"),
    ("storage", "POST", "/api/v1/teams/{id}/uploads"),
    (
        "storage",
        "POST",
        "/api/v1/teams/{id}/uploads/{upload_id}/commit",
    ),
    (
        "storage",
        "DELETE",
        "/api/v1/teams/{id}/records/{record_id}",
    ),
    ("backup", "PUT", "/api/v1/backup"),
    ("backup", "GET", "/api/v1/backup"),
    ("backup", "GET", "/api/v1/backup/history"),
    ("backup", "DELETE", "/api/v1/backup/{backup_id}"),
    ("vectors", "POST", "/api/v1/storage/vectors/upsert"),
    ("vectors", "POST", "/api/v1/storage/vectors/search"),
    ("vectors", "DELETE", "/api/v1/storage/vectors"),
    ("auth", "GET", "/api/v1/auth/sessions"),
    ("auth", "DELETE", "/api/v1/auth/sessions/{id}"),
    ("auth", "POST", "/api/v1/auth/email"),
    ("auth", "POST", "/api/v1/auth/password"),
    ("auth", "GET", "/api/v1/auth/events"),
    ("auth", "GET", "/api/v1/auth/oidc/providers"),
    ("auth", "POST", "/api/v1/auth/oidc/start"),
    ("auth", "POST", "/api/v1/auth/oidc/link"),
    ("auth", "POST", "/api/v1/auth/oidc/callback"),
    ("auth", "DELETE", "/api/v1/auth/oidc/identities/{id}"),
    ("auth", "POST", "/api/v1/auth/refresh"),
    ("auth", "POST", "/api/v1/auth/logout"),
    ("teams", "DELETE", "/api/v1/teams/{id}"),
    ("account", "DELETE", "/api/v1/auth/me"),
];

/// Where the walk sends the sample events that SEQUENCE does not list: the user is signed in.
const UNLISTED_AFTER: (&str, &str, &str) = ("auth", "PUT", "/api/v1/auth/me/public-key");

/// The bytes `events/storage/start_upload.json` announces (20 bytes, their SHA-256).
const UPLOADED: &[u8] = b"large-encrypted-note";
/// The package `events/plugins/submit.json` names by its SHA-256.
const PACKAGE: &[u8] = b"events-plugin-package";
const EVENTS_USER: (&str, &str) = ("events-user@example.com", "correct-horse-battery");
/// Whom `events/teams/invite.json` invites.
const EVENTS_INVITEE: &str = "events-invitee@example.com";
/// What `events/auth/change_password.json` sets the password to.
const CHANGED_PASSWORD: &str = "battery-staple-horse";
/// The S256 challenge of the verifier in `events/auth/oidc_link.json` and `oidc_callback.json`.
const OIDC_CHALLENGE: &str = "V4AKZyYEqgoZAHWJ-XXRPeF-cHfp-UMVi-w1bPwVU0w";

/// One side of the comparison and what it has been handed so far, to fill the placeholders.
struct Session<'a> {
    app: &'a TestApp,
    stripe: &'a FakeStripe,
    oidc: &'a FakeProvider,
    values: BTreeMap<&'static str, String>,
}

impl<'a> Session<'a> {
    fn new(app: &'a TestApp, stripe: &'a FakeStripe, oidc: &'a FakeProvider) -> Self {
        Self {
            app,
            stripe,
            oidc,
            values: BTreeMap::new(),
        }
    }

    /// Plays the browser at the provider: the code and state of its redirect, for the
    /// link and callback events.
    async fn authorize(&mut self, authorization_url: &str) {
        let (code, state) = self.oidc.authorize(authorization_url).await;
        self.values.insert("oidc_code", code);
        self.values.insert("oidc_state", state);
    }

    /// The event with the values so far; a Stripe webhook's body is then signed now, as Stripe
    /// would sign it.
    fn fill(&self, event: &str) -> String {
        let filled = self
            .values
            .iter()
            .fold(event.to_owned(), |event, (name, value)| {
                event.replace(&format!("{{{{{name}}}}}"), value)
            });
        if !filled.contains("{{stripe_signature}}") {
            return filled;
        }
        let parsed: Value = serde_json::from_str(&filled).unwrap();
        let body = parsed["body"].as_str().unwrap();
        let signed = crate::stripe::signature(
            crate::stripe::WEBHOOK_SECRET,
            body,
            crate::stripe::now_secs(),
        );
        filled.replace("{{stripe_signature}}", &signed)
    }

    /// Keeps what later requests need, and plays the parts no event covers: the billing
    /// webhook (pro tier), the client's upload to the presigned URL, signing in again.
    async fn after(&mut self, method: &str, path: &str, body: &Value) {
        for (name, field) in [
            ("access_token", "access_token"),
            ("refresh_token", "refresh_token"),
        ] {
            if let Some(value) = body[field].as_str() {
                self.values.insert(name, value.to_owned());
            }
        }
        match (method, path) {
            ("GET", "/api/v1/auth/me") => {
                let user_id = body["id"].as_str().unwrap();
                self.values.insert("user_id", user_id.to_owned());
                self.app.set_subscription(user_id, "pro", "active").await;
            }
            ("POST", "/api/v1/billing/checkout") => {
                // The user pays on Stripe's page; Stripe then sends the events.
                let (_, subscription) = self
                    .stripe
                    .complete_checkout(body["checkout_url"].as_str().unwrap());
                let customer = self.stripe.subscription(&subscription)["customer"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                self.values.insert("subscription_id", subscription);
                self.values.insert("customer_id", customer);
                self.values
                    .insert("event_id", format!("evt_{}", uuid::Uuid::new_v4().simple()));
            }
            ("POST", "/api/v1/chat") => {
                // A resumable stream of the user's that has ended, as the chat WebSocket
                // leaves it, for the stream events.
                let streams = adiuva_chat::streams::Streams::new(
                    self.app.backends.kv.clone(),
                    std::time::Duration::from_secs(900),
                );
                let id = streams.open(&self.values["user_id"]).await.unwrap();
                let start = serde_json::json!({"type": "start", "stream_id": id, "seq": 0});
                let done = serde_json::json!({"type": "done", "seq": 1, "done": true, "response": "Done.", "actions": []});
                streams.store(&id, 0, &start.to_string()).await.unwrap();
                streams.store(&id, 1, &done.to_string()).await.unwrap();
                streams.mark_done(&id).await.unwrap();
                self.values.insert("stream_id", id);
            }
            ("POST", "/api/v1/teams") => {
                // The team's seats are paid (what billing's checkout does): standing in for it.
                let team_id = body["id"].as_str().unwrap();
                self.values.insert("team_id", team_id.to_owned());
                crate::teams::activate_team(self.app, team_id, 10).await;
            }
            ("POST", "/api/v1/teams/{id}/invitations") => {
                // The invitee signs up with the invited email and will accept.
                self.values.insert(
                    "invitation_token",
                    body["token"].as_str().unwrap().to_owned(),
                );
                let invitee = crate::teams::register_as(self.app, EVENTS_INVITEE).await;
                self.values.insert("member_id", invitee.id);
                self.values
                    .insert("invitee_token", invitee.tokens.access_token);
            }
            ("POST", "/api/v1/teams/invitations/accept") => {
                // A second invitation, still pending, for the revoke event.
                let pending: Value = self
                    .app
                    .request(
                        Method::POST,
                        &format!("/api/v1/teams/{}/invitations", self.values["team_id"]),
                    )
                    .bearer_auth(&self.values["access_token"])
                    .json(&serde_json::json!({"email": "events-pending@example.com", "role": "member"}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                self.values
                    .insert("invitation_id", pending["id"].as_str().unwrap().to_owned());
            }
            ("POST", "/api/v1/teams/{id}/transfer") => {
                // The new owner hands the team back, so that the events user can remove them
                // and delete the team.
                let back = self
                    .app
                    .request(
                        Method::POST,
                        &format!("/api/v1/teams/{}/transfer", self.values["team_id"]),
                    )
                    .bearer_auth(&self.values["invitee_token"])
                    .json(&serde_json::json!({"user_id": self.values["user_id"]}))
                    .send()
                    .await
                    .unwrap();
                assert!(back.status().is_success(), "transferring back failed");
            }
            ("GET", "/api/v1/plans/playbook") => {
                let plan_id = body
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|plan| plan["plan_id"].as_str())
                    .find(|plan_id| *plan_id == "create_tasks_from_project")
                    .expect("the playbook list lacks create_tasks_from_project");
                self.values.insert("plan_id", plan_id.to_owned());
            }
            ("POST", "/api/v1/storage/records") => {
                self.values
                    .insert("record_id", body["id"].as_str().unwrap().to_owned());
            }
            ("POST", "/api/v1/teams/{id}/records") => {
                self.values
                    .insert("team_record_id", body["id"].as_str().unwrap().to_owned());
            }
            ("POST", "/api/v1/storage/uploads" | "/api/v1/teams/{id}/uploads") => {
                let name = if path.starts_with("/api/v1/teams") {
                    "team_upload_id"
                } else {
                    "upload_id"
                };
                self.values
                    .insert(name, body["upload_id"].as_str().unwrap().to_owned());
                let mut put = self
                    .app
                    .client
                    .put(body["url"].as_str().unwrap())
                    .body(UPLOADED);
                for (name, value) in body["headers"].as_object().unwrap() {
                    put = put.header(name, value.as_str().unwrap());
                }
                assert!(
                    put.send().await.unwrap().status().is_success(),
                    "upload to the presigned URL failed"
                );
            }
            ("GET", "/api/v1/developer/account") => {
                // The developer uploads the package the submission names, and the user becomes
                // an admin for the review routes.
                let token = &self.values["access_token"];
                let package_id = crate::marketplace::upload_package(self.app, token, PACKAGE).await;
                self.values.insert("package_id", package_id);
                let user_id = &self.values["user_id"];
                adiuva_db::sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1")
                    .bind(user_id)
                    .execute(self.app.database.db.pool())
                    .await
                    .unwrap();
            }
            ("GET", "/api/v1/developer/plugins") => {
                // The submission becomes another developer's: no admin reviews their own.
                let other = self.app.register_user().await;
                for sql in [
                    "UPDATE plugin_versions SET developer_id = $1 WHERE plugin_id = 'events-plugin'",
                    "UPDATE plugins SET author_id = $1 WHERE id = 'events-plugin'",
                ] {
                    adiuva_db::sqlx::query(sql)
                        .bind(&other.id)
                        .execute(self.app.database.db.pool())
                        .await
                        .unwrap();
                }
            }
            ("POST", "/api/v1/admin/plugins/{id}/block") => {
                // Someone for the admin to disable and enable.
                let victim = self.app.register_user().await;
                self.values.insert("victim_id", victim.id);
            }
            ("PUT", "/api/v1/backup") => {
                self.values
                    .insert("backup_id", body["id"].as_str().unwrap().to_owned());
            }
            ("GET", "/api/v1/auth/sessions") => {
                // The registration's session: the requests go on with the login's.
                let other = body
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|session| session["current"] == false)
                    .expect("the registration's session is listed");
                self.values
                    .insert("session_id", other["id"].as_str().unwrap().to_owned());
            }
            // The later events name the first email and password: change them back.
            ("POST", "/api/v1/auth/email") => {
                let back = self
                    .app
                    .request(Method::POST, "/api/v1/auth/email")
                    .bearer_auth(&self.values["access_token"])
                    .json(
                        &serde_json::json!({"new_email": EVENTS_USER.0, "password": EVENTS_USER.1}),
                    )
                    .send()
                    .await
                    .unwrap();
                assert!(back.status().is_success(), "changing the email back failed");
            }
            ("POST", "/api/v1/auth/password") => {
                let back: Value = self
                    .app
                    .request(Method::POST, "/api/v1/auth/password")
                    .bearer_auth(&self.values["access_token"])
                    .json(&serde_json::json!({
                        "current_password": CHANGED_PASSWORD,
                        "new_password": EVENTS_USER.1,
                    }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for name in ["access_token", "refresh_token"] {
                    self.values
                        .insert(name, back[name].as_str().unwrap().to_owned());
                }
            }
            ("POST", "/api/v1/auth/oidc/start") => {
                self.authorize(body["authorization_url"].as_str().unwrap())
                    .await;
            }
            // The linked identity signs in next: a new sign-in at the provider.
            ("POST", "/api/v1/auth/oidc/link") => {
                self.values
                    .insert("identity_id", body["id"].as_str().unwrap().to_owned());
                let started: Value = self
                    .app
                    .post_json(
                        "/api/v1/auth/oidc/start",
                        &serde_json::json!({"provider": "google",
                            "redirect_uri": "http://127.0.0.1:53682/callback",
                            "code_challenge": OIDC_CHALLENGE, "code_challenge_method": "S256"}),
                    )
                    .await
                    .json()
                    .await
                    .unwrap();
                self.authorize(started["authorization_url"].as_str().unwrap())
                    .await;
            }
            ("POST", "/api/v1/auth/logout") => {
                let tokens: Value = self
                    .app
                    .login(EVENTS_USER.0, EVENTS_USER.1)
                    .await
                    .json()
                    .await
                    .unwrap();
                for name in ["access_token", "refresh_token"] {
                    self.values
                        .insert(name, tokens[name].as_str().unwrap().to_owned());
                }
            }
            _ => {}
        }
    }
}

/// The shape of a JSON body: its keys, recursively, without the values (tokens and ids differ).
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::String(_) => Value::String(String::new()),
        Value::Number(_) => Value::Number(0.into()),
        other => other.clone(),
    }
}

/// Response headers a browser reads without CORS exposing them, or that only the browser or
/// the transport use.
const NOT_FOR_EXPOSURE: &[&str] = &[
    "content-type",
    "content-length",
    "date",
    "vary",
    "access-control-allow-origin",
    "access-control-expose-headers",
    // The security headers (adiuva-http's `headers`): for the browser itself.
    "cache-control",
    "x-content-type-options",
    "referrer-policy",
    "strict-transport-security",
    "content-security-policy",
];

/// Sends the request an event describes to the local server; returns status and body bytes,
/// after checking that CORS exposes every header of the answer.
async fn send_locally(app: &TestApp, event: &Value) -> (u16, Vec<u8>) {
    let method = Method::from_bytes(
        event["requestContext"]["http"]["method"]
            .as_str()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let mut path = event["rawPath"].as_str().unwrap().to_owned();
    if let Some(query) = event["rawQueryString"].as_str().filter(|q| !q.is_empty()) {
        path = format!("{path}?{query}");
    }
    let mut request = app.request(method, &path);
    for (name, value) in event["headers"].as_object().into_iter().flatten() {
        if name == "authorization"
            || name == "content-type"
            || name == "user-agent"
            || name == "if-match"
            || name == "stripe-signature"
            || name.starts_with("x-backup-")
        {
            request = request.header(name, value.as_str().unwrap());
        }
    }
    if let Some(body) = event["body"].as_str() {
        let bytes = if event["isBase64Encoded"] == true {
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap()
        } else {
            body.as_bytes().to_vec()
        };
        request = request.body(bytes);
    }
    let response = request.send().await.unwrap();
    for name in response.headers().keys() {
        assert!(
            adiuva_http::cors::EXPOSED_HEADERS.contains(&name.as_str())
                || NOT_FOR_EXPOSURE.contains(&name.as_str()),
            "{path} answers {name}, which CORS does not expose"
        );
    }
    (
        response.status().as_u16(),
        response.bytes().await.unwrap().to_vec(),
    )
}

/// The body bytes of a Lambda answer (API Gateway payload 2.0 response).
fn lambda_body(answer: &Value) -> Vec<u8> {
    let body = answer["body"].as_str().unwrap_or_default();
    if answer["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    } else {
        body.as_bytes().to_vec()
    }
}

fn same_answer(lambda: &[u8], local: &[u8]) -> bool {
    match (
        serde_json::from_slice::<Value>(lambda),
        serde_json::from_slice::<Value>(local),
    ) {
        (Ok(lambda), Ok(local)) => shape(&lambda) == shape(&local),
        _ => lambda == local,
    }
}

async fn lambda_handlers_answer_like_the_local_server(backend: Backend) {
    let events: BTreeMap<String, BTreeMap<Route, PathBuf>> = event_files();
    let listed: std::collections::BTreeSet<(&str, &str, &str)> = SEQUENCE.iter().copied().collect();
    assert_eq!(listed.len(), SEQUENCE.len(), "a route is twice in SEQUENCE");
    assert!(listed.contains(&UNLISTED_AFTER));
    let unlisted: Vec<(String, PathBuf)> = events
        .iter()
        .flat_map(|(function, files)| {
            files
                .iter()
                .filter(|((method, path), _)| {
                    !listed.contains(&(function.as_str(), method.as_str(), path.as_str()))
                })
                .map(|(_, file)| (function.clone(), file.clone()))
        })
        .collect();

    // Two deployments with databases and stores of their own: one reached through the Lambda
    // handlers, one through the local server.
    // Chat reaches a scripted model: the router's answer, then the agent's, for each side.
    let llm = ScriptedLlm::start().await;
    llm.push_all([
        Reply::Text(vec!["task_agent".into()]),
        Reply::Text(vec!["Send the invoice is due today.".into()]),
        Reply::Text(vec!["task_agent".into()]),
        Reply::Text(vec!["Send the invoice is due today.".into()]),
    ]);
    let llm_url = llm.base_url();
    let stripe = FakeStripe::start().await;
    // Google is a fake provider; the person signing in there is the same on both sides.
    let oidc = FakeProvider::start().await;
    oidc.set_person(&Person::new());
    // The whole pipeline, rate limits included (their headers must be exposed too).
    let mut settings = vec![
        ("LLM_BASE_URL", llm_url.clone()),
        ("RATE_LIMIT_ENABLED", "true".to_owned()),
        // Team SSO's settings are sealed under it.
        (
            "SSO_SECRET_KEY",
            "events-sso-secret-key-0123456789abcdef".to_owned(),
        ),
    ];
    settings.extend(stripe.settings());
    settings.extend(oidc.settings());
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let lambda_side = spawn_app_with(backend, &settings).await;
    let local_side = spawn_app_with(backend, &settings).await;
    // Each function's router as its `main.rs` builds it: the same constructor, the same
    // context components.
    let functions: BTreeMap<&str, axum::Router> = local::functions(&lambda_side.context)
        .unwrap()
        .into_iter()
        .map(|(name, function)| (name, function.into_router()))
        .collect();
    let (mut lambda_session, mut local_session) = (
        Session::new(&lambda_side, &stripe, &oidc),
        Session::new(&local_side, &stripe, &oidc),
    );

    for &(function, method, path) in SEQUENCE {
        let file = &events[function][&(method.to_owned(), path.to_owned())];
        let template = std::fs::read_to_string(file).unwrap();

        let answer = adiuva_lambda::invoke(
            functions[function].clone(),
            adiuva_lambda::Edge::default(),
            &lambda_session.fill(&template),
        )
        .await
        .expect("the handler failed");
        let lambda_status = answer["statusCode"].as_u64().unwrap() as u16;
        let lambda_bytes = lambda_body(&answer);
        let event: Value = serde_json::from_str(&template).unwrap();
        assert_eq!(
            answer["headers"]["x-request-id"], event["requestContext"]["requestId"],
            "{file:?}: the gateway's request id is not the response's"
        );
        assert!(
            lambda_status < 400,
            "{file:?} answered {lambda_status}: {}",
            String::from_utf8_lossy(&lambda_bytes)
        );

        let local_event: Value = serde_json::from_str(&local_session.fill(&template)).unwrap();
        let (local_status, local_bytes) = send_locally(&local_side, &local_event).await;
        assert_eq!(
            lambda_status, local_status,
            "{file:?}: Lambda and local status differ"
        );
        assert!(
            same_answer(&lambda_bytes, &local_bytes),
            "{file:?}: Lambda and local answers differ"
        );

        let lambda_json = serde_json::from_slice(&lambda_bytes).unwrap_or(Value::Null);
        let local_json = serde_json::from_slice(&local_bytes).unwrap_or(Value::Null);
        lambda_session.after(method, path, &lambda_json).await;
        local_session.after(method, path, &local_json).await;
        if (function, method, path) == UNLISTED_AFTER {
            for (function, file) in &unlisted {
                let template = std::fs::read_to_string(file).unwrap();
                let answer = adiuva_lambda::invoke(
                    functions[function.as_str()].clone(),
                    adiuva_lambda::Edge::default(),
                    &lambda_session.fill(&template),
                )
                .await
                .expect("the handler failed");
                let lambda_status = answer["statusCode"].as_u64().unwrap() as u16;
                let local_event: Value =
                    serde_json::from_str(&local_session.fill(&template)).unwrap();
                let (local_status, local_bytes) = send_locally(&local_side, &local_event).await;
                assert_eq!(
                    lambda_status, local_status,
                    "{file:?}: Lambda and local status differ"
                );
                assert!(
                    same_answer(&lambda_body(&answer), &local_bytes),
                    "{file:?}: Lambda and local answers differ"
                );
            }
        }
    }
}
