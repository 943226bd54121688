//! The `chat-ws` function fed with the WebSocket API events in `events/chat-ws/`, against
//! DynamoDB (connections) and the API Gateway Management API (frames) on moto_server, and the
//! scripted model.

use std::time::{Duration, Instant};

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use chat_ws::{CONNECTIONS, ChatWs, MAX_FRAME_BYTES};
use serde_json::{Value, json};

use crate::contract::workspace_root;
use crate::harness::{Backend, TestApp, http_client, spawn_app_with};
use crate::llm::{Reply, ScriptedLlm};

/// Tests on the PostgreSQL pairing run on a multi-threaded runtime: dropping the test database
/// closes its pool, which needs the runtime's other worker while this one waits.
pub(crate) struct Deployment {
    pub(crate) function: ChatWs,
    pub(crate) app: TestApp,
    frames: String,
}

/// The Postgres pairing: its short-lived store is DynamoDB on moto, and so is the Management API.
pub(crate) async fn deployment(llm: Option<&ScriptedLlm>) -> Deployment {
    deployment_on(Backend::Postgres, llm, &[]).await
}

/// The function on either pairing (SQLite: its short-lived store is process memory), with
/// more settings.
pub(crate) async fn deployment_on(
    backend: Backend,
    llm: Option<&ScriptedLlm>,
    more: &[(&str, &str)],
) -> Deployment {
    let moto = adiuva_blob::testing::moto().await;
    let base = llm.map(ScriptedLlm::base_url);
    let mut settings = vec![("WS_MANAGEMENT_ENDPOINT_URL", moto.endpoint.as_str())];
    if let Some(base) = &base {
        settings.push(("LLM_BASE_URL", base.as_str()));
    }
    if backend == Backend::Sqlite {
        // moto's Management API takes any credentials; the Postgres pairing has them already.
        settings.extend([
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ]);
    }
    settings.extend_from_slice(more);
    let app = spawn_app_with(backend, &settings).await;
    // The constructor `main.rs` calls, on the same context as the app.
    let function = ChatWs::new(&app.context).expect("chat-ws settings are valid");
    Deployment {
        app,
        function,
        frames: moto.frames_endpoint.clone(),
    }
}

pub(crate) fn event(
    name: &str,
    connection_id: &str,
    token: &str,
) -> ApiGatewayWebsocketProxyRequest {
    let path = workspace_root()
        .join("events/chat-ws")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(
        &text
            .replace("{{connection_id}}", connection_id)
            .replace("{{access_token}}", token),
    )
    .unwrap()
}

pub(crate) fn with_body(
    mut event: ApiGatewayWebsocketProxyRequest,
    body: &Value,
) -> ApiGatewayWebsocketProxyRequest {
    event.body = Some(body.to_string());
    event
}

pub(crate) fn connection_id() -> String {
    format!("{}=", uuid::Uuid::new_v4().simple())
}

impl Deployment {
    pub(crate) async fn frames(&self, connection_id: &str) -> Vec<String> {
        http_client()
            .get(format!("{}/frames/{connection_id}", self.frames))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn connection(&self, connection_id: &str) -> Option<Value> {
        self.app
            .backends
            .kv
            .get(CONNECTIONS, connection_id)
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_chat_and_disconnect_through_the_management_api() {
    let llm = ScriptedLlm::start().await;
    let deployment = deployment(Some(&llm)).await;
    let user = deployment.app.register_user().await;
    let token = &user.tokens.access_token;
    let id = connection_id();

    let answer = deployment
        .function
        .handle(event("connect", &id, token))
        .await;
    assert_eq!(answer.status_code, 200);
    let connection = deployment.connection(&id).await.expect("stored connection");
    assert_eq!(connection["user_id"], user.id.as_str());

    let words: Vec<String> = (0..30).map(|i| format!("word{i} ")).collect();
    llm.push_all([
        Reply::Text(vec!["task_agent".into()]),
        Reply::Text(words.clone()),
    ]);
    let answer = deployment.function.handle(event("message", &id, "")).await;
    assert_eq!(answer.status_code, 200);
    let frames = deployment.frames(&id).await;
    let (last, chunks) = frames.split_last().unwrap();
    assert!(chunks.len() > 1, "streamed in pieces: {chunks:?}");
    assert_eq!(chunks.concat(), words.concat());
    let last: Value = serde_json::from_str(last).unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["response"], words.concat().as_str());
    assert_eq!(last["actions"], json!([]));
    // The agent saw the event's context.
    assert!(llm.requests()[1].to_string().contains("Send the invoice"));

    let answer = deployment
        .function
        .handle(event("disconnect", &id, ""))
        .await;
    assert_eq!(answer.status_code, 200);
    assert_eq!(deployment.connection(&id).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_valid_token_are_refused_before_anything_is_stored() {
    let deployment = deployment(None).await;
    for token in ["", "not-a-jwt"] {
        let id = connection_id();
        let answer = deployment
            .function
            .handle(event("connect", &id, token))
            .await;
        assert_eq!(answer.status_code, 401, "token {token:?}");
        assert_eq!(deployment.connection(&id).await, None);
        // A message on it is refused and answers nothing.
        let answer = deployment.function.handle(event("message", &id, "")).await;
        assert_eq!(answer.status_code, 403);
        assert!(deployment.frames(&id).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_end_with_an_error_frame() {
    // No provider configured.
    let deployment = deployment(None).await;
    let token = deployment.app.register_user().await.tokens.access_token;
    let id = connection_id();
    deployment
        .function
        .handle(event("connect", &id, &token))
        .await;
    deployment.function.handle(event("message", &id, "")).await;
    let frames = deployment.frames(&id).await;
    let last: Value = serde_json::from_str(frames.last().unwrap()).unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["error"]["code"], "llm_not_configured");

    // A message that is not a ChatRequest.
    let message = with_body(event("message", &id, ""), &json!({"text": "hi"}));
    deployment.function.handle(message).await;
    let frames = deployment.frames(&id).await;
    let last: Value = serde_json::from_str(frames.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "invalid_chat_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_fits_the_32_kb_limit() {
    let llm = ScriptedLlm::start().await;
    let deployment = deployment(Some(&llm)).await;
    let token = deployment.app.register_user().await.tokens.access_token;
    let id = connection_id();
    deployment
        .function
        .handle(event("connect", &id, &token))
        .await;
    // One 80 KB chunk of text, then an answer whose final frame is larger than a frame.
    let long = "lorem ipsum dolor sit amet ".repeat(3_000);
    llm.push_all([
        Reply::Text(vec!["note_agent".into()]),
        Reply::Text(vec![long.clone()]),
    ]);
    deployment.function.handle(event("message", &id, "")).await;
    let frames = deployment.frames(&id).await;
    assert!(frames.iter().all(|frame| frame.len() <= MAX_FRAME_BYTES));
    let (parts, chunks): (Vec<&String>, Vec<&String>) = frames.iter().partition(|frame| {
        serde_json::from_str::<Value>(frame).is_ok_and(|frame| frame.get("final_part").is_some())
    });
    let streamed: String = chunks.iter().map(|chunk| chunk.as_str()).collect();
    assert!(
        streamed == long,
        "streamed {} bytes in {} frames, expected {}; tail {:?}",
        streamed.len(),
        chunks.len(),
        long.len(),
        &streamed[streamed.len().saturating_sub(40)..]
    );
    let mut joined = String::new();
    for (index, part) in parts.iter().enumerate() {
        let part: Value = serde_json::from_str(part).unwrap();
        assert_eq!(part["final_part"], index + 1);
        assert_eq!(part["final_parts"], parts.len());
        joined.push_str(part["data"].as_str().unwrap());
    }
    let last: Value = serde_json::from_str(&joined).unwrap();
    assert_eq!(last["done"], true);
    assert!(
        last["response"] == long.as_str(),
        "the final frame's response differs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_connection_ends_the_generation() {
    let llm = ScriptedLlm::start().await;
    let deployment = deployment(Some(&llm)).await;
    let token = deployment.app.register_user().await.tokens.access_token;
    // moto answers 410 GoneException for ids starting with "gone-", as API Gateway does for a
    // closed connection.
    let id = format!("gone-{}", connection_id());
    deployment
        .function
        .handle(event("connect", &id, &token))
        .await;
    let words: Vec<String> = (0..60).map(|i| format!("word{i} ")).collect();
    llm.push_all([Reply::Text(vec!["task_agent".into()]), Reply::Text(words)]);
    llm.set_chunk_delay(Duration::from_millis(50));
    let started = Instant::now();
    let answer = deployment.function.handle(event("message", &id, "")).await;
    let took = started.elapsed();
    assert_eq!(answer.status_code, 200);
    // The whole answer takes the scripted server 3 s to produce; the first frame (after about
    // 8 words) is refused, and the generation stops there.
    assert!(took < Duration::from_millis(2_000), "took {took:?}");
}

/// Connects `token` and returns the connection id.
async fn connected(deployment: &Deployment, token: &str) -> String {
    let id = connection_id();
    let answer = deployment
        .function
        .handle(event("connect", &id, token))
        .await;
    assert_eq!(answer.status_code, 200);
    id
}

/// The error frame a message on `id` gets now.
async fn error_frame(deployment: &Deployment, id: &str) -> Value {
    let answer = deployment.function.handle(event("message", id, "")).await;
    assert_eq!(answer.status_code, 200);
    let frames = deployment.frames(id).await;
    assert_eq!(frames.len(), 1, "one error frame, no text: {frames:?}");
    let frame: Value = serde_json::from_str(&frames[0]).unwrap();
    assert_eq!(frame["done"], true);
    frame["error"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_account_deletion_end_a_connected_stream() {
    let llm = ScriptedLlm::start().await;
    let deployment = deployment(Some(&llm)).await;
    let app = &deployment.app;

    let user = app.register_user().await;
    let id = connected(&deployment, &user.tokens.access_token).await;
    let logout = app
        .request(reqwest::Method::POST, "/api/v1/auth/logout")
        .bearer_auth(&user.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), reqwest::StatusCode::OK);
    let error = error_frame(&deployment, &id).await;
    assert_eq!(
        (error["status"].as_u64(), error["code"].as_str()),
        (Some(401), Some("invalid_token"))
    );

    let doomed = app.register_user().await;
    let id = connected(&deployment, &doomed.tokens.access_token).await;
    let deleted = app
        .request(reqwest::Method::DELETE, "/api/v1/auth/me")
        .bearer_auth(&doomed.tokens.access_token)
        .json(&json!({"password": doomed.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), reqwest::StatusCode::OK);
    assert_eq!(error_frame(&deployment, &id).await["status"], 401);

    // Neither message reached the model.
    assert!(llm.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_ends_a_connected_stream() {
    let llm = ScriptedLlm::start().await;
    let deployment = deployment(Some(&llm)).await;
    let user = deployment.app.register_user().await;
    let id = connected(&deployment, &user.tokens.access_token).await;
    // The token expired since: the connection remembers its expiry.
    let mut record = deployment.connection(&id).await.unwrap();
    record["expires_at"] = json!(1);
    deployment
        .app
        .backends
        .kv
        .put(CONNECTIONS, &id, &record, None)
        .await
        .unwrap();
    assert_eq!(error_frame(&deployment, &id).await["code"], "invalid_token");
    assert!(llm.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_count_against_the_tier_rate_limit() {
    let llm = ScriptedLlm::start().await;
    let moto = adiuva_blob::testing::moto().await;
    let base = llm.base_url();
    let app = spawn_app_with(
        Backend::Postgres,
        &[
            ("WS_MANAGEMENT_ENDPOINT_URL", moto.endpoint.as_str()),
            ("LLM_BASE_URL", base.as_str()),
            ("RATE_LIMIT_ENABLED", "true"),
        ],
    )
    .await;
    let deployment = Deployment {
        function: ChatWs::new(&app.context).unwrap(),
        app,
        frames: moto.frames_endpoint.clone(),
    };
    let user = deployment.app.register_user().await;
    let id = connected(&deployment, &user.tokens.access_token).await;
    // The same allowance as HTTP requests: register_user read the profile once, 19 more.
    for _ in 0..19 {
        assert_eq!(
            deployment.app.me(&user.tokens.access_token).await.status(),
            reqwest::StatusCode::OK
        );
    }
    let error = error_frame(&deployment, &id).await;
    assert_eq!(
        (error["status"].as_u64(), error["code"].as_str()),
        (Some(429), Some("rate_limited"))
    );
    assert!(llm.requests().is_empty());
}
