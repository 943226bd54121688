//! Langfuse for the chat: request traces over OTLP/HTTP JSON and managed prompts, both over plain
//! HTTP, and nothing at all without keys.
//!
//! [`Langfuse::from_source`] returns `None` unless both `LANGFUSE_PUBLIC_KEY` and
//! `LANGFUSE_SECRET_KEY` are set; callers then use [`Trace::disabled`], which records nothing and
//! sends nothing, and their built-in prompts.
//!
//! A [`Trace`] is one chat request: a root span plus one child observation per model call
//! ([`Trace::generation`]) and per tool call ([`Trace::tool`]). The observations stay in memory
//! until [`Trace::finish`], which sends them all in one OTLP/HTTP JSON request to
//! `{LANGFUSE_HOST}/api/public/otel/v1/traces` and waits at most 2 s. Tracing never fails a
//! request: export errors are logged at warn and dropped.
//!
//! [`Langfuse::prompt`] reads a managed text prompt (label `production`), cached per name for
//! 60 s, errors and misses included, so a Langfuse outage costs one request per name per minute
//! rather than one per chat. `None` means "use the built-in prompt".
//!
//! # What is sent
//!
//! Only names (trace, observation, tool, prompt), the user id, model names, token counts,
//! timings, and short outcome or error codes. Prompt texts, user messages, model outputs and
//! tool arguments are never put in attributes: prompts are our intellectual property and
//! messages are the user's private data, and neither belongs in a third-party trace store. The
//! Langfuse traces therefore show cost, latency, failures and which prompt version ran, not
//! content.
//!
//! TLS is rustls on ring with Mozilla's roots, handed to reqwest preconfigured (as in
//! `adiuva-llm`), so no process-wide crypto provider is needed.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use adiuva_config::Source;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Value, json};

/// How long one export or prompt fetch may take, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a fetched prompt (or the failure to fetch it) is reused.
const PROMPT_TTL: Duration = Duration::from_secs(60);
/// The label of the prompt version in use.
const PROMPT_LABEL: &str = "production";
const SERVICE_NAME: &str = "adiuva-chat";
const SCOPE_NAME: &str = "adiuva-tracing";
const TRACES_PATH: &str = "api/public/otel/v1/traces";

/// OTLP `SpanKind` INTERNAL.
const SPAN_KIND_INTERNAL: u8 = 1;
/// OTLP `StatusCode` OK.
const STATUS_OK: u8 = 1;
/// OTLP `StatusCode` ERROR.
const STATUS_ERROR: u8 = 2;

/// The Langfuse client: traces and managed prompts. Cheap to clone.
#[derive(Clone)]
pub struct Langfuse {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    host: reqwest::Url,
    /// `Basic base64(public:secret)`, marked sensitive.
    auth: HeaderValue,
    prompt_ttl: Duration,
    prompts: Mutex<HashMap<String, CachedPrompt>>,
}

struct CachedPrompt {
    fetched: Instant,
    /// `None`: absent, not a text prompt, or the fetch failed.
    prompt: Option<ManagedPrompt>,
}

#[derive(Clone)]
struct ManagedPrompt {
    text: String,
    version: Option<i64>,
}

impl fmt::Debug for Langfuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Langfuse")
            .field("host", &self.inner.host.as_str())
            .field("auth", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Langfuse {
    /// `LANGFUSE_PUBLIC_KEY`, `LANGFUSE_SECRET_KEY` and `LANGFUSE_HOST` (default Langfuse
    /// Cloud). None unless both keys are set: then tracing does nothing and costs nothing.
    pub fn from_source(source: &Source) -> Option<Self> {
        let public = source.optional("LANGFUSE_PUBLIC_KEY")?;
        let secret = source.secret("LANGFUSE_SECRET_KEY")?;
        let secret = secret.expose();
        let configured_host = source
            .url("LANGFUSE_HOST")
            .unwrap_or_else(|| "https://cloud.langfuse.com".to_owned());
        let host = match parse_host(&configured_host) {
            Ok(host) => host,
            Err(reason) => {
                tracing::warn!(
                    host = %configured_host,
                    %reason,
                    "LANGFUSE_HOST is not a valid URL; Langfuse is disabled"
                );
                return None;
            }
        };
        let client = match http_client() {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!(error = %err, "cannot build the Langfuse HTTP client; Langfuse is disabled");
                return None;
            }
        };
        let mut auth = HeaderValue::from_str(&format!(
            "Basic {}",
            STANDARD.encode(format!("{public}:{secret}"))
        ))
        .ok()?;
        auth.set_sensitive(true);
        Some(Self {
            inner: Arc::new(Inner {
                client,
                host,
                auth,
                prompt_ttl: PROMPT_TTL,
                prompts: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Starts a trace for one chat request.
    pub fn trace(&self, name: &str, user_id: &str) -> Trace {
        let (Some(trace_id), Some(root_span_id)) = (random_id::<16>(), random_id::<8>()) else {
            return Trace::disabled();
        };
        Trace {
            inner: Some(TraceInner {
                langfuse: self.clone(),
                trace_id,
                root_span_id,
                name: name.to_owned(),
                user_id: user_id.to_owned(),
                started: SystemTime::now(),
                children: Vec::new(),
            }),
        }
    }

    /// A managed prompt's text by name: the version labelled `production`.
    ///
    /// Cached per name for 60 s, misses and errors included. `None` when the prompt is absent, is
    /// not a text prompt, or on any error (logged at warn); callers then fall back to their
    /// built-in prompt. Waits at most 2 s.
    pub async fn prompt(&self, name: &str) -> Option<String> {
        if let Some(cached) = self.cached_prompt(name) {
            return cached.map(|prompt| prompt.text);
        }
        let prompt = self.fetch_prompt(name).await;
        self.lock_prompts().insert(
            name.to_owned(),
            CachedPrompt {
                fetched: Instant::now(),
                prompt: prompt.clone(),
            },
        );
        prompt.map(|prompt| prompt.text)
    }

    /// The fresh cache entry for `name`: `Some(None)` is a cached miss.
    fn cached_prompt(&self, name: &str) -> Option<Option<ManagedPrompt>> {
        let prompts = self.lock_prompts();
        let cached = prompts.get(name)?;
        (cached.fetched.elapsed() < self.inner.prompt_ttl).then(|| cached.prompt.clone())
    }

    /// The version of a prompt fetched earlier, for linking a generation to it.
    fn cached_prompt_version(&self, name: &str) -> Option<i64> {
        self.lock_prompts().get(name)?.prompt.as_ref()?.version
    }

    fn lock_prompts(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedPrompt>> {
        // The map is always consistent (single inserts), so a poisoned lock is still usable.
        self.inner
            .prompts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn fetch_prompt(&self, name: &str) -> Option<ManagedPrompt> {
        let mut url = self.inner.host.clone();
        url.path_segments_mut()
            .ok()?
            .pop_if_empty()
            .extend(["api", "public", "v2", "prompts", name]);
        url.query_pairs_mut().append_pair("label", PROMPT_LABEL);

        let response = match self
            .inner
            .client
            .get(url)
            .header(AUTHORIZATION, self.inner.auth.clone())
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
        {
            Ok(response) => response,
            Err(err) => {
                tracing::warn!(prompt = name, error = %err, "Langfuse prompt fetch failed; using the built-in prompt");
                return None;
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            // Not managed in Langfuse (or no production label): the built-in prompt is expected.
            tracing::debug!(
                prompt = name,
                "no managed prompt in Langfuse; using the built-in prompt"
            );
            return None;
        }
        if !status.is_success() {
            tracing::warn!(
                prompt = name,
                status = status.as_u16(),
                "Langfuse prompt fetch failed; using the built-in prompt"
            );
            return None;
        }
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(err) => {
                tracing::warn!(prompt = name, error = %err, "Langfuse prompt response is unreadable; using the built-in prompt");
                return None;
            }
        };
        let is_text = body
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(|kind| kind == "text");
        match body.get("prompt").and_then(Value::as_str) {
            Some(text) if is_text => Some(ManagedPrompt {
                text: text.to_owned(),
                version: body.get("version").and_then(Value::as_i64),
            }),
            _ => {
                tracing::warn!(
                    prompt = name,
                    "Langfuse prompt is not a text prompt; using the built-in prompt"
                );
                None
            }
        }
    }

    async fn export(&self, body: &Value, trace_id: &str) {
        let Ok(url) = self.inner.host.join(TRACES_PATH) else {
            return;
        };
        let result = self
            .inner
            .client
            .post(url)
            .header(AUTHORIZATION, self.inner.auth.clone())
            .timeout(REQUEST_TIMEOUT)
            .json(body)
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(trace_id, "trace sent to Langfuse");
            }
            Ok(response) => {
                tracing::warn!(
                    trace_id,
                    status = response.status().as_u16(),
                    "Langfuse rejected the trace"
                );
            }
            Err(err) => {
                tracing::warn!(trace_id, error = %err, "sending the trace to Langfuse failed");
            }
        }
    }

    #[cfg(test)]
    fn with_prompt_ttl(self, ttl: Duration) -> Self {
        let inner = Arc::into_inner(self.inner).expect("not shared yet");
        Self {
            inner: Arc::new(Inner {
                prompt_ttl: ttl,
                ..inner
            }),
        }
    }
}

/// One trace: a root span for the request plus child observations. `Trace::disabled()` records
/// nothing.
#[derive(Debug)]
pub struct Trace {
    inner: Option<TraceInner>,
}

#[derive(Debug)]
struct TraceInner {
    langfuse: Langfuse,
    trace_id: String,
    root_span_id: String,
    name: String,
    user_id: String,
    started: SystemTime,
    /// Finished child spans, already in OTLP JSON form.
    children: Vec<Value>,
}

/// One model call.
#[derive(Debug, Clone)]
pub struct Generation<'a> {
    /// The step, e.g. "router", "task_agent", "synthesis".
    pub name: &'a str,
    pub model: &'a str,
    pub started: SystemTime,
    pub ended: SystemTime,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// The managed prompt used, if any.
    pub prompt_name: Option<&'a str>,
    /// A short error code, never a message that could carry content.
    pub error: Option<&'a str>,
}

impl Trace {
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// A model call: observation type "generation".
    pub fn generation(&mut self, g: Generation<'_>) {
        let Some(inner) = &mut self.inner else {
            return;
        };
        let mut attributes = vec![
            string_attribute("langfuse.observation.type", "generation"),
            string_attribute("gen_ai.request.model", g.model),
            int_attribute("gen_ai.usage.input_tokens", g.input_tokens.into()),
            int_attribute("gen_ai.usage.output_tokens", g.output_tokens.into()),
        ];
        if let Some(prompt_name) = g.prompt_name {
            attributes.push(string_attribute(
                "langfuse.observation.prompt.name",
                prompt_name,
            ));
            // Langfuse links a generation to a prompt by name and version.
            if let Some(version) = inner.langfuse.cached_prompt_version(prompt_name) {
                attributes.push(int_attribute(
                    "langfuse.observation.prompt.version",
                    version,
                ));
            }
        }
        inner.push_child(g.name, g.started, g.ended, attributes, g.error);
    }

    /// A tool call: observation type "tool".
    pub fn tool(
        &mut self,
        name: &str,
        started: SystemTime,
        ended: SystemTime,
        error: Option<&str>,
    ) {
        let Some(inner) = &mut self.inner else {
            return;
        };
        let attributes = vec![string_attribute("langfuse.observation.type", "tool")];
        inner.push_child(name, started, ended, attributes, error);
    }

    /// Ends the root span and sends everything in one OTLP/HTTP JSON request; waits at most 2 s.
    /// Failures are logged at warn and never returned. `output`: a short description of the
    /// outcome (e.g. "ok" or the error code); `error`: whether the request failed.
    pub async fn finish(self, output: &str, error: bool) {
        let Some(inner) = self.inner else {
            return;
        };
        let langfuse = inner.langfuse.clone();
        let trace_id = inner.trace_id.clone();
        let body = inner.into_otlp(SystemTime::now(), output, error);
        langfuse.export(&body, &trace_id).await;
    }
}

impl TraceInner {
    fn push_child(
        &mut self,
        name: &str,
        started: SystemTime,
        ended: SystemTime,
        attributes: Vec<Value>,
        error: Option<&str>,
    ) {
        let Some(span_id) = random_id::<8>() else {
            return;
        };
        let mut span = span_json(
            &self.trace_id,
            &span_id,
            name,
            started,
            ended,
            attributes,
            error,
        );
        span["parentSpanId"] = Value::String(self.root_span_id.clone());
        self.children.push(span);
    }

    /// The whole trace as one OTLP `ExportTraceServiceRequest` in the protobuf JSON mapping.
    fn into_otlp(self, ended: SystemTime, output: &str, error: bool) -> Value {
        let attributes = vec![
            string_attribute("langfuse.trace.name", &self.name),
            string_attribute("langfuse.user.id", &self.user_id),
            string_attribute("langfuse.trace.output", output),
        ];
        let root = span_json(
            &self.trace_id,
            &self.root_span_id,
            &self.name,
            self.started,
            ended,
            attributes,
            error.then_some(output),
        );
        let mut spans = Vec::with_capacity(1 + self.children.len());
        spans.push(root);
        spans.extend(self.children);
        json!({
            "resourceSpans": [{
                "resource": {
                    "attributes": [string_attribute("service.name", SERVICE_NAME)],
                },
                "scopeSpans": [{
                    "scope": { "name": SCOPE_NAME },
                    "spans": spans,
                }],
            }],
        })
    }
}

/// One OTLP span. Times are nanoseconds since the epoch as decimal strings (protobuf JSON maps
/// 64-bit integers to strings); an end before the start (clock step) is clamped to the start.
fn span_json(
    trace_id: &str,
    span_id: &str,
    name: &str,
    started: SystemTime,
    ended: SystemTime,
    mut attributes: Vec<Value>,
    error: Option<&str>,
) -> Value {
    let start = unix_nanos(started);
    let end = unix_nanos(ended).max(start);
    let status = match error {
        Some(message) => {
            attributes.push(string_attribute("langfuse.observation.level", "ERROR"));
            attributes.push(string_attribute(
                "langfuse.observation.status_message",
                message,
            ));
            json!({ "code": STATUS_ERROR, "message": message })
        }
        None => json!({ "code": STATUS_OK }),
    };
    json!({
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": SPAN_KIND_INTERNAL,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": end.to_string(),
        "attributes": attributes,
        "status": status,
    })
}

fn string_attribute(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}

fn int_attribute(key: &str, value: i64) -> Value {
    json!({ "key": key, "value": { "intValue": value.to_string() } })
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

/// A random, non-zero OTLP id of `N` bytes as lowercase hex: 16 for a trace, 8 for a span.
fn random_id<const N: usize>() -> Option<String> {
    let mut bytes = [0u8; N];
    if let Err(err) = getrandom::fill(&mut bytes) {
        tracing::warn!(error = %err, "no randomness for a trace id; not tracing");
        return None;
    }
    if bytes.iter().all(|&byte| byte == 0) {
        // The all-zero id is invalid in OTLP.
        bytes[N - 1] = 1;
    }
    Some(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// `LANGFUSE_HOST` as a base URL whose path ends in `/`, so that joining keeps any path prefix
/// of a self-hosted instance.
fn parse_host(host: &str) -> Result<reqwest::Url, String> {
    let host = host.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(&format!("{host}/")).map_err(|err| err.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err("expected an http(s) URL".to_owned());
    }
    Ok(url)
}

/// The HTTP client: rustls on ring with Mozilla's roots, as in `adiuva-llm`.
fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(REQUEST_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
}

#[cfg(test)]
mod tests;
