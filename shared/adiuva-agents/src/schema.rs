//! The chat contract the Electron client speaks (reference: `ChatRequest`, `ChatContext`,
//! `ChatResponse`, `PlanAction`), with the request limits.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Number, Value};

/// Longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 16_000;
/// Most entries of `conversation_history`, `recent_tasks` and `relevant_documents` each.
pub const MAX_CONTEXT_ITEMS: usize = 200;
/// Largest serialized context, in bytes: what the agents may put in front of the model.
pub const MAX_CONTEXT_BYTES: usize = 256 * 1024;
/// Most memory a parsed context may take, estimated while it is parsed. A context within
/// [`MAX_CONTEXT_BYTES`] of ordinary entries (tasks, notes: a few fields of text) takes a few
/// MiB; only one made of thousands of tiny objects (a `serde_json::Value` object costs a
/// B-tree node, about 640 bytes, for a few bytes of JSON) reaches this, and is refused like an
/// oversized one (413). Without it, 256 KiB of `{"a":1}` would take 22 MiB.
pub const MAX_CONTEXT_MEMORY: usize = 12 * 1024 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExecutionMode {
    /// Run the agents and answer with a `ChatResponse`.
    #[default]
    Direct,
    /// Answer with an `ExecutionPlan` that names prompt templates by id.
    Plan,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatRequest {
    /// What the user wrote: not blank, at most 16000 characters (longer is 413, so the bound
    /// is not a `maxLength`: schema validators expect a violation to be a 400 or 422).
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )
    )]
    pub message: String,
    /// Serialized, at most 256 KiB (more is 413). Read within its bounds: a context of tens of
    /// thousands of tiny values (about 12 MiB once parsed) is refused the same way.
    #[serde(default)]
    pub context: ChatContext,
    #[serde(default)]
    pub execution_mode: ExecutionMode,
    /// On the chat WebSocket: number and store the frames so that the stream can be resumed
    /// on a new connection and cancelled (the README's chat section). `POST /api/v1/chat`
    /// ignores it.
    #[serde(default)]
    pub resumable: bool,
}

/// What the client knows and sends along: the server holds no task data, so the agents' read
/// tools answer from here. Besides the reference's four fields, the client may send `projects`,
/// `timelines`, `notes` and `task_comments` lists, which the corresponding read tools use.
///
/// The context is parsed with its bounds applied while it is read (see
/// [`ChatContext::deserialize`]): a list past [`MAX_CONTEXT_ITEMS`] or a context past
/// [`MAX_CONTEXT_BYTES`] (or [`MAX_CONTEXT_MEMORY`]) stops growing at once, the rest of the body
/// is only skipped, and [`ChatRequest::validate`] refuses it as it always did. No client array
/// of any length becomes a tree in memory.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatContext {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub user_profile: Map<String, Value>,
    /// At most 200.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 200))]
    pub relevant_documents: Vec<String>,
    /// The user's recent tasks (objects; other values are ignored), at most 200.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Value>, max_items = 200))]
    pub recent_tasks: Vec<Value>,
    /// Earlier turns, `{"role": "user" | "assistant", "content": "..."}` (other values are
    /// ignored); at most 200.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Value>, max_items = 200))]
    pub conversation_history: Vec<Value>,
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub extra: Map<String, Value>,
    /// What the parse stopped at, for [`ChatRequest::validate`] to refuse.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    overflow: Overflow,
}

/// The bounds a parsed context went past (the parse kept nothing beyond them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Overflow {
    /// The first list that had more than [`MAX_CONTEXT_ITEMS`] entries.
    too_many: Option<&'static str>,
    /// Past [`MAX_CONTEXT_BYTES`] serialized or [`MAX_CONTEXT_MEMORY`] in memory.
    too_large: bool,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    CreateRecord,
    UpdateRecord,
    DeleteRecord,
    IndexDocument,
    SendNotification,
    /// Another agent asked a sub-question (`agent`, `data.question`): run by the server
    /// itself (the `call_agent` tool), so a chat's answer never carries one.
    CallAgent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanAction {
    #[serde(rename = "type")]
    pub kind: ActionType,
    pub table: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub data: Option<Value>,
    pub agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
        if let Some(name) = context.overflow.too_many {
            return Err(RequestError::TooManyItems(name));
        }
        for (name, len) in [
            ("conversation_history", context.conversation_history.len()),
            ("recent_tasks", context.recent_tasks.len()),
            ("relevant_documents", context.relevant_documents.len()),
        ] {
            if len > MAX_CONTEXT_ITEMS {
                return Err(RequestError::TooManyItems(name));
            }
        }
        if context.overflow.too_large {
            return Err(RequestError::ContextTooLarge);
        }
        let size = serde_json::to_vec(context).map_or(usize::MAX, |bytes| bytes.len());
        if size > MAX_CONTEXT_BYTES {
            return Err(RequestError::ContextTooLarge);
        }
        Ok(())
    }
}

/// What a context costs while it is parsed: a lower bound of its serialized size (each value
/// at least as many bytes as it has when written back, so passing [`MAX_CONTEXT_BYTES`] here
/// means the serialized check would refuse it too) and an estimate of the memory its values
/// take.
#[derive(Debug, Default)]
struct Budget {
    serialized: usize,
    memory: usize,
    /// Set once either bound is passed: from then on nothing is kept.
    exceeded: bool,
}

/// `serde_json::Value` is 32 bytes; a `String` or `Vec` adds its heap block.
const VALUE_BYTES: usize = 32;
/// A `BTreeMap` leaf node of `String` keys and `Value`s (11 of each, plus the header).
const MAP_NODE_BYTES: usize = 640;
/// Per heap block: the allocator's header and rounding.
const BLOCK_BYTES: usize = 16;

impl Budget {
    /// Charges a value; false once over a bound.
    fn charge(&mut self, serialized: usize, memory: usize) -> bool {
        self.serialized = self.serialized.saturating_add(serialized);
        self.memory = self.memory.saturating_add(memory);
        if self.serialized > MAX_CONTEXT_BYTES || self.memory > MAX_CONTEXT_MEMORY {
            self.exceeded = true;
        }
        !self.exceeded
    }

    fn string(&mut self, text: &str) -> bool {
        self.charge(text.len() + 2, text.len() + BLOCK_BYTES)
    }
}

/// A JSON value kept only while the budget lasts; past it, `null` is returned and the rest of
/// the value is skipped without allocating. Depth is bounded by serde_json's recursion limit.
struct BoundedValue<'a> {
    budget: &'a mut Budget,
}

impl<'de> DeserializeSeed<'de> for BoundedValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BoundedValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        self.budget.charge(4, 0);
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        self.budget.charge(4, 0);
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        self.budget.charge(1, 0);
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        self.budget.charge(1, 0);
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        self.budget.charge(1, 0);
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(if self.budget.string(value) {
            Value::String(value.to_owned())
        } else {
            Value::Null
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        self.budget.charge(2, BLOCK_BYTES);
        while !self.budget.exceeded {
            let separator = usize::from(!items.is_empty());
            if !self.budget.charge(separator, VALUE_BYTES) {
                break;
            }
            match seq.next_element_seed(BoundedValue {
                budget: &mut *self.budget,
            })? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
        drop(items);
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        self.budget.charge(2, 0);
        while !self.budget.exceeded {
            let Some(key) = map.next_key::<BoundedKey>()? else {
                return Ok(Value::Object(fields));
            };
            // Each eleventh entry starts a new B-tree node.
            let node = if fields.len().is_multiple_of(11) {
                MAP_NODE_BYTES
            } else {
                0
            };
            let separator = usize::from(!fields.is_empty());
            if !self.budget.charge(
                key.0.len() + 3 + separator,
                key.0.len() + BLOCK_BYTES + node,
            ) {
                map.next_value::<IgnoredAny>()?;
                break;
            }
            let value = map.next_value_seed(BoundedValue {
                budget: &mut *self.budget,
            })?;
            fields.insert(key.0, value);
        }
        drop(fields);
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }
}

/// An object's key. Keys are at most as long as the body (itself bounded), and each is
/// charged before its value is read.
struct BoundedKey(String);

impl<'de> Deserialize<'de> for BoundedKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// A list of the context: at most [`MAX_CONTEXT_ITEMS`] entries are kept; one more marks the
/// list as too long and the rest is skipped.
struct BoundedList<'a, T> {
    name: &'static str,
    budget: &'a mut Budget,
    overflow: &'a mut Overflow,
    item: fn(&mut Budget) -> ItemSeed<'_, T>,
}

/// Reads one entry of a list.
struct ItemSeed<'a, T> {
    budget: &'a mut Budget,
    /// The entry's value, and whether the budget ran out while it was read (its value is then
    /// `null`, whatever it was).
    read: fn(Value, bool) -> Result<T, &'static str>,
}

impl<'de, T> DeserializeSeed<'de> for ItemSeed<'_, T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        let budget = self.budget;
        let value = BoundedValue {
            budget: &mut *budget,
        }
        .deserialize(deserializer)?;
        (self.read)(value, budget.exceeded).map_err(de::Error::custom)
    }
}

impl<'de, T> DeserializeSeed<'de> for BoundedList<'_, T> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T> Visitor<'de> for BoundedList<'_, T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of at most {MAX_CONTEXT_ITEMS} entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::new();
        self.budget.charge(2, 0);
        while !self.budget.exceeded {
            if items.len() == MAX_CONTEXT_ITEMS {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    self.overflow.too_many.get_or_insert(self.name);
                    break;
                }
                return Ok(items);
            }
            let separator = usize::from(!items.is_empty());
            if !self.budget.charge(separator, VALUE_BYTES) {
                break;
            }
            match seq.next_element_seed((self.item)(&mut *self.budget))? {
                Some(item) => items.push(item),
                None => return Ok(items),
            }
        }
        items.clear();
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(items)
    }
}

fn any_value(budget: &mut Budget) -> ItemSeed<'_, Value> {
    ItemSeed {
        budget,
        read: |value, _| Ok(value),
    }
}

fn document(budget: &mut Budget) -> ItemSeed<'_, String> {
    ItemSeed {
        budget,
        read: |value, exceeded| match value {
            Value::String(text) => Ok(text),
            // Past the budget the text was not kept; the context is refused as too large.
            Value::Null if exceeded => Ok(String::new()),
            _ => Err("relevant_documents must hold strings"),
        },
    }
}

impl<'de> Deserialize<'de> for ChatContext {
    /// The derived reading, with the bounds applied while reading: see [`ChatContext`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ContextVisitor)
    }
}

struct ContextVisitor;

impl<'de> Visitor<'de> for ContextVisitor {
    type Value = ChatContext;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a chat context (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChatContext, A::Error> {
        let mut context = ChatContext::default();
        let mut budget = Budget::default();
        let mut seen = Vec::new();
        budget.charge(2, 0);
        while let Some(key) = map.next_key::<BoundedKey>()? {
            let key = key.0;
            if budget.exceeded {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let known = matches!(
                key.as_str(),
                "user_profile" | "relevant_documents" | "recent_tasks" | "conversation_history"
            );
            if known && seen.contains(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate field `{}`",
                    key.escape_debug().take(64).collect::<String>()
                )));
            }
            budget.charge(key.len() + 4, key.len() + BLOCK_BYTES);
            match key.as_str() {
                "user_profile" => match map.next_value_seed(BoundedValue {
                    budget: &mut budget,
                })? {
                    Value::Object(fields) => context.user_profile = fields,
                    Value::Null if budget.exceeded => {}
                    _ => return Err(de::Error::custom("user_profile must be an object")),
                },
                "relevant_documents" => {
                    context.relevant_documents = map.next_value_seed(BoundedList {
                        name: "relevant_documents",
                        budget: &mut budget,
                        overflow: &mut context.overflow,
                        item: document,
                    })?;
                }
                "recent_tasks" | "conversation_history" => {
                    let name = if key == "recent_tasks" {
                        "recent_tasks"
                    } else {
                        "conversation_history"
                    };
                    let list = map.next_value_seed(BoundedList {
                        name,
                        budget: &mut budget,
                        overflow: &mut context.overflow,
                        item: any_value,
                    })?;
                    if name == "recent_tasks" {
                        context.recent_tasks = list;
                    } else {
                        context.conversation_history = list;
                    }
                }
                _ => {
                    let value = map.next_value_seed(BoundedValue {
                        budget: &mut budget,
                    })?;
                    // A repeated key replaces the earlier one, as the derived reading did.
                    context.extra.insert(key, value);
                    continue;
                }
            }
            if known {
                seen.push(key);
            }
        }
        if budget.exceeded {
            // Nothing of it is used: the request is refused.
            context = ChatContext::default();
            context.overflow.too_large = true;
        }
        Ok(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(context: &str) -> ChatRequest {
        serde_json::from_str(&format!(r#"{{"message": "hi", "context": {context}}}"#)).unwrap()
    }

    #[test]
    fn a_valid_context_reads_as_the_derived_reading_did() {
        let context = json!({
            "user_profile": {"name": "Ada", "tz": "Europe/Berlin"},
            "relevant_documents": ["one", "two"],
            "recent_tasks": [{"id": "t1", "title": "Buy milk", "tags": ["home", 1, null, 2.5]}],
            "conversation_history": [{"role": "user", "content": "hello"}],
            "projects": [{"id": "p1", "name": "House"}],
            "notes": "not a list",
        });
        let parsed = request(&context.to_string());
        assert_eq!(parsed.validate(), Ok(()));
        assert_eq!(serde_json::to_value(&parsed.context).unwrap(), context);
        assert_eq!(parsed.context.list("projects").len(), 1);
        assert!(parsed.context.list("notes").is_empty());
        let empty: ChatRequest = serde_json::from_str(r#"{"message": "hi"}"#).unwrap();
        assert_eq!(
            serde_json::to_value(&empty.context).unwrap(),
            json!({"user_profile": {}, "relevant_documents": [], "recent_tasks": [], "conversation_history": []})
        );
    }

    #[test]
    fn shapes_are_still_checked() {
        for bad in [
            r#"{"relevant_documents": [1]}"#,
            r#"{"relevant_documents": [null]}"#,
            r#"{"user_profile": []}"#,
            r#"{"recent_tasks": {}}"#,
            r#"[]"#,
            r#"{"recent_tasks": [], "recent_tasks": []}"#,
        ] {
            let text = format!(r#"{{"message": "hi", "context": {bad}}}"#);
            assert!(serde_json::from_str::<ChatRequest>(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_stop_at_their_bound_and_are_refused() {
        let history = vec![json!({"role": "user", "content": "a"}); MAX_CONTEXT_ITEMS + 1];
        let parsed = request(&json!({"conversation_history": history}).to_string());
        assert_eq!(
            parsed.validate(),
            Err(RequestError::TooManyItems("conversation_history"))
        );
        assert!(parsed.context.conversation_history.len() <= MAX_CONTEXT_ITEMS);
        let exactly = vec![json!("d"); MAX_CONTEXT_ITEMS];
        let parsed = request(&json!({"relevant_documents": exactly}).to_string());
        assert_eq!(parsed.validate(), Ok(()));
    }

    /// A 3.6 MiB array of small objects keeps at most the budget's worth of values: the
    /// parse stops keeping anything once the estimate passes a bound.
    #[test]
    fn a_huge_array_of_small_objects_is_not_kept() {
        let items = r#"{"a":1},"#.repeat(450_000);
        let text = format!(r#"{{"projects": [{}{{"a":1}}]}}"#, items);
        assert!(text.len() > 3_600_000);
        let parsed = request(&text);
        assert_eq!(parsed.validate(), Err(RequestError::ContextTooLarge));
        assert!(parsed.context.extra.is_empty());

        // The budget stops the tree at its bound: count what a bounded parse keeps before it
        // gives up.
        let mut budget = Budget::default();
        let mut deserializer = serde_json::Deserializer::from_str(&text[13..text.len() - 1]);
        let value = BoundedValue {
            budget: &mut budget,
        }
        .deserialize(&mut deserializer)
        .unwrap();
        assert_eq!(value, Value::Null);
        assert!(budget.exceeded);
        assert!(budget.memory <= MAX_CONTEXT_MEMORY + MAP_NODE_BYTES + 64);
        // At most this many objects were ever built (each charged a B-tree node).
        assert!(budget.memory / MAP_NODE_BYTES < 20_000);
    }

    #[test]
    fn a_context_over_the_serialized_bound_is_refused_as_too_large() {
        let documents = vec!["y".repeat(100_000); 3];
        let parsed = request(&json!({"relevant_documents": documents}).to_string());
        assert_eq!(parsed.validate(), Err(RequestError::ContextTooLarge));
        assert!(parsed.context.relevant_documents.is_empty());
        // Just under the bound, with escapes, still passes as before.
        let near = vec!["\"q".repeat(10_000); 8];
        let parsed = request(&json!({"notes": near}).to_string());
        assert_eq!(parsed.validate(), Ok(()));
    }
}
