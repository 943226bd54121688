//! The agent registry: the four reference agents, each a system prompt (its
//! `tpl_<name>_default` template, rendered with the request's context) and a tool set.

use adiuva_plans::PromptTemplateRegistry;
use serde_json::{Map, Value, json};

use crate::schema::ChatContext;
use adiuva_llm::ToolSpec;

use crate::tools::{CALL_AGENT, NOTE_TOOLS, PROJECT_TOOLS, TASK_TOOLS, TIMELINE_TOOLS, Tool};

/// Most context items rendered into a prompt, per list.
const MAX_PROMPT_ITEMS: usize = 30;

#[derive(Debug)]
pub struct Agent {
    pub name: &'static str,
    pub description: &'static str,
    /// Id of the prompt template that is this agent's system prompt.
    pub template: &'static str,
    pub tools: &'static [Tool],
}

/// Every agent, in the order the router lists them. The first is the fallback.
pub const AGENTS: &[Agent] = &[
    Agent {
        name: "task_agent",
        description: "Manages tasks and comments: list, create, update, delete, due-today, comments",
        template: "tpl_task_agent_default",
        tools: TASK_TOOLS,
    },
    Agent {
        name: "project_agent",
        description: "Manages projects: list, get, create, update, archive, delete",
        template: "tpl_project_agent_default",
        tools: PROJECT_TOOLS,
    },
    Agent {
        name: "timeline_agent",
        description: "Manages project timelines (milestones): list, create, update, delete",
        template: "tpl_timeline_agent_default",
        tools: TIMELINE_TOOLS,
    },
    Agent {
        name: "note_agent",
        description: "Manages notes: list, get, create, update, delete",
        template: "tpl_note_agent_default",
        tools: NOTE_TOOLS,
    },
];

/// The agents' names, in [`AGENTS`]' order: the values `call_agent`'s `agent` accepts.
pub const AGENT_NAMES: &[&str] = &[
    "task_agent",
    "project_agent",
    "timeline_agent",
    "note_agent",
];

/// Whether an agent may hand sub-questions to another (`call_agent`): the agents the router
/// runs may; an agent so called may not, so calls go one level deep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Run by the router (alone or in a pipeline): has `call_agent`.
    Routed,
    /// Called by another agent: its own tools only.
    Called,
}

/// The agent `classify_intent` falls back to.
pub const FALLBACK_AGENT: &str = "task_agent";

/// An agent by registry name.
pub fn get(name: &str) -> Option<&'static Agent> {
    AGENTS.iter().find(|agent| agent.name == name)
}

/// `[{name, description}]`, for the router's prompt (reference: `list_agents()`).
pub fn list_agents() -> Value {
    AGENTS
        .iter()
        .map(|agent| json!({"name": agent.name, "description": agent.description}))
        .collect()
}

/// What `GET /api/v1/chat/agents` shows of an agent: its name, what it does and its tools'
/// names (no prompt text, no tool schemas), so the app can show them and apply the free
/// tier's `agents: 3` itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentInfo {
    #[cfg_attr(feature = "openapi", schema(example = "task_agent"))]
    pub name: String,
    pub description: String,
    /// The names of its tools, in the order the model is given them: its own, then
    /// `call_agent` (asking another agent a sub-question).
    pub tools: Vec<String>,
}

/// Every agent as [`AgentInfo`], in the router's order.
pub fn agent_infos() -> Vec<AgentInfo> {
    AGENTS
        .iter()
        .map(|agent| AgentInfo {
            name: agent.name.to_owned(),
            description: agent.description.to_owned(),
            tools: agent
                .tools_at(Depth::Routed)
                .map(|tool| tool.name.to_owned())
                .collect(),
        })
        .collect()
}

impl Agent {
    /// The tools the agent has at `depth`: its own, then `call_agent` when it may call.
    pub fn tools_at(&self, depth: Depth) -> impl Iterator<Item = &'static Tool> {
        let call = (depth == Depth::Routed).then_some(&CALL_AGENT);
        self.tools.iter().chain(call)
    }

    /// The tool `name`, if the agent has it at `depth`.
    pub fn tool(&self, name: &str, depth: Depth) -> Option<&'static Tool> {
        self.tools_at(depth).find(|tool| tool.name == name)
    }

    /// The tools as the model sees them at `depth`. `call_agent`'s `agent` lists the other
    /// agents only (asking itself is refused anyway).
    pub fn tool_specs(&self, depth: Depth) -> Vec<ToolSpec> {
        self.tools_at(depth)
            .map(|tool| {
                let mut spec = tool.spec();
                if tool.name == CALL_AGENT.name {
                    let others: Vec<&str> = AGENT_NAMES
                        .iter()
                        .copied()
                        .filter(|name| *name != self.name)
                        .collect();
                    spec.parameters["properties"]["agent"]["enum"] = json!(others);
                }
                spec
            })
            .collect()
    }

    /// The built-in text of this agent's system prompt (its template).
    pub fn builtin_prompt(&self) -> &'static str {
        PromptTemplateRegistry::builtin()
            .text(self.template)
            .expect("every agent's template is registered")
    }

    /// `prompt` (the built-in one or a managed version of it) rendered for one request.
    pub fn system_prompt(&self, prompt: &str, message: &str, context: &ChatContext) -> String {
        let list = |items: &[Value]| -> Value {
            let shown: Vec<&Value> = items.iter().take(MAX_PROMPT_ITEMS).collect();
            if shown.is_empty() {
                json!("(none given)")
            } else {
                json!(serde_json::to_string(&shown).unwrap_or_default())
            }
        };
        let mut variables = Map::new();
        variables.insert("today".into(), json!(today()));
        variables.insert("user_message".into(), json!(message));
        variables.insert("recent_tasks".into(), list(&context.recent_tasks));
        variables.insert("projects".into(), list(context.list("projects")));
        variables.insert("milestones".into(), list(context.list("timelines")));
        variables.insert("notes".into(), list(context.list("notes")));
        adiuva_plans::render(prompt, &variables)
    }
}

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    adiuva_calendar::date_of(i64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_call_agent_accepts_are_the_agents() {
        let names: Vec<&str> = AGENTS.iter().map(|agent| agent.name).collect();
        assert_eq!(names, AGENT_NAMES);
    }

    #[test]
    fn routed_agents_may_call_the_others_and_called_ones_may_not() {
        for agent in AGENTS {
            let routed = agent.tool_specs(Depth::Routed);
            assert_eq!(routed.len(), agent.tools.len() + 1);
            let call = routed.last().unwrap();
            assert_eq!(call.name, "call_agent");
            let allowed = call.parameters["properties"]["agent"]["enum"]
                .as_array()
                .unwrap();
            assert_eq!(allowed.len(), AGENTS.len() - 1);
            assert!(!allowed.contains(&json!(agent.name)));
            assert!(agent.tool("call_agent", Depth::Routed).is_some());

            let called = agent.tool_specs(Depth::Called);
            assert_eq!(called.len(), agent.tools.len());
            assert!(called.iter().all(|spec| spec.name != "call_agent"));
            assert!(agent.tool("call_agent", Depth::Called).is_none());
        }
    }
}
