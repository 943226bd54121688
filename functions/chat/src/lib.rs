//! Chat function: `POST /api/v1/chat`. The orchestrator routes the message to an agent (or a
//! pipeline of agents) and answers a `ChatResponse`, or in plan mode an `ExecutionPlan` that
//! names prompt templates by id. Without a configured model provider it answers 503
//! `llm_not_configured`. Every model call is charged to the caller's monthly AI budget (402
//! `ai_budget_exhausted` once it is spent), which `GET /api/v1/chat/usage` shows; `GET
//! /api/v1/chat/agents` lists the agents (names, descriptions, tool names). `GET
//! /api/v1/chat/streams/{id}?after=n` reads a resumable stream's stored frames (for clients
//! that poll) and `DELETE /api/v1/chat/streams/{id}` cancels it. The streaming variants (the local WebSocket and the `chat-ws` Lambda) use the same
//! [`adiuva_chat::Chat`].

use adiuva_agents::agents::{AgentInfo, agent_infos};
use adiuva_agents::{Answer, ChatRequest};
use adiuva_budgets::AiUsage;
use adiuva_chat::Chat;
use adiuva_config::{ConfigError, Context};
#[cfg(feature = "openapi")]
use adiuva_http::ErrorBody;
use adiuva_http::{Function, Json, Path, Query, Result, Routes, routes};
use adiuva_pipeline::CurrentUser;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub fn function(context: &Context) -> Result<Function, ConfigError> {
    let service: Chat = context.get()?;
    let routes = Routes::new()
        .routes(routes!(chat))
        .routes(routes!(usage))
        .routes(routes!(agents))
        .routes(routes!(stream_frames, cancel_stream))
        .with_state(service);
    adiuva_pipeline::authenticated("chat", routes, context)
}

/// Routes a message through the orchestrator: a `ChatResponse` (`execution_mode` "direct", the
/// default) or an `ExecutionPlan` whose LLM steps name prompt templates by id ("plan").
#[adiuva_http::route(post, path = "/api/v1/chat", tag = "chat",
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The answer", body = Answer),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 413, description = "Message or context too large", body = ErrorBody),
        (status = 402, description = "This month's AI token budget is spent (ai_budget_exhausted), before any model call; `resets_at` says when it starts anew", body = ErrorBody),
        (status = 422, description = "Invalid request", body = ErrorBody),
        (status = 429, description = "Over the tier's rate limit, or too many chats in flight", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 502, description = "The model provider failed", body = ErrorBody),
        (status = 503, description = "No model provider configured (llm_not_configured), it is rate limited, or the AI budget cannot be checked", body = ErrorBody),
        (status = 504, description = "The model did not answer in time", body = ErrorBody),
    ))]
async fn chat(
    State(service): State<Chat>,
    CurrentUser(caller): CurrentUser,
    Json(request): Json<ChatRequest>,
) -> Result<Json<Answer>> {
    Ok(Json(service.answer(&caller, &request).await?))
}

/// The caller's AI token budget this month: what was used and is reserved, the limit (their
/// tier's, or their team's pool), when it resets, and what each model was charged. No message
/// content: counts only.
#[adiuva_http::route(get, path = "/api/v1/chat/usage", tag = "chat",
    responses(
        (status = 200, description = "This month's budget", body = AiUsage),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
async fn usage(
    State(service): State<Chat>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<AiUsage>> {
    Ok(Json(service.budgets().usage(&caller).await?))
}

/// The four agents the router chooses from: name, description and the names of their tools
/// (no prompt text, no tool schemas).
#[adiuva_http::route(get, path = "/api/v1/chat/agents", tag = "chat",
    responses(
        (status = 200, description = "The agents, in the router's order", body = [AgentInfo]),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
async fn agents(CurrentUser(_caller): CurrentUser) -> Json<Vec<AgentInfo>> {
    Json(agent_infos())
}

/// A resumable stream's stored frames after a point.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamFrames {
    /// The frames after `after`, in order, as the WebSocket sent them (`start`, `delta`s,
    /// `done`), each with its `seq`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub frames: Vec<Value>,
    /// The last frame (`type: done`) is among the stored ones: nothing more will come.
    pub done: bool,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct StreamFramesQuery {
    /// Only the frames with a `seq` above this one (default: every frame).
    #[cfg_attr(feature = "openapi", param(value_type = i64, required = false, minimum = 0))]
    pub after: Option<u64>,
}

/// The stored frames of one of the caller's resumable streams (`"resumable": true` on the
/// chat WebSocket), kept 15 minutes: for clients that poll instead of resuming.
#[adiuva_http::route(get, path = "/api/v1/chat/streams/{id}", tag = "chat",
    params(("id" = String, Path, description = "The stream id of the `start` frame"), StreamFramesQuery),
    responses(
        (status = 200, description = "The frames after `after`", body = StreamFrames),
        (status = 400, description = "`after` is not a number", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such stream of yours, or it expired (`not_found`)", body = ErrorBody),
        (status = 503, description = "The stream store is unavailable", body = ErrorBody),
    ))]
async fn stream_frames(
    State(service): State<Chat>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
    Query(query): Query<StreamFramesQuery>,
) -> Result<Json<StreamFrames>> {
    let page = service.streams().page(&caller.id, &id, query.after).await?;
    Ok(Json(StreamFrames {
        frames: page.frames,
        done: page.done,
    }))
}

/// Cancels one of the caller's resumable streams: the generation stops within a second and
/// the stream's last frame is `{"type":"done","cancelled":true}`. An ended stream stays as it
/// is.
#[adiuva_http::route(delete, path = "/api/v1/chat/streams/{id}", tag = "chat",
    params(("id" = String, Path, description = "The stream id of the `start` frame")),
    responses(
        (status = 204, description = "Cancel requested"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such stream of yours, or it expired (`not_found`)", body = ErrorBody),
        (status = 503, description = "The stream store is unavailable", body = ErrorBody),
    ))]
async fn cancel_stream(
    State(service): State<Chat>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    service.streams().cancel(&caller.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
