//! The JSON frames that end a chat stream, the same on the local WebSocket and the `chat-ws`
//! Lambda. Text chunks before them are sent as they are.

use adiuva_agents::Answer;
use adiuva_error::Public;
use serde_json::json;

/// `{"done": true, "response": ..., "actions": [...]}`; in plan mode the response is empty and
/// the plan is under `plan`.
pub fn done(answer: &Answer) -> String {
    done_value(answer).to_string()
}

/// [`done`] as a JSON object (the resumable protocol adds `type` and `seq`).
pub fn done_value(answer: &Answer) -> serde_json::Value {
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
}

/// `{"done": true, "error": {"status", "code", "detail"}}`, plus `resets_at` (ms) when a
/// spent allowance comes back then (402 `ai_budget_exhausted`).
pub fn error(public: &Public) -> String {
    error_value(public).to_string()
}

/// [`error`] as a JSON object.
pub fn error_value(public: &Public) -> serde_json::Value {
    let mut error = json!({
        "status": public.status(),
        "code": public.code,
        "detail": public.detail,
    });
    if let Some(resets_at) = public.resets_at {
        error["resets_at"] = json!(resets_at);
    }
    json!({"done": true, "error": error})
}
