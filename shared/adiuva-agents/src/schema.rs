//! The chat contract the Electron client speaks (reference: `ChatRequest`, `ChatContext`,
//! `ChatResponse`, `PlanAction`), with the request limits.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 16_000;
/// Most entries of `conversation_history`, `recent_tasks` and `relevant_documents` each.
pub const MAX_CONTEXT_ITEMS: usize = 200;
/// Largest serialized context, in bytes: what the agents may put in front of the model.
pub const MAX_CONTEXT_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionMode {
    /// Run the agents and answer with a `ChatResponse`.
    #[default]
    Direct,
    /// Answer with an `ExecutionPlan` that names prompt templates by id.
    Plan,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChatRequest {
    /// What the user wrote: not blank, at most 16000 characters (longer is 413, so the bound
    /// is not a `maxLength`: schema validators expect a violation to be a 400 or 422).
    #[schema(
        pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub message: String,
    /// Serialized, at most 256 KiB (more is 413).
    #[serde(default)]
    pub context: ChatContext,
    #[serde(default)]
    pub execution_mode: ExecutionMode,
}

/// What the client knows and sends along: the server holds no task data, so the agents' read
/// tools answer from here. Besides the reference's four fields, the client may send `projects`,
/// `timelines`, `notes` and `task_comments` lists, which the corresponding read tools use.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ChatContext {
    #[serde(default)]
    #[schema(value_type = Object)]
    pub user_profile: Map<String, Value>,
    /// At most 200.
    #[serde(default)]
    #[schema(max_items = 200)]
    pub relevant_documents: Vec<String>,
    /// The user's recent tasks (objects; other values are ignored), at most 200.
    #[serde(default)]
    #[schema(value_type = Vec<Value>, max_items = 200)]
    pub recent_tasks: Vec<Value>,
    /// Earlier turns, `{"role": "user" | "assistant", "content": "..."}` (other values are
    /// ignored); at most 200.
    #[serde(default)]
    #[schema(value_type = Vec<Value>, max_items = 200)]
    pub conversation_history: Vec<Value>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: Map<String, Value>,
}

impl ChatContext {
    /// A list the client sent under `key` (`projects`, `notes`, ...), empty when absent.
    pub fn list(&self, key: &str) -> &[Value] {
        match self.extra.get(key) {
            Some(Value::Array(items)) => items,
            _ => &[],
        }
    }
}

/// What the client applies locally (reference: `PlanAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    CreateRecord,
    UpdateRecord,
    DeleteRecord,
    IndexDocument,
    SendNotification,
    CallAgent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlanAction {
    #[serde(rename = "type")]
    pub kind: ActionType,
    pub table: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    pub agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatResponse {
    pub response: String,
    pub actions: Vec<PlanAction>,
}

/// Why a request is refused before any model is called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("message must not be empty")]
    EmptyMessage,
    #[error("message is longer than {MAX_MESSAGE_CHARS} characters")]
    MessageTooLong,
    #[error("context.{0} has more than {MAX_CONTEXT_ITEMS} entries")]
    TooManyItems(&'static str),
    #[error("the context is larger than {MAX_CONTEXT_BYTES} bytes")]
    ContextTooLarge,
}

impl adiuva_error::DomainError for RequestError {
    /// Sizes are 413, shapes 422.
    fn kind(&self) -> adiuva_error::ErrorKind {
        match self {
            Self::MessageTooLong | Self::ContextTooLarge => adiuva_error::ErrorKind::TooLarge,
            Self::EmptyMessage | Self::TooManyItems(_) => adiuva_error::ErrorKind::Invalid,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::MessageTooLong | Self::ContextTooLarge => "payload_too_large",
            Self::EmptyMessage | Self::TooManyItems(_) => "invalid_chat_request",
        }
    }
}

impl ChatRequest {
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.message.trim().is_empty() {
            return Err(RequestError::EmptyMessage);
        }
        if self.message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(RequestError::MessageTooLong);
        }
        let context = &self.context;
        for (name, len) in [
            ("conversation_history", context.conversation_history.len()),
            ("recent_tasks", context.recent_tasks.len()),
            ("relevant_documents", context.relevant_documents.len()),
        ] {
            if len > MAX_CONTEXT_ITEMS {
                return Err(RequestError::TooManyItems(name));
            }
        }
        let size = serde_json::to_vec(context).map_or(usize::MAX, |bytes| bytes.len());
        if size > MAX_CONTEXT_BYTES {
            return Err(RequestError::ContextTooLarge);
        }
        Ok(())
    }
}
