//! The orchestrator: classifies the intent with the router model, runs one agent or a pipeline
//! of agents (each seeing the previous results, then a synthesis), and answers a
//! `ChatResponse` (direct mode) or an `ExecutionPlan` naming templates by id (plan mode).
//! Everything it outputs, streamed or not, passes the sanitizer.

use std::borrow::Cow;

use adiuva_error::ErrorKind;
use std::time::{Duration, SystemTime};

use adiuva_llm::{Llm, LlmError, Message, Model, Reply, ToolSpec};
use adiuva_plans::{ExecutionPlan, ExecutionPlanBuilder, PromptTemplateRegistry};
use adiuva_sanitizer::{Sanitizer, StreamSanitizer};
use adiuva_tracing::{Generation, Langfuse, Trace};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::agents::{self, AGENTS, Agent, Depth, FALLBACK_AGENT};
use crate::meter::{Meter, MeterError, Spent};
use crate::schema::{
    ActionType, ChatContext, ChatRequest, ChatResponse, ExecutionMode, PlanAction,
};

/// Model calls one agent may make for one request (reference: `_tool_loop(max_iter=5)`).
pub const MAX_TOOL_ITERATIONS: usize = 5;
/// Most agents one pipeline runs.
pub const MAX_PIPELINE_AGENTS: usize = 4;
/// Earlier turns given to an agent.
const MAX_HISTORY_TURNS: usize = 20;

pub const ROUTER_PROMPT: &str = "You are an intent classifier. Given the user message and \
context, decide which agent to route to. Available agents: {agents}. Respond with just the agent \
name. Only when the request clearly needs several agents one after the other, respond with their \
names in that order, separated by commas.";

pub const SYNTHESIS_PROMPT: &str = "Summarize these agent results into a coherent response to \
the user's request. Speak directly to the user in their language, keep every concrete change \
and question the agents reported, do not mention agents, tools or this instruction, and do not \
add anything the results do not say.";

/// Said when an agent is still calling tools after its last allowed model call.
pub const ITERATION_CAP_REPLY: &str = "I had to stop before finishing: this request needed more \
steps than I may take at once. The changes listed so far are ready; please ask again for the rest.";

/// What a chat request answers: a `ChatResponse` in direct mode, an `ExecutionPlan` in plan
/// mode.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Answer {
    Response(ChatResponse),
    Plan(ExecutionPlan),
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error("the chat request did not finish within {0:?}")]
    Timeout(Duration),
    /// The streaming client went away; generation stopped.
    #[error("the client disconnected")]
    Gone,
    /// The AI budget refused the next model call (spent, or not checkable).
    #[error(transparent)]
    Meter(#[from] MeterError),
}

impl ChatError {
    /// A finer code for logs and traces: how the provider failed.
    pub fn trace_code(&self) -> &'static str {
        match self {
            Self::Timeout(_) | Self::Llm(LlmError::Timeout(_)) => "llm_timeout",
            Self::Llm(LlmError::Status { status: 429, .. }) => "llm_rate_limited",
            Self::Llm(LlmError::Status { .. }) => "llm_error",
            Self::Llm(LlmError::Unreachable(_)) => "llm_unreachable",
            Self::Llm(LlmError::Malformed(_)) => "llm_malformed",
            Self::Gone => "client_gone",
            Self::Meter(MeterError::Exhausted { .. }) => "ai_budget_exhausted",
            Self::Meter(MeterError::Unavailable(_)) => "ai_budget_unavailable",
        }
    }
}

impl adiuva_error::DomainError for ChatError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Timeout(_) | Self::Llm(LlmError::Timeout(_)) => ErrorKind::Timeout,
            Self::Llm(LlmError::Status { status: 429, .. }) => ErrorKind::Unavailable,
            Self::Llm(_) => ErrorKind::BadGateway,
            Self::Gone => ErrorKind::BadRequest,
            Self::Meter(MeterError::Exhausted { .. }) => ErrorKind::QuotaExceeded,
            Self::Meter(MeterError::Unavailable(_)) => ErrorKind::Unavailable,
        }
    }

    /// The code clients see (never the provider's own words).
    fn code(&self) -> &'static str {
        if let Self::Meter(_) = self {
            return self.trace_code();
        }
        match self.kind() {
            ErrorKind::Timeout => "llm_timeout",
            ErrorKind::Unavailable => "llm_rate_limited",
            ErrorKind::BadGateway => "llm_error",
            _ => "client_gone",
        }
    }

    fn resets_at(&self) -> Option<i64> {
        match self {
            Self::Meter(MeterError::Exhausted { resets_at, .. }) => Some(*resets_at),
            _ => None,
        }
    }

    fn public_detail(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::Meter(MeterError::Exhausted { .. }) => {
                return Some(
                    "this month's AI token budget is spent; it resets at resets_at (ms since \
                     the epoch, the first instant of next month, UTC)"
                        .into(),
                );
            }
            Self::Meter(MeterError::Unavailable(_)) => {
                return Some(adiuva_error::unavailable("the AI budget"));
            }
            _ => {}
        }
        Some(
            match self.kind() {
                ErrorKind::Timeout => "the language model took too long to answer; try again",
                ErrorKind::Unavailable => "the language model provider is busy; try again shortly",
                ErrorKind::BadGateway => "the language model provider failed to answer; try again",
                _ => "the client disconnected",
            }
            .into(),
        )
    }
}

/// Every text that must never reach a client: the agents' prompt templates (and the other
/// templates), the router and synthesis prompts, and the tools' descriptions.
pub fn protected_texts() -> Vec<String> {
    let mut texts: Vec<String> = PromptTemplateRegistry::builtin()
        .texts()
        .map(str::to_owned)
        .collect();
    texts.push(ROUTER_PROMPT.to_owned());
    texts.push(SYNTHESIS_PROMPT.to_owned());
    for agent in AGENTS {
        for tool in agent.tools_at(Depth::Routed) {
            texts.push(tool.description.to_owned());
        }
        for spec in agent.tool_specs(Depth::Routed) {
            texts.push(spec.parameters.to_string());
        }
    }
    texts.sort();
    texts.dedup();
    texts
}

/// Langfuse prompt names of the router and synthesis prompts; the agents' prompts are managed
/// under their template ids (`tpl_task_agent_default`, ...).
pub const ROUTER_PROMPT_NAME: &str = "chat_router";
pub const SYNTHESIS_PROMPT_NAME: &str = "chat_synthesis";

#[derive(Debug, Clone)]
pub struct Orchestrator {
    llm: Llm,
    sanitizer: Sanitizer,
    timeout: Duration,
    langfuse: Option<Langfuse>,
}

/// The sanitizers of one request: the built-in protected texts, plus the managed prompts this
/// request fetched from Langfuse when they differ from the built-in ones.
#[derive(Debug, Clone)]
struct Sanitizers {
    builtin: Sanitizer,
    managed: Option<Sanitizer>,
}

impl Sanitizers {
    /// Sanitizes what one answer shows the client: its text and every string of its actions'
    /// data (titles, descriptions, note contents), read together, so that a prompt split across
    /// them is redacted in each part it touches. When `text_sent`, the text was streamed: it was
    /// sanitized on the way out and stays exactly what was sent, and it still takes part in the
    /// check, so an action's string that completes a leak with it is redacted. `table` and
    /// `agent` are our own names, not model output, and stay out of it.
    fn sanitize_answer(&self, text: &mut String, text_sent: bool, actions: &mut [PlanAction]) {
        let mut parts: Vec<&mut String> = vec![text];
        for action in actions.iter_mut() {
            if let Some(data) = action.data.as_mut() {
                strings_of(data, &mut parts);
            }
        }
        let texts: Vec<&str> = parts.iter().map(|part| part.as_str()).collect();
        let mut clean = self.builtin.sanitize_parts(&texts);
        if let Some(managed) = &self.managed {
            let texts: Vec<&str> = clean.iter().map(|part| part.text.as_str()).collect();
            let again = managed.sanitize_parts(&texts);
            for (first, second) in clean.iter_mut().zip(again) {
                first.text = second.text;
                first.redactions += second.redactions;
            }
        }
        for (index, (part, clean)) in parts.into_iter().zip(clean).enumerate() {
            if clean.redactions > 0 && !(index == 0 && text_sent) {
                *part = clean.text;
            }
        }
    }
}

/// Every string in `value`, in the order it is serialized.
fn strings_of<'a>(value: &'a mut Value, out: &mut Vec<&'a mut String>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Array(items) => items.iter_mut().for_each(|item| strings_of(item, out)),
        Value::Object(map) => map.values_mut().for_each(|item| strings_of(item, out)),
        _ => {}
    }
}

/// Where streamed text goes: through the sanitizers chunk by chunk, then to the client.
struct Output<'a> {
    tx: &'a mpsc::Sender<String>,
    builtin: StreamSanitizer,
    managed: Option<StreamSanitizer>,
    sent: String,
}

impl Output<'_> {
    async fn push(&mut self, chunk: &str) -> Result<(), ChatError> {
        let mut clean = self.builtin.push(chunk);
        if let Some(managed) = &mut self.managed {
            clean = managed.push(&clean);
        }
        self.send(clean).await
    }

    async fn send(&mut self, clean: String) -> Result<(), ChatError> {
        if clean.is_empty() {
            return Ok(());
        }
        self.sent.push_str(&clean);
        self.tx.send(clean).await.map_err(|_| ChatError::Gone)
    }

    /// Flushes what the sanitizers held back; returns all the text sent.
    async fn finish(self) -> Result<String, ChatError> {
        let Output {
            tx,
            builtin,
            managed,
            sent,
        } = self;
        let mut rest = builtin.finish();
        if let Some(mut managed) = managed {
            let mut flushed = managed.push(&rest);
            flushed.push_str(&managed.finish());
            rest = flushed;
        }
        let mut output = Output {
            tx,
            builtin: Sanitizer::new(&[]).stream(),
            managed: None,
            sent,
        };
        output.send(rest).await?;
        Ok(output.sent)
    }
}

/// One agent's result.
#[derive(Debug, Clone)]
struct AgentRun {
    agent: &'static str,
    text: String,
    actions: Vec<PlanAction>,
    /// Model calls it made, those of the agents it called included.
    calls: usize,
    /// It answered (rather than still calling tools at its last allowed call).
    finished: bool,
}

/// What one agent run is asked.
#[derive(Debug, Clone, Copy)]
struct Ask<'q> {
    /// The user's message, or the sub-question another agent handed over.
    message: &'q str,
    /// The agent that called it (`call_agent`); `None`: the router ran it.
    asked_by: Option<&'static str>,
    /// The most model calls it may make.
    calls: usize,
}

impl<'q> Ask<'q> {
    /// The user's own message, for an agent the router runs.
    fn routed(message: &'q str) -> Self {
        Self {
            message,
            asked_by: None,
            calls: MAX_TOOL_ITERATIONS,
        }
    }
}

/// The agent and question of a validated `call_agent` action of `caller`, which may still make
/// `left` model calls for it; why not, in words for the model.
fn delegation<'a>(
    action: &'a PlanAction,
    caller: &Agent,
    left: usize,
) -> Result<(&'static Agent, &'a str), String> {
    let callee = action
        .agent
        .as_deref()
        .and_then(agents::get)
        .ok_or("call_agent names no known agent")?;
    if callee.name == caller.name {
        return Err("you cannot call yourself; answer it with your own tools".to_owned());
    }
    let question = action
        .data
        .as_ref()
        .and_then(|data| data.get("question"))
        .and_then(Value::as_str)
        .filter(|question| !question.trim().is_empty())
        .ok_or("call_agent needs a question")?;
    if left == 0 {
        return Err("no steps are left to ask another agent; answer with what you have".to_owned());
    }
    Ok((callee, question))
}

/// What one request carries along: its trace, the prompts it uses and its AI budget.
struct Run<'m> {
    trace: Trace,
    /// Charged for every model call; `None`: calls are not metered.
    meter: Option<&'m dyn Meter>,
    /// Prompt texts by name (managed or built-in).
    prompts: Vec<(&'static str, String)>,
    /// Managed prompt texts that differ from the built-in ones, to protect as well.
    managed: Vec<String>,
}

impl Run<'_> {
    fn prompt(&self, name: &str) -> &str {
        self.prompts
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, text)| text.as_str())
            .expect("prompts are fetched before they are used")
    }

    /// Whether `name` came from Langfuse (for the trace's prompt link).
    fn is_managed(&self, name: &str) -> bool {
        self.managed.iter().any(|text| text == self.prompt(name))
    }
}

impl Orchestrator {
    /// With `langfuse`, each request is traced there and prompts are fetched from there by name,
    /// with the built-in ones as the fallback.
    pub fn new(llm: Llm, timeout: Duration, langfuse: Option<Langfuse>) -> Self {
        let texts = protected_texts();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        Self {
            llm,
            sanitizer: Sanitizer::new(&texts),
            timeout,
            langfuse,
        }
    }

    /// Answers one chat request of `user_id`. With `stream`, the response text is also sent
    /// there piece by piece as the model produces it (sanitized); the answer's `response` is
    /// exactly the text sent. With `meter`, every model call is reserved there before it is
    /// made and settled after it (a refusal ends the request with [`ChatError::Meter`] before
    /// that call). The request must have passed [`ChatRequest::validate`].
    pub async fn orchestrate(
        &self,
        request: &ChatRequest,
        stream: Option<&mpsc::Sender<String>>,
        user_id: &str,
        meter: Option<&dyn Meter>,
    ) -> Result<Answer, ChatError> {
        let mut run = Run {
            meter,
            trace: self
                .langfuse
                .as_ref()
                .map_or_else(Trace::disabled, |langfuse| langfuse.trace("chat", user_id)),
            prompts: Vec::new(),
            managed: Vec::new(),
        };
        let result =
            match tokio::time::timeout(self.timeout, self.run(request, stream, &mut run)).await {
                Ok(answer) => answer,
                Err(_) => Err(ChatError::Timeout(self.timeout)),
            };
        let outcome = match &result {
            Ok(Answer::Response(_)) => "response",
            Ok(Answer::Plan(_)) => "plan",
            Err(err) => err.trace_code(),
        };
        run.trace.finish(outcome, result.is_err()).await;
        result
    }

    /// The prompt `name`: Langfuse's version when there is one, else `builtin`.
    async fn fetch_prompt(&self, run: &mut Run<'_>, name: &'static str, builtin: &'static str) {
        if run.prompts.iter().any(|(known, _)| *known == name) {
            return;
        }
        let managed = match &self.langfuse {
            Some(langfuse) => langfuse.prompt(name).await,
            None => None,
        };
        let text = match managed {
            Some(text) if text != builtin => {
                run.managed.push(text.clone());
                text
            }
            _ => builtin.to_owned(),
        };
        run.prompts.push((name, text));
    }

    fn sanitizers(&self, run: &Run<'_>) -> Sanitizers {
        let managed: Vec<&str> = run.managed.iter().map(String::as_str).collect();
        Sanitizers {
            builtin: self.sanitizer.clone(),
            managed: (!managed.is_empty()).then(|| Sanitizer::new(&managed)),
        }
    }

    async fn run(
        &self,
        request: &ChatRequest,
        stream: Option<&mpsc::Sender<String>>,
        run: &mut Run<'_>,
    ) -> Result<Answer, ChatError> {
        let route = self
            .classify_intent(&request.message, &request.context, run)
            .await?;
        tracing::info!(agents = ?route.iter().map(|agent| agent.name).collect::<Vec<_>>(), mode = ?request.execution_mode, "chat routed");
        if request.execution_mode == ExecutionMode::Plan {
            return Ok(Answer::Plan(plan_for(&route, &request.message)));
        }
        // Every prompt this request may use, before any text goes out, so that the stream's
        // sanitizers know them all: the routed agents' and, as any of them may call another,
        // every agent's.
        for agent in route.iter().copied().chain(AGENTS) {
            self.fetch_prompt(run, agent.template, agent.builtin_prompt())
                .await;
        }
        if route.len() > 1 {
            self.fetch_prompt(run, SYNTHESIS_PROMPT_NAME, SYNTHESIS_PROMPT)
                .await;
        }
        let sanitizers = self.sanitizers(run);
        let mut output = stream.map(|tx| Output {
            tx,
            builtin: sanitizers.builtin.stream(),
            managed: sanitizers.managed.as_ref().map(Sanitizer::stream),
            sent: String::new(),
        });
        let (text, mut actions) = match route.as_slice() {
            [agent] => {
                let result = self
                    .run_agent(
                        agent,
                        Ask::routed(&request.message),
                        request,
                        &[],
                        output.as_mut(),
                        run,
                    )
                    .await?;
                (result.text, result.actions)
            }
            agents => {
                self.route_pipeline(agents, request, output.as_mut(), run)
                    .await?
            }
        };
        let (mut response, text_sent) = match output {
            Some(output) => (output.finish().await?, true),
            None => (text, false),
        };
        sanitizers.sanitize_answer(&mut response, text_sent, &mut actions);
        Ok(Answer::Response(ChatResponse { response, actions }))
    }

    /// The agents to run, in order: what the router model names, or the fallback agent when it
    /// names none we know (reference: `classify_intent`).
    async fn classify_intent(
        &self,
        message: &str,
        context: &ChatContext,
        run: &mut Run<'_>,
    ) -> Result<Vec<&'static Agent>, ChatError> {
        self.fetch_prompt(run, ROUTER_PROMPT_NAME, ROUTER_PROMPT)
            .await;
        let prompt = run
            .prompt(ROUTER_PROMPT_NAME)
            .replace("{agents}", &agents::list_agents().to_string());
        let mut user = message.to_owned();
        if let Some(last) = context
            .conversation_history
            .last()
            .and_then(history_message)
        {
            user = format!("Previous turn: {}\n\nMessage: {message}", last.text());
        }
        let messages = [Message::system(prompt), Message::user(user)];
        let reply = self
            .call(
                self.llm.router(),
                &messages,
                &[],
                None,
                run,
                ("router", ROUTER_PROMPT_NAME),
            )
            .await?;
        let route = parse_route(&reply.content);
        if route.is_empty() {
            tracing::info!(
                fallback = FALLBACK_AGENT,
                "the router named no known agent; using the fallback"
            );
            return Ok(vec![
                agents::get(FALLBACK_AGENT).expect("the fallback agent exists"),
            ]);
        }
        Ok(route)
    }

    /// Runs the agents in order, each seeing the previous results, then merges their results
    /// with one more model call (reference: `route_pipeline`).
    async fn route_pipeline(
        &self,
        agents: &[&'static Agent],
        request: &ChatRequest,
        output: Option<&mut Output<'_>>,
        run: &mut Run<'_>,
    ) -> Result<(String, Vec<PlanAction>), ChatError> {
        let mut runs: Vec<AgentRun> = Vec::with_capacity(agents.len());
        for agent in agents {
            let result = self
                .run_agent(
                    agent,
                    Ask::routed(&request.message),
                    request,
                    &runs,
                    None,
                    run,
                )
                .await?;
            runs.push(result);
        }
        let results = runs
            .iter()
            .map(|result| format!("[{}]\n{}", result.agent, result.text))
            .collect::<Vec<_>>()
            .join("\n\n");
        let messages = [
            Message::system(run.prompt(SYNTHESIS_PROMPT_NAME)),
            Message::user(format!(
                "User request: {}\n\nAgent results:\n{results}",
                request.message
            )),
        ];
        let reply = self
            .call(
                self.llm.agent(),
                &messages,
                &[],
                output,
                run,
                ("synthesis", SYNTHESIS_PROMPT_NAME),
            )
            .await?;
        let actions = runs.into_iter().flat_map(|result| result.actions).collect();
        Ok((reply.content, actions))
    }

    /// One agent's tool loop: at most `ask.calls` model calls (a routed agent's
    /// [`MAX_TOOL_ITERATIONS`]); invalid tool arguments are answered to the model as errors,
    /// never executed. A `call_agent` runs the other agent's loop inside this one: its model
    /// calls come out of the same count (one is always kept for this agent to answer), are
    /// charged to the same meter, and its text goes to the same `output`; its answer is the
    /// tool's result and its actions join this agent's.
    async fn run_agent(
        &self,
        agent: &'static Agent,
        ask: Ask<'_>,
        request: &ChatRequest,
        previous: &[AgentRun],
        mut output: Option<&mut Output<'_>>,
        run: &mut Run<'_>,
    ) -> Result<AgentRun, ChatError> {
        let context = &request.context;
        let depth = if ask.asked_by.is_some() {
            Depth::Called
        } else {
            Depth::Routed
        };
        let mut messages = vec![Message::system(agent.system_prompt(
            run.prompt(agent.template),
            ask.message,
            context,
        ))];
        let mut facts = Map::new();
        if !context.user_profile.is_empty() {
            facts.insert("user_profile".into(), json!(context.user_profile));
        }
        if !context.relevant_documents.is_empty() {
            facts.insert(
                "relevant_documents".into(),
                json!(context.relevant_documents),
            );
        }
        if !previous.is_empty() {
            let results: Vec<Value> = previous
                .iter()
                .map(|result| {
                    json!({"agent": result.agent, "result": result.text, "actions": result.actions})
                })
                .collect();
            facts.insert("previous_results".into(), json!(results));
        }
        if let Some(asked_by) = ask.asked_by {
            facts.insert("asked_by".into(), json!(asked_by));
        }
        if !facts.is_empty() {
            messages.push(Message::system(format!(
                "Context from the user's app (JSON): {}",
                Value::Object(facts)
            )));
        }
        // A called agent answers one sub-question: the conversation is its caller's.
        if depth == Depth::Routed {
            let history = &context.conversation_history;
            messages.extend(
                history[history.len().saturating_sub(MAX_HISTORY_TURNS)..]
                    .iter()
                    .filter_map(history_message),
            );
        }
        messages.push(Message::user(ask.message.to_owned()));

        let tools = agent.tool_specs(depth);
        let mut actions = Vec::new();
        let mut calls = 0;
        while calls < ask.calls {
            let reply = self
                .call(
                    self.llm.agent(),
                    &messages,
                    &tools,
                    output.as_deref_mut(),
                    run,
                    (agent.name, agent.template),
                )
                .await?;
            calls += 1;
            if reply.tool_calls.is_empty() {
                return Ok(AgentRun {
                    agent: agent.name,
                    text: reply.content,
                    actions,
                    calls,
                    finished: true,
                });
            }
            messages.push(Message::Assistant {
                content: Some(reply.content.clone()).filter(|text| !text.is_empty()),
                tool_calls: reply.tool_calls.clone(),
            });
            for call in &reply.tool_calls {
                let started = SystemTime::now();
                let name = call.function.name.as_str();
                let (result, error) = match agent.tool(name, depth) {
                    None => (
                        json!({"error": format!("{name} is not one of your tools")}),
                        Some("unknown_tool"),
                    ),
                    Some(tool) => match tool.validate(&call.function.arguments) {
                        Err(reason) => {
                            tracing::info!(
                                agent = agent.name,
                                tool = name,
                                reason,
                                "tool call refused"
                            );
                            (
                                json!({"error": format!("invalid arguments for {name}: {reason}")}),
                                Some("invalid_arguments"),
                            )
                        }
                        Ok(args) => {
                            let outcome = tool.call(args, context);
                            tracing::info!(
                                agent = agent.name,
                                tool = name,
                                iteration = calls,
                                "tool called"
                            );
                            match outcome.action {
                                Some(action) if action.kind == ActionType::CallAgent => {
                                    // Every call but one this agent keeps to answer.
                                    let left = (ask.calls - calls).saturating_sub(1);
                                    match delegation(&action, agent, left) {
                                        Err(reason) => {
                                            tracing::info!(
                                                agent = agent.name,
                                                reason,
                                                "call_agent refused"
                                            );
                                            (json!({"error": reason}), Some("call_refused"))
                                        }
                                        Ok((callee, question)) => {
                                            let called = Box::pin(self.run_agent(
                                                callee,
                                                Ask {
                                                    message: question,
                                                    asked_by: Some(agent.name),
                                                    calls: left,
                                                },
                                                request,
                                                &[],
                                                output.as_deref_mut(),
                                                run,
                                            ))
                                            .await?;
                                            calls += called.calls;
                                            if let Some(output) = output.as_deref_mut()
                                                && !called.text.is_empty()
                                            {
                                                // The caller's own text starts a paragraph.
                                                output.push("\n\n").await?;
                                            }
                                            actions.extend(called.actions);
                                            if called.finished {
                                                (
                                                    json!({"agent": callee.name, "answer": called.text}),
                                                    None,
                                                )
                                            } else {
                                                (
                                                    json!({"agent": callee.name, "error": "it needed more steps than were left and stopped before answering"}),
                                                    Some("call_unfinished"),
                                                )
                                            }
                                        }
                                    }
                                }
                                action => {
                                    actions.extend(action);
                                    (outcome.result, None)
                                }
                            }
                        }
                    },
                };
                run.trace.tool(name, started, SystemTime::now(), error);
                messages.push(Message::Tool {
                    tool_call_id: call.id.clone(),
                    content: result.to_string(),
                });
            }
        }
        tracing::warn!(
            agent = agent.name,
            calls,
            "the agent still called tools after its last allowed model call"
        );
        if depth == Depth::Called {
            // Its caller says what happened, in its own words.
            return Ok(AgentRun {
                agent: agent.name,
                text: String::new(),
                actions,
                calls,
                finished: false,
            });
        }
        if let Some(output) = output {
            output.push(ITERATION_CAP_REPLY).await?;
        }
        Ok(AgentRun {
            agent: agent.name,
            text: ITERATION_CAP_REPLY.to_owned(),
            actions,
            calls,
            finished: false,
        })
    }

    /// One model call, streamed to `output` when there is one, recorded in the trace as the
    /// generation `label` using the prompt `prompt_name`. This is the one place every model
    /// call goes through, so it is where the AI budget is charged: the call's estimate is
    /// reserved before the request leaves (a refusal ends the chat here), and settled after it
    /// to the provider's reported usage, or the estimate when it reported none.
    async fn call(
        &self,
        model: &Model,
        messages: &[Message],
        tools: &[ToolSpec],
        output: Option<&mut Output<'_>>,
        run: &mut Run<'_>,
        (label, prompt_name): (&str, &str),
    ) -> Result<Reply, ChatError> {
        let reservation = match run.meter {
            Some(meter) => Some(
                meter
                    .reserve(model.name(), model.estimate(messages, tools))
                    .await?,
            ),
            None => None,
        };
        let started = SystemTime::now();
        let result = match output {
            None => model
                .complete(messages, tools)
                .await
                .map_err(ChatError::from),
            Some(output) => {
                async {
                    let mut stream = model.stream(messages, tools).await?;
                    while let Some(text) = stream.next_text().await? {
                        output.push(&text).await?;
                    }
                    Ok(stream.finish())
                }
                .await
            }
        };
        if let (Some(meter), Some(reservation)) = (run.meter, reservation) {
            let spent = match &result {
                Ok(reply) => reply.usage.map_or(Spent::Unreported, Spent::Reported),
                // An error status comes before any output: the provider generated nothing.
                Err(ChatError::Llm(LlmError::Status { .. })) => Spent::Nothing,
                Err(_) => Spent::Unreported,
            };
            meter.settle(reservation, spent).await;
        }
        let usage = result
            .as_ref()
            .ok()
            .and_then(|reply| reply.usage)
            .unwrap_or_default();
        let managed = run.is_managed(prompt_name);
        run.trace.generation(Generation {
            name: label,
            model: model.name(),
            started,
            ended: SystemTime::now(),
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            prompt_name: managed.then_some(prompt_name),
            error: result.as_ref().err().map(ChatError::trace_code),
        });
        result
    }
}

/// An earlier turn as a message; other roles and malformed entries are skipped.
fn history_message(turn: &Value) -> Option<Message> {
    let content = turn.get("content")?.as_str()?;
    match turn.get("role")?.as_str()? {
        "user" => Some(Message::user(content)),
        "assistant" => Some(Message::assistant(content)),
        _ => None,
    }
}

/// The known agent names in the router's answer, in order, without repeats.
pub fn parse_route(answer: &str) -> Vec<&'static Agent> {
    let mut route: Vec<&'static Agent> = Vec::new();
    for word in answer.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        let word = word.to_ascii_lowercase();
        if let Some(agent) = agents::get(&word)
            && !route.iter().any(|known| known.name == agent.name)
            && route.len() < MAX_PIPELINE_AGENTS
        {
            route.push(agent);
        }
    }
    route
}

/// Plan mode: the first agent's LLM step, naming its template by id, then for each further
/// agent a `call_agent` step (the plan's agent hands that part over), each reading the
/// previous step's output. The client runs it; no prompt text is in it.
fn plan_for(route: &[&'static Agent], message: &str) -> ExecutionPlan {
    let mut builder = ExecutionPlanBuilder::new(route[0].name).known_agents(agents::AGENT_NAMES);
    for (index, agent) in route.iter().enumerate() {
        let mut variables = Map::new();
        variables.insert("user_message".into(), json!(message));
        builder = if index == 0 {
            builder.add_llm_step(agent.template, variables)
        } else {
            builder
                .add_call_agent_step(agent.name, agent.template, variables)
                .with_data_from_step(index - 1)
        };
    }
    builder
        .build()
        .expect("agent templates exist, called agents are other known ones, steps are in order")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(agent: Option<&str>, question: Value) -> PlanAction {
        PlanAction {
            kind: ActionType::CallAgent,
            table: None,
            data: Some(json!({ "question": question })),
            agent: agent.map(str::to_owned),
        }
    }

    #[test]
    fn the_plan_action_and_the_plan_step_are_both_call_agent() {
        assert_eq!(
            serde_json::to_value(ActionType::CallAgent).unwrap(),
            adiuva_plans::CALL_AGENT_ACTION
        );
    }

    #[test]
    fn a_call_agent_action_names_another_agent_and_a_question() {
        let task = agents::get("task_agent").unwrap();
        let asked = call(Some("note_agent"), json!("Which notes mention Launch?"));
        let (callee, question) = delegation(&asked, task, 3).unwrap();
        assert_eq!(
            (callee.name, question),
            ("note_agent", "Which notes mention Launch?")
        );
        for (action, why) in [
            (call(Some("task_agent"), json!("q")), "yourself"),
            (call(Some("made_up_agent"), json!("q")), "no known agent"),
            (call(None, json!("q")), "no known agent"),
            (call(Some("note_agent"), json!("  ")), "needs a question"),
            (call(Some("note_agent"), Value::Null), "needs a question"),
        ] {
            let err = delegation(&action, task, 3).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        let err = delegation(&asked, task, 0).unwrap_err();
        assert!(err.contains("no steps are left"), "{err}");
    }

    #[test]
    fn a_pipeline_plan_hands_the_later_agents_over_with_call_agent() {
        let route = parse_route("project_agent, task_agent, note_agent");
        let plan = plan_for(&route, "plan the launch");
        assert_eq!(plan.agent, "project_agent");
        let actions: Vec<&str> = plan.steps.iter().map(|step| step.action.as_str()).collect();
        assert_eq!(actions, ["llm_generate", "call_agent", "call_agent"]);
        let callees: Vec<&Value> = plan.steps[1..]
            .iter()
            .map(|step| &step.variables.as_ref().unwrap()["agent"])
            .collect();
        assert_eq!(callees, [&json!("task_agent"), &json!("note_agent")]);
        assert_eq!(
            plan.steps[2].prompt_template.as_deref(),
            Some("tpl_note_agent_default")
        );
        assert_eq!(plan.steps[2].data_from_step, Some(1));
        // One agent: one LLM step, nothing to hand over.
        let plan = plan_for(&parse_route("note_agent"), "x");
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.steps[0].action, adiuva_plans::LLM_ACTION);
    }
}
