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
//!
//! A first frame that asks for a resumable stream (`"resumable": true`) or is an action
//! (`{"action":"resume"}`, `{"action":"cancel"}`) makes the socket a registered connection of
//! this process ([`Sockets`], the local counterpart of API Gateway's connections): the
//! generation runs in a task of its own ([`adiuva_chat::Chat::message`], the same code as
//! `chat-ws`), posting frames to whichever socket the stream is attached to, and goes on when
//! the socket closes. The socket keeps reading: a later action (a cancel) is handled as it
//! comes. It closes after a stream's `done` frame or an error frame.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use adiuva_access::Caller;
use adiuva_chat::streams::{Action, Poster};
use adiuva_chat::{Chat, Gone, Outlet};
use adiuva_config::{ConfigError, Context};
use adiuva_error::{ErrorKind, Public};
use adiuva_pipeline::CurrentUser;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval};

pub const PATH: &str = "/api/v1/chat/stream";

/// How long the server waits for the first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest first frame; the body limit of `POST /api/v1/chat` plays this part there.
const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

pub fn router(context: &Context) -> Result<Router, ConfigError> {
    let state = Local {
        chat: context.get()?,
        sockets: Sockets::default(),
    };
    Ok(Router::new().route(PATH, get(upgrade)).with_state(state))
}

#[derive(Clone)]
struct Local {
    chat: Chat,
    sockets: Sockets,
}

/// The open sockets of resumable streams, by connection id: frames posted to an id go to its
/// socket's writer.
#[derive(Clone, Default)]
struct Sockets(Arc<Mutex<HashMap<String, mpsc::UnboundedSender<String>>>>);

impl Sockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<String>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Poster for Sockets {
    async fn post(&self, connection: &str, frame: &str) -> Result<(), Gone> {
        let sender = self.lock().get(connection).cloned().ok_or(Gone)?;
        sender.send(frame.to_owned()).map_err(|_| Gone)
    }
}

/// The outlet of a plain chat request sent on a registered socket: its frames go the same way.
struct Posted {
    sockets: Sockets,
    connection: String,
}

impl Outlet for Posted {
    async fn text(&mut self, chunk: &str) -> Result<(), Gone> {
        self.sockets.post(&self.connection, chunk).await
    }

    async fn finish(&mut self, frame: &str) {
        let _ = self.sockets.post(&self.connection, frame).await;
    }
}

async fn upgrade(
    State(local): State<Local>,
    CurrentUser(caller): CurrentUser,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| session(socket, local, caller))
}

/// Whether a first frame opens the resumable protocol.
fn is_resumable(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        resumable: bool,
    }
    Action::parse(text).is_some()
        || serde_json::from_str::<Probe>(text).is_ok_and(|probe| probe.resumable)
}

/// Whether a frame ends what the socket is for: a stream's `done` or an error frame.
fn is_last(frame: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(frame).is_ok_and(|frame| {
        frame["type"] == "done" || frame["type"] == "error" || frame["done"] == true
    })
}

async fn session(socket: WebSocket, local: Local, caller: Caller) {
    let Local { chat, sockets } = local;
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
    if !is_resumable(&text) {
        return chat.stream(&caller, &text, &mut outlet).await;
    }
    let connection = uuid::Uuid::new_v4().simple().to_string();
    let (sender, mut frames) = mpsc::unbounded_channel();
    sockets.lock().insert(connection.clone(), sender);
    let handle = |text: String| {
        let (chat, caller, sockets, connection) = (
            chat.clone(),
            caller.clone(),
            sockets.clone(),
            connection.clone(),
        );
        // A task of its own: the generation outlives the socket.
        tokio::spawn(async move {
            let mut posted = Posted {
                sockets: sockets.clone(),
                connection: connection.clone(),
            };
            chat.message(&caller, &text, &mut posted, &sockets, &connection)
                .await;
        });
    };
    handle(text);
    loop {
        tokio::select! {
            Some(frame) = frames.recv() => {
                let last = is_last(&frame);
                if outlet.socket.send(Message::Text(frame.into())).await.is_err() {
                    break;
                }
                if last {
                    let _ = outlet.socket.send(Message::Close(None)).await;
                    break;
                }
            }
            _ = outlet.heartbeat.tick() => {
                if outlet.socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            incoming = outlet.socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => handle(text.as_str().to_owned()),
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    }
    sockets.lock().remove(&connection);
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
