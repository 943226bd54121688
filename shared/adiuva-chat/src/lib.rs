//! The chat service, shared by `POST /api/v1/chat`, the local server's WebSocket and the
//! `chat-ws` Lambda: the orchestrator over the configured models (or why chat is unavailable),
//! the per-user limit of chats in flight, the caller's AI budget charged for every model call
//! ([`meter`]), and [`Chat::stream`], the one loop that streams an answer to any [`Outlet`]
//! and ends it with the final frame ([`frames`]).

pub mod frames;
pub mod meter;
pub mod streams;

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use adiuva_access::Caller;
use adiuva_agents::schema::RequestError;
use adiuva_agents::{Answer, ChatError, ChatRequest, Orchestrator};
use adiuva_budgets::{BudgetError, Budgets};
use adiuva_config::{Component, ConfigError, Context, Source};
use adiuva_error::{DomainError, ErrorKind, Public};
use adiuva_limits::{ChatSlot, LimitError, Limits};
use adiuva_llm::{Llm, LlmSettings};
use adiuva_tracing::Langfuse;
use serde_json::json;
use tokio::sync::mpsc;

use crate::meter::BudgetMeter;
use crate::streams::{Action, Poster, Relay, Streams};

/// `CHAT_TIMEOUT_SECONDS` (28: one whole request, under API Gateway's 30 s) and
/// `WS_HEARTBEAT_SECONDS` (30: pings of the local WebSocket).
#[derive(Debug, Clone, Copy)]
pub struct ChatSettings {
    pub timeout: Duration,
    pub heartbeat: Duration,
}

impl ChatSettings {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        Ok(Self {
            timeout: Duration::from_secs(source.number_in("CHAT_TIMEOUT_SECONDS", 28, 1..=900)?),
            heartbeat: Duration::from_secs(source.number_in(
                "WS_HEARTBEAT_SECONDS",
                30,
                1..=3600,
            )?),
        })
    }
}

/// Why a chat request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum ChatFailure {
    #[error("the message is not JSON: {0}")]
    NotJson(String),
    #[error("invalid ChatRequest: {0}")]
    NotChatRequest(String),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("chat is not available: no LLM provider is configured on this server")]
    NotConfigured,
    #[error(transparent)]
    Limited(#[from] LimitError),
    /// The caller's AI budget could not be looked up.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    #[error(transparent)]
    Chat(#[from] ChatError),
}

impl DomainError for ChatFailure {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotJson(_) => ErrorKind::BadRequest,
            Self::NotChatRequest(_) => ErrorKind::Invalid,
            Self::Request(err) => err.kind(),
            Self::NotConfigured => ErrorKind::Unavailable,
            Self::Limited(err) => err.kind(),
            Self::Budget(err) => err.kind(),
            Self::Chat(err) => err.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotJson(_) => "invalid_json",
            Self::NotChatRequest(_) => "invalid_chat_request",
            Self::Request(err) => err.code(),
            Self::NotConfigured => "llm_not_configured",
            Self::Limited(err) => err.code(),
            Self::Budget(err) => err.code(),
            Self::Chat(err) => err.code(),
        }
    }

    fn resets_at(&self) -> Option<i64> {
        match self {
            Self::Budget(err) => err.resets_at(),
            Self::Chat(err) => err.resets_at(),
            _ => None,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Limited(err) => err.retry_after_secs(),
            _ => None,
        }
    }

    fn public_detail(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::NotConfigured => Some(self.to_string().into()),
            Self::Budget(err) => err.public_detail(),
            Self::Chat(err) => err.public_detail(),
            _ => None,
        }
    }
}

/// The client of a stream is gone: stop generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// Where a streamed answer goes: the local WebSocket, or API Gateway's Management API.
pub trait Outlet: Send {
    /// Sends one text chunk as the model produces it (sanitized).
    fn text(&mut self, chunk: &str) -> impl Future<Output = Result<(), Gone>> + Send;

    /// Sends the final frame and ends the stream.
    fn finish(&mut self, frame: &str) -> impl Future<Output = ()> + Send;

    /// Resolves once the client is gone. The local socket reads (and pings) here while the
    /// model works; an outlet that learns of departures only when sending never resolves.
    fn watch(&mut self) -> impl Future<Output = Gone> + Send {
        std::future::pending()
    }
}

/// The chat service. Cheap to clone; built once per process.
#[derive(Debug, Clone)]
pub struct Chat {
    /// The orchestrator, or why chat is unavailable.
    orchestrator: Arc<Result<Orchestrator, String>>,
    limits: Limits,
    /// Every model call of a chat is charged to the caller's monthly AI budget.
    budgets: Budgets,
    /// Resumable streams' frames and flags.
    streams: Streams,
    settings: ChatSettings,
}

impl Component for Chat {
    /// Invalid chat settings stop only what builds a `Chat`; a missing or unusable provider
    /// is logged once here and chat answers 503 `llm_not_configured`.
    fn build(context: &Context) -> Result<Self, ConfigError> {
        let source = context.source();
        let settings = ChatSettings::from_source(source)?;
        let llm = LlmSettings::from_source(source)?;
        let orchestrator = Llm::new(&llm)
            .map(|llm| Orchestrator::new(llm, settings.timeout, Langfuse::from_source(source)));
        if let Err(reason) = &orchestrator {
            tracing::warn!(reason, "chat is unavailable: no usable LLM provider");
        }
        Ok(Self {
            orchestrator: Arc::new(orchestrator),
            limits: context.get()?,
            budgets: context.get()?,
            streams: context.get()?,
            settings,
        })
    }
}

impl Chat {
    pub fn settings(&self) -> &ChatSettings {
        &self.settings
    }

    /// The AI budgets the chats are charged to (`GET /api/v1/chat/usage` reads them).
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// Resumable streams (`GET` and `DELETE /api/v1/chat/streams/{id}`).
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    fn orchestrator(&self) -> Result<&Orchestrator, ChatFailure> {
        self.orchestrator
            .as_ref()
            .as_ref()
            .map_err(|_| ChatFailure::NotConfigured)
    }

    /// A chat slot lives as long as a chat may, plus a margin, in case its process dies.
    fn slot_ttl(&self) -> Duration {
        self.settings.timeout + Duration::from_secs(30)
    }

    /// What every chat starts with: the request checked, a model configured, the budget the
    /// caller draws from, a chat slot of the caller's.
    async fn begin(
        &self,
        caller: &Caller,
        request: &ChatRequest,
    ) -> Result<(&Orchestrator, BudgetMeter, ChatSlot), ChatFailure> {
        request.validate()?;
        let orchestrator = self.orchestrator()?;
        let meter = BudgetMeter::new(self.budgets.clone(), self.budgets.account_of(caller).await?);
        let slot = self
            .limits
            .acquire_chat(&caller.id, self.slot_ttl())
            .await?;
        Ok((orchestrator, meter, slot))
    }

    /// Answers one request (`POST /api/v1/chat`).
    pub async fn answer(
        &self,
        caller: &Caller,
        request: &ChatRequest,
    ) -> Result<Answer, ChatFailure> {
        let (orchestrator, meter, slot) = self.begin(caller, request).await?;
        tracing::info!("chat request");
        let answer = orchestrator
            .orchestrate(request, None, &caller.id, Some(&meter))
            .await;
        slot.release().await;
        Ok(answer?)
    }

    /// Streams the answer to a request sent as text (a WebSocket message) to `outlet`: text
    /// frames as the model writes, then the final frame `{"done": true, ...}`, or an error
    /// frame. Returns without a final frame when the client is gone, which cancels the model
    /// call in flight.
    pub async fn stream<O: Outlet>(&self, caller: &Caller, text: &str, outlet: &mut O) {
        self.stream_parsed(caller, parse_request(text), outlet)
            .await;
    }

    /// One message of a chat WebSocket on `connection`: a resume or cancel action, a resumable
    /// chat request (its frames go through `poster`, see [`streams`]), or today's chat request
    /// (streamed to `outlet`, frames unchanged).
    pub async fn message<O: Outlet, P: Poster>(
        &self,
        caller: &Caller,
        text: &str,
        outlet: &mut O,
        poster: &P,
        connection: &str,
    ) {
        if let Some(action) = Action::parse(text) {
            return self.action(caller, action, poster, connection).await;
        }
        match parse_request(text) {
            Ok(request) if request.resumable => {
                self.stream_resumable(caller, request, poster, connection)
                    .await;
            }
            parsed => self.stream_parsed(caller, parsed, outlet).await,
        }
    }

    /// A resume or cancel action; errors answer `{"type":"error","code"}`.
    async fn action<P: Poster>(
        &self,
        caller: &Caller,
        action: Result<Action, String>,
        poster: &P,
        connection: &str,
    ) {
        let result = match action {
            Ok(Action::Resume { stream_id, after }) => self
                .streams
                .resume(&caller.id, &stream_id, after, connection, poster)
                .await
                .map(drop),
            Ok(Action::Cancel { stream_id }) => self.streams.cancel(&caller.id, &stream_id).await,
            Err(reason) => {
                tracing::info!(reason, "unknown chat WebSocket action");
                let frame = json!({"type": "error", "code": "invalid_action"}).to_string();
                let _ = poster.post(connection, &frame).await;
                return;
            }
        };
        if let Err(err) = result {
            if err.kind().is_server_side() {
                tracing::warn!(error = %adiuva_error::cause_chain(&err), "chat stream action failed");
            }
            let _ = poster.post(connection, &streams::error_frame(&err)).await;
        }
    }

    async fn stream_parsed<O: Outlet>(
        &self,
        caller: &Caller,
        request: Result<ChatRequest, ChatFailure>,
        outlet: &mut O,
    ) {
        let frame = match self.run_stream(caller, request, outlet).await {
            Ok(Some(answer)) => frames::done(&answer),
            Ok(None) => {
                tracing::info!("chat stream client gone; generation stopped");
                return;
            }
            Err(err) => {
                let public = Public::of(&err);
                if public.kind.is_server_side() {
                    tracing::warn!(code = public.code, error = %adiuva_error::cause_chain(&err), "chat stream failed");
                } else {
                    tracing::info!(code = public.code, detail = %public.detail, "chat stream request rejected");
                }
                frames::error(&public)
            }
        };
        outlet.finish(&frame).await;
    }

    async fn run_stream<O: Outlet>(
        &self,
        caller: &Caller,
        request: Result<ChatRequest, ChatFailure>,
        outlet: &mut O,
    ) -> Result<Option<Answer>, ChatFailure> {
        let request = request?;
        let (orchestrator, meter, slot) = self.begin(caller, &request).await?;
        tracing::info!("chat stream request");

        let (tx, mut rx) = mpsc::channel::<String>(64);
        let work = orchestrator.orchestrate(&request, Some(&tx), &caller.id, Some(&meter));
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                biased;
                Some(chunk) = rx.recv() => {
                    if outlet.text(&chunk).await.is_err() {
                        return Ok(None);
                    }
                }
                result = &mut work => break result,
                Gone = outlet.watch() => return Ok(None),
            }
        };
        while let Ok(chunk) = rx.try_recv() {
            if outlet.text(&chunk).await.is_err() {
                return Ok(None);
            }
        }
        slot.release().await;
        Ok(Some(result?))
    }
}

impl Chat {
    /// A resumable chat (see [`streams`]): the frames `start`, `delta`s and `done`, each
    /// stored before it goes to the stream's current connection. The generation goes on while
    /// no client is connected, and stops within [`streams::POLL`] of a cancel: the model call
    /// in flight is dropped and the budget settled for the text generated so far.
    pub async fn stream_resumable<P: Poster>(
        &self,
        caller: &Caller,
        request: ChatRequest,
        poster: &P,
        connection: &str,
    ) {
        let id = match self.streams.open(&caller.id).await {
            Ok(id) => id,
            Err(err) => {
                tracing::warn!(error = %adiuva_error::cause_chain(&err), "could not open a chat stream");
                let frame = frames::error(&Public::of(&err));
                let _ = poster.post(connection, &frame).await;
                return;
            }
        };
        let mut relay = Relay::new(&self.streams, poster, id.clone(), connection.to_owned());
        let span = tracing::info_span!("chat_stream", stream_id = %id);
        let _ = tracing::Instrument::instrument(
            async {
                if let Err(err) = self.run_resumable(caller, &request, &mut relay).await {
                    tracing::warn!(error = %adiuva_error::cause_chain(&err), "chat stream could not be stored; stopped");
                }
            },
            span,
        )
        .await;
    }

    async fn run_resumable<P: Poster>(
        &self,
        caller: &Caller,
        request: &ChatRequest,
        relay: &mut Relay<'_, P>,
    ) -> Result<(), adiuva_kv::KvError> {
        relay
            .emit(json!({"type": "start", "stream_id": relay.id}))
            .await?;
        let last = match self.generate(caller, request, relay).await? {
            Generated::Answer(answer) => frames::done_value(&answer),
            Generated::Cancelled => json!({"done": true, "cancelled": true}),
            Generated::Failed(err) => {
                let public = Public::of(&err);
                if public.kind.is_server_side() {
                    tracing::warn!(code = public.code, error = %adiuva_error::cause_chain(&err), "chat stream failed");
                } else {
                    tracing::info!(code = public.code, detail = %public.detail, "chat stream request rejected");
                }
                frames::error_value(&public)
            }
        };
        let mut last = last;
        last["type"] = json!("done");
        relay.emit(last).await?;
        relay.close().await
    }

    async fn generate<P: Poster>(
        &self,
        caller: &Caller,
        request: &ChatRequest,
        relay: &mut Relay<'_, P>,
    ) -> Result<Generated, adiuva_kv::KvError> {
        let (orchestrator, meter, slot) = match self.begin(caller, request).await {
            Ok(begun) => begun,
            Err(err) => return Ok(Generated::Failed(err)),
        };
        tracing::info!("resumable chat stream request");
        let (tx, mut rx) = mpsc::channel::<String>(64);
        // Boxed, so that a cancel can drop it (and the provider request with it) at once.
        let mut work =
            Box::pin(orchestrator.orchestrate(request, Some(&tx), &caller.id, Some(&meter)));
        let mut poll = tokio::time::interval(streams::POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                biased;
                Some(chunk) = rx.recv() => {
                    meter.generated(chunk.len());
                    for piece in streams::split(&chunk, streams::MAX_DELTA_BYTES) {
                        relay.emit(json!({"type": "delta", "text": piece})).await?;
                    }
                }
                result = &mut work => break Some(result),
                _ = poll.tick() => {
                    if relay.streams.is_cancelled(&relay.id).await? {
                        break None;
                    }
                    relay.catch_up().await?;
                }
            }
        };
        let Some(result) = result else {
            // Dropping the orchestration drops the request to the provider.
            drop(work);
            meter.abandon().await;
            slot.release().await;
            tracing::info!("chat stream cancelled; generation stopped");
            return Ok(Generated::Cancelled);
        };
        while let Ok(chunk) = rx.try_recv() {
            meter.generated(chunk.len());
            for piece in streams::split(&chunk, streams::MAX_DELTA_BYTES) {
                relay.emit(json!({"type": "delta", "text": piece})).await?;
            }
        }
        slot.release().await;
        Ok(match result {
            Ok(answer) => Generated::Answer(answer),
            Err(err) => Generated::Failed(ChatFailure::Chat(err)),
        })
    }
}

/// How a resumable generation ended.
enum Generated {
    Answer(Answer),
    Cancelled,
    Failed(ChatFailure),
}

/// A streamed `ChatRequest`: 400 when it is not JSON, 422 when it is not a `ChatRequest`.
/// `POST /api/v1/chat` gets the same answers from the `Json` extractor.
pub fn parse_request(text: &str) -> Result<ChatRequest, ChatFailure> {
    serde_json::from_str(text).map_err(|err| {
        if err.is_data() {
            ChatFailure::NotChatRequest(err.to_string())
        } else {
            ChatFailure::NotJson(err.to_string())
        }
    })
}
