//! The agents' tools, exactly the reference's names and parameters. One declaration per tool
//! gives both the JSON schema the model sees and the validation its arguments pass before
//! anything runs. Read tools answer from the request's context (the server holds no task data);
//! write tools return a [`PlanAction`] the client applies.

use adiuva_llm::ToolSpec;
use serde_json::{Map, Value, json};

use crate::schema::{ActionType, ChatContext, PlanAction};

/// Longest string argument the tools accept.
const MAX_STRING_CHARS: usize = 20_000;
/// Most items a read tool returns to the model.
const MAX_LISTED: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    /// A record id: a string or an integer (the client's SQLite ids).
    Id,
    Integer,
    Boolean,
    OneOf(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub description: &'static str,
}

const fn req(name: &'static str, kind: Kind, description: &'static str) -> Param {
    Param {
        name,
        kind,
        required: true,
        description,
    }
}

const fn opt(name: &'static str, kind: Kind, description: &'static str) -> Param {
    Param {
        name,
        kind,
        required: false,
        description,
    }
}

/// What calling a tool does.
#[derive(Debug, Clone, Copy)]
pub enum Effect {
    /// Answers from the context.
    Read(fn(&Map<String, Value>, &ChatContext) -> Value),
    /// Describes a change of `table` for the client to apply. For updates and deletes, `id`
    /// names the argument holding the record id, which goes into `data.id`.
    Write {
        action: ActionType,
        table: &'static str,
        id: Option<&'static str>,
    },
    /// Hands a sub-question to another agent: a `call_agent` [`PlanAction`] that the
    /// orchestrator runs itself (the other agent's tool loop) and answers to the model with
    /// that agent's answer; it never reaches the client.
    CallAgent,
}

#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub name: &'static str,
    pub description: &'static str,
    pub params: &'static [Param],
    pub effect: Effect,
}

pub const TASK_STATUSES: &[&str] = &["todo", "in_progress", "done"];
pub const PRIORITIES: &[&str] = &["high", "medium", "low"];
pub const PROJECT_STATUSES: &[&str] = &["active", "archived"];
const TASK_ORDER: &[&str] = &["due_date", "priority", "created_at", "updated_at", "title"];

const STATUS: Kind = Kind::OneOf(TASK_STATUSES);
const PRIORITY: Kind = Kind::OneOf(PRIORITIES);
const MS: &str = "Unix timestamp in milliseconds; -1 leaves it unchanged on update";

pub const TASK_TOOLS: &[Tool] = &[
    Tool {
        name: "list_tasks",
        description: "List the user's tasks, optionally filtered by project, status or a search text.",
        params: &[
            opt("project_id", Kind::Id, "Only tasks of this project"),
            opt("status", STATUS, "Only tasks with this status"),
            opt(
                "search",
                Kind::String,
                "Text to find in the title or description",
            ),
            opt("order_by", Kind::OneOf(TASK_ORDER), "Sort key"),
        ],
        effect: Effect::Read(list_tasks),
    },
    Tool {
        name: "create_task",
        description: "Create a task.",
        params: &[
            req("title", Kind::String, "Short title"),
            opt("description", Kind::String, "Details"),
            opt("status", STATUS, "Defaults to todo"),
            opt("priority", PRIORITY, "Defaults to medium"),
            opt(
                "assignees",
                Kind::String,
                "JSON-encoded list of assignee names",
            ),
            opt("due_date", Kind::Integer, MS),
            opt("project_id", Kind::Id, "Project the task belongs to"),
            opt(
                "is_ai_suggested",
                Kind::Boolean,
                "True when the assistant proposes the task",
            ),
            opt(
                "is_approved",
                Kind::Boolean,
                "True once the user approved it",
            ),
        ],
        effect: Effect::Write {
            action: ActionType::CreateRecord,
            table: "tasks",
            id: None,
        },
    },
    Tool {
        name: "update_task",
        description: "Update fields of an existing task; omitted fields stay as they are.",
        params: &[
            req("task_id", Kind::Id, "The task to update"),
            opt("title", Kind::String, "New title"),
            opt("description", Kind::String, "New details"),
            opt("status", STATUS, "New status"),
            opt("priority", PRIORITY, "New priority"),
            opt(
                "assignees",
                Kind::String,
                "JSON-encoded list of assignee names",
            ),
            opt("due_date", Kind::Integer, MS),
            opt("project_id", Kind::Id, "Move the task to this project"),
            opt(
                "is_ai_suggested",
                Kind::Boolean,
                "Whether the assistant proposed it",
            ),
            opt("is_approved", Kind::Boolean, "Whether the user approved it"),
        ],
        effect: Effect::Write {
            action: ActionType::UpdateRecord,
            table: "tasks",
            id: Some("task_id"),
        },
    },
    Tool {
        name: "delete_task",
        description: "Delete a task.",
        params: &[req("task_id", Kind::Id, "The task to delete")],
        effect: Effect::Write {
            action: ActionType::DeleteRecord,
            table: "tasks",
            id: Some("task_id"),
        },
    },
    Tool {
        name: "list_tasks_due_today",
        description: "List the open tasks due today.",
        params: &[],
        effect: Effect::Read(list_tasks_due_today),
    },
    Tool {
        name: "list_task_comments",
        description: "List the comments of a task.",
        params: &[req("task_id", Kind::Id, "The task")],
        effect: Effect::Read(list_task_comments),
    },
    Tool {
        name: "add_task_comment",
        description: "Add a comment to a task.",
        params: &[
            req("task_id", Kind::Id, "The task"),
            req("author", Kind::String, "Who writes the comment"),
            req("content", Kind::String, "The comment"),
        ],
        effect: Effect::Write {
            action: ActionType::CreateRecord,
            table: "task_comments",
            id: None,
        },
    },
    Tool {
        name: "delete_task_comment",
        description: "Delete a comment.",
        params: &[req("comment_id", Kind::Id, "The comment to delete")],
        effect: Effect::Write {
            action: ActionType::DeleteRecord,
            table: "task_comments",
            id: Some("comment_id"),
        },
    },
];

pub const PROJECT_TOOLS: &[Tool] = &[
    Tool {
        name: "list_projects",
        description: "List projects, optionally of one client; archived ones only when asked.",
        params: &[
            opt("client_id", Kind::Id, "Only projects of this client"),
            opt(
                "include_archived",
                Kind::Boolean,
                "Also list archived projects",
            ),
        ],
        effect: Effect::Read(list_projects),
    },
    Tool {
        name: "list_all_projects",
        description: "List every project, archived ones included.",
        params: &[],
        effect: Effect::Read(list_all_projects),
    },
    Tool {
        name: "get_project",
        description: "Get one project.",
        params: &[req("project_id", Kind::Id, "The project")],
        effect: Effect::Read(get_project),
    },
    Tool {
        name: "create_project",
        description: "Create a project.",
        params: &[
            req("name", Kind::String, "Project name"),
            opt("client_id", Kind::Id, "Client the project is for"),
        ],
        effect: Effect::Write {
            action: ActionType::CreateRecord,
            table: "projects",
            id: None,
        },
    },
    Tool {
        name: "update_project",
        description: "Update a project; set status to archived to archive it.",
        params: &[
            req("project_id", Kind::Id, "The project"),
            opt("name", Kind::String, "New name"),
            opt("client_id", Kind::Id, "New client"),
            opt(
                "status",
                Kind::OneOf(PROJECT_STATUSES),
                "active or archived",
            ),
        ],
        effect: Effect::Write {
            action: ActionType::UpdateRecord,
            table: "projects",
            id: Some("project_id"),
        },
    },
    Tool {
        name: "delete_project",
        description: "Delete a project permanently. Only when the user explicitly asks to delete; otherwise archive it with update_project.",
        params: &[req("project_id", Kind::Id, "The project")],
        effect: Effect::Write {
            action: ActionType::DeleteRecord,
            table: "projects",
            id: Some("project_id"),
        },
    },
];

pub const TIMELINE_TOOLS: &[Tool] = &[
    Tool {
        name: "list_timelines",
        description: "List the milestones of a project.",
        params: &[req("project_id", Kind::Id, "The project")],
        effect: Effect::Read(list_timelines),
    },
    Tool {
        name: "create_timeline",
        description: "Create a milestone in a project.",
        params: &[
            req("project_id", Kind::Id, "The project (required)"),
            req("title", Kind::String, "Milestone title"),
            req("date", Kind::Integer, "Unix timestamp in milliseconds"),
            opt(
                "is_ai_suggested",
                Kind::Boolean,
                "True when the assistant proposes it",
            ),
            opt(
                "is_approved",
                Kind::Boolean,
                "True once the user approved it",
            ),
        ],
        effect: Effect::Write {
            action: ActionType::CreateRecord,
            table: "timelines",
            id: None,
        },
    },
    Tool {
        name: "update_timeline",
        description: "Update a milestone; omitted fields stay as they are.",
        params: &[
            req("timeline_id", Kind::Id, "The milestone"),
            opt("title", Kind::String, "New title"),
            opt("date", Kind::Integer, MS),
            opt(
                "is_ai_suggested",
                Kind::Boolean,
                "Whether the assistant proposed it",
            ),
            opt("is_approved", Kind::Boolean, "Whether the user approved it"),
        ],
        effect: Effect::Write {
            action: ActionType::UpdateRecord,
            table: "timelines",
            id: Some("timeline_id"),
        },
    },
    Tool {
        name: "delete_timeline",
        description: "Delete a milestone.",
        params: &[req("timeline_id", Kind::Id, "The milestone")],
        effect: Effect::Write {
            action: ActionType::DeleteRecord,
            table: "timelines",
            id: Some("timeline_id"),
        },
    },
];

pub const NOTE_TOOLS: &[Tool] = &[
    Tool {
        name: "list_notes",
        description: "List notes, optionally of one project.",
        params: &[opt("project_id", Kind::Id, "Only notes of this project")],
        effect: Effect::Read(list_notes),
    },
    Tool {
        name: "get_note",
        description: "Get one note with its content; call it before update_note to keep the existing content.",
        params: &[req("note_id", Kind::Id, "The note")],
        effect: Effect::Read(get_note),
    },
    Tool {
        name: "create_note",
        description: "Create a Markdown note.",
        params: &[
            req("title", Kind::String, "Title"),
            req("content", Kind::String, "Markdown content"),
            opt("project_id", Kind::Id, "Project the note belongs to"),
        ],
        effect: Effect::Write {
            action: ActionType::CreateRecord,
            table: "notes",
            id: None,
        },
    },
    Tool {
        name: "update_note",
        description: "Update a note; omitted fields stay as they are.",
        params: &[
            req("note_id", Kind::Id, "The note"),
            opt("title", Kind::String, "New title"),
            opt(
                "content",
                Kind::String,
                "New Markdown content (the whole note)",
            ),
            opt("project_id", Kind::Id, "Project the note belongs to"),
        ],
        effect: Effect::Write {
            action: ActionType::UpdateRecord,
            table: "notes",
            id: Some("note_id"),
        },
    },
    Tool {
        name: "delete_note",
        description: "Delete a note.",
        params: &[req("note_id", Kind::Id, "The note")],
        effect: Effect::Write {
            action: ActionType::DeleteRecord,
            table: "notes",
            id: Some("note_id"),
        },
    },
];

/// The one tool that is not an agent's own: `call_agent` hands a sub-question to another agent
/// (reference: `AgentRegistry.call_agent(name, query, context)`). Every agent the router runs
/// is given it; an agent so called is not (one level deep). The schema the model sees lists
/// the other three agents only ([`crate::agents::Agent::tool_specs`]).
pub const CALL_AGENT: Tool = Tool {
    name: "call_agent",
    description: "Ask another assistant a sub-question in its own domain (tasks, projects, \
milestones or notes) and get its answer. It sees the same app context and may plan changes \
of its own.",
    params: &[
        req(
            "agent",
            Kind::OneOf(crate::agents::AGENT_NAMES),
            "The assistant to ask",
        ),
        req(
            "question",
            Kind::String,
            "The sub-question, complete in itself",
        ),
    ],
    effect: Effect::CallAgent,
};

/// What a tool call produced: the text answered to the model, and an action for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub result: Value,
    pub action: Option<PlanAction>,
}

impl Tool {
    /// The tool as the model sees it.
    pub fn spec(&self) -> ToolSpec {
        let mut properties = Map::new();
        for param in self.params {
            let mut schema = match param.kind {
                Kind::String | Kind::Id => json!({"type": "string"}),
                Kind::Integer => json!({"type": "integer"}),
                Kind::Boolean => json!({"type": "boolean"}),
                Kind::OneOf(values) => json!({"type": "string", "enum": values}),
            };
            schema["description"] = json!(param.description);
            properties.insert(param.name.to_owned(), schema);
        }
        let required: Vec<&str> = self
            .params
            .iter()
            .filter(|param| param.required)
            .map(|param| param.name)
            .collect();
        ToolSpec {
            name: self.name.to_owned(),
            description: self.description.to_owned(),
            parameters: json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            }),
        }
    }

    /// Checks the model's arguments (a JSON object text) against the declaration.
    pub fn validate(&self, arguments: &str) -> Result<Map<String, Value>, String> {
        let arguments = if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        };
        let Ok(Value::Object(args)) = serde_json::from_str::<Value>(arguments) else {
            return Err("arguments must be a JSON object".to_owned());
        };
        for name in args.keys() {
            if !self.params.iter().any(|param| param.name == name) {
                return Err(format!("unknown argument {name:?}"));
            }
        }
        for param in self.params {
            match args.get(param.name) {
                None | Some(Value::Null) if param.required => {
                    return Err(format!("{} is required", param.name));
                }
                None | Some(Value::Null) => {}
                Some(value) => check(param, value)?,
            }
        }
        Ok(args)
    }

    /// Runs the tool on validated arguments.
    pub fn call(&self, args: Map<String, Value>, context: &ChatContext) -> Outcome {
        match self.effect {
            Effect::Read(read) => Outcome {
                result: read(&args, context),
                action: None,
            },
            Effect::Write { action, table, id } => {
                let mut data = Map::new();
                for (name, value) in args {
                    let unchanged = action == ActionType::UpdateRecord && value == json!(-1);
                    if value.is_null() || unchanged {
                        continue;
                    }
                    if Some(name.as_str()) == id {
                        data.insert("id".to_owned(), value);
                    } else {
                        data.insert(name, value);
                    }
                }
                if action == ActionType::CreateRecord && table == "tasks" {
                    data.entry("status").or_insert_with(|| json!("todo"));
                    data.entry("priority").or_insert_with(|| json!("medium"));
                }
                let action = PlanAction {
                    kind: action,
                    table: Some(table.to_owned()),
                    data: Some(Value::Object(data)),
                    agent: None,
                };
                Outcome {
                    result: json!({"status": "planned", "action": action}),
                    action: Some(action),
                }
            }
            Effect::CallAgent => {
                let agent = args.get("agent").and_then(Value::as_str).map(str::to_owned);
                let question = args.get("question").cloned().unwrap_or(Value::Null);
                let action = PlanAction {
                    kind: ActionType::CallAgent,
                    table: None,
                    data: Some(json!({ "question": question })),
                    agent,
                };
                Outcome {
                    result: json!({"status": "delegated"}),
                    action: Some(action),
                }
            }
        }
    }
}

fn check(param: &Param, value: &Value) -> Result<(), String> {
    let name = param.name;
    match (param.kind, value) {
        (Kind::String, Value::String(text)) => {
            if text.chars().count() > MAX_STRING_CHARS {
                return Err(format!(
                    "{name} is longer than {MAX_STRING_CHARS} characters"
                ));
            }
            Ok(())
        }
        (Kind::Id, Value::String(text)) if !text.trim().is_empty() && text.len() <= 128 => Ok(()),
        (Kind::Id, Value::Number(number)) if number.is_i64() || number.is_u64() => Ok(()),
        (Kind::Id, _) => Err(format!(
            "{name} must be a record id (a string or an integer)"
        )),
        (Kind::Integer, Value::Number(number)) if number.is_i64() || number.is_u64() => Ok(()),
        (Kind::Boolean, Value::Bool(_)) => Ok(()),
        (Kind::OneOf(values), Value::String(text)) if values.contains(&text.as_str()) => Ok(()),
        (Kind::OneOf(values), _) => Err(format!("{name} must be one of {}", values.join(", "))),
        (Kind::String, _) => Err(format!("{name} must be a string")),
        (Kind::Integer, _) => Err(format!("{name} must be an integer")),
        (Kind::Boolean, _) => Err(format!("{name} must be true or false")),
    }
}

/// A field as text, so that ids compare whether the client sent them as numbers or strings.
fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn same(item: &Value, field: &str, wanted: Option<&Value>) -> bool {
    match text_of(wanted) {
        None => true,
        Some(wanted) => text_of(item.get(field)).as_deref() == Some(wanted.as_str()),
    }
}

fn capped(items: Vec<&Value>) -> Value {
    let total = items.len();
    let items: Vec<&Value> = items.into_iter().take(MAX_LISTED).collect();
    if total > MAX_LISTED {
        json!({"items": items, "total": total, "truncated": true})
    } else {
        json!(items)
    }
}

fn list_tasks(args: &Map<String, Value>, context: &ChatContext) -> Value {
    let search = args
        .get("search")
        .and_then(Value::as_str)
        .map(str::to_lowercase);
    let mut tasks: Vec<&Value> = context
        .recent_tasks
        .iter()
        .filter(|task| same(task, "project_id", args.get("project_id")))
        .filter(|task| same(task, "status", args.get("status")))
        .filter(|task| {
            search.as_ref().is_none_or(|search| {
                ["title", "description"].iter().any(|field| {
                    task.get(field)
                        .and_then(Value::as_str)
                        .is_some_and(|text| text.to_lowercase().contains(search))
                })
            })
        })
        .collect();
    if let Some(order) = args.get("order_by").and_then(Value::as_str) {
        let rank = |task: &Value| -> (i64, String) {
            let field = task.get(order);
            match order {
                "priority" => {
                    let rank = field
                        .and_then(Value::as_str)
                        .and_then(|p| PRIORITIES.iter().position(|known| *known == p))
                        .unwrap_or(PRIORITIES.len());
                    (rank as i64, String::new())
                }
                "title" => (0, text_of(field).unwrap_or_default().to_lowercase()),
                _ => (
                    field.and_then(Value::as_i64).unwrap_or(i64::MAX),
                    String::new(),
                ),
            }
        };
        tasks.sort_by_key(|task| rank(task));
    }
    capped(tasks)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn list_tasks_due_today(_: &Map<String, Value>, context: &ChatContext) -> Value {
    // The user's day: `user_profile.utc_offset_minutes` when the client sends it, else UTC.
    let offset = context
        .user_profile
        .get("utc_offset_minutes")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .clamp(-14 * 60, 14 * 60)
        * 60_000;
    let start = (now_ms() + offset).div_euclid(DAY_MS) * DAY_MS - offset;
    let tasks = context
        .recent_tasks
        .iter()
        .filter(|task| task.get("status").and_then(Value::as_str) != Some("done"))
        .filter(|task| {
            task.get("due_date")
                .and_then(Value::as_i64)
                .is_some_and(|due| (start..start + DAY_MS).contains(&due))
        })
        .collect();
    capped(tasks)
}

fn list_task_comments(args: &Map<String, Value>, context: &ChatContext) -> Value {
    let task_id = args.get("task_id");
    let mut comments: Vec<&Value> = context
        .list("task_comments")
        .iter()
        .filter(|comment| same(comment, "task_id", task_id))
        .collect();
    if let Some(task) = context
        .recent_tasks
        .iter()
        .find(|task| same(task, "id", task_id))
        && let Some(Value::Array(embedded)) = task.get("comments")
    {
        comments.extend(embedded);
    }
    capped(comments)
}

fn is_archived(project: &Value) -> bool {
    project.get("status").and_then(Value::as_str) == Some("archived")
}

fn list_projects(args: &Map<String, Value>, context: &ChatContext) -> Value {
    let include_archived = args
        .get("include_archived")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let projects = context
        .list("projects")
        .iter()
        .filter(|project| same(project, "client_id", args.get("client_id")))
        .filter(|project| include_archived || !is_archived(project))
        .collect();
    capped(projects)
}

fn list_all_projects(_: &Map<String, Value>, context: &ChatContext) -> Value {
    capped(context.list("projects").iter().collect())
}

fn find(items: &[Value], id: Option<&Value>, what: &str) -> Value {
    items
        .iter()
        .find(|item| same(item, "id", id))
        .cloned()
        .unwrap_or_else(|| json!({"error": format!("no {what} with this id in the context")}))
}

fn get_project(args: &Map<String, Value>, context: &ChatContext) -> Value {
    find(context.list("projects"), args.get("project_id"), "project")
}

fn list_timelines(args: &Map<String, Value>, context: &ChatContext) -> Value {
    let mut milestones: Vec<&Value> = context
        .list("timelines")
        .iter()
        .filter(|item| same(item, "project_id", args.get("project_id")))
        .collect();
    milestones.sort_by_key(|item| item.get("date").and_then(Value::as_i64).unwrap_or(i64::MAX));
    capped(milestones)
}

fn list_notes(args: &Map<String, Value>, context: &ChatContext) -> Value {
    // Listing gives titles and ids; get_note gives the content.
    let notes: Vec<Value> = context
        .list("notes")
        .iter()
        .filter(|note| same(note, "project_id", args.get("project_id")))
        .map(|note| {
            let mut summary = note.clone();
            if let Some(object) = summary.as_object_mut() {
                object.remove("content");
            }
            summary
        })
        .collect();
    capped(notes.iter().collect())
}

fn get_note(args: &Map<String, Value>, context: &ChatContext) -> Value {
    find(context.list("notes"), args.get("note_id"), "note")
}
