//! Chat function: `POST /api/v1/chat`. The orchestrator routes the message to an agent (or a
//! pipeline of agents) and answers a `ChatResponse`, or in plan mode an `ExecutionPlan` that
//! names prompt templates by id. Without a configured model provider it answers 503
//! `llm_not_configured`. The streaming variants (the local WebSocket and the `chat-ws` Lambda)
//! use the same [`State`] and [`chat_error`].

use std::sync::Arc;
use std::time::Duration;

use adiuva_agents::{Answer, ChatError, ChatRequest, Orchestrator};
use adiuva_auth::{Accounts, AuthUser};
use adiuva_config::Config;
use adiuva_http::{ApiError, ErrorBody, Json, Result, StatusCode, api_doc};
use adiuva_llm::{Llm, LlmError};
use adiuva_tracing::Langfuse;
use axum::extract::{FromRef, State as AxumState};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Debug, Clone)]
pub struct State {
    accounts: Accounts,
    /// The orchestrator, or why chat is unavailable.
    orchestrator: Arc<std::result::Result<Orchestrator, String>>,
}

impl State {
    /// The orchestrator over the models the configuration names. A missing or unusable
    /// provider is logged once here; chat then answers 503 and nothing else is affected.
    pub fn from_config(accounts: Accounts, config: &Config) -> Self {
        let orchestrator = Llm::from_config(config).map(|llm| {
            Orchestrator::new(
                llm,
                Duration::from_secs(config.chat_timeout_seconds.max(1)),
                Langfuse::from_config(config),
            )
        });
        if let Err(reason) = &orchestrator {
            tracing::warn!(reason, "chat is unavailable: no usable LLM provider");
        }
        Self {
            accounts,
            orchestrator: Arc::new(orchestrator),
        }
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The orchestrator, or the 503 that says chat is not configured.
    pub fn orchestrator(&self) -> Result<&Orchestrator> {
        self.orchestrator.as_ref().as_ref().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "llm_not_configured",
                "chat is not available: no LLM provider is configured on this server",
            )
        })
    }
}

impl FromRef<State> for Accounts {
    fn from_ref(state: &State) -> Self {
        state.accounts.clone()
    }
}

pub fn router(state: State) -> OpenApiRouter {
    OpenApiRouter::with_openapi(api_doc())
        .routes(routes!(chat))
        .with_state(state)
}

/// A streamed `ChatRequest` (the WebSocket's first frame): 400 when it is not JSON, 422 when it
/// is not a `ChatRequest`. `POST /api/v1/chat` gets the same answers from the `Json` extractor.
pub fn parse_request(text: &str) -> Result<ChatRequest> {
    serde_json::from_str(text).map_err(|err| {
        if err.is_data() {
            ApiError::unprocessable(
                "invalid_chat_request",
                format!("invalid ChatRequest: {err}"),
            )
        } else {
            ApiError::bad_request("invalid_json", format!("the message is not JSON: {err}"))
        }
    })
}

/// Checks a request's sizes and shape: 413 for sizes, 422 for the rest.
pub fn validate(request: &ChatRequest) -> Result<()> {
    request.validate().map_err(|err| {
        if err.is_too_large() {
            ApiError::payload_too_large(err.to_string())
        } else {
            ApiError::unprocessable("invalid_chat_request", err.to_string())
        }
    })
}

/// How a failed chat request is answered. The provider's own message is logged, never shown.
pub fn chat_error(err: ChatError) -> ApiError {
    tracing::warn!(error = %err, "chat request failed");
    match err {
        ChatError::Timeout(_) | ChatError::Llm(LlmError::Timeout(_)) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "llm_timeout",
            "the language model took too long to answer; try again",
        ),
        ChatError::Llm(LlmError::Status { status: 429, .. }) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "llm_rate_limited",
            "the language model provider is busy; try again shortly",
        ),
        ChatError::Llm(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "llm_error",
            "the language model provider failed to answer; try again",
        ),
        // Only streams end this way, and their client is no longer there to read an answer.
        ChatError::Gone => ApiError::new(
            StatusCode::BAD_REQUEST,
            "client_gone",
            "the client disconnected",
        ),
    }
}

/// The JSON frames that end a chat stream, the same on the local WebSocket and the `chat-ws`
/// Lambda. Text chunks before them are sent as they are.
pub mod frames {
    use adiuva_agents::Answer;
    use adiuva_http::ApiError;
    use serde_json::json;

    /// `{"done": true, "response": ..., "actions": [...]}`; in plan mode the response is empty
    /// and the plan is under `plan`.
    pub fn done(answer: &Answer) -> String {
        match answer {
            Answer::Response(response) => json!({
                "done": true,
                "response": response.response,
                "actions": response.actions,
            }),
            Answer::Plan(plan) => json!({
                "done": true,
                "response": "",
                "actions": [],
                "plan": plan,
            }),
        }
        .to_string()
    }

    /// `{"done": true, "error": {"status", "code", "detail"}}`.
    pub fn error(err: &ApiError) -> String {
        json!({
            "done": true,
            "error": {
                "status": err.status().as_u16(),
                "code": err.code(),
                "detail": err.detail(),
            }
        })
        .to_string()
    }
}

/// Routes a message through the orchestrator: a `ChatResponse` (`execution_mode` "direct", the
/// default) or an `ExecutionPlan` whose LLM steps name prompt templates by id ("plan").
#[utoipa::path(post, path = "/api/v1/chat", tag = "chat", security(("bearer" = [])),
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The answer", body = Answer),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 413, description = "Message or context too large", body = ErrorBody),
        (status = 422, description = "Invalid request", body = ErrorBody),
        (status = 502, description = "The model provider failed", body = ErrorBody),
        (status = 503, description = "No model provider configured (llm_not_configured), or it is rate limited", body = ErrorBody),
        (status = 504, description = "The model did not answer in time", body = ErrorBody),
    ))]
async fn chat(
    AxumState(state): AxumState<State>,
    user: AuthUser,
    Json(request): Json<ChatRequest>,
) -> Result<Json<Answer>> {
    validate(&request)?;
    let orchestrator = state.orchestrator()?;
    tracing::info!(user_id = %user.id, "chat request");
    let answer = orchestrator
        .orchestrate(&request, None, &user.id)
        .await
        .map_err(chat_error)?;
    Ok(Json(answer))
}
