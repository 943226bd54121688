//! The LLM client: chat completions against any OpenAI-compatible endpoint through async-openai.
//!
//! [`Llm::new`] resolves `LLM_MODEL` (the agents' model) and `LLM_ROUTER_MODEL` (intent
//! classification) with their LiteLLM-style provider prefixes ([`provider`]). Each call runs at
//! temperature 0 with a cap on output tokens, a timeout, and retries with exponential backoff on
//! 429, 5xx and connection failures; each logs its model, token usage and latency. A streamed
//! call is retried only until the response starts: once a chunk may have reached the user,
//! a failure is final.
//!
//! TLS is rustls on ring with Mozilla's roots, handed to reqwest preconfigured, so no process
//! -wide crypto provider is needed and aws-lc is never built.

pub mod provider;

use std::sync::Arc;
use std::time::{Duration, Instant};

use adiuva_config::{ConfigError, Secret, Source};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, ChatCompletionResponseStream, CreateChatCompletionRequest,
    CreateChatCompletionResponse,
};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

pub use provider::Endpoint;

/// One message of a conversation, serialized exactly as the Chat Completions API wants it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self::System {
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::User {
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::Assistant {
            content: Some(content.into()),
            tool_calls: Vec::new(),
        }
    }

    /// The text of the message, empty for an assistant message that only calls tools.
    pub fn text(&self) -> &str {
        match self {
            Self::System { content } | Self::User { content } | Self::Tool { content, .. } => {
                content
            }
            Self::Assistant { content, .. } => content.as_deref().unwrap_or_default(),
        }
    }
}

/// A function the model may call; `parameters` is its JSON schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

impl ToolSpec {
    fn wire(&self) -> Value {
        json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            }
        })
    }
}

/// A tool call the model made; `arguments` is the JSON text the model produced (unvalidated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    kind: FunctionKind,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum FunctionKind {
    Function,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

impl ToolCall {
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            kind: FunctionKind::Function,
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
            },
        }
    }
}

/// Tokens one call used, as the provider reported them (zero when it did not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

/// A finished model answer: text, tool calls, or both.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    /// What the provider reported (`usage`, or a stream's final usage chunk); `None` when it
    /// reported nothing, which the AI budget charges at the call's [`Estimate`].
    pub usage: Option<Usage>,
}

/// What a call may cost before it is made: the prompt's tokens, estimated, plus the cap on the
/// tokens it may generate (`max_tokens`). The AI budget reserves this before each call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// The request's messages and tool schemas, as sent, at 4 bytes a token: OpenAI's rule of
    /// thumb for English text with their tokenizers. No tokenizer is linked (they are large
    /// and differ per provider); the JSON framing counted with the text errs on the side of
    /// the budget, and the provider's reported usage replaces the estimate after the call.
    pub prompt_tokens: u32,
    /// The call's `max_tokens` (`LLM_MAX_OUTPUT_TOKENS`).
    pub max_tokens: u32,
}

/// Bytes per token of [`Estimate::prompt_tokens`].
pub const BYTES_PER_TOKEN: usize = 4;

impl Estimate {
    /// The most the call can cost if the estimate holds.
    pub fn total(self) -> u64 {
        u64::from(self.prompt_tokens) + u64::from(self.max_tokens)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The provider answered with an error status (after the retries, for retryable ones).
    #[error("the model provider answered {status}: {message}")]
    Status { status: u16, message: String },
    /// No answer within the timeout.
    #[error("the model did not answer within {0:?}")]
    Timeout(Duration),
    /// The provider could not be reached.
    #[error("the model provider is unreachable: {0}")]
    Unreachable(String),
    /// The provider answered something that is not a chat completion.
    #[error("the model provider answered malformed data: {0}")]
    Malformed(String),
}

impl LlmError {
    fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Unreachable(_) => true,
            Self::Timeout(_) | Self::Malformed(_) => false,
        }
    }
}

impl From<OpenAIError> for LlmError {
    fn from(err: OpenAIError) -> Self {
        match err {
            OpenAIError::ApiError(api) => Self::Status {
                status: api.status_code.as_u16(),
                message: truncate(&api.api_error.message, 300),
            },
            OpenAIError::Reqwest(err) if err.is_decode() || err.is_body() => {
                Self::Malformed(err.to_string())
            }
            OpenAIError::Reqwest(err) => Self::Unreachable(error_chain(&err)),
            OpenAIError::JSONDeserialize(err, _) => Self::Malformed(err.to_string()),
            OpenAIError::StreamError(err) => Self::Malformed(err.to_string()),
            other => Self::Malformed(other.to_string()),
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// Call settings shared by both models.
#[derive(Debug, Clone, Copy)]
struct Limits {
    timeout: Duration,
    max_retries: u32,
    max_output_tokens: u32,
}

/// The two configured models. Cloning shares the HTTP clients.
#[derive(Debug, Clone)]
pub struct Llm {
    agent: Model,
    router: Model,
}

/// The chat's models and endpoints: `LLM_MODEL`, `LLM_ROUTER_MODEL`, `LLM_BASE_URL` (or the
/// OpenAI SDKs' `OPENAI_BASE_URL`), the provider keys, `OLLAMA_BASE_URL` (or LiteLLM's
/// `OLLAMA_API_BASE`), `LLM_TIMEOUT_SECONDS`, `LLM_MAX_RETRIES` and `LLM_MAX_OUTPUT_TOKENS`.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// LiteLLM-style `provider/model` names (`gpt-4o`, `ollama/llama3`, ...).
    pub model: String,
    pub router_model: String,
    /// An OpenAI-compatible endpoint for `openai/` and unprefixed models; `None`: OpenAI's own.
    pub base_url: Option<String>,
    pub openai_api_key: Option<Secret>,
    pub openrouter_api_key: Option<Secret>,
    pub anthropic_api_key: Option<Secret>,
    pub gemini_api_key: Option<Secret>,
    pub ollama_base_url: String,
    /// Per model call, including a streamed answer.
    pub timeout: Duration,
    /// Retries of a call that failed with 429, 5xx or a connection error.
    pub max_retries: u32,
    /// Cap on the tokens a call may generate.
    pub max_output_tokens: u32,
}

impl LlmSettings {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        Ok(Self {
            model: source.string("LLM_MODEL", "gpt-4o"),
            router_model: source.string("LLM_ROUTER_MODEL", "gpt-4o-mini"),
            base_url: source
                .url("LLM_BASE_URL")
                .or_else(|| source.url("OPENAI_BASE_URL")),
            openai_api_key: source.secret("OPENAI_API_KEY"),
            openrouter_api_key: source.secret("OPENROUTER_API_KEY"),
            anthropic_api_key: source.secret("ANTHROPIC_API_KEY"),
            gemini_api_key: source.secret("GEMINI_API_KEY"),
            ollama_base_url: source
                .url("OLLAMA_BASE_URL")
                .or_else(|| source.url("OLLAMA_API_BASE"))
                .unwrap_or_else(|| "http://localhost:11434".to_owned()),
            timeout: Duration::from_secs(source.number_in("LLM_TIMEOUT_SECONDS", 60, 1..=900)?),
            max_retries: source.number_in("LLM_MAX_RETRIES", 2, 0..=10)?,
            max_output_tokens: source.number_in("LLM_MAX_OUTPUT_TOKENS", 1024, 1..=1_000_000)?,
        })
    }
}

impl Llm {
    /// The models the settings name. `Err` says why chat is unavailable (no provider
    /// configured, or a name we cannot serve); nothing else depends on it.
    pub fn new(settings: &LlmSettings) -> Result<Self, String> {
        let limits = Limits {
            timeout: settings.timeout,
            max_retries: settings.max_retries,
            max_output_tokens: settings.max_output_tokens,
        };
        let http = http_client().map_err(|err| format!("cannot build the HTTP client: {err}"))?;
        let agent = provider::resolve(&settings.model, settings)
            .map_err(|reason| format!("LLM_MODEL: {reason}"))?;
        let router = provider::resolve(&settings.router_model, settings)
            .map_err(|reason| format!("LLM_ROUTER_MODEL: {reason}"))?;
        Ok(Self {
            agent: Model::new(agent, http.clone(), limits),
            router: Model::new(router, http, limits),
        })
    }

    /// The model the agents and the synthesis use.
    pub fn agent(&self) -> &Model {
        &self.agent
    }

    /// The light model that classifies intents.
    pub fn router(&self) -> &Model {
        &self.router
    }
}

fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
}

/// One model at one endpoint.
#[derive(Clone)]
pub struct Model {
    inner: Arc<ModelInner>,
}

struct ModelInner {
    endpoint: Endpoint,
    client: Client<OpenAIConfig>,
    limits: Limits,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("model", &self.inner.endpoint.configured)
            .field("base_url", &self.inner.endpoint.base_url)
            .finish_non_exhaustive()
    }
}

impl Model {
    fn new(endpoint: Endpoint, http: reqwest::Client, limits: Limits) -> Self {
        let config = OpenAIConfig::new()
            .with_api_base(endpoint.base_url.clone())
            .with_api_key(endpoint.api_key.clone());
        Self {
            inner: Arc::new(ModelInner {
                client: Client::build(http, config),
                endpoint,
                limits,
            }),
        }
    }

    /// The model's name as configured (`ollama/llama3`).
    pub fn name(&self) -> &str {
        &self.inner.endpoint.configured
    }

    /// What a call of `messages` and `tools` may cost (see [`Estimate`]).
    pub fn estimate(&self, messages: &[Message], tools: &[ToolSpec]) -> Estimate {
        let tools: Vec<Value> = tools.iter().map(ToolSpec::wire).collect();
        let bytes = serde_json::to_vec(messages).map_or(0, |json| json.len())
            + if tools.is_empty() {
                0
            } else {
                serde_json::to_vec(&tools).map_or(0, |json| json.len())
            };
        Estimate {
            prompt_tokens: u32::try_from(bytes.div_ceil(BYTES_PER_TOKEN)).unwrap_or(u32::MAX),
            max_tokens: self.inner.limits.max_output_tokens,
        }
    }

    fn request(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
        stream: bool,
    ) -> Result<CreateChatCompletionRequest, LlmError> {
        let mut body = json!({
            "model": self.inner.endpoint.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.inner.limits.max_output_tokens,
        });
        if !tools.is_empty() {
            body["tools"] = tools.iter().map(ToolSpec::wire).collect();
        }
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        serde_json::from_value(body).map_err(|err| LlmError::Malformed(err.to_string()))
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent.
    async fn with_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T, LlmError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, LlmError>>,
    {
        let limits = self.inner.limits;
        let mut retry = 0;
        loop {
            let result = match tokio::time::timeout(limits.timeout, attempt()).await {
                Ok(result) => result,
                Err(_) => Err(LlmError::Timeout(limits.timeout)),
            };
            match result {
                Err(err) if err.retryable() && retry < limits.max_retries => {
                    let delay = backoff(retry);
                    tracing::warn!(model = self.name(), retry = retry + 1, delay_ms = delay.as_millis() as u64, error = %err, "model call failed; retrying");
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                other => return other,
            }
        }
    }

    /// One chat completion (not streamed).
    pub async fn complete(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<Reply, LlmError> {
        let started = Instant::now();
        let request = self.request(messages, tools, false)?;
        let result = self
            .with_retries(|| {
                let request = request.clone();
                async move {
                    let response = self.inner.client.chat().create(request).await?;
                    reply_of(response)
                }
            })
            .await;
        self.log(result.as_ref(), started, false);
        result
    }

    /// A streamed chat completion: [`ReplyStream::next_text`] yields the text as the model
    /// produces it, and [`ReplyStream::finish`] the whole reply with its tool calls.
    pub async fn stream(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<ReplyStream, LlmError> {
        let started = Instant::now();
        let request = self.request(messages, tools, true)?;
        let opened = self
            .with_retries(|| {
                let request = request.clone();
                async move { Ok(self.inner.client.chat().create_stream(request).await?) }
            })
            .await;
        match opened {
            Ok(inner) => Ok(ReplyStream {
                model: self.clone(),
                inner,
                started,
                deadline: tokio::time::Instant::from_std(started + self.inner.limits.timeout),
                reply: Reply::default(),
                calls: Vec::new(),
                done: false,
            }),
            Err(err) => {
                self.log(Err(&err), started, true);
                Err(err)
            }
        }
    }

    fn log(&self, result: Result<&Reply, &LlmError>, started: Instant, streamed: bool) {
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(reply) => tracing::info!(
                model = self.name(),
                streamed,
                prompt_tokens = reply.usage.map(|usage| usage.prompt_tokens),
                completion_tokens = reply.usage.map(|usage| usage.completion_tokens),
                tool_calls = reply.tool_calls.len(),
                latency_ms,
                "model call"
            ),
            Err(err) => {
                tracing::warn!(model = self.name(), streamed, latency_ms, error = %err, "model call failed");
            }
        }
    }
}

/// Exponential backoff with jitter: about 250 ms, 500 ms, 1 s, ... capped at 4 s.
fn backoff(retry: u32) -> Duration {
    let base = 250u64.saturating_mul(1 << retry.min(4)).min(4_000);
    let mut noise = [0u8; 2];
    let jitter = match getrandom::fill(&mut noise) {
        Ok(()) => u64::from(u16::from_le_bytes(noise)) % (base / 2 + 1),
        Err(_) => 0,
    };
    Duration::from_millis(base / 2 + jitter)
}

fn reply_of(response: CreateChatCompletionResponse) -> Result<Reply, LlmError> {
    let usage = response.usage.map(|usage| Usage {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
    });
    let choice = response
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::Malformed("a completion without choices".to_owned()))?;
    let tool_calls = choice
        .message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .filter_map(|call| match call {
            ChatCompletionMessageToolCalls::Function(call) => Some(ToolCall::new(
                call.id,
                call.function.name,
                call.function.arguments,
            )),
            ChatCompletionMessageToolCalls::Custom(_) => None,
        })
        .collect();
    Ok(Reply {
        content: choice.message.content.unwrap_or_default(),
        tool_calls,
        usage,
    })
}

/// A streamed answer in progress.
pub struct ReplyStream {
    model: Model,
    inner: ChatCompletionResponseStream,
    started: Instant,
    deadline: tokio::time::Instant,
    reply: Reply,
    /// Tool calls by index, as their pieces arrive.
    calls: Vec<ToolCall>,
    done: bool,
}

impl std::fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyStream")
            .field("model", &self.model)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ReplyStream {
    /// The next piece of text, `None` once the answer is complete. Tool-call pieces are
    /// gathered on the way and skipped.
    pub async fn next_text(&mut self) -> Result<Option<String>, LlmError> {
        while !self.done {
            let next = match tokio::time::timeout_at(self.deadline, self.inner.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let err = LlmError::Timeout(self.model.inner.limits.timeout);
                    self.model.log(Err(&err), self.started, true);
                    return Err(err);
                }
            };
            let chunk = match next {
                None => {
                    self.done = true;
                    break;
                }
                Some(Ok(chunk)) => chunk,
                Some(Err(err)) => {
                    let err = LlmError::from(err);
                    self.model.log(Err(&err), self.started, true);
                    return Err(err);
                }
            };
            if let Some(usage) = chunk.usage {
                self.reply.usage = Some(Usage {
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                });
            }
            let Some(choice) = chunk.choices.into_iter().next() else {
                continue;
            };
            for piece in choice.delta.tool_calls.unwrap_or_default() {
                let index = piece.index as usize;
                if index >= 64 {
                    return Err(LlmError::Malformed(
                        "tool call index out of range".to_owned(),
                    ));
                }
                if self.calls.len() <= index {
                    self.calls.resize(index + 1, ToolCall::new("", "", ""));
                }
                let call = &mut self.calls[index];
                if let Some(id) = piece.id {
                    call.id = id;
                }
                if let Some(function) = piece.function {
                    if let Some(name) = function.name {
                        call.function.name.push_str(&name);
                    }
                    if let Some(arguments) = function.arguments {
                        call.function.arguments.push_str(&arguments);
                    }
                }
            }
            if let Some(text) = choice.delta.content.filter(|text| !text.is_empty()) {
                self.reply.content.push_str(&text);
                return Ok(Some(text));
            }
        }
        Ok(None)
    }

    /// The whole reply; call after [`Self::next_text`] returned `None`.
    pub fn finish(mut self) -> Reply {
        self.reply.tool_calls = std::mem::take(&mut self.calls)
            .into_iter()
            .filter(|call| !call.function.name.is_empty())
            .enumerate()
            .map(|(index, mut call)| {
                if call.id.is_empty() {
                    call.id = format!("call_{index}");
                }
                call
            })
            .collect();
        self.model.log(Ok(&self.reply), self.started, true);
        self.reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_serialize_as_the_api_wants_them() {
        let messages = [
            Message::system("s"),
            Message::user("u"),
            Message::Assistant {
                content: None,
                tool_calls: vec![ToolCall::new("call_1", "list_tasks", "{}")],
            },
            Message::Tool {
                tool_call_id: "call_1".into(),
                content: "[]".into(),
            },
        ];
        assert_eq!(
            serde_json::to_value(messages).unwrap(),
            json!([
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "assistant", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "list_tasks", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "[]"},
            ])
        );
    }

    #[test]
    fn only_rate_limits_server_errors_and_connection_failures_are_retried() {
        let status = |status| LlmError::Status {
            status,
            message: String::new(),
        };
        assert!(status(429).retryable());
        assert!(status(500).retryable());
        assert!(status(503).retryable());
        assert!(!status(400).retryable());
        assert!(!status(401).retryable());
        assert!(LlmError::Unreachable("refused".into()).retryable());
        assert!(!LlmError::Malformed("x".into()).retryable());
        assert!(!LlmError::Timeout(Duration::from_secs(1)).retryable());
    }

    #[test]
    fn the_estimate_is_the_request_at_four_bytes_a_token_plus_max_tokens() {
        let settings = LlmSettings::from_source(&Source::from_pairs([
            ("LLM_BASE_URL", "http://127.0.0.1:9/v1"),
            ("LLM_MAX_OUTPUT_TOKENS", "300"),
        ]))
        .unwrap();
        let llm = Llm::new(&settings).unwrap();
        let messages = [Message::system("s".repeat(400)), Message::user("hello")];
        let bytes = serde_json::to_vec(&messages).unwrap().len();
        let estimate = llm.agent().estimate(&messages, &[]);
        assert_eq!(estimate.prompt_tokens as usize, bytes.div_ceil(4));
        assert_eq!(estimate.max_tokens, 300);
        assert_eq!(estimate.total(), bytes.div_ceil(4) as u64 + 300);
        let tool = ToolSpec {
            name: "list_notes".into(),
            description: "Lists the notes".into(),
            parameters: json!({"type": "object"}),
        };
        let with_tools = llm.agent().estimate(&messages, &[tool]);
        assert!(with_tools.prompt_tokens > estimate.prompt_tokens);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for retry in 0..10 {
            let delay = backoff(retry);
            let base = 250u64 * (1 << retry.min(4));
            let base = base.min(4_000);
            assert!(
                delay >= Duration::from_millis(base / 2),
                "{retry}: {delay:?}"
            );
            assert!(delay <= Duration::from_millis(base), "{retry}: {delay:?}");
        }
    }
}
