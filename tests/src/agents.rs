//! Agents calling agents (issue 24, item 5; the reference's `AgentRegistry.call_agent` and its
//! plan action `call_agent`), against the scripted model (`crate::llm`): an agent the router
//! runs hands a sub-question to another agent with the `call_agent` tool; the other agent's
//! loop runs inside the caller's (the same five model calls, the same budget, the same stream)
//! and its answer is the tool's result; a called agent cannot call again; plan mode hands a
//! pipeline's later agents over with `call_agent` steps.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use adiuva_agents::orchestrator::{ITERATION_CAP_REPLY, protected_texts};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, TestUser, spawn_app_with};
use crate::llm::{Reply, ScriptedLlm, ToolCall};

backend_tests!(
    an_agent_hands_a_sub_question_to_another_and_its_answer_feeds_the_loop,
    a_called_agent_cannot_call_again_and_shares_the_five_call_loop,
    an_agent_cannot_call_itself,
    the_called_agent_is_charged_to_the_same_budget,
    a_pipeline_plan_hands_the_later_agents_over_with_call_agent,
);

async fn agents_app(backend: Backend, llm: &ScriptedLlm) -> TestApp {
    let base = llm.base_url();
    spawn_app_with(
        backend,
        &[("LLM_BASE_URL", base.as_str()), ("LLM_MAX_RETRIES", "0")],
    )
    .await
}

fn text(text: &str) -> Reply {
    Reply::Text(vec![text.to_owned()])
}

fn calls(calls: &[(&str, Value)]) -> Reply {
    Reply::ToolCalls(
        calls
            .iter()
            .map(|(name, args)| ToolCall::new(name, args.clone()))
            .collect(),
    )
}

fn call_agent(agent: &str, question: &str) -> Reply {
    calls(&[("call_agent", json!({"agent": agent, "question": question}))])
}

async fn chat(app: &TestApp, user: &TestUser, body: &Value) -> (String, Value) {
    let response = app
        .client
        .post(app.url("/api/v1/chat"))
        .bearer_auth(&user.tokens.access_token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let raw = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{raw}");
    let body = serde_json::from_str(&raw).unwrap();
    (raw, body)
}

fn tool_names(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|tool| tool["function"]["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The `tool` messages of a request, parsed.
fn tool_results(request: &Value) -> Vec<Value> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["role"] == "tool")
        .map(|message| serde_json::from_str(message["content"].as_str().unwrap()).unwrap())
        .collect()
}

/// The text of a request's messages of `role`.
fn contents<'a>(request: &'a Value, role: &str) -> Vec<&'a str> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["role"] == role)
        .filter_map(|message| message["content"].as_str())
        .collect()
}

const QUESTION: &str = "Which notes mention Launch?";

async fn an_agent_hands_a_sub_question_to_another_and_its_answer_feeds_the_loop(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    let app = agents_app(backend, &llm).await;
    let user = app.register_user().await;
    let answer = "Two notes mention Launch: Plan and Budget.";
    llm.push_all([
        text("task_agent"),
        // The task agent asks the note agent.
        call_agent("note_agent", QUESTION),
        // The note agent reads the notes, plans one of its own, and answers.
        calls(&[
            ("list_notes", json!({})),
            (
                "create_note",
                json!({"title": "Launch index", "content": "Plan, Budget"}),
            ),
        ]),
        text(answer),
        // The task agent goes on with the answer.
        calls(&[("create_task", json!({"title": "Review the Launch notes"}))]),
        text("Two notes mention Launch; I added a task to review them."),
    ]);
    let context = json!({
        "notes": [
            {"id": "n1", "title": "Launch plan", "content": "secret-ish body"},
            {"id": "n2", "title": "Launch budget", "content": "numbers"},
        ],
        "conversation_history": [{"role": "user", "content": "an earlier turn"}],
    });
    let (_, body) = chat(
        &app,
        &user,
        &json!({"message": "what do my notes say about Launch? add a task", "context": context}),
    )
    .await;
    assert_eq!(
        body["response"],
        "Two notes mention Launch; I added a task to review them."
    );
    // The called agent's planned change joins the caller's, in the order they were made; the
    // call itself was run here and is not an action for the client.
    assert_eq!(
        body["actions"],
        json!([
            {"type": "create_record", "table": "notes", "agent": null,
             "data": {"title": "Launch index", "content": "Plan, Budget"}},
            {"type": "create_record", "table": "tasks", "agent": null,
             "data": {"title": "Review the Launch notes", "status": "todo", "priority": "medium"}},
        ])
    );

    let requests = llm.requests();
    assert_eq!(requests.len(), 6, "router, task, note, note, task, task");
    // The routed agent has call_agent, listing the other agents only.
    let task = &requests[1];
    assert_eq!(tool_names(task).last().unwrap(), "call_agent");
    let call_tool = task["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tool| tool["function"]["name"] == "call_agent")
        .unwrap();
    assert_eq!(
        call_tool["function"]["parameters"]["properties"]["agent"]["enum"],
        json!(["project_agent", "timeline_agent", "note_agent"])
    );
    assert!(contents(task, "user").contains(&"an earlier turn"));

    // The called agent: its own prompt and tools (no call_agent), the question as the user's
    // message, who asked, the same context for its read tools, and no conversation history.
    let note = &requests[2];
    assert_eq!(
        tool_names(note),
        [
            "list_notes",
            "get_note",
            "create_note",
            "update_note",
            "delete_note"
        ]
    );
    assert!(
        note["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You are the notes assistant of Adiuva")
    );
    assert_eq!(contents(note, "user"), [QUESTION]);
    assert!(
        contents(note, "system")
            .iter()
            .any(|system| system.contains(r#""asked_by":"task_agent""#))
    );
    let listed = &tool_results(&requests[3])[0];
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // Its answer is the result of the caller's call_agent.
    assert_eq!(
        tool_results(&requests[4]),
        [json!({"agent": "note_agent", "answer": answer})]
    );
    assert_eq!(tool_names(&requests[5]).last().unwrap(), "call_agent");
}

async fn a_called_agent_cannot_call_again_and_shares_the_five_call_loop(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    let app = agents_app(backend, &llm).await;
    let user = app.register_user().await;
    llm.push(text("project_agent"));
    // Call 1 of 5: the project agent asks the note agent, which may then make 3 calls (one is
    // kept for the project agent to answer).
    llm.push(call_agent("note_agent", QUESTION));
    // The note agent tries to call on, and keeps calling tools until its calls are spent.
    llm.push(calls(&[
        (
            "call_agent",
            json!({"agent": "task_agent", "question": "q"}),
        ),
        ("list_notes", json!({})),
    ]));
    llm.push(calls(&[("list_notes", json!({}))]));
    llm.push(calls(&[("list_notes", json!({}))]));
    // Call 5: the project agent tries again; no call is left for another agent.
    llm.push(call_agent("timeline_agent", "any milestones?"));
    // Never asked for.
    llm.push(text("unused"));

    let (_, body) = chat(&app, &user, &json!({"message": "launch status"})).await;
    assert_eq!(body["response"], ITERATION_CAP_REPLY);
    let requests = llm.requests();
    assert_eq!(requests.len(), 1 + 5, "the router, then five calls in all");
    assert_eq!(llm.remaining(), 1);
    // The called agent has no call_agent, and calling it anyway is answered as unknown.
    assert!(!tool_names(&requests[2]).contains(&"call_agent".to_owned()));
    let refused = &tool_results(&requests[3])[0];
    assert_eq!(refused["error"], "call_agent is not one of your tools");
    // It stopped before answering, and the caller is told so.
    assert!(requests[2..5].iter().all(|request| {
        request["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You are the notes assistant of Adiuva")
    }));
    let unfinished = &tool_results(&requests[5])[0];
    assert_eq!(unfinished["agent"], "note_agent");
    assert!(
        unfinished["error"]
            .as_str()
            .unwrap()
            .contains("stopped before answering"),
        "{unfinished}"
    );
    // The caller's last call asked again: refused (no call was left), so nothing else ran
    // and the loop ended there.
}

async fn an_agent_cannot_call_itself(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    let app = agents_app(backend, &llm).await;
    let user = app.register_user().await;
    llm.push_all([
        text("task_agent"),
        call_agent("task_agent", "what is due?"),
        calls(&[(
            "call_agent",
            json!({"agent": "note_agent", "question": "   "}),
        )]),
        text("Nothing is due."),
    ]);
    let (_, body) = chat(&app, &user, &json!({"message": "what is due?"})).await;
    assert_eq!(body["response"], "Nothing is due.");
    assert_eq!(body["actions"], json!([]));
    let requests = llm.requests();
    assert_eq!(requests.len(), 4, "no other agent ran");
    let errors: Vec<Value> = [&requests[2], &requests[3]]
        .iter()
        .map(|request| tool_results(request).last().unwrap()["error"].clone())
        .collect();
    assert_eq!(
        errors,
        [
            json!("you cannot call yourself; answer it with your own tools"),
            json!("call_agent needs a question"),
        ]
    );
}

/// What the scripted model reports for a request (see `crate::llm`): 10 prompt tokens per
/// message, a completion token per word of the answer (at least one).
fn reported(request: &Value, answer: &str) -> (u64, u64) {
    let messages = request["messages"].as_array().unwrap().len() as u64;
    (
        messages * 10,
        (answer.split_whitespace().count() as u64).max(1),
    )
}

async fn the_called_agent_is_charged_to_the_same_budget(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    let app = agents_app(backend, &llm).await;
    let user = app.register_user().await;
    let arguments = json!({"agent": "note_agent", "question": QUESTION}).to_string();
    // What the model's usage counts as each call's output.
    let outputs = [
        "task_agent".to_owned(),
        format!("call_agent {arguments}"),
        "Two notes mention Launch.".to_owned(),
        "Both are about Launch.".to_owned(),
    ];
    llm.push_all([
        text(&outputs[0]),
        Reply::ToolCalls(vec![ToolCall {
            name: "call_agent".to_owned(),
            arguments,
        }]),
        text(&outputs[2]),
        text(&outputs[3]),
    ]);
    chat(&app, &user, &json!({"message": "launch notes?"})).await;

    let requests = llm.requests();
    assert_eq!(
        requests.len(),
        4,
        "router, task agent, note agent, task agent"
    );
    let costs: Vec<(u64, u64)> = requests
        .iter()
        .zip(&outputs)
        .map(|(request, output)| reported(request, output))
        .collect();
    let agents = costs[1..]
        .iter()
        .fold((0, 0), |(p, c), (prompt, completion)| {
            (p + prompt, c + completion)
        });
    let usage: Value = app
        .get_authed("/api/v1/chat/usage", &user.tokens.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["reserved_tokens"], 0);
    assert_eq!(
        usage["used_tokens"],
        costs[0].0 + costs[0].1 + agents.0 + agents.1,
        "{usage}"
    );
    // The called agent's call is among the agents' model's: three calls of gpt-4o.
    let agent_model = usage["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["model"] == "gpt-4o")
        .unwrap();
    assert_eq!(
        (
            agent_model["prompt_tokens"].clone(),
            agent_model["completion_tokens"].clone()
        ),
        (json!(agents.0), json!(agents.1))
    );
}

async fn a_pipeline_plan_hands_the_later_agents_over_with_call_agent(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    let app = agents_app(backend, &llm).await;
    let user = app.register_user().await;
    llm.push(text("project_agent, timeline_agent, task_agent"));
    let (raw, body) = chat(
        &app,
        &user,
        &json!({"message": "plan the launch", "execution_mode": "plan"}),
    )
    .await;
    let variables = |agent: Option<&str>| {
        let mut variables = json!({"user_message": "plan the launch"});
        if let Some(agent) = agent {
            variables["agent"] = json!(agent);
        }
        variables
    };
    assert_eq!(
        body,
        json!({
            "agent": "project_agent",
            "steps": [
                {"action": "llm_generate", "prompt_template": "tpl_project_agent_default",
                 "variables": variables(None), "data_from_step": null},
                {"action": "call_agent", "prompt_template": "tpl_timeline_agent_default",
                 "variables": variables(Some("timeline_agent")), "data_from_step": 0},
                {"action": "call_agent", "prompt_template": "tpl_task_agent_default",
                 "variables": variables(Some("task_agent")), "data_from_step": 1},
            ]
        })
    );
    assert_eq!(llm.requests().len(), 1, "plan mode only routes");
    for text in protected_texts() {
        assert!(!raw.contains(&text), "the plan carries {text:?}");
    }
}

// ------------------------------------------------------------------------------ WebSocket

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends `request` on the local WebSocket; the text frames, then the final frame.
async fn stream(app: &TestApp, user: &TestUser, request: &Value) -> (Vec<String>, Value) {
    let url = format!(
        "{}/api/v1/chat/stream?token={}",
        app.address.replacen("http://", "ws://", 1),
        user.tokens.access_token
    );
    let mut socket: Socket = tokio_tungstenite::connect_async(url).await.unwrap().0;
    socket
        .send(Message::text(request.to_string()))
        .await
        .unwrap();
    let mut chunks = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("the stream stalled")
            .expect("the stream ended without a final frame")
            .unwrap();
        match frame {
            Message::Text(text) => {
                if let Ok(value) = serde_json::from_str::<Value>(text.as_str())
                    && value.get("done") == Some(&json!(true))
                {
                    return (chunks, value);
                }
                chunks.push(text.to_string());
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_called_agent_s_text_is_streamed_with_the_rest() {
    let llm = ScriptedLlm::start().await;
    let app = agents_app(Backend::Sqlite, &llm).await;
    let user = app.register_user().await;
    llm.push_all([
        text("task_agent"),
        call_agent("note_agent", QUESTION),
        Reply::Text(vec![
            "Two notes ".into(),
            "mention ".into(),
            "Launch.".into(),
        ]),
        Reply::Text(vec!["So ".into(), "review them.".into()]),
    ]);
    let (chunks, last) = stream(&app, &user, &json!({"message": "launch notes?"})).await;
    let expected = "Two notes mention Launch.\n\nSo review them.";
    assert_eq!(chunks.concat(), expected);
    assert_eq!(last["response"], expected);
    let requests = llm.requests();
    assert_eq!(requests.len(), 4);
    assert!(
        requests[1..]
            .iter()
            .all(|request| request["stream"] == true)
    );
    assert_eq!(contents(&requests[2], "user"), [QUESTION]);
}
