//! Execution plans: what "plan" mode answers instead of running agents, and the playbooks (named,
//! reusable plans) the plans function lists.
//!
//! - [`ExecutionPlan`] / [`PlanStep`]: the reference's schemas. An LLM step names its prompt by
//!   an opaque template id; the prompt text never leaves the server.
//! - [`PromptTemplateRegistry`]: the server-side template texts, by id.
//! - [`ExecutionPlanBuilder`]: builds a plan and checks it (known templates, data flowing only
//!   from earlier steps).
//! - [`PlanCache`]: plans and playbooks in the shared short-lived store (`adiuva-kv`, namespace
//!   `plans`), so every Lambda instance sees the same ones; replaces the reference's
//!   per-process LRU.

mod cache;
mod templates;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use cache::{CACHED_PLAN_TTL, NAMESPACE, PlanCache};
pub use templates::{PromptTemplate, PromptTemplateRegistry, render};

/// The action of a step that asks the LLM, with `prompt_template` naming the prompt.
pub const LLM_ACTION: &str = "llm_generate";

/// The action of a step the plan's agent hands to another agent (reference: the plan action
/// `call_agent`): `variables.agent` names that agent, `prompt_template` its template, and the
/// other variables are its template's. One level deep: the plan's own agent calls, never a
/// called one, and never itself.
pub const CALL_AGENT_ACTION: &str = "call_agent";

/// A plan the client runs step by step (reference: `ExecutionPlan {agent, steps}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionPlan {
    /// The id a playbook or cached plan is stored under; absent on a plan made for one answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// What the plan does, for listing playbooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The agent that runs the plan (`task_agent`, `project_agent`, `timeline_agent`,
    /// `note_agent`).
    pub agent: String,
    pub steps: Vec<PlanStep>,
}

/// One step of a plan (reference: `PlanStep`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanStep {
    /// `llm_generate` for an LLM step, `call_agent` for an LLM step run by another agent
    /// (named by `variables.agent`), else a data action the client applies (`create_tasks`,
    /// `create_note`, ...).
    pub action: String,
    /// Opaque id of a server-side prompt template (LLM steps only).
    #[serde(default)]
    pub prompt_template: Option<String>,
    /// Inputs of the step; for an LLM step, the template's variables (`null`: the client
    /// supplies the value when it runs the plan).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub variables: Option<Map<String, Value>>,
    /// Index of an earlier step whose output this step consumes.
    #[serde(default)]
    pub data_from_step: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("a plan needs an agent")]
    MissingAgent,
    #[error("a plan needs at least one step")]
    NoSteps,
    #[error("step {step} has no action")]
    MissingAction { step: usize },
    #[error("step {step} names unknown prompt template {template_id:?}")]
    UnknownTemplate { step: usize, template_id: String },
    #[error("step {step} takes data from step {data_from_step}, which is not an earlier step")]
    InvalidStepReference { step: usize, data_from_step: usize },
    /// A `call_agent` step names no agent, an unknown one, or the plan's own agent.
    #[error("step {step}'s call_agent must name another known agent in variables.agent")]
    InvalidCallAgent { step: usize },
}

/// Builds an [`ExecutionPlan`]; [`ExecutionPlanBuilder::build`] checks it.
#[derive(Debug, Clone)]
pub struct ExecutionPlanBuilder {
    registry: PromptTemplateRegistry,
    /// The agents a `call_agent` step may name; `None`: any name.
    agents: Option<&'static [&'static str]>,
    plan: ExecutionPlan,
}

impl ExecutionPlanBuilder {
    pub fn new(agent: impl Into<String>) -> Self {
        Self {
            registry: PromptTemplateRegistry::builtin(),
            agents: None,
            plan: ExecutionPlan {
                plan_id: None,
                description: None,
                agent: agent.into(),
                steps: Vec::new(),
            },
        }
    }

    pub fn plan_id(mut self, plan_id: impl Into<String>) -> Self {
        self.plan.plan_id = Some(plan_id.into());
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.plan.description = Some(description.into());
        self
    }

    /// A step with any action and optional parameters (reference: `add_step(action, params)`).
    pub fn add_step(
        mut self,
        action: impl Into<String>,
        params: Option<Map<String, Value>>,
    ) -> Self {
        self.plan.steps.push(PlanStep {
            action: action.into(),
            prompt_template: None,
            variables: params,
            data_from_step: None,
        });
        self
    }

    /// A step that runs the prompt template `template_id` with `variables`.
    pub fn add_llm_step(
        mut self,
        template_id: impl Into<String>,
        variables: Map<String, Value>,
    ) -> Self {
        self.plan.steps.push(PlanStep {
            action: LLM_ACTION.to_owned(),
            prompt_template: Some(template_id.into()),
            variables: Some(variables),
            data_from_step: None,
        });
        self
    }

    /// The agents a `call_agent` step may name (the agent registry's names), checked by
    /// [`Self::build`].
    pub fn known_agents(mut self, agents: &'static [&'static str]) -> Self {
        self.agents = Some(agents);
        self
    }

    /// A step the plan's agent hands to `agent`: that agent runs its template `template_id`
    /// with `variables` (reference: the plan action `call_agent`).
    pub fn add_call_agent_step(
        mut self,
        agent: impl Into<String>,
        template_id: impl Into<String>,
        mut variables: Map<String, Value>,
    ) -> Self {
        variables.insert("agent".to_owned(), Value::String(agent.into()));
        self.plan.steps.push(PlanStep {
            action: CALL_AGENT_ACTION.to_owned(),
            prompt_template: Some(template_id.into()),
            variables: Some(variables),
            data_from_step: None,
        });
        self
    }

    /// A step that applies `action` to the output of step `data_from_step` (0-based).
    pub fn add_data_step(mut self, action: impl Into<String>, data_from_step: usize) -> Self {
        self.plan.steps.push(PlanStep {
            action: action.into(),
            prompt_template: None,
            variables: None,
            data_from_step: Some(data_from_step),
        });
        self
    }

    /// Makes the last step read the output of step `data_from_step` (0-based).
    pub fn with_data_from_step(mut self, data_from_step: usize) -> Self {
        if let Some(step) = self.plan.steps.last_mut() {
            step.data_from_step = Some(data_from_step);
        }
        self
    }

    /// The plan, if every template is known and every step reads only from earlier steps.
    pub fn build(self) -> Result<ExecutionPlan, PlanError> {
        let plan = self.plan;
        if plan.agent.trim().is_empty() {
            return Err(PlanError::MissingAgent);
        }
        if plan.steps.is_empty() {
            return Err(PlanError::NoSteps);
        }
        for (step, item) in plan.steps.iter().enumerate() {
            if item.action.trim().is_empty() {
                return Err(PlanError::MissingAction { step });
            }
            if let Some(template_id) = &item.prompt_template
                && !self.registry.contains(template_id)
            {
                return Err(PlanError::UnknownTemplate {
                    step,
                    template_id: template_id.clone(),
                });
            }
            if item.action == CALL_AGENT_ACTION {
                let agent = item
                    .variables
                    .as_ref()
                    .and_then(|variables| variables.get("agent"))
                    .and_then(Value::as_str);
                let valid = agent.is_some_and(|agent| {
                    !agent.trim().is_empty()
                        && agent != plan.agent
                        && self.agents.is_none_or(|known| known.contains(&agent))
                });
                if !valid {
                    return Err(PlanError::InvalidCallAgent { step });
                }
            }
            if let Some(data_from_step) = item.data_from_step
                && data_from_step >= step
            {
                return Err(PlanError::InvalidStepReference {
                    step,
                    data_from_step,
                });
            }
        }
        Ok(plan)
    }
}

/// Variables the client fills in when it runs a playbook: each name maps to `null`.
fn client_supplied(names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .map(|name| ((*name).to_owned(), Value::Null))
        .collect()
}

/// The built-in playbooks, in a stable order.
pub fn builtin_playbooks() -> Vec<ExecutionPlan> {
    let create_tasks = ExecutionPlanBuilder::new("task_agent")
        .plan_id("create_tasks_from_project")
        .description("Extracts actionable tasks from a project's context, then creates them")
        .add_llm_step(
            "tpl_task_extract_from_project",
            client_supplied(&[
                "project_name",
                "project_context",
                "existing_tasks",
                "max_tasks",
            ]),
        )
        .add_data_step("create_tasks", 0)
        .build();
    let weekly_note = ExecutionPlanBuilder::new("note_agent")
        .plan_id("generate_weekly_note")
        .description("Writes a summary of the week's tasks and notes, then saves it as a note")
        .add_llm_step(
            "tpl_note_weekly_summary",
            client_supplied(&[
                "week_start",
                "week_end",
                "completed_tasks",
                "open_tasks",
                "notes",
            ]),
        )
        .add_data_step("create_note", 0)
        .build();
    [create_tasks, weekly_note]
        .into_iter()
        .map(|plan| plan.expect("built-in playbooks are valid"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Map<String, Value> {
        json!({"project_name": "Launch"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn builder_makes_the_reference_shape() {
        let plan = ExecutionPlanBuilder::new("task_agent")
            .add_llm_step("tpl_task_extract_from_project", vars())
            .add_data_step("create_tasks", 0)
            .add_step("send_notification", None)
            .build()
            .unwrap();
        assert_eq!(
            serde_json::to_value(&plan).unwrap(),
            json!({
                "agent": "task_agent",
                "steps": [
                    {"action": "llm_generate", "prompt_template": "tpl_task_extract_from_project",
                     "variables": {"project_name": "Launch"}, "data_from_step": null},
                    {"action": "create_tasks", "prompt_template": null, "variables": null,
                     "data_from_step": 0},
                    {"action": "send_notification", "prompt_template": null, "variables": null,
                     "data_from_step": null},
                ]
            })
        );
        let back: ExecutionPlan =
            serde_json::from_value(json!({"agent": "a", "steps": [{"action": "x"}]})).unwrap();
        assert_eq!(back.steps[0].data_from_step, None);
        assert_eq!(back.plan_id, None);
    }

    #[test]
    fn builder_rejects_unknown_templates() {
        let err = ExecutionPlanBuilder::new("task_agent")
            .add_llm_step("tpl_made_up", vars())
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            PlanError::UnknownTemplate {
                step: 0,
                template_id: "tpl_made_up".to_owned()
            }
        );
    }

    #[test]
    fn data_must_come_from_an_earlier_step() {
        for (from, at) in [(0, 0), (1, 0), (5, 0)] {
            let mut builder = ExecutionPlanBuilder::new("task_agent");
            if at > 0 {
                builder = builder.add_step("noop", None);
            }
            let err = builder
                .add_data_step("create_tasks", from)
                .build()
                .unwrap_err();
            assert_eq!(
                err,
                PlanError::InvalidStepReference {
                    step: at,
                    data_from_step: from
                },
                "{from} at {at}"
            );
        }
        // Forward reference from the first of two steps.
        let err = ExecutionPlanBuilder::new("task_agent")
            .add_data_step("create_tasks", 1)
            .add_llm_step("tpl_task_agent_default", vars())
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            PlanError::InvalidStepReference {
                step: 0,
                data_from_step: 1
            }
        ));
        // Any earlier step is fine, not only the previous one.
        ExecutionPlanBuilder::new("task_agent")
            .add_llm_step("tpl_task_agent_default", vars())
            .add_step("noop", None)
            .add_data_step("create_tasks", 0)
            .build()
            .unwrap();
    }

    #[test]
    fn call_agent_steps_name_another_known_agent() {
        const AGENTS: &[&str] = &["task_agent", "note_agent"];
        let plan = ExecutionPlanBuilder::new("task_agent")
            .known_agents(AGENTS)
            .add_llm_step("tpl_task_agent_default", vars())
            .add_call_agent_step("note_agent", "tpl_note_agent_default", vars())
            .with_data_from_step(0)
            .build()
            .unwrap();
        assert_eq!(
            serde_json::to_value(&plan.steps[1]).unwrap(),
            json!({"action": "call_agent", "prompt_template": "tpl_note_agent_default",
                   "variables": {"project_name": "Launch", "agent": "note_agent"},
                   "data_from_step": 0})
        );
        for callee in ["task_agent", "made_up_agent", " "] {
            let err = ExecutionPlanBuilder::new("task_agent")
                .known_agents(AGENTS)
                .add_llm_step("tpl_task_agent_default", vars())
                .add_call_agent_step(callee, "tpl_note_agent_default", vars())
                .build()
                .unwrap_err();
            assert_eq!(err, PlanError::InvalidCallAgent { step: 1 }, "{callee}");
        }
        // A call_agent step without an agent at all.
        let err = ExecutionPlanBuilder::new("task_agent")
            .add_step(CALL_AGENT_ACTION, Some(vars()))
            .build()
            .unwrap_err();
        assert_eq!(err, PlanError::InvalidCallAgent { step: 0 });
        // Its template is checked like any LLM step's.
        let err = ExecutionPlanBuilder::new("task_agent")
            .add_call_agent_step("note_agent", "tpl_made_up", vars())
            .build()
            .unwrap_err();
        assert!(matches!(err, PlanError::UnknownTemplate { step: 0, .. }));
    }

    #[test]
    fn builder_rejects_empty_plans() {
        assert_eq!(
            ExecutionPlanBuilder::new("task_agent").build().unwrap_err(),
            PlanError::NoSteps
        );
        assert_eq!(
            ExecutionPlanBuilder::new(" ")
                .add_step("noop", None)
                .build()
                .unwrap_err(),
            PlanError::MissingAgent
        );
        assert_eq!(
            ExecutionPlanBuilder::new("task_agent")
                .add_step("", None)
                .build()
                .unwrap_err(),
            PlanError::MissingAction { step: 0 }
        );
    }

    #[test]
    fn builtin_playbooks_follow_the_reference() {
        let playbooks = builtin_playbooks();
        let ids: Vec<_> = playbooks
            .iter()
            .map(|plan| plan.plan_id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, ["create_tasks_from_project", "generate_weekly_note"]);
        let templates: Vec<_> = playbooks
            .iter()
            .map(|plan| plan.steps[0].prompt_template.as_deref().unwrap())
            .collect();
        assert_eq!(
            templates,
            ["tpl_task_extract_from_project", "tpl_note_weekly_summary"]
        );
        for plan in &playbooks {
            assert_eq!(plan.steps.len(), 2);
            assert_eq!(plan.steps[1].data_from_step, Some(0));
            assert!(plan.description.is_some());
        }
    }

    #[test]
    fn no_prompt_text_appears_in_a_serialized_playbook() {
        let registry = PromptTemplateRegistry::builtin();
        for plan in builtin_playbooks() {
            let serialized = serde_json::to_string(&plan).unwrap();
            assert_no_prompt_text(&registry, &serialized);
        }
    }

    /// Fails if any 20-character window of any template text occurs in `serialized`.
    pub(crate) fn assert_no_prompt_text(registry: &PromptTemplateRegistry, serialized: &str) {
        const WINDOW: usize = 20;
        for text in registry.texts() {
            let chars: Vec<char> = text.chars().collect();
            for window in chars.windows(WINDOW) {
                let fragment: String = window.iter().collect();
                assert!(
                    !serialized.contains(&fragment),
                    "prompt text {fragment:?} leaked into {serialized}"
                );
            }
        }
    }
}
