//! Resumable chat streams (a chat request with `"resumable": true`): every frame is numbered,
//! stored in the shared short-lived store before it is sent, and kept `CHAT_STREAM_TTL_SECONDS`
//! (15 minutes); the generation goes on when the client leaves, and a new connection of the
//! same user picks the stream up where it saw it last.
//!
//! Frames: `{"type":"start","stream_id","seq":0}`, `{"type":"delta","seq":n,"text"}`, and a
//! last `{"type":"done","seq":n,"done":true, ...}` with today's final fields (`response`,
//! `actions`, `plan`; or `error`; or `cancelled: true`). Sequence numbers are consecutive.
//!
//! In the store (namespace [`STREAMS`]), per stream `id`:
//! - `id`: `{"user_id"}`, the owner, written once when the stream starts;
//! - `id/attach`: a mailbox `{"connection","after"}` a resume writes: "send this connection
//!   every frame after `after`, then the live ones";
//! - `id/cancel`: present once the stream is to be cancelled;
//! - `id/done`: present once the last frame is stored and sent;
//! - the frames themselves under their own namespace `chat-stream:{id}`, keyed by the
//!   zero-padded sequence number (one query lists them in order).
//!
//! **No gap, no repeat, one poster.** Only one party sends the live frames: the generator (the
//! invocation or task that runs the model). Before each send it looks at the attach mailbox;
//! if a resume left a connection there, it takes it (an atomic take: exactly one party gets a
//! given attachment), sends it the frames after its `after` from its own copy, and from then on
//! sends the live frames there. A resume writes the mailbox and *then* reads the done flag; the
//! generator writes the done flag and *then* takes from the mailbox. Of two such
//! write-then-read pairs (strongly consistent reads), at least one sees the other's write: if
//! the resume sees the stream done, it tries to take its attachment itself and replays the
//! stored frames; whoever takes the attachment serves it, and no one else does. The generator
//! also looks at the mailbox and the cancel flag every [`POLL`] while the model is silent.

use std::future::Future;
use std::time::Duration;

use adiuva_config::{Component, ConfigError, Context, Source};
use adiuva_error::{DomainError, ErrorKind};
use adiuva_kv::{KvError, KvStore};
use serde::Deserialize;
use serde_json::{Value, json};

/// Namespace of the streams' records in the short-lived store.
pub const STREAMS: &str = "chat-streams";
/// How often the generator looks at the cancel flag and the attach mailbox while the model is
/// silent (a cancel stops the generation within a second).
pub const POLL: Duration = Duration::from_millis(400);
/// Longest text of one delta frame: a chunk longer than this becomes several deltas, so that
/// every frame fits API Gateway's 32 KB (JSON escaping can double the text).
pub const MAX_DELTA_BYTES: usize = 8 * 1024;

/// The client of a connection is gone.
pub use crate::Gone;

/// Sends a frame to a connection by its id: API Gateway's Management API, or the local
/// server's registry of its sockets. The connection of a resumable stream changes when the
/// client resumes on a new one, so the generator names it on every send.
pub trait Poster: Send + Sync {
    fn post(&self, connection: &str, frame: &str) -> impl Future<Output = Result<(), Gone>> + Send;
}

/// `CHAT_STREAM_TTL_SECONDS` (900): how long a resumable stream's frames are kept.
#[derive(Debug, Clone)]
pub struct Streams {
    kv: KvStore,
    ttl: Duration,
}

impl Component for Streams {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        Ok(Self {
            kv: context.get()?,
            ttl: ttl_setting(context.source())?,
        })
    }
}

fn ttl_setting(source: &Source) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(source.number_in(
        "CHAT_STREAM_TTL_SECONDS",
        900,
        1..=86_400,
    )?))
}

/// Why a stream operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// No such stream, an expired one, or another user's: the same answer for all three.
    #[error("no such stream")]
    NotFound,
    #[error(transparent)]
    Store(#[from] KvError),
}

impl DomainError for StreamError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            Self::Store(err) => err.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Store(err) => err.code(),
        }
    }

    fn public_detail(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            Self::NotFound => Some("no such stream (it may have expired)".into()),
            Self::Store(err) => err.public_detail(),
        }
    }
}

/// A message on a chat WebSocket that is not a chat request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// `{"action":"resume","stream_id","after":n}`: every frame after `n`, then the live ones.
    Resume {
        stream_id: String,
        #[serde(default)]
        after: Option<u64>,
    },
    /// `{"action":"cancel","stream_id"}`.
    Cancel { stream_id: String },
}

impl Action {
    /// The action a message asks for, if it is one (a JSON object with an `action`).
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        #[derive(Deserialize)]
        struct Probe {
            action: Option<Value>,
        }
        let probe: Probe = serde_json::from_str(text).ok()?;
        probe.action?;
        Some(serde_json::from_str(text).map_err(|err| err.to_string()))
    }
}

/// `{"type":"error","code":"not_found"}` and the like: an answer to an action that is not a
/// stream's frame.
pub fn error_frame(err: &StreamError) -> String {
    json!({"type": "error", "code": err.code()}).to_string()
}

/// The stored frames after a point, and whether the stream has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub frames: Vec<Value>,
    pub done: bool,
}

/// A resume's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumed {
    /// The generator will send the frames (catch-up, then live) to the new connection.
    Live,
    /// The stream had ended: these frames were sent by the resume itself.
    Replayed(usize),
}

fn frames_namespace(id: &str) -> String {
    format!("chat-stream:{id}")
}

fn seq_key(seq: u64) -> String {
    format!("{seq:012}")
}

impl Streams {
    /// Streams on `kv` keeping frames for `ttl` (tests shorten it).
    pub fn new(kv: KvStore, ttl: Duration) -> Self {
        Self { kv, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new stream of `user_id`'s: its id.
    pub async fn open(&self, user_id: &str) -> Result<String, StreamError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.kv
            .put(STREAMS, &id, &json!({"user_id": user_id}), Some(self.ttl))
            .await?;
        Ok(id)
    }

    /// `NotFound` unless `id` is a live stream of `user_id`'s.
    async fn owned(&self, id: &str, user_id: &str) -> Result<(), StreamError> {
        match self.kv.get(STREAMS, id).await? {
            Some(record) if record["user_id"].as_str() == Some(user_id) => Ok(()),
            _ => Err(StreamError::NotFound),
        }
    }

    pub async fn store(&self, id: &str, seq: u64, frame: &str) -> Result<(), KvError> {
        self.kv
            .put(
                &frames_namespace(id),
                &seq_key(seq),
                &json!({"frame": frame}),
                Some(self.ttl),
            )
            .await
    }

    /// The stored frames with a sequence number above `after` (all with `None`), in order, as
    /// the text that was sent.
    async fn stored_after(&self, id: &str, after: Option<u64>) -> Result<Vec<String>, KvError> {
        let items = self.kv.list(&frames_namespace(id)).await?;
        Ok(items
            .into_iter()
            .filter(|(key, _)| {
                key.parse::<u64>()
                    .is_ok_and(|seq| after.is_none_or(|after| seq > after))
            })
            .filter_map(|(_, value)| value["frame"].as_str().map(str::to_owned))
            .collect())
    }

    async fn is_done(&self, id: &str) -> Result<bool, KvError> {
        Ok(self.kv.get(STREAMS, &format!("{id}/done")).await?.is_some())
    }

    pub async fn mark_done(&self, id: &str) -> Result<(), KvError> {
        self.kv
            .put(STREAMS, &format!("{id}/done"), &json!({}), Some(self.ttl))
            .await
    }

    pub(crate) async fn is_cancelled(&self, id: &str) -> Result<bool, KvError> {
        Ok(self
            .kv
            .get(STREAMS, &format!("{id}/cancel"))
            .await?
            .is_some())
    }

    /// The attachment a resume left, taken (so no one else serves it): the new connection
    /// and the last sequence number its client saw.
    pub(crate) async fn take_attachment(
        &self,
        id: &str,
    ) -> Result<Option<(String, Option<u64>)>, KvError> {
        let key = format!("{id}/attach");
        // The common case, nothing there, costs a read rather than a write.
        if self.kv.get(STREAMS, &key).await?.is_none() {
            return Ok(None);
        }
        Ok(self.kv.take(STREAMS, &key).await?.and_then(|value| {
            let connection = value["connection"].as_str()?.to_owned();
            Some((connection, value["after"].as_u64()))
        }))
    }

    /// `GET /api/v1/chat/streams/{id}?after=n`: the stored frames after `n`.
    pub async fn page(
        &self,
        user_id: &str,
        id: &str,
        after: Option<u64>,
    ) -> Result<Page, StreamError> {
        self.owned(id, user_id).await?;
        // The done flag first: frames stored before it are all there when it is set.
        let done = self.is_done(id).await?;
        let frames = self
            .stored_after(id, after)
            .await?
            .iter()
            .filter_map(|frame| serde_json::from_str(frame).ok())
            .collect();
        Ok(Page { frames, done })
    }

    /// `DELETE /api/v1/chat/streams/{id}` and `{"action":"cancel"}`: the generator stops at
    /// its next look at the flag (within [`POLL`]). Cancelling an ended stream changes nothing.
    pub async fn cancel(&self, user_id: &str, id: &str) -> Result<(), StreamError> {
        self.owned(id, user_id).await?;
        self.kv
            .put(STREAMS, &format!("{id}/cancel"), &json!({}), Some(self.ttl))
            .await?;
        tracing::info!(stream_id = id, "chat stream cancel requested");
        Ok(())
    }

    /// `{"action":"resume","stream_id","after"}` on `connection`: see the module's note.
    pub async fn resume<P: Poster>(
        &self,
        user_id: &str,
        id: &str,
        after: Option<u64>,
        connection: &str,
        poster: &P,
    ) -> Result<Resumed, StreamError> {
        self.owned(id, user_id).await?;
        self.kv
            .put(
                STREAMS,
                &format!("{id}/attach"),
                &json!({"connection": connection, "after": after}),
                Some(self.ttl),
            )
            .await?;
        if !self.is_done(id).await? {
            tracing::info!(
                stream_id = id,
                "chat stream resumed; the generator catches up"
            );
            return Ok(Resumed::Live);
        }
        // Ended: whoever takes the attachment serves it. If the generator took it as it
        // finished, it has replayed the frames already.
        match self.take_attachment(id).await? {
            Some((connection, after)) => {
                let frames = self.stored_after(id, after).await?;
                for frame in &frames {
                    if poster.post(&connection, frame).await.is_err() {
                        break;
                    }
                }
                tracing::info!(
                    stream_id = id,
                    frames = frames.len(),
                    "ended chat stream replayed"
                );
                Ok(Resumed::Replayed(frames.len()))
            }
            None => Ok(Resumed::Live),
        }
    }
}

/// The generator's side of a stream: numbers, stores and sends each frame to the current
/// connection.
pub(crate) struct Relay<'a, P: Poster> {
    pub(crate) streams: &'a Streams,
    poster: &'a P,
    pub(crate) id: String,
    /// Where live frames go; `None` while the client is away.
    connection: Option<String>,
    /// The last sequence number the current connection has (been sent or said it saw).
    seen: Option<u64>,
    /// Every frame so far, by sequence number (the catch-up of a resume comes from here).
    sent: Vec<String>,
}

impl<'a, P: Poster> Relay<'a, P> {
    pub(crate) fn new(streams: &'a Streams, poster: &'a P, id: String, connection: String) -> Self {
        Self {
            streams,
            poster,
            id,
            connection: Some(connection),
            seen: None,
            sent: Vec::new(),
        }
    }

    /// Stores `frame` (the object without its `seq`, which is added here), then sends it to
    /// the current connection, after the catch-up of a connection that just resumed.
    pub(crate) async fn emit(&mut self, mut frame: Value) -> Result<(), KvError> {
        let seq = self.sent.len() as u64;
        frame["seq"] = json!(seq);
        let text = frame.to_string();
        self.streams.store(&self.id, seq, &text).await?;
        self.sent.push(text);
        // Sends the new frame too when a resume is waiting.
        self.catch_up().await?;
        if self.seen.is_some_and(|seen| seen >= seq) {
            return Ok(());
        }
        if let Some(connection) = &self.connection {
            if self
                .poster
                .post(connection, &self.sent[seq as usize])
                .await
                .is_ok()
            {
                self.seen = Some(seq);
            } else {
                tracing::info!(
                    stream_id = self.id,
                    "chat stream client gone; generation goes on"
                );
                self.connection = None;
            }
        }
        Ok(())
    }

    /// Takes a resume's attachment, if one is waiting, and sends its connection every frame
    /// so far that it has not seen; from then on the live frames go there.
    pub(crate) async fn catch_up(&mut self) -> Result<(), KvError> {
        let Some((connection, after)) = self.streams.take_attachment(&self.id).await? else {
            return Ok(());
        };
        tracing::info!(stream_id = self.id, "chat stream moved to a new connection");
        self.connection = Some(connection);
        self.seen = after;
        let from = after.map_or(0, |after| after.saturating_add(1));
        for seq in from..self.sent.len() as u64 {
            let Some(connection) = &self.connection else {
                break;
            };
            if self
                .poster
                .post(connection, &self.sent[seq as usize])
                .await
                .is_ok()
            {
                self.seen = Some(seq);
            } else {
                self.connection = None;
            }
        }
        Ok(())
    }

    /// After the last frame: the stream is done; a resume that came meanwhile is served here.
    pub(crate) async fn close(&mut self) -> Result<(), KvError> {
        self.streams.mark_done(&self.id).await?;
        self.catch_up().await
    }
}

/// `text` cut at character boundaries into pieces of at most `max` bytes.
pub(crate) fn split(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_told_apart_from_chat_requests() {
        assert_eq!(Action::parse(r#"{"message":"hi"}"#), None);
        assert_eq!(Action::parse("not json"), None);
        assert_eq!(
            Action::parse(r#"{"action":"resume","stream_id":"s","after":3}"#),
            Some(Ok(Action::Resume {
                stream_id: "s".into(),
                after: Some(3)
            }))
        );
        assert_eq!(
            Action::parse(r#"{"action":"cancel","stream_id":"s"}"#),
            Some(Ok(Action::Cancel {
                stream_id: "s".into()
            }))
        );
        assert!(matches!(
            Action::parse(r#"{"action":"dance"}"#),
            Some(Err(_))
        ));
    }

    #[test]
    fn long_text_is_split_at_character_boundaries() {
        let text = "aé".repeat(10);
        let pieces = split(&text, 4);
        assert!(pieces.iter().all(|piece| piece.len() <= 4));
        assert_eq!(pieces.concat(), text);
    }
}
