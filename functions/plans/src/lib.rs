//! Plans function: the execution-plan playbooks under `/api/v1/plans/playbook`. A playbook is a
//! named, reusable plan whose LLM steps name server-side prompt templates by id only. Playbooks
//! live in the shared short-lived store, so every instance answers the same; the built-in ones
//! are written there on the first request a process serves (not at cold start).

use std::sync::Arc;

use adiuva_config::{ConfigError, Context};
#[cfg(feature = "openapi")]
use adiuva_http::ErrorBody;
use adiuva_http::{ApiError, Function, Json, Path, Result, Routes, routes};
use adiuva_plans::{ExecutionPlan, PlanCache};
use axum::extract::State as AxumState;
use tokio::sync::OnceCell;

/// Longest plan id looked up; longer ones (or other characters) cannot exist, so they are 404.
const MAX_PLAN_ID_LEN: usize = 128;

#[derive(Debug, Clone)]
struct State {
    plans: PlanCache,
    /// Set once the built-in playbooks are in the store. Per process, shared by the clones of
    /// the state; a failed attempt leaves it unset, so the next request tries again.
    builtins_ready: Arc<OnceCell<()>>,
}

impl State {
    fn new(plans: PlanCache) -> Self {
        Self {
            plans,
            builtins_ready: Arc::new(OnceCell::new()),
        }
    }

    /// The playbook cache, with the built-in playbooks written on first use.
    async fn plans(&self) -> Result<&PlanCache> {
        self.builtins_ready
            .get_or_try_init(|| self.plans.ensure_builtin_playbooks())
            .await?;
        Ok(&self.plans)
    }
}

/// Every route needs a signed-in caller, whose tier does not matter here.
pub fn function(context: &Context) -> Result<Function, ConfigError> {
    let routes = Routes::new()
        .routes(routes!(list_playbooks))
        .routes(routes!(get_playbook))
        .with_state(State::new(PlanCache::new(context.get()?)));
    adiuva_pipeline::authenticated("plans", routes, context)
}

fn is_plan_id(plan_id: &str) -> bool {
    !plan_id.is_empty()
        && plan_id.len() <= MAX_PLAN_ID_LEN
        && plan_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// Every playbook, sorted by id. LLM steps name prompt templates by id; prompts stay on the
/// server.
#[adiuva_http::route(get, path = "/api/v1/plans/playbook", tag = "plans",
    responses(
        (status = 200, description = "The playbooks", body = [ExecutionPlan]),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 503, description = "The plan store is unavailable", body = ErrorBody),
    ))]
async fn list_playbooks(AxumState(state): AxumState<State>) -> Result<Json<Vec<ExecutionPlan>>> {
    let playbooks = state.plans().await?.get_all_playbooks().await?;
    Ok(Json(playbooks))
}

/// One playbook by id.
#[adiuva_http::route(get, path = "/api/v1/plans/playbook/{plan_id}", tag = "plans",
    params(("plan_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$",
        description = "The playbook's id, e.g. create_tasks_from_project: 1 to 128 ASCII letters, digits, `_` or `-` (no other id exists)")),
    responses(
        (status = 200, description = "The playbook", body = ExecutionPlan),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No playbook has this id", body = ErrorBody),
        (status = 503, description = "The plan store is unavailable", body = ErrorBody),
    ))]
async fn get_playbook(
    AxumState(state): AxumState<State>,
    Path(plan_id): Path<String>,
) -> Result<Json<ExecutionPlan>> {
    let not_found = || ApiError::not_found("playbook not found");
    if !is_plan_id(&plan_id) {
        return Err(not_found());
    }
    state
        .plans()
        .await?
        .get_plan(&plan_id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_ids_are_short_and_plain() {
        assert!(is_plan_id("create_tasks_from_project"));
        assert!(is_plan_id("a-B_9"));
        assert!(!is_plan_id(""));
        assert!(!is_plan_id("../etc"));
        assert!(!is_plan_id("with space"));
        assert!(!is_plan_id(&"x".repeat(MAX_PLAN_ID_LEN + 1)));
    }
}
