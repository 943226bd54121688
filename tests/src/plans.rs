//! Playbooks: the built-in ones exist without any set-up, name prompt templates by id only,
//! need a token, and live in the shared store (DynamoDB on moto with PostgreSQL, memory with
//! SQLite), so what one instance caches another one serves.

use adiuva_plans::{ExecutionPlanBuilder, PlanCache, PromptTemplateRegistry};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, error_body, spawn_app};

backend_tests!(
    builtin_playbooks_are_listed_without_prompt_text,
    one_playbook_by_id,
    unknown_playbooks_are_404,
    playbooks_need_a_token,
    cached_plans_are_shared_through_the_store,
);

const LIST: &str = "/api/v1/plans/playbook";

/// Fails if any 20-character piece of a prompt template's text is in `body`.
fn assert_no_prompt_text(body: &str) {
    for text in PromptTemplateRegistry::builtin().texts() {
        let chars: Vec<char> = text.chars().collect();
        for window in chars.windows(20) {
            let fragment: String = window.iter().collect();
            assert!(
                !body.contains(&fragment),
                "prompt text leaked: {fragment:?}"
            );
        }
    }
}

async fn builtin_playbooks_are_listed_without_prompt_text(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let response = app.get_authed(LIST, &user.tokens.access_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    assert_no_prompt_text(&body);

    let playbooks: Value = serde_json::from_str(&body).unwrap();
    let playbooks = playbooks.as_array().expect("a list of plans");
    let summary: Vec<(&str, &str, &str)> = playbooks
        .iter()
        .map(|plan| {
            (
                plan["plan_id"].as_str().unwrap(),
                plan["agent"].as_str().unwrap(),
                plan["steps"][0]["prompt_template"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "create_tasks_from_project",
                "task_agent",
                "tpl_task_extract_from_project"
            ),
            (
                "generate_weekly_note",
                "note_agent",
                "tpl_note_weekly_summary"
            ),
        ]
    );
    for plan in playbooks {
        let steps = plan["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0]["action"], "llm_generate");
        assert_eq!(steps[0]["data_from_step"], Value::Null);
        assert!(steps[0]["variables"].is_object());
        assert_eq!(steps[1]["prompt_template"], Value::Null);
        assert_eq!(steps[1]["data_from_step"], 0);
    }

    // Asking again (the built-ins are already there) answers the same.
    let again: Value = app
        .get_authed(LIST, &user.tokens.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again.as_array().unwrap(), playbooks);
}

async fn one_playbook_by_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    // The first request of the process may be this one: it too sees the built-ins.
    let response = app
        .get_authed(
            &format!("{LIST}/generate_weekly_note"),
            &user.tokens.access_token,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    assert_no_prompt_text(&body);
    let plan: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plan["plan_id"], "generate_weekly_note");
    assert_eq!(plan["agent"], "note_agent");
    assert_eq!(
        plan["steps"][0]["prompt_template"],
        "tpl_note_weekly_summary"
    );
    assert_eq!(plan["steps"][1]["action"], "create_note");
}

async fn unknown_playbooks_are_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.register_user().await.tokens.access_token;
    for plan_id in [
        "no_such_playbook",
        "tpl_task_extract_from_project",
        &"x".repeat(300),
    ] {
        let response = app.get_authed(&format!("{LIST}/{plan_id}"), &token).await;
        error_body(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let response = app.get_authed(&format!("{LIST}/a%20b"), &token).await;
    error_body(response, StatusCode::NOT_FOUND, "not_found").await;
}

async fn playbooks_need_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [LIST.to_owned(), format!("{LIST}/create_tasks_from_project")] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["code"].is_string() && body["request_id"].is_string());
        let response = app.get_authed(&path, "not-a-jwt").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

async fn cached_plans_are_shared_through_the_store(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.register_user().await.tokens.access_token;
    // Two caches on one store stand for two Lambda instances on one table.
    let writer = PlanCache::new(app.backends.kv.clone());
    let reader = PlanCache::new(app.backends.kv.clone());
    let plan = ExecutionPlanBuilder::new("project_agent")
        .description("Sets up a project")
        .add_llm_step(
            "tpl_project_agent_default",
            json!({"user_message": null}).as_object().unwrap().clone(),
        )
        .add_data_step("create_record", 0)
        .build()
        .unwrap();
    writer.cache_plan("team_setup", &plan).await.unwrap();

    let seen = reader.get_plan("team_setup").await.unwrap().unwrap();
    assert_eq!(seen.plan_id.as_deref(), Some("team_setup"));
    assert_eq!(seen.steps, plan.steps);

    // And the API (a third user of the store) serves it as a playbook.
    let response = app.get_authed(&format!("{LIST}/team_setup"), &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let served: Value = response.json().await.unwrap();
    assert_eq!(served["plan_id"], "team_setup");
    assert_eq!(served["description"], "Sets up a project");
    let listed: Value = app.get_authed(LIST, &token).await.json().await.unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|plan| plan["plan_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "create_tasks_from_project",
            "generate_weekly_note",
            "team_setup"
        ]
    );
}
