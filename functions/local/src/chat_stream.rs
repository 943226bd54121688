//! The local server's streaming chat: a WebSocket at `/api/v1/chat/stream?token=JWT`. (Deployed,
//! API Gateway's WebSocket API and the `chat-ws` function play this part.)
//!
//! The token is checked before the upgrade (401 otherwise). The first frame is a
//! `ChatRequest`; then come text frames as the model produces them (sanitized), and a final
//! JSON frame `{"done": true, "response", "actions"}`, or `{"done": true, "error"}`. A ping
//! goes out every `WS_HEARTBEAT_SECONDS` (30 s). A client that leaves ends the generation.

use std::time::Duration;

use adiuva_agents::ChatRequest;
use adiuva_auth::AuthUser;
use adiuva_http::{ApiError, Query};
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::mpsc;

pub const PATH: &str = "/api/v1/chat/stream";

/// How long the server waits for the first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest first frame; the body limit of `POST /api/v1/chat` plays this part there.
const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
struct StreamState {
    chat: chat::State,
    heartbeat: Duration,
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

pub fn router(chat: chat::State, heartbeat: Duration) -> Router {
    Router::new()
        .route(PATH, get(upgrade))
        .with_state(StreamState { chat, heartbeat })
}

async fn upgrade(
    State(state): State<StreamState>,
    Query(query): Query<TokenQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let token = query.token.unwrap_or_default();
    if token.is_empty() {
        return Err(ApiError::unauthorized(
            "not_authenticated",
            "missing token: connect with ?token=<access token>",
        ));
    }
    let user = state.chat.accounts().authenticate(&token).await?;
    Ok(ws
        .max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| session(socket, state, user)))
}

async fn session(mut socket: WebSocket, state: StreamState, user: AuthUser) {
    let request = match first_request(&mut socket).await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(err) => return finish(&mut socket, chat::frames::error(&err)).await,
    };
    let orchestrator = match chat::validate(&request).and_then(|()| state.chat.orchestrator()) {
        Ok(orchestrator) => orchestrator,
        Err(err) => return finish(&mut socket, chat::frames::error(&err)).await,
    };
    tracing::info!(user_id = %user.id, "chat stream request");

    let (tx, mut rx) = mpsc::channel::<String>(64);
    let work = orchestrator.orchestrate(&request, Some(&tx), &user.id);
    tokio::pin!(work);
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + state.heartbeat,
        state.heartbeat,
    );
    let result = loop {
        tokio::select! {
            biased;
            Some(chunk) = rx.recv() => {
                if socket.send(Message::Text(chunk.into())).await.is_err() {
                    tracing::info!("chat stream client gone; generation stopped");
                    return;
                }
            }
            result = &mut work => break result,
            _ = heartbeat.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                    tracing::info!("chat stream client gone; generation stopped");
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    };
    while let Ok(chunk) = rx.try_recv() {
        if socket.send(Message::Text(chunk.into())).await.is_err() {
            return;
        }
    }
    let frame = match result {
        Ok(answer) => chat::frames::done(&answer),
        Err(err) => chat::frames::error(&chat::chat_error(err)),
    };
    finish(&mut socket, frame).await;
}

/// The first frame as a `ChatRequest`; `None` when the client left first.
async fn first_request(socket: &mut WebSocket) -> Result<Option<ChatRequest>, ApiError> {
    loop {
        let frame = match tokio::time::timeout(FIRST_FRAME_TIMEOUT, socket.recv()).await {
            Err(_) => {
                return Err(ApiError::bad_request(
                    "no_request",
                    "no ChatRequest frame arrived in time",
                ));
            }
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Ok(None),
            Ok(Some(Ok(frame))) => frame,
        };
        let text: Utf8Bytes = match frame {
            Message::Text(text) => text,
            Message::Binary(bytes) => match String::from_utf8(bytes.to_vec()) {
                Ok(text) => text.into(),
                Err(_) => {
                    return Err(ApiError::bad_request(
                        "invalid_json",
                        "the frame is not UTF-8",
                    ));
                }
            },
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return Ok(None),
        };
        return chat::parse_request(text.as_str()).map(Some);
    }
}

/// Sends the last frame and closes the socket.
async fn finish(socket: &mut WebSocket, frame: String) {
    if socket.send(Message::Text(frame.into())).await.is_ok() {
        let _ = socket.send(Message::Close(None)).await;
    }
}
