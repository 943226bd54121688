//! The server-side prompt templates. Their text is the product's prompt IP: it is read by the
//! server when it runs a plan and by the response sanitizer, and never serialized into anything
//! a client receives. Plans carry template ids only.

use serde_json::{Map, Value};

/// One built-in template: an opaque id and the prompt text, with `{variable}` placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptTemplate {
    pub id: &'static str,
    text: &'static str,
}

impl PromptTemplate {
    /// The prompt text. Server-side only: never put it in a response.
    pub fn text(&self) -> &'static str {
        self.text
    }
}

const TEMPLATES: &[PromptTemplate] = &[
    PromptTemplate {
        id: "tpl_task_agent_default",
        text: "You are the task assistant of Adiuva, a project-management desktop app. \
Today is {today}. You manage the user's tasks and their comments through the tools you are given: \
list tasks before changing them, never invent task ids, and ask one short question when a \
request is ambiguous instead of guessing. A task has a title, a status (todo, in_progress or \
done), a priority (high, medium or low), an optional due date and an optional project. When the \
user does not give a priority, use medium; when a due date is relative (\"next Friday\"), \
resolve it against today. Recently touched tasks, for context:\n{recent_tasks}\n\n\
Reply in the user's language, briefly, and say what you changed.\n\nUser request: {user_message}",
    },
    PromptTemplate {
        id: "tpl_timeline_agent_default",
        text: "You are the timeline assistant of Adiuva. Today is {today}. You plan and maintain \
project milestones with the tools you are given. Every milestone belongs to a project: if the \
user has not said which, ask before creating one. Keep milestones in chronological order, warn \
when a new date falls after the project's end or before a milestone it depends on, and prefer \
proposing a schedule for the user to approve over silently moving existing dates. Existing \
milestones of the project:\n{milestones}\n\nReply in the user's language, briefly, listing \
the dates you propose or changed.\n\nUser request: {user_message}",
    },
    PromptTemplate {
        id: "tpl_project_agent_default",
        text: "You are the project assistant of Adiuva. You create, update and organise the \
user's projects with the tools you are given. A project is active or archived; prefer archiving \
over deleting, and delete only when the user explicitly asks for it and has confirmed. Look up a \
project by name before assuming it does not exist, so you never create duplicates. The user's \
projects:\n{projects}\n\nReply in the user's language, briefly, and say what you changed.\n\n\
User request: {user_message}",
    },
    PromptTemplate {
        id: "tpl_note_agent_default",
        text: "You are the notes assistant of Adiuva. You write and edit the user's Markdown \
notes with the tools you are given, and may link a note to a project. Keep the user's own wording \
when editing; structure new notes with a title, short paragraphs and bullet lists where they help. \
Never delete a note unless the user explicitly asks. Notes that may be relevant:\n{notes}\n\n\
Reply in the user's language, briefly, and say which notes you created or changed.\n\n\
User request: {user_message}",
    },
    PromptTemplate {
        id: "tpl_task_extract_from_project",
        text: "Read the project below and extract the concrete, actionable tasks it implies: \
things one person can do and check off. Skip goals, ideas without a next step and tasks that \
already exist. For each task give a title that starts with a verb (at most 80 characters), a \
one-sentence description, a priority (high, medium or low) and a due date (YYYY-MM-DD) only \
when the project states one. Return at most {max_tasks} tasks, most important first, as a JSON \
array of objects with the keys title, description, priority and due_date (null when none), \
and nothing else.\n\nProject: {project_name}\n{project_context}\n\nExisting tasks:\n{existing_tasks}",
    },
    PromptTemplate {
        id: "tpl_note_weekly_summary",
        text: "Write the user's weekly summary for {week_start} to {week_end} as a Markdown note. \
Start with a level-1 heading \"Week of {week_start}\", then three sections: \"Done\" (completed \
tasks grouped by project), \"In progress and next\" (open tasks, overdue ones first, with their \
due dates) and \"Notes and decisions\" (the key points of the week's notes, in at most five \
bullets). Be factual: mention only tasks and notes given below, and keep the whole note under \
400 words.\n\nCompleted tasks:\n{completed_tasks}\n\nOpen tasks:\n{open_tasks}\n\n\
Notes of the week:\n{notes}",
    },
];

/// Maps template ids to their server-side prompt text. Clients only ever see the ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct PromptTemplateRegistry;

impl PromptTemplateRegistry {
    /// The registry of the built-in templates.
    pub fn builtin() -> Self {
        Self
    }

    pub fn get(&self, id: &str) -> Option<&'static PromptTemplate> {
        TEMPLATES.iter().find(|template| template.id == id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Every template id, in a stable order.
    pub fn ids(&self) -> impl Iterator<Item = &'static str> {
        TEMPLATES.iter().map(|template| template.id)
    }

    /// The prompt text of a template, for the server that runs a plan step.
    pub fn text(&self, id: &str) -> Option<&'static str> {
        self.get(id).map(PromptTemplate::text)
    }

    /// Every template's text, for the response sanitizer (which redacts any of it that an LLM
    /// might echo back).
    pub fn texts(&self) -> impl Iterator<Item = &'static str> {
        TEMPLATES.iter().map(PromptTemplate::text)
    }

    /// The template's text with each `{name}` replaced by `variables[name]` (see [`render`]).
    pub fn render(&self, id: &str, variables: &Map<String, Value>) -> Option<String> {
        Some(render(self.text(id)?, variables))
    }
}

/// `text` with each `{name}` replaced by `variables[name]` (strings as they are, other values
/// as JSON). Placeholders without a variable are left as written.
pub fn render(text: &str, variables: &Map<String, Value>) -> String {
    let mut text = text.to_owned();
    for (name, value) in variables {
        let replacement = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        text = text.replace(&format!("{{{name}}}"), &replacement);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_six_reference_templates_exist_with_text() {
        let registry = PromptTemplateRegistry::builtin();
        let ids: Vec<_> = registry.ids().collect();
        assert_eq!(
            ids,
            [
                "tpl_task_agent_default",
                "tpl_timeline_agent_default",
                "tpl_project_agent_default",
                "tpl_note_agent_default",
                "tpl_task_extract_from_project",
                "tpl_note_weekly_summary",
            ]
        );
        for id in ids {
            let text = registry.text(id).unwrap();
            assert!(text.len() > 200, "{id} is too short to be useful");
            assert!(text.contains('{'), "{id} takes no variables");
        }
        assert_eq!(registry.texts().count(), 6);
        assert!(!registry.contains("tpl_unknown"));
        assert_eq!(registry.text("tpl_unknown"), None);
    }

    #[test]
    fn render_fills_the_variables_it_is_given() {
        let registry = PromptTemplateRegistry::builtin();
        let variables = json!({"project_name": "Launch", "max_tasks": 5});
        let text = registry
            .render(
                "tpl_task_extract_from_project",
                variables.as_object().unwrap(),
            )
            .unwrap();
        assert!(text.contains("Project: Launch\n"));
        assert!(text.contains("at most 5 tasks"));
        assert!(text.contains("{project_context}"), "unknown ones stay");
        assert_eq!(registry.render("tpl_unknown", &Map::new()), None);
    }
}
