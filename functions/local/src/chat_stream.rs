//! The local server's streaming chat: a WebSocket at `/api/v1/chat/stream?token=JWT`. (Deployed,
//! API Gateway's WebSocket API and the `chat-ws` function play this part.)
//!
//! The pipeline authenticates the upgrade request (the token comes as `?token=`, since browsers
//! cannot set headers on a WebSocket) and counts it against the tier's rate limit: 401 or 429
//! before any upgrade. The first frame is a `ChatRequest`; the shared streaming loop
//! ([`adiuva_chat::Chat::stream`]) then sends text frames as the model produces them
//! (sanitized), and a final JSON frame `{"done": true, "response", "actions"}`, or
//! `{"done": true, "error"}`. A ping goes out every `WS_HEARTBEAT_SECONDS` (30 s). A client
//! that leaves ends the generation.

use std::time::Duration;

use adiuva_access::Caller;
use adiuva_chat::{Chat, Gone, Outlet};
use adiuva_config::{ConfigError, Context};
use adiuva_error::{ErrorKind, Public};
use adiuva_pipeline::CurrentUser;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use tokio::time::{Instant, Interval};

pub const PATH: &str = "/api/v1/chat/stream";

/// How long the server waits for the first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest first frame; the body limit of `POST /api/v1/chat` plays this part there.
const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

pub fn router(context: &Context) -> Result<Router, ConfigError> {
    let chat: Chat = context.get()?;
    Ok(Router::new().route(PATH, get(upgrade)).with_state(chat))
}

async fn upgrade(
    State(chat): State<Chat>,
    CurrentUser(caller): CurrentUser,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| session(socket, chat, caller))
}

async fn session(socket: WebSocket, chat: Chat, caller: Caller) {
    let heartbeat = chat.settings().heartbeat;
    let mut outlet = Socket {
        socket,
        heartbeat: tokio::time::interval_at(Instant::now() + heartbeat, heartbeat),
    };
    let text = match outlet.first_frame().await {
        Ok(Some(text)) => text,
        Ok(None) => return,
        Err(public) => return outlet.finish(&adiuva_chat::frames::error(&public)).await,
    };
    chat.stream(&caller, &text, &mut outlet).await;
}

struct Socket {
    socket: WebSocket,
    heartbeat: Interval,
}

impl Socket {
    /// The first frame's text; `None` when the client left first.
    async fn first_frame(&mut self) -> Result<Option<String>, Public> {
        loop {
            let frame = match tokio::time::timeout(FIRST_FRAME_TIMEOUT, self.socket.recv()).await {
                Err(_) => {
                    return Err(Public::new(
                        ErrorKind::BadRequest,
                        "no_request",
                        "no ChatRequest frame arrived in time",
                    ));
                }
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Ok(None),
                Ok(Some(Ok(frame))) => frame,
            };
            return match frame {
                Message::Text(text) => Ok(Some(text.as_str().to_owned())),
                Message::Binary(bytes) => {
                    String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| {
                        Public::new(
                            ErrorKind::BadRequest,
                            "invalid_json",
                            "the frame is not UTF-8",
                        )
                    })
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(_) => Ok(None),
            };
        }
    }
}

impl Outlet for Socket {
    async fn text(&mut self, chunk: &str) -> Result<(), Gone> {
        self.socket
            .send(Message::Text(chunk.into()))
            .await
            .map_err(|_| Gone)
    }

    /// Sends the last frame and closes the socket.
    async fn finish(&mut self, frame: &str) {
        if self.socket.send(Message::Text(frame.into())).await.is_ok() {
            let _ = self.socket.send(Message::Close(None)).await;
        }
    }

    /// Pings on the heartbeat while the model works, and notices a client that leaves.
    async fn watch(&mut self) -> Gone {
        loop {
            tokio::select! {
                _ = self.heartbeat.tick() => {
                    if self.socket.send(Message::Ping(Default::default())).await.is_err() {
                        return Gone;
                    }
                }
                incoming = self.socket.recv() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Gone,
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}
