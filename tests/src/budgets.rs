//! AI token budgets (issue 24): every model call of a chat reserves its estimate before it is
//! made and is settled to the provider's reported usage (plain and streamed), a provider that
//! reports nothing is charged the estimate, a spent budget refuses with 402 before any model
//! call (HTTP, the local WebSocket and the chat-ws Lambda), a team's pool is shared by its
//! members, concurrent chats cannot reserve past the limit, and `GET /api/v1/chat/usage`
//! reports it all by calendar month. Against the scripted model (`crate::llm`).

use std::time::Duration;

use adiuva_access::{Caller, Role, Tier};
use adiuva_budgets::{BudgetError, Budgets, Charge};
use adiuva_calendar::{next_period_start, period_of};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::backend_tests;
use crate::harness::{Backend, TestApp, TestUser, error_body, spawn_app_with};
use crate::llm::{Reply, ScriptedLlm, ToolCall};

backend_tests!(
    a_plain_chat_is_settled_to_the_reported_usage,
    tool_loop_and_synthesis_calls_are_charged_too,
    a_streamed_chat_holds_its_reservation_until_the_usage_chunk,
    a_spent_budget_refuses_before_any_model_call,
    a_provider_without_usage_is_charged_the_estimate,
    a_team_pool_is_shared_by_its_members,
    concurrent_chats_cannot_reserve_past_the_limit,
    the_usage_route_reports_this_month,
    months_are_counted_apart,
);

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

async fn budget_app(backend: Backend, llm: &ScriptedLlm, extra: &[(&str, &str)]) -> TestApp {
    let base = llm.base_url();
    let mut settings = vec![
        ("LLM_BASE_URL", base.as_str()),
        ("LLM_MAX_RETRIES", "0"),
        ("CHAT_MAX_IN_FLIGHT", "10"),
    ];
    settings.extend_from_slice(extra);
    spawn_app_with(backend, &settings).await
}

fn text(text: &str) -> Reply {
    Reply::Text(vec![text.to_owned()])
}

fn now_ms() -> i64 {
    adiuva_db::now_ms()
}

async fn post_chat(app: &TestApp, user: &TestUser, message: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/chat"))
        .bearer_auth(&user.tokens.access_token)
        .json(&json!({"message": message, "context": {}}))
        .send()
        .await
        .unwrap()
}

async fn usage(app: &TestApp, user: &TestUser) -> Value {
    let response = app
        .client
        .get(app.url("/api/v1/chat/usage"))
        .bearer_auth(&user.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
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

/// The estimate the service reserves for a request as the model received it: its messages and
/// tools at 4 bytes a token, plus `max_tokens`.
fn estimate(request: &Value) -> (u64, u64) {
    let mut bytes = serde_json::to_vec(&request["messages"]).unwrap().len();
    if let Some(tools) = request.get("tools") {
        bytes += serde_json::to_vec(tools).unwrap().len();
    }
    (
        bytes.div_ceil(4) as u64,
        request["max_tokens"].as_u64().unwrap(),
    )
}

fn model_row(usage: &Value, model: &str) -> Value {
    usage["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["model"] == model)
        .unwrap_or_else(|| panic!("no {model} in {usage}"))
        .clone()
}

/// Spends the whole of this month's budget of `user_id` (free: 50,000 tokens) by writing its
/// counter, as months of chatting would have.
async fn spend_all(app: &TestApp, user_id: &str) {
    let period = period_of(now_ms());
    adiuva_db::sqlx::query(
        "INSERT INTO ai_budgets (id, user_id, period, used_tokens, reserved_tokens, created_at, \
         updated_at) VALUES ($1, $2, $3, 50000, 0, 0, 0)",
    )
    .bind(format!("user:{user_id}:{period}"))
    .bind(user_id)
    .bind(&period)
    .execute(app.database.db.pool())
    .await
    .unwrap();
}

/// A team of `members` (the first its owner, joined in order a second apart) with `seats`
/// paid seats and the subscription `status`, written straight into `teams` and
/// `team_members`: this stands in for the teams API (invitations, checkout per seat), which
/// lands separately; the budget reads only these rows.
async fn team_of(app: &TestApp, members: &[&TestUser], seats: i64, status: &str) -> String {
    let team_id = uuid::Uuid::new_v4().to_string();
    let pool = app.database.db.pool();
    adiuva_db::sqlx::query(
        "INSERT INTO teams (id, name, seats, status, created_at, updated_at) \
         VALUES ($1, 'Budget team', $2, $3, 0, 0)",
    )
    .bind(&team_id)
    .bind(seats)
    .bind(status)
    .execute(pool)
    .await
    .unwrap();
    for (index, member) in members.iter().enumerate() {
        adiuva_db::sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&team_id)
        .bind(&member.id)
        .bind(if index == 0 { "owner" } else { "member" })
        .bind(now_ms() - 1_000_000 + index as i64 * 1000)
        .execute(pool)
        .await
        .unwrap();
    }
    team_id
}

async fn a_plain_chat_is_settled_to_the_reported_usage(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    let app = budget_app(backend, &llm, &[]).await;
    let user = app.register_user().await;
    // The agent's answer is held back long enough to see its reservation.
    llm.push_all([
        text("note_agent"),
        Reply::Slow {
            delay: Duration::from_millis(700),
            reply: Box::new(text("Here are your three notes.")),
        },
    ]);

    let chat = {
        let (app, user) = (&app, &user);
        async move { post_chat(app, user, "show my notes").await }
    };
    let watch = async {
        // Once the agent's request is at the model, the router's call is settled and the
        // agent's estimate is reserved.
        while llm.requests().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        usage(&app, &user).await
    };
    let (response, during) = tokio::join!(chat, watch);
    assert_eq!(response.status(), StatusCode::OK);

    let requests = llm.requests();
    let router = reported(&requests[0], "note_agent");
    let agent = reported(&requests[1], "Here are your three notes.");
    let (agent_prompt_estimate, max_tokens) = estimate(&requests[1]);
    assert_eq!(during["used_tokens"], router.0 + router.1, "{during}");
    assert_eq!(
        during["reserved_tokens"],
        agent_prompt_estimate + max_tokens,
        "{during}"
    );

    let after = usage(&app, &user).await;
    assert_eq!(after["reserved_tokens"], 0);
    assert_eq!(
        after["used_tokens"],
        router.0 + router.1 + agent.0 + agent.1,
        "{after}"
    );
    assert_eq!(
        after["by_model"],
        json!([
            {"model": "gpt-4o", "prompt_tokens": agent.0, "completion_tokens": agent.1, "estimated": false},
            {"model": "gpt-4o-mini", "prompt_tokens": router.0, "completion_tokens": router.1, "estimated": false},
        ])
    );

    // The counters go with the account.
    let deleted = app
        .client
        .delete(app.url("/api/v1/auth/me"))
        .bearer_auth(&user.tokens.access_token)
        .json(&json!({"password": user.password}))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let left: i64 = adiuva_db::sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM ai_budgets) + (SELECT COUNT(*) FROM ai_budget_models)",
    )
    .fetch_one(app.database.db.pool())
    .await
    .unwrap();
    assert_eq!(left, 0);
}

async fn tool_loop_and_synthesis_calls_are_charged_too(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    let app = budget_app(backend, &llm, &[]).await;
    let user = app.register_user().await;
    // The router names two agents; the first calls a tool, then answers; the second answers;
    // the synthesis merges them. Each answer with what the model's usage counts as its output.
    let answers = [
        "task_agent, note_agent",
        "list_tasks {}",
        "Two tasks.",
        "No notes.",
        "You have two tasks and no notes.",
    ];
    llm.push_all([
        text(answers[0]),
        Reply::ToolCalls(vec![ToolCall::new("list_tasks", json!({}))]),
        text(answers[2]),
        text(answers[3]),
        text(answers[4]),
    ]);
    let response = post_chat(&app, &user, "my tasks and notes").await;
    assert_eq!(response.status(), StatusCode::OK);

    let requests = llm.requests();
    assert_eq!(
        requests.len(),
        5,
        "router, tool loop (2), second agent, synthesis"
    );
    let costs: Vec<(u64, u64)> = requests
        .iter()
        .zip(answers)
        .map(|(request, answer)| reported(request, answer))
        .collect();
    let sum = |calls: &[(u64, u64)]| {
        calls.iter().fold((0, 0), |(p, c), (prompt, completion)| {
            (p + prompt, c + completion)
        })
    };
    let (router, agents) = (sum(&costs[..1]), sum(&costs[1..]));
    let after = usage(&app, &user).await;
    assert_eq!(after["reserved_tokens"], 0);
    assert_eq!(
        after["used_tokens"],
        router.0 + router.1 + agents.0 + agents.1,
        "{after}"
    );
    assert_eq!(
        after["by_model"],
        json!([
            {"model": "gpt-4o", "prompt_tokens": agents.0, "completion_tokens": agents.1, "estimated": false},
            {"model": "gpt-4o-mini", "prompt_tokens": router.0, "completion_tokens": router.1, "estimated": false},
        ])
    );
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp, user: &TestUser) -> Socket {
    let url = format!(
        "{}/api/v1/chat/stream?token={}",
        app.address.replacen("http://", "ws://", 1),
        user.tokens.access_token
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next text frame of the socket (pings skipped).
async fn next_text(socket: &mut Socket) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("the stream stalled")
            .expect("the stream ended")
            .unwrap();
        match frame {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads text frames until the final one (`"done": true`).
async fn final_frame(socket: &mut Socket) -> Value {
    loop {
        let text = next_text(socket).await;
        if let Ok(value) = serde_json::from_str::<Value>(&text)
            && value.get("done") == Some(&json!(true))
        {
            return value;
        }
    }
}

async fn a_streamed_chat_holds_its_reservation_until_the_usage_chunk(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    let app = budget_app(backend, &llm, &[]).await;
    let user = app.register_user().await;
    let words: Vec<String> = (0..12).map(|i| format!("word{i} ")).collect();
    llm.push_all([text("task_agent"), Reply::Text(words.clone())]);
    llm.set_chunk_delay(Duration::from_millis(60));

    let mut socket = connect(&app, &user).await;
    socket
        .send(Message::text(
            json!({"message": "what is due?", "context": {}}).to_string(),
        ))
        .await
        .unwrap();
    // The first text has reached the client: the agent's call is under way.
    let first = next_text(&mut socket).await;
    assert!(first.starts_with("word0"), "{first}");
    let during = usage(&app, &user).await;
    let last = final_frame(&mut socket).await;
    assert_eq!(last["response"], words.concat().as_str(), "{last}");

    let requests = llm.requests();
    assert_eq!(requests.len(), 2);
    // The stream asked for the final usage chunk.
    assert_eq!(requests[1]["stream"], true);
    assert_eq!(
        requests[1]["stream_options"],
        json!({"include_usage": true})
    );
    let router = reported(&requests[0], "task_agent");
    let agent = reported(&requests[1], &words.concat());
    let (prompt_estimate, max_tokens) = estimate(&requests[1]);
    assert_eq!(during["used_tokens"], router.0 + router.1, "{during}");
    assert_eq!(during["reserved_tokens"], prompt_estimate + max_tokens);

    let after = usage(&app, &user).await;
    assert_eq!(after["reserved_tokens"], 0, "{after}");
    assert_eq!(
        after["used_tokens"],
        router.0 + router.1 + agent.0 + agent.1
    );
    assert_eq!(
        model_row(&after, "gpt-4o"),
        json!({"model": "gpt-4o", "prompt_tokens": agent.0, "completion_tokens": agent.1, "estimated": false})
    );
}

async fn a_spent_budget_refuses_before_any_model_call(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    llm.otherwise(text("task_agent"));
    let app = budget_app(backend, &llm, &[]).await;
    let user = app.register_user().await;
    spend_all(&app, &user.id).await;
    let resets_at = next_period_start(now_ms());

    let response = post_chat(&app, &user, "hello").await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "ai_budget_exhausted", "{body}");
    assert_eq!(body["resets_at"], resets_at, "{body}");

    // The local WebSocket: the same refusal as the error frame.
    let mut socket = connect(&app, &user).await;
    socket
        .send(Message::text(
            json!({"message": "hello", "context": {}}).to_string(),
        ))
        .await
        .unwrap();
    let last = final_frame(&mut socket).await;
    assert_eq!(last["error"]["status"], 402, "{last}");
    assert_eq!(last["error"]["code"], "ai_budget_exhausted");
    assert_eq!(last["error"]["resets_at"], resets_at);

    assert!(
        llm.requests().is_empty(),
        "the model saw {:?}",
        llm.requests()
    );
    // Nothing was charged or left reserved by the refusals.
    let after = usage(&app, &user).await;
    assert_eq!(
        (&after["used_tokens"], &after["reserved_tokens"]),
        (&json!(50_000), &json!(0))
    );
    // Another user's budget is untouched.
    let other = app.register_user().await;
    assert_eq!(
        post_chat(&app, &other, "hello").await.status(),
        StatusCode::OK
    );
}

/// The chat-ws Lambda: a spent budget is the error frame, posted through the Management API,
/// before any model call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_ws_lambda_refuses_a_spent_budget_before_any_model_call() {
    use crate::chat_ws::{connection_id, deployment, event};
    let llm = ScriptedLlm::start().await;
    llm.otherwise(text("task_agent"));
    let deployment = deployment(Some(&llm)).await;
    let user = deployment.app.register_user().await;
    spend_all(&deployment.app, &user.id).await;
    let id = connection_id();
    let connect = deployment
        .function
        .handle(event("connect", &id, &user.tokens.access_token))
        .await;
    assert_eq!(connect.status_code, 200);

    let answer = deployment.function.handle(event("message", &id, "")).await;
    assert_eq!(answer.status_code, 200);
    let frames = deployment.frames(&id).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    let last: Value = serde_json::from_str(&frames[0]).unwrap();
    assert_eq!(last["error"]["status"], 402, "{last}");
    assert_eq!(last["error"]["code"], "ai_budget_exhausted");
    assert_eq!(last["error"]["resets_at"], next_period_start(now_ms()));
    assert!(llm.requests().is_empty(), "the model saw a request");
}

async fn a_provider_without_usage_is_charged_the_estimate(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    llm.report_usage(false);
    let app = budget_app(backend, &llm, &[]).await;
    let user = app.register_user().await;
    llm.push_all([text("note_agent"), text("No notes yet.")]);
    assert_eq!(
        post_chat(&app, &user, "notes?").await.status(),
        StatusCode::OK
    );

    let requests = llm.requests();
    let router = estimate(&requests[0]);
    let agent = estimate(&requests[1]);
    let after = usage(&app, &user).await;
    assert_eq!(after["reserved_tokens"], 0);
    assert_eq!(
        after["used_tokens"],
        router.0 + router.1 + agent.0 + agent.1,
        "{after}"
    );
    assert_eq!(
        after["by_model"],
        json!([
            {"model": "gpt-4o", "prompt_tokens": agent.0, "completion_tokens": agent.1, "estimated": true},
            {"model": "gpt-4o-mini", "prompt_tokens": router.0, "completion_tokens": router.1, "estimated": true},
        ])
    );

    // Streamed: no usage chunk either, the same charge.
    llm.push_all([text("note_agent"), text("No notes yet.")]);
    let mut socket = connect(&app, &user).await;
    socket
        .send(Message::text(
            json!({"message": "notes?", "context": {}}).to_string(),
        ))
        .await
        .unwrap();
    let last = final_frame(&mut socket).await;
    assert_eq!(last["response"], "No notes yet.", "{last}");
    let requests = llm.requests();
    let streamed = estimate(&requests[3]);
    let again = usage(&app, &user).await;
    assert_eq!(
        again["used_tokens"].as_u64().unwrap(),
        after["used_tokens"].as_u64().unwrap()
            + estimate(&requests[2]).0
            + estimate(&requests[2]).1
            + streamed.0
            + streamed.1
    );
    assert_eq!(model_row(&again, "gpt-4o")["estimated"], true);
}

async fn a_team_pool_is_shared_by_its_members(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    llm.otherwise(text("task_agent"));
    let app = budget_app(backend, &llm, &[("AI_MONTHLY_TOKENS_TEAM", "40000")]).await;
    let (owner, member, outsider, lapsed) = (
        app.register_user().await,
        app.register_user().await,
        app.register_user().await,
        app.register_user().await,
    );
    team_of(&app, &[&owner, &member], 3, "active").await;
    // A team whose subscription ended gives no pool.
    team_of(&app, &[&lapsed], 5, "canceled").await;
    // A later membership of another active team does not move the owner's budget.
    team_of(&app, &[&outsider, &owner], 1, "active").await;

    assert_eq!(
        post_chat(&app, &owner, "one").await.status(),
        StatusCode::OK
    );
    let owners = usage(&app, &owner).await;
    assert_eq!(owners["source"], "team");
    assert_eq!(owners["limit_tokens"], 120_000, "3 seats × 40,000");
    let spent = owners["used_tokens"].as_u64().unwrap();
    assert!(spent > 0);
    // The member sees the same pool, spent by the owner.
    assert_eq!(usage(&app, &member).await, owners);

    assert_eq!(
        post_chat(&app, &member, "two").await.status(),
        StatusCode::OK
    );
    let both = usage(&app, &owner).await;
    assert!(both["used_tokens"].as_u64().unwrap() > spent, "{both}");
    assert_eq!(usage(&app, &member).await, both);

    // The outsider's own team is the other one: its own pool, untouched by the first team.
    let outsiders = usage(&app, &outsider).await;
    assert_eq!(outsiders["source"], "team");
    assert_eq!(outsiders["limit_tokens"], 40_000);
    assert_eq!(outsiders["used_tokens"], 0);
    let lapsed = usage(&app, &lapsed).await;
    assert_eq!(lapsed["source"], "own");
    assert_eq!(lapsed["limit_tokens"], 50_000);
    // Who pays for the Team tier themselves keeps their own budget (one seat's), seat or not.
    let payer = app.register_user().await;
    app.set_subscription(&payer.id, "team", "active").await;
    team_of(&app, &[&payer], 2, "active").await;
    let payers = usage(&app, &payer).await;
    assert_eq!(
        (&payers["source"], &payers["limit_tokens"]),
        (&json!("own"), &json!(40_000))
    );

    // A pool spent by one member refuses the other.
    adiuva_db::sqlx::query(
        "UPDATE ai_budgets SET used_tokens = 120000 WHERE team_id IS NOT NULL AND used_tokens > 0",
    )
    .execute(app.database.db.pool())
    .await
    .unwrap();
    let refused = post_chat(&app, &member, "three").await;
    error_body(refused, StatusCode::PAYMENT_REQUIRED, "ai_budget_exhausted").await;
}

async fn concurrent_chats_cannot_reserve_past_the_limit(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    // No usage reported: every call is charged exactly what it reserved, so what the counter
    // ends at is what was reserved; slow answers keep the chats in flight together.
    llm.report_usage(false);
    llm.otherwise(Reply::Slow {
        delay: Duration::from_millis(150),
        reply: Box::new(text("task_agent")),
    });
    let app = budget_app(backend, &llm, &[("AI_MONTHLY_TOKENS_TEAM", "1000")]).await;
    // What one chat's calls cost (router, agent), measured on a user of its own.
    let probe = app.register_user().await;
    assert_eq!(post_chat(&app, &probe, "go").await.status(), StatusCode::OK);
    let costs: Vec<u64> = llm
        .requests()
        .iter()
        .map(|request| {
            let (prompt, max) = estimate(request);
            prompt + max
        })
        .collect();
    let (router, agent) = (costs[0], costs[1]);
    assert_eq!(usage(&app, &probe).await["used_tokens"], router + agent);
    let largest_call = router.max(agent);
    let calls_before = llm.requests().len();

    // Eight chats at once from one member of a pool that holds every router call and two and
    // a half agent calls: some chats must finish, and some must be refused.
    let user = app.register_user().await;
    let seats = (8 * router + agent * 5 / 2).div_ceil(1000);
    team_of(&app, &[&user], seats as i64, "active").await;
    let limit = seats * 1000;
    let chats = (0..8).map(|_| post_chat(&app, &user, "go"));
    let statuses: Vec<StatusCode> = futures::future::join_all(chats)
        .await
        .into_iter()
        .map(|response| response.status())
        .collect();
    let done = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::PAYMENT_REQUIRED)
        .count();
    assert_eq!(done + refused, 8, "{statuses:?}");
    assert!(done >= 2 && refused >= 1, "{statuses:?}");

    let pool = usage(&app, &user).await;
    let used = pool["used_tokens"].as_u64().unwrap();
    assert_eq!(pool["reserved_tokens"], 0);
    assert!(
        used <= limit + largest_call,
        "used {used} of {limit} (one reservation: {largest_call})"
    );
    // Every call the model saw was charged: none ran on a reservation that did not fit.
    let charged: u64 = llm.requests()[calls_before..]
        .iter()
        .map(|request| {
            let (prompt, max) = estimate(request);
            prompt + max
        })
        .sum();
    assert_eq!(charged, used);
    assert!(
        used <= limit,
        "estimates charged exactly: {used} of {limit}"
    );
}

async fn the_usage_route_reports_this_month(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    let app = budget_app(backend, &llm, &[("AI_MONTHLY_TOKENS_PRO", "1234567")]).await;
    let unauthenticated = app
        .client
        .get(app.url("/api/v1/chat/usage"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    let user = app.register_user().await;
    let before = now_ms();
    let fresh = usage(&app, &user).await;
    let after = now_ms();
    let resets_at = fresh["resets_at"].as_i64().unwrap();
    // The first instant of the month after this one: a midnight (UTC), in the future, at most
    // 31 days away, in another month than now and than its last millisecond's.
    assert_eq!(resets_at % DAY_MS, 0);
    assert!(resets_at > after && resets_at - before <= 31 * DAY_MS);
    let period = fresh["period"].as_str().unwrap();
    assert!(period == period_of(before) || period == period_of(after));
    assert_eq!(period_of(resets_at - 1), period);
    assert_ne!(period_of(resets_at), period);
    assert_eq!(
        fresh,
        json!({
            "period": period,
            "used_tokens": 0,
            "reserved_tokens": 0,
            "limit_tokens": 50_000,
            "resets_at": resets_at,
            "source": "own",
            "by_model": [],
        })
    );

    // The limit follows the live tier.
    app.set_subscription(&user.id, "pro", "active").await;
    assert_eq!(usage(&app, &user).await["limit_tokens"], 1_234_567);
}

async fn months_are_counted_apart(backend: Backend) {
    let llm = ScriptedLlm::start().await;
    let app = budget_app(backend, &llm, &[]).await;
    let user = app.register_user().await;
    let budgets: Budgets = app.context.get().unwrap();
    let caller = Caller {
        id: user.id.clone(),
        email: user.email.clone(),
        tier: Tier::Free,
        role: Role::User,
        session_id: None,
        tier_source: adiuva_access::TierSource::Own,
    };
    let account = budgets.account_of(&caller).await.unwrap();
    // 2026-11-30T23:59:59.999Z and the next millisecond.
    let december = 1_796_083_200_000;
    let last_of_november = december - 1;

    let november = budgets
        .reserve_at(&account, 50_000, last_of_november)
        .await
        .unwrap();
    match budgets.reserve_at(&account, 1, last_of_november).await {
        Err(BudgetError::Exhausted {
            limit_tokens,
            resets_at,
        }) => assert_eq!((limit_tokens, resets_at), (50_000, december)),
        other => panic!("November is full: {other:?}"),
    }
    // December starts empty, whatever November holds.
    let first = budgets
        .reserve_at(&account, 40_000, december)
        .await
        .unwrap();
    assert_ne!(first, november);
    // The November call settles in November, even though it ends in December.
    budgets
        .settle(
            &november,
            "gpt-4o",
            50_000,
            Charge {
                prompt_tokens: 700,
                completion_tokens: 300,
                estimated: false,
            },
        )
        .await
        .unwrap();
    let nov = budgets.usage_at(&account, last_of_november).await.unwrap();
    assert_eq!(
        (nov.period.as_str(), nov.used_tokens, nov.reserved_tokens),
        ("2026-11", 1000, 0)
    );
    assert_eq!(nov.resets_at, december);
    let dec = budgets.usage_at(&account, december).await.unwrap();
    assert_eq!(
        (dec.period.as_str(), dec.used_tokens, dec.reserved_tokens),
        ("2026-12", 0, 40_000)
    );
    assert_eq!(dec.resets_at, 1_798_761_600_000);
    assert!(dec.by_model.is_empty());
    // An unsettled reservation stays charged: December has 10,000 left, not 50,000.
    assert!(
        budgets
            .reserve_at(&account, 10_001, december)
            .await
            .is_err()
    );
    budgets
        .reserve_at(&account, 10_000, december)
        .await
        .unwrap();

    // A spent earlier month does not refuse this one's chats.
    let chatter = app.register_user().await;
    llm.push_all([text("task_agent"), text("Done.")]);
    let previous = period_of(next_period_start(now_ms()) - 40 * DAY_MS);
    assert_ne!(previous, period_of(now_ms()));
    adiuva_db::sqlx::query(
        "INSERT INTO ai_budgets (id, user_id, period, used_tokens, reserved_tokens, created_at, \
         updated_at) VALUES ($1, $2, $3, 50000, 0, 0, 0)",
    )
    .bind(format!("user:{}:{previous}", chatter.id))
    .bind(&chatter.id)
    .bind(&previous)
    .execute(app.database.db.pool())
    .await
    .unwrap();
    assert_eq!(
        post_chat(&app, &chatter, "go").await.status(),
        StatusCode::OK
    );
    assert_eq!(usage(&app, &chatter).await["period"], period_of(now_ms()));
}
