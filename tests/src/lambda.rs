//! Each function's Lambda handler fed with its sample events from `events/`, answering like the
//! local server does for the same requests.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;

use crate::backend_tests;
use crate::contract::{Route, event_files};
use crate::harness::{Backend, TestApp, spawn_app};

backend_tests!(lambda_handlers_answer_like_the_local_server);

/// The order that lets one user go through every route: sign up, sign in, use, rotate, leave.
const SEQUENCE: [(&str, &str, &str); 7] = [
    ("health", "GET", "/api/v1/health"),
    ("health", "GET", "/api/v1/health/ready"),
    ("auth", "POST", "/api/v1/auth/register"),
    ("auth", "POST", "/api/v1/auth/login"),
    ("auth", "GET", "/api/v1/auth/me"),
    ("auth", "POST", "/api/v1/auth/refresh"),
    ("auth", "POST", "/api/v1/auth/logout"),
];

/// One side of the comparison: tokens it has been handed so far, to fill the placeholders.
#[derive(Default)]
struct Session {
    access_token: String,
    refresh_token: String,
}

impl Session {
    fn fill(&self, event: &str) -> String {
        event
            .replace("{{access_token}}", &self.access_token)
            .replace("{{refresh_token}}", &self.refresh_token)
    }

    fn remember(&mut self, body: &Value) {
        if let (Some(access), Some(refresh)) = (
            body["access_token"].as_str(),
            body["refresh_token"].as_str(),
        ) {
            self.access_token = access.to_owned();
            self.refresh_token = refresh.to_owned();
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

/// Sends the request an event describes to the local server.
async fn send_locally(app: &TestApp, event: &Value) -> (u16, Value) {
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
        if matches!(
            name.as_str(),
            "authorization" | "content-type" | "x-request-id"
        ) {
            request = request.header(name, value.as_str().unwrap());
        }
    }
    if let Some(body) = event["body"].as_str() {
        request = request.body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn lambda_handlers_answer_like_the_local_server(backend: Backend) {
    let events: BTreeMap<String, BTreeMap<Route, PathBuf>> = event_files();
    let covered: usize = events.values().map(BTreeMap::len).sum();
    assert_eq!(
        covered,
        SEQUENCE.len(),
        "a sample event is missing from SEQUENCE"
    );

    // Two deployments with databases of their own: one reached through the Lambda handlers,
    // one through the local server.
    let lambda_side = spawn_app(backend).await;
    let local_side = spawn_app(backend).await;
    let functions: BTreeMap<&str, _> =
        local::functions(&lambda_side.config, &lambda_side.database.db)
            .into_iter()
            .collect();
    let (mut lambda_session, mut local_session) = (Session::default(), Session::default());

    for (function, method, path) in SEQUENCE {
        let file = &events[function][&(method.to_owned(), path.to_owned())];
        let template = std::fs::read_to_string(file).unwrap();

        let router = functions[function].clone();
        let app = adiuva_http::app(router, &lambda_side.config);
        let answer = adiuva_lambda::invoke(app, &lambda_session.fill(&template))
            .await
            .expect("the handler failed");
        let lambda_status = answer["statusCode"].as_u64().unwrap() as u16;
        let lambda_body: Value =
            serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap();
        let event: Value = serde_json::from_str(&template).unwrap();
        assert_eq!(
            answer["headers"]["x-request-id"], event["requestContext"]["requestId"],
            "{file:?}: the gateway's request id is not the response's"
        );
        assert!(
            lambda_status < 400,
            "{file:?} answered {lambda_status}: {lambda_body}"
        );

        let local_event: Value = serde_json::from_str(&local_session.fill(&template)).unwrap();
        let (local_status, local_body) = send_locally(&local_side, &local_event).await;

        assert_eq!(
            lambda_status, local_status,
            "{file:?}: Lambda and local status differ"
        );
        assert_eq!(
            shape(&lambda_body),
            shape(&local_body),
            "{file:?}: Lambda and local bodies differ in shape"
        );
        lambda_session.remember(&lambda_body);
        local_session.remember(&local_body);
    }
}
