//! Resumable chat streams on the `chat-ws` function (the Management API on moto; the
//! short-lived store DynamoDB on moto with PostgreSQL, process memory with SQLite) and the
//! scripted model: resume after a cut at every point, another user's or an expired stream,
//! cancel by action and by `DELETE`, with the budget settled, and polling with `GET`.

use std::time::{Duration, Instant};

use chat_ws::ChatWs;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::chat_ws::{Deployment, connection_id, deployment_on, event, with_body};
use crate::harness::{Backend, TestUser};
use crate::llm::{Reply, ScriptedLlm};

fn words(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("word{i} ")).collect()
}

async fn connect(deployment: &Deployment, token: &str) -> String {
    let id = connection_id();
    let answer = deployment
        .function
        .handle(event("connect", &id, token))
        .await;
    assert_eq!(answer.status_code, 200);
    id
}

/// The frames `id` received, parsed.
async fn frames(deployment: &Deployment, id: &str) -> Vec<Value> {
    deployment
        .frames(id)
        .await
        .iter()
        .map(|frame| serde_json::from_str(frame).expect("resumable frames are JSON"))
        .collect()
}

/// Waits until the frames of `id` satisfy `enough`.
async fn until(deployment: &Deployment, id: &str, enough: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let frames = frames(deployment, id).await;
        if enough(&frames) {
            return frames;
        }
        assert!(
            Instant::now() < deadline,
            "waited in vain; frames {frames:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a resumable chat on `connection` in its own invocation (the generation runs as
/// long as it needs, as on Lambda), and returns that invocation.
fn start(deployment: &Deployment, connection: &str) -> tokio::task::JoinHandle<i64> {
    let function: ChatWs = deployment.function.clone();
    let event = event("resumable_message", connection, "");
    tokio::spawn(async move { function.handle(event).await.status_code })
}

fn resume(
    connection: &str,
    stream_id: &str,
    after: u64,
) -> aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest {
    with_body(
        event("resume", connection, ""),
        &json!({"action": "resume", "stream_id": stream_id, "after": after}),
    )
}

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .map(|frame| frame["seq"].as_u64().unwrap())
        .collect()
}

fn text(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|frame| frame["type"] == "delta")
        .map(|frame| frame["text"].as_str().unwrap())
        .collect()
}

fn is_done(frames: &[Value]) -> bool {
    frames.last().is_some_and(|frame| frame["type"] == "done")
}

/// `frames` are numbered `from`, `from + 1`, ... with no gap or repeat, and end with `done`.
fn assert_consecutive_to_done(frames: &[Value], from: u64) {
    let expected: Vec<u64> = (from..from + frames.len() as u64).collect();
    assert_eq!(seqs(frames), expected, "frames {frames:?}");
    assert!(is_done(frames), "ends with done: {frames:?}");
}

async fn resumable_deployment(
    backend: Backend,
    llm: &ScriptedLlm,
    more: &[(&str, &str)],
) -> (Deployment, TestUser) {
    let deployment = deployment_on(backend, Some(llm), more).await;
    let user = deployment.app.register_user().await;
    (deployment, user)
}

async fn resume_after_a_cut_at_every_point(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    let (deployment, user) = resumable_deployment(backend, &llm, &[]).await;
    let token = &user.tokens.access_token;
    let answer = words(40);
    llm.set_chunk_delay(Duration::from_millis(25));

    // Cut before the first delta: the client saw the start frame only.
    llm.push_all([
        Reply::Text(vec!["task_agent".into()]),
        Reply::Text(answer.clone()),
    ]);
    let first = connect(&deployment, token).await;
    let generation = start(&deployment, &first);
    let seen = until(&deployment, &first, |frames| !frames.is_empty()).await;
    assert_eq!(seen[0]["type"], "start");
    assert_eq!(seen[0]["seq"], 0);
    let stream_id = seen[0]["stream_id"].as_str().unwrap().to_owned();
    let second = connect(&deployment, token).await;
    let resumed = deployment
        .function
        .handle(resume(&second, &stream_id, 0))
        .await;
    assert_eq!(resumed.status_code, 200);
    assert_eq!(generation.await.unwrap(), 200);
    let caught_up = frames(&deployment, &second).await;
    assert_consecutive_to_done(&caught_up, 1);
    assert_eq!(text(&caught_up), answer.concat());
    let done = caught_up.last().unwrap();
    assert_eq!(done["done"], true);
    assert_eq!(done["response"], answer.concat().as_str());
    assert_eq!(done["actions"], json!([]));
    // The first connection got a consecutive beginning, until the stream moved.
    let before = frames(&deployment, &first).await;
    assert_eq!(seqs(&before), (0..before.len() as u64).collect::<Vec<_>>());

    // Mid-stream: the client saw up to seq 3, while more went out.
    llm.push_all([
        Reply::Text(vec!["task_agent".into()]),
        Reply::Text(answer.clone()),
    ]);
    let first = connect(&deployment, token).await;
    let generation = start(&deployment, &first);
    let seen = until(&deployment, &first, |frames| frames.len() >= 6).await;
    let stream_id = seen[0]["stream_id"].as_str().unwrap().to_owned();
    let second = connect(&deployment, token).await;
    deployment
        .function
        .handle(resume(&second, &stream_id, 3))
        .await;
    assert_eq!(generation.await.unwrap(), 200);
    let caught_up = frames(&deployment, &second).await;
    assert_consecutive_to_done(&caught_up, 4);
    assert_eq!(
        format!("{}{}", text(&seen[..4]), text(&caught_up)),
        answer.concat()
    );

    // After done: the resume itself replays the stored frames; twice works as well.
    let third = connect(&deployment, token).await;
    deployment
        .function
        .handle(resume(&third, &stream_id, 2))
        .await;
    let replayed = frames(&deployment, &third).await;
    assert_consecutive_to_done(&replayed, 3);
    let fourth = connect(&deployment, token).await;
    deployment
        .function
        .handle(resume(&fourth, &stream_id, 0))
        .await;
    let replayed = frames(&deployment, &fourth).await;
    assert_consecutive_to_done(&replayed, 1);
    assert_eq!(text(&replayed), answer.concat());
}

async fn another_users_or_an_expired_stream_is_not_found(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    // Streams kept 2 s instead of 15 minutes.
    let (deployment, user) =
        resumable_deployment(backend, &llm, &[("CHAT_STREAM_TTL_SECONDS", "2")]).await;
    let app = &deployment.app;
    let token = &user.tokens.access_token;
    let answer = words(5);
    llm.push_all([
        Reply::Text(vec!["task_agent".into()]),
        Reply::Text(answer.clone()),
    ]);
    let first = connect(&deployment, token).await;
    assert_eq!(start(&deployment, &first).await.unwrap(), 200);
    let sent = frames(&deployment, &first).await;
    assert_consecutive_to_done(&sent, 0);
    let stream_id = sent[0]["stream_id"].as_str().unwrap().to_owned();

    // Polling: every frame after 0, as sent, and done.
    let path = format!("/api/v1/chat/streams/{stream_id}");
    let polled = app
        .request(reqwest::Method::GET, &format!("{path}?after=0"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(polled.status(), StatusCode::OK);
    let polled: Value = polled.json().await.unwrap();
    assert_eq!(polled["done"], true);
    assert_eq!(polled["frames"], json!(sent[1..]));

    // Another user: not found, on the socket and over HTTP, and cannot cancel it.
    let other = app.register_user().await;
    let theirs = connect(&deployment, &other.tokens.access_token).await;
    deployment
        .function
        .handle(resume(&theirs, &stream_id, 0))
        .await;
    assert_eq!(
        frames(&deployment, &theirs).await,
        [json!({"type": "error", "code": "not_found"})]
    );
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let answer = app
            .request(method, &path)
            .bearer_auth(&other.tokens.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["code"], "not_found");
    }

    // Expired.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let late = connect(&deployment, token).await;
    deployment
        .function
        .handle(resume(&late, &stream_id, 0))
        .await;
    assert_eq!(
        frames(&deployment, &late).await,
        [json!({"type": "error", "code": "not_found"})]
    );
    let answer = app
        .request(reqwest::Method::GET, &path)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
}

/// The estimate reserved for a request as the model received it (see `crate::budgets`).
fn estimate(request: &Value) -> u64 {
    let mut bytes = serde_json::to_vec(&request["messages"]).unwrap().len();
    if let Some(tools) = request.get("tools") {
        bytes += serde_json::to_vec(tools).unwrap().len();
    }
    bytes.div_ceil(4) as u64 + request["max_tokens"].as_u64().unwrap()
}

async fn usage(deployment: &Deployment, user: &TestUser) -> Value {
    let answer = deployment
        .app
        .request(reqwest::Method::GET, "/api/v1/chat/usage")
        .bearer_auth(&user.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    answer.json().await.unwrap()
}

/// A stream cancelled mid-answer, by the socket's action or by `DELETE`.
async fn cancel_mid_stream(backend: Backend, by_action: bool) {
    let llm = ScriptedLlm::start().await;
    let (deployment, user) = resumable_deployment(backend, &llm, &[]).await;
    let token = &user.tokens.access_token;
    // 3 s of answer at 50 ms a word.
    let answer = words(60);
    llm.set_chunk_delay(Duration::from_millis(50));
    llm.push_all([
        Reply::Text(vec!["task_agent".into()]),
        Reply::Text(answer.clone()),
    ]);
    let connection = connect(&deployment, token).await;
    let generation = start(&deployment, &connection);
    let seen = until(&deployment, &connection, |frames| frames.len() >= 5).await;
    let stream_id = seen[0]["stream_id"].as_str().unwrap().to_owned();

    let asked = Instant::now();
    if by_action {
        let cancel = with_body(
            event("cancel", &connection, ""),
            &json!({"action": "cancel", "stream_id": stream_id}),
        );
        assert_eq!(deployment.function.handle(cancel).await.status_code, 200);
    } else {
        let answer = deployment
            .app
            .request(
                reqwest::Method::DELETE,
                &format!("/api/v1/chat/streams/{stream_id}"),
            )
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(generation.await.unwrap(), 200);
    let took = asked.elapsed();
    assert!(
        took < Duration::from_millis(1_000),
        "stopped after {took:?}"
    );

    let sent = frames(&deployment, &connection).await;
    assert_consecutive_to_done(&sent, 0);
    let last = sent.last().unwrap();
    assert_eq!(last["cancelled"], true);
    assert_eq!(last["done"], true);
    let streamed = text(&sent);
    assert!(answer.concat().starts_with(&streamed));
    assert!(
        streamed.len() < answer.concat().len(),
        "cancelled before the end"
    );

    // Settled for what was generated: nothing stays reserved, the agent's call is charged its
    // prompt and the text streamed, not its whole estimate and not nothing.
    let requests = llm.requests();
    assert_eq!(requests.len(), 2, "the router and the agent");
    let usage = usage(&deployment, &user).await;
    assert_eq!(usage["reserved_tokens"], 0, "{usage}");
    let used = usage["used_tokens"].as_u64().unwrap();
    // The router's call was reported: 10 per message plus one word.
    let router = requests[0]["messages"].as_array().unwrap().len() as u64 * 10 + 1;
    let agent_max = estimate(&requests[1]);
    let agent_prompt = agent_max - requests[1]["max_tokens"].as_u64().unwrap();
    let generated = (streamed.len() as u64).div_ceil(4);
    assert_eq!(used, router + agent_prompt + generated, "{usage}");
    assert!(used < router + agent_max);

    // The polled stream says the same.
    let polled: Value = deployment
        .app
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/chat/streams/{stream_id}"),
        )
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(polled["done"], true);
    assert_eq!(polled["frames"], json!(sent));
}

async fn cancel_mid_stream_by_action(backend: Backend) {
    cancel_mid_stream(backend, true).await;
}

async fn cancel_mid_stream_by_delete(backend: Backend) {
    cancel_mid_stream(backend, false).await;
}

/// A request without `resumable` still gets today's frames: bare text, then the final frame.
async fn without_resumable_the_frames_are_unchanged(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    let (deployment, user) = resumable_deployment(backend, &llm, &[]).await;
    let answer = words(5);
    llm.push_all([
        Reply::Text(vec!["task_agent".into()]),
        Reply::Text(answer.clone()),
    ]);
    let connection = connect(&deployment, &user.tokens.access_token).await;
    deployment
        .function
        .handle(event("message", &connection, ""))
        .await;
    let sent = deployment.frames(&connection).await;
    let (last, chunks) = sent.split_last().unwrap();
    assert_eq!(chunks.concat(), answer.concat());
    assert_eq!(
        last,
        &json!({"done": true, "response": answer.concat(), "actions": []}).to_string()
    );
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn local_socket(app: &crate::harness::TestApp, token: &str) -> Socket {
    let url = format!(
        "{}/api/v1/chat/stream?token={token}",
        app.address.replacen("http://", "ws://", 1)
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next JSON frame of a local socket (pings skipped); `None` once it closed.
async fn next_frame(socket: &mut Socket) -> Option<Value> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(15), socket.next())
            .await
            .expect("the socket stalled")?
            .ok()?;
        match frame {
            Message::Text(text) => return Some(serde_json::from_str(text.as_str()).unwrap()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

async fn send(socket: &mut Socket, message: &Value) {
    use futures::SinkExt;
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(
            message.to_string(),
        ))
        .await
        .unwrap();
}

/// The local server's WebSocket runs the same resumable streams: a socket cut mid-stream, the
/// generation goes on, a new socket resumes; and a cancel on the socket ends it.
async fn the_local_socket_resumes_and_cancels(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    let base = llm.base_url();
    let app = crate::harness::spawn_app_with(backend, &[("LLM_BASE_URL", base.as_str())]).await;
    let user = app.register_user().await;
    let token = &user.tokens.access_token;
    let answer = words(40);
    llm.set_chunk_delay(Duration::from_millis(25));
    llm.push_all([
        Reply::Text(vec!["task_agent".into()]),
        Reply::Text(answer.clone()),
    ]);
    let request = json!({"message": "What is due today?", "resumable": true});

    let mut first = local_socket(&app, token).await;
    send(&mut first, &request).await;
    let mut seen = Vec::new();
    while seen.len() < 5 {
        seen.push(next_frame(&mut first).await.unwrap());
    }
    let stream_id = seen[0]["stream_id"].as_str().unwrap().to_owned();
    drop(first);
    // The generation went on while no one listened.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = local_socket(&app, token).await;
    send(
        &mut second,
        &json!({"action": "resume", "stream_id": stream_id, "after": 4}),
    )
    .await;
    let mut rest = Vec::new();
    while let Some(frame) = next_frame(&mut second).await {
        rest.push(frame);
    }
    assert_consecutive_to_done(&rest, 5);
    assert_eq!(format!("{}{}", text(&seen), text(&rest)), answer.concat());

    // Cancel on the stream's own socket.
    llm.push_all([
        Reply::Text(vec!["task_agent".into()]),
        Reply::Text(words(60)),
    ]);
    let mut socket = local_socket(&app, token).await;
    send(&mut socket, &request).await;
    let mut sent = Vec::new();
    while sent.len() < 4 {
        sent.push(next_frame(&mut socket).await.unwrap());
    }
    let stream_id = sent[0]["stream_id"].as_str().unwrap().to_owned();
    let asked = Instant::now();
    send(
        &mut socket,
        &json!({"action": "cancel", "stream_id": stream_id}),
    )
    .await;
    while let Some(frame) = next_frame(&mut socket).await {
        sent.push(frame);
    }
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "took {:?}",
        asked.elapsed()
    );
    assert_consecutive_to_done(&sent, 0);
    assert_eq!(sent.last().unwrap()["cancelled"], true);

    // Another user's stream: not_found.
    let other = app.register_user().await;
    let mut theirs = local_socket(&app, &other.tokens.access_token).await;
    send(
        &mut theirs,
        &json!({"action": "resume", "stream_id": stream_id, "after": 0}),
    )
    .await;
    assert_eq!(
        next_frame(&mut theirs).await,
        Some(json!({"type": "error", "code": "not_found"}))
    );
}

backend_tests!(
    the_local_socket_resumes_and_cancels,
    resume_after_a_cut_at_every_point,
    another_users_or_an_expired_stream_is_not_found,
    cancel_mid_stream_by_action,
    cancel_mid_stream_by_delete,
    without_resumable_the_frames_are_unchanged,
);
