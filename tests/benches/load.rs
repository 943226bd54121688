//! Load benchmark: many signed-in users, each within its tier's rate limit, against the whole
//! local API on PostgreSQL, for a fixed window; reports throughput, p50/p95/p99 per route and
//! errors.
//!
//! `cargo bench -p tests --bench load` (default: 100, then 1,000 users, 60 s each; README,
//! "Load benchmark", has the knobs).
//!
//! Each level gets a fresh app, rate limiting on, and a scripted model (`tests::llm`, answering
//! every call with "task_agent"). By default the app is the pairing `adiuva-local` runs with a
//! PostgreSQL `DATABASE_URL`: a new database on 127.0.0.1 (`TestDatabase`), blobs in a local
//! folder, rate-limit counters in process memory, built from the harness's pieces as
//! `spawn_app_with` builds its SQLite pairing. `LOAD_BLOBS=s3` takes the harness's own app
//! instead (`spawn_app_with(Backend::Postgres, ..)`, blobs on its moto_server S3), and
//! `LOAD_KV=dynamo` keeps the counters in DynamoDB on moto_server: both measure moto_server, a
//! Python fake that runs on the same cores, more than the API.
//!
//! Before the measured window, users are registered (bcrypt cost 4, the lowest allowed) with
//! bounded concurrency, given the tier `LOAD_TIER` (default pro) and `LOAD_SEED_RECORDS` (5)
//! records of 1 KiB each, written through `adiuva_storage::Storage` so that seeding does not
//! spend their rate allowance. Then every user is one task that sends a request every
//! `60 s / (requests_per_minute × LOAD_RATE_SHARE)` (0.95 of the tier's limit: a Pro user sends 57
//! a minute), from a random offset within its first interval, one request at a time (a slow
//! answer delays the next request, never bunches them), picking from the mix below until
//! `LOAD_SECS` (60) are over:
//!
//! | op | route | weight |
//! |---|---|---|
//! | list | `GET /api/v1/storage/records?limit=50` | 20 |
//! | sync | `GET /api/v1/storage/changes?since=<cursor>` (the cursor of its last sync) | 20 |
//! | download | `GET /api/v1/storage/records/{id}` | 20 |
//! | create | `POST /api/v1/storage/records` (1 KiB random blob) | 10 |
//! | update | `PUT /api/v1/storage/records/{id}` (1 KiB random blob) | 15 |
//! | delete | `DELETE /api/v1/storage/records/{id}` | 5 |
//! | refresh | `POST /api/v1/auth/refresh` (the new tokens are used from then on) | 5 |
//! | chat | `POST /api/v1/chat` (router call and agent call to the scripted model) | 5 |
//!
//! A user left with fewer than two records creates one instead of deleting, and with none
//! creates one instead of downloading or updating.
//!
//! A latency is from sending to the last byte of the answer. An error is a transport error or
//! any status but 2xx/3xx; a 429 is an error too, since every user stays within its limit.
//! The client (one shared reqwest client), the server and the scripted model run in this one
//! process, on one tokio runtime, beside PostgreSQL on the same cores: the report says how busy
//! the cores were and how much of that was this process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adiuva_access::{Caller, Role, Tier, TierSource};
use adiuva_checksum::Digested;
use adiuva_config::Context;
use adiuva_db::{Backend, Database};
use adiuva_storage::Storage;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tests::harness::{
    TempDir, TestApp, TestDatabase, Tokens, b64, http_client, serve, sha, spawn_app_with,
    test_context,
};
use tests::llm::{Reply, ScriptedLlm};

/// The goal of the issue: p99 of every record route at most this, and no errors.
const GOAL_P99_MS: f64 = 50.0;
/// Users registered and seeded at once before the window.
const SETUP_CONCURRENCY: usize = 16;
/// Size of the blobs users create and update.
const BLOB_BYTES: usize = 1024;
/// A request that takes longer than this counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Error answers whose bodies are printed, per level.
const ERROR_SAMPLES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    List,
    Sync,
    Download,
    Create,
    Update,
    Delete,
    Refresh,
    Chat,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::List,
        Op::Sync,
        Op::Download,
        Op::Create,
        Op::Update,
        Op::Delete,
        Op::Refresh,
        Op::Chat,
    ];

    fn weight(self) -> u32 {
        match self {
            Op::List | Op::Sync | Op::Download => 20,
            Op::Create => 10,
            Op::Update => 15,
            Op::Delete | Op::Refresh | Op::Chat => 5,
        }
    }

    fn route(self) -> &'static str {
        match self {
            Op::List => "GET /api/v1/storage/records",
            Op::Sync => "GET /api/v1/storage/changes",
            Op::Download => "GET /api/v1/storage/records/{id}",
            Op::Create => "POST /api/v1/storage/records",
            Op::Update => "PUT /api/v1/storage/records/{id}",
            Op::Delete => "DELETE /api/v1/storage/records/{id}",
            Op::Refresh => "POST /api/v1/auth/refresh",
            Op::Chat => "POST /api/v1/chat",
        }
    }

    /// The routes the latency goal is about.
    fn is_record_route(self) -> bool {
        !matches!(self, Op::Refresh | Op::Chat)
    }

    fn index(self) -> usize {
        Op::ALL.iter().position(|op| *op == self).unwrap_or(0)
    }
}

/// What the environment asks for.
#[derive(Debug, Clone)]
struct Settings {
    secs: u64,
    levels: Vec<usize>,
    tier: Tier,
    share: f64,
    seed_records: usize,
    /// Blobs on the harness's moto_server S3 (through `spawn_app_with`) instead of a local folder.
    s3: bool,
    /// Rate-limit counters in DynamoDB on moto_server instead of process memory.
    dynamo: bool,
    /// `DATABASE_MAX_CONNECTIONS` of the server (local-folder pairing only).
    db_connections: Option<String>,
    /// Print p50/p99/max of every second of the window too.
    timeline: bool,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    match std::env::var(key) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{key}={value} is not valid")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        let levels = std::env::var("LOAD_USERS").unwrap_or_else(|_| "100,1000".to_owned());
        let levels: Vec<usize> = levels
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("LOAD_USERS: {n} is not a number"))
            })
            .collect();
        let tier = std::env::var("LOAD_TIER").unwrap_or_else(|_| "pro".to_owned());
        let tier = Tier::parse(&tier).unwrap_or_else(|| panic!("LOAD_TIER: no tier {tier}"));
        assert!(
            tier != Tier::Free,
            "LOAD_TIER: the free tier has no cloud storage"
        );
        let share: f64 = env_or("LOAD_RATE_SHARE", 0.95);
        assert!(
            share > 0.0 && share <= 1.0,
            "LOAD_RATE_SHARE is a fraction of the tier's limit, above 0 and at most 1"
        );
        let blobs = std::env::var("LOAD_BLOBS").unwrap_or_else(|_| "local".to_owned());
        assert!(
            blobs == "local" || blobs == "s3",
            "LOAD_BLOBS is local or s3"
        );
        let kv = std::env::var("LOAD_KV").unwrap_or_else(|_| "memory".to_owned());
        assert!(
            kv == "memory" || kv == "dynamo",
            "LOAD_KV is memory or dynamo"
        );
        let db_connections = std::env::var("LOAD_DB_CONNECTIONS").ok();
        assert!(
            db_connections.is_none() || blobs == "local",
            "LOAD_DB_CONNECTIONS: the harness's app (LOAD_BLOBS=s3) has a pool of its own"
        );
        Self {
            secs: env_or("LOAD_SECS", 60),
            levels,
            tier,
            share,
            seed_records: env_or("LOAD_SEED_RECORDS", 5),
            s3: blobs == "s3",
            dynamo: kv == "dynamo",
            db_connections,
            timeline: std::env::var_os("LOAD_TIMELINE").is_some(),
        }
    }

    /// Requests a minute each user sends: the share of its tier's limit.
    fn per_minute(&self) -> f64 {
        f64::from(self.tier.limits().requests_per_minute) * self.share
    }

    fn interval(&self) -> Duration {
        Duration::from_secs_f64(60.0 / self.per_minute())
    }
}

/// A small xorshift generator: the mix and the blobs need no better, and no dependency.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // SplitMix64 of the seed, so that neighbouring seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn op(&mut self) -> Op {
        let total: u32 = Op::ALL.iter().map(|op| op.weight()).sum();
        let mut pick = self.below(u64::from(total)) as u32;
        for op in Op::ALL {
            if pick < op.weight() {
                return op;
            }
            pick -= op.weight();
        }
        Op::List
    }
}

/// One simulated user: its tokens, its records and its sync cursor.
#[derive(Debug)]
struct User {
    access_token: String,
    refresh_token: String,
    records: Vec<String>,
    cursor: Option<String>,
    rng: Rng,
}

/// Latencies (µs) and errors of one route.
#[derive(Debug, Default, Clone)]
struct RouteStats {
    latencies_us: Vec<u32>,
    /// By status code, or the kind of transport error.
    errors: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone)]
struct Stats {
    routes: [RouteStats; 8],
    /// How late each request left after its due time (µs): the client's tasks waiting for a
    /// core, or for the user's previous answer.
    lag_us: Vec<u32>,
    /// Latencies (µs) of every route by the second of the window they were sent in.
    seconds: Vec<Vec<u32>>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        for (mine, theirs) in self.routes.iter_mut().zip(other.routes) {
            mine.latencies_us.extend(theirs.latencies_us);
            for (kind, count) in theirs.errors {
                *mine.errors.entry(kind).or_default() += count;
            }
        }
        self.lag_us.extend(other.lag_us);
        if self.seconds.len() < other.seconds.len() {
            self.seconds.resize_with(other.seconds.len(), Vec::new);
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(other.seconds) {
            mine.extend(theirs);
        }
    }
}

fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

/// What every user task shares.
struct Run {
    client: reqwest::Client,
    address: String,
    interval: Duration,
    /// The first few error answers, for the report.
    samples: Mutex<Vec<String>>,
}

impl Run {
    fn request(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(token)
            .timeout(REQUEST_TIMEOUT)
    }

    fn sample(&self, line: String) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() < ERROR_SAMPLES {
            samples.push(line);
        }
    }
}

/// Sends a request and reads the whole answer: (latency, status and body, or the error).
async fn timed(request: RequestBuilder) -> (Duration, Result<(StatusCode, Bytes), reqwest::Error>) {
    let started = Instant::now();
    let result = async {
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        Ok((status, body))
    }
    .await;
    (started.elapsed(), result)
}

fn transport_kind(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timeout".to_owned()
    } else if err.is_connect() {
        "connect".to_owned()
    } else {
        "transport".to_owned()
    }
}

/// The op a user can do now: what needs a record falls back to creating one.
fn feasible(op: Op, user: &User) -> Op {
    match op {
        Op::Download | Op::Update if user.records.is_empty() => Op::Create,
        Op::Delete if user.records.len() < 2 => Op::Create,
        op => op,
    }
}

/// One request of `op` for `user`; records it in `stats` and updates the user's state.
async fn step(run: &Run, user: &mut User, op: Op, stats: &mut Stats, second: usize) {
    let token = user.access_token.clone();
    let pick = |user: &mut User| user.rng.below(user.records.len() as u64) as usize;
    let mut chosen = None;
    let request = match op {
        Op::List => run.request(Method::GET, "/api/v1/storage/records?limit=50", &token),
        Op::Sync => {
            let path = match &user.cursor {
                Some(cursor) => format!("/api/v1/storage/changes?since={cursor}"),
                None => "/api/v1/storage/changes".to_owned(),
            };
            run.request(Method::GET, &path, &token)
        }
        Op::Download => {
            let index = pick(user);
            let path = format!("/api/v1/storage/records/{}", user.records[index]);
            run.request(Method::GET, &path, &token)
        }
        Op::Create => {
            let bytes = user.rng.bytes(BLOB_BYTES);
            let body = json!({"table": "notes", "blob": b64(&bytes), "checksum": sha(&bytes)});
            run.request(Method::POST, "/api/v1/storage/records", &token)
                .json(&body)
        }
        Op::Update => {
            let index = pick(user);
            let bytes = user.rng.bytes(BLOB_BYTES);
            let body = json!({"blob": b64(&bytes), "checksum": sha(&bytes)});
            let path = format!("/api/v1/storage/records/{}", user.records[index]);
            run.request(Method::PUT, &path, &token).json(&body)
        }
        Op::Delete => {
            let index = pick(user);
            chosen = Some(index);
            let path = format!("/api/v1/storage/records/{}", user.records[index]);
            run.request(Method::DELETE, &path, &token)
        }
        Op::Refresh => run
            .client
            .post(format!("{}/api/v1/auth/refresh", run.address))
            .timeout(REQUEST_TIMEOUT)
            .json(&json!({"refresh_token": user.refresh_token})),
        Op::Chat => run
            .request(Method::POST, "/api/v1/chat", &token)
            .json(&json!({"message": "what is on my list today?", "context": {}})),
    };
    let (elapsed, result) = timed(request).await;
    if stats.seconds.len() <= second {
        stats.seconds.resize_with(second + 1, Vec::new);
    }
    stats.seconds[second].push(micros(elapsed));
    let route = &mut stats.routes[op.index()];
    route.latencies_us.push(micros(elapsed));
    let (status, body) = match result {
        Ok(answer) => answer,
        Err(err) => {
            let kind = transport_kind(&err);
            run.sample(format!("{}: {kind}: {err}", op.route()));
            *route.errors.entry(kind).or_default() += 1;
            return;
        }
    };
    if !(status.is_success() || status.is_redirection()) {
        run.sample(format!(
            "{}: {status}: {}",
            op.route(),
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
        *route.errors.entry(status.as_u16().to_string()).or_default() += 1;
        return;
    }
    match op {
        Op::Create => {
            if let Some(id) = json_field(&body, "id") {
                user.records.push(id);
            }
        }
        Op::Delete => {
            if let Some(index) = chosen {
                user.records.swap_remove(index);
            }
        }
        Op::Sync => {
            if let Some(cursor) = json_field(&body, "next_cursor") {
                user.cursor = Some(cursor);
            }
        }
        Op::Refresh => {
            if let (Some(access), Some(refresh)) = (
                json_field(&body, "access_token"),
                json_field(&body, "refresh_token"),
            ) {
                user.access_token = access;
                user.refresh_token = refresh;
            }
        }
        Op::List | Op::Download | Op::Update | Op::Chat => {}
    }
}

fn json_field(body: &[u8], field: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.get(field)?.as_str().map(str::to_owned)
}

/// One user for the window: a request every interval from a random offset, until `end`.
async fn user_loop(run: Arc<Run>, mut user: User, start: Instant, end: Instant) -> Stats {
    let mut stats = Stats::default();
    let offset = run.interval.mul_f64(user.rng.below(1_000_000) as f64 / 1e6);
    let mut ticks = tokio::time::interval_at((start + offset).into(), run.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A tick due after the end is not waited for.
    while let Ok(tick) = tokio::time::timeout_at(end.into(), ticks.tick()).await {
        let tick = tick.into_std();
        if tick >= end {
            break;
        }
        let now = Instant::now();
        stats
            .lag_us
            .push(micros(now.saturating_duration_since(tick)));
        let second = now.saturating_duration_since(start).as_secs() as usize;
        let op = feasible(user.rng.op(), &user);
        step(&run, &mut user, op, &mut stats, second).await;
    }
    stats
}

/// The app a level runs against, and what must live as long as it.
struct Target {
    /// `http://127.0.0.1:<port>`
    address: String,
    client: reqwest::Client,
    context: Context,
    /// A pool of the bench's own on the same database, for setting users up.
    db: Database,
    _guard: Guard,
}

enum Guard {
    Harness { _app: Box<TestApp> },
    Local { _server: LocalServer },
}

/// The local server on a database of its own (dropped in this order: server, database, folder).
struct LocalServer {
    server: tokio::task::JoinHandle<()>,
    _database: TestDatabase,
    _data_dir: TempDir,
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The whole API on 127.0.0.1 for a level.
///
/// `LOAD_BLOBS=s3`: the harness's app (`spawn_app_with(Backend::Postgres, ..)`), whose blobs are
/// on moto_server's S3. Otherwise the pairing `adiuva-local` runs with a PostgreSQL
/// `DATABASE_URL`: blobs in a local folder, built here from the harness's pieces (a fresh
/// PostgreSQL database from `TestDatabase`, `test_context`, `local::app`) as `spawn_app_with`
/// builds its SQLite pairing, with the server's own pool (`DATABASE_MAX_CONNECTIONS`).
async fn target(settings: &Settings, overrides: &[(&str, &str)]) -> Target {
    if settings.s3 {
        let app = spawn_app_with(Backend::Postgres, overrides).await;
        return Target {
            address: app.address.clone(),
            client: app.client.clone(),
            context: app.context.clone(),
            db: app.database.db.clone(),
            _guard: Guard::Harness {
                _app: Box::new(app),
            },
        };
    }
    let database = TestDatabase::create(Backend::Postgres).await;
    let data_dir = TempDir::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("failed to bind a port");
    let address = format!(
        "http://{}",
        listener.local_addr().expect("no local address")
    );
    let data_dir_text = data_dir.0.display().to_string();
    let dynamo = if settings.dynamo {
        adiuva_kv::testing::dynamo_settings().await
    } else {
        Vec::new()
    };
    let mut pairs: Vec<(&str, &str)> = dynamo
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.push(("ADIUVA_DATA_DIR", &data_dir_text));
    pairs.push(("PUBLIC_BASE_URL", &address));
    if let Some(connections) = &settings.db_connections {
        pairs.push(("DATABASE_MAX_CONNECTIONS", connections));
    }
    pairs.extend_from_slice(overrides);
    let context = test_context(&database.url, &pairs);
    let app = local::app(&context).expect("the app's settings are valid");
    let server = serve(listener, app);
    Target {
        address,
        client: http_client(),
        context,
        db: database.db.clone(),
        _guard: Guard::Local {
            _server: LocalServer {
                server,
                _database: database,
                _data_dir: data_dir,
            },
        },
    }
}

/// Registers a user (signed in: register answers tokens), gives it the tier as the billing
/// webhook would, and seeds its records.
async fn setup_user(target: &Target, storage: &Storage, settings: &Settings, n: usize) -> User {
    let email = format!("load-{n}-{}@example.com", uuid::Uuid::new_v4().simple());
    let response = target
        .client
        .post(format!("{}/api/v1/auth/register", target.address))
        .json(&json!({"email": email, "password": "correct-horse-battery"}))
        .send()
        .await
        .expect("register failed");
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "register failed: {}",
        response.text().await.unwrap_or_default()
    );
    let tokens: Tokens = response.json().await.expect("register answered no tokens");
    let pool = target.db.pool();
    let id: String = adiuva_db::sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(&email)
        .fetch_one(pool)
        .await
        .expect("the new user's id");
    adiuva_db::sqlx::query(
        "INSERT INTO subscriptions (id, user_id, tier, status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'active', 0, 0) \
         ON CONFLICT (user_id) DO UPDATE SET tier = excluded.tier, status = excluded.status",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(&id)
    .bind(settings.tier.as_str())
    .execute(pool)
    .await
    .expect("failed to write the subscription");
    let caller = Caller {
        id,
        email,
        tier: settings.tier,
        tier_source: TierSource::Own,
        role: Role::User,
        session_id: None,
    };
    let mut rng = Rng::new(n as u64);
    let mut records = Vec::with_capacity(settings.seed_records);
    for _ in 0..settings.seed_records {
        let bytes = rng.bytes(BLOB_BYTES);
        let checksum = sha(&bytes);
        let meta = storage
            .create_record(
                &caller,
                "notes",
                Digested::new(Bytes::from(bytes)),
                &checksum,
            )
            .await
            .expect("seeding a record failed");
        records.push(meta.id);
    }
    User {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        records,
        cursor: None,
        rng,
    }
}

/// Time on a core and time waiting for one, summed over threads or processes (ns).
#[derive(Debug, Default, Clone, Copy)]
struct Sched {
    cpu_ns: u64,
    wait_ns: u64,
}

impl Sched {
    fn add(&mut self, path: &std::path::Path) {
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let mut numbers = text
            .split_whitespace()
            .filter_map(|n| n.parse::<u64>().ok());
        self.cpu_ns += numbers.next().unwrap_or(0);
        self.wait_ns += numbers.next().unwrap_or(0);
    }

    fn since(self, before: Sched) -> Sched {
        Sched {
            cpu_ns: self.cpu_ns.saturating_sub(before.cpu_ns),
            wait_ns: self.wait_ns.saturating_sub(before.wait_ns),
        }
    }
}

/// What the machine's cores were doing at a moment (Linux `/proc`; zeros elsewhere): the
/// machine's busy and total clock ticks, this process's threads, and PostgreSQL's processes.
#[derive(Debug, Default, Clone, Copy)]
struct CpuSnapshot {
    busy_ticks: u64,
    total_ticks: u64,
    own: Sched,
    postgres: Sched,
}

fn cpu_snapshot() -> CpuSnapshot {
    let mut snapshot = CpuSnapshot::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        // user nice system idle iowait irq softirq steal
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|n| n.parse().ok())
            .collect();
        snapshot.total_ticks = fields.iter().sum();
        let idle = fields.get(3).unwrap_or(&0) + fields.get(4).unwrap_or(&0);
        snapshot.busy_ticks = snapshot.total_ticks.saturating_sub(idle);
    }
    if let Ok(threads) = std::fs::read_dir("/proc/self/task") {
        for thread in threads.flatten() {
            snapshot.own.add(&thread.path().join("schedstat"));
        }
    }
    if let Ok(processes) = std::fs::read_dir("/proc") {
        for process in processes.flatten() {
            let path = process.path();
            let is_postgres = std::fs::read_to_string(path.join("comm"))
                .is_ok_and(|name| name.trim() == "postgres");
            if is_postgres {
                snapshot.postgres.add(&path.join("schedstat"));
            }
        }
    }
    snapshot
}

/// What the cores did during the window, as a line of the report.
fn cpu_line(before: CpuSnapshot, after: CpuSnapshot, wall: Duration, cores: usize) -> String {
    if after.total_ticks == 0 {
        return "CPU use: unknown (no /proc)".to_owned();
    }
    let total_ticks = after.total_ticks.saturating_sub(before.total_ticks).max(1) as f64;
    let busy = after.busy_ticks.saturating_sub(before.busy_ticks) as f64 / total_ticks * 100.0;
    let capacity_ns = wall.as_nanos() as f64 * cores as f64;
    let own = after.own.since(before.own);
    let postgres = after.postgres.since(before.postgres);
    let share = |sched: Sched| sched.cpu_ns as f64 / capacity_ns * 100.0;
    let others = (busy - share(own) - share(postgres)).max(0.0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "CPU during the window ({cores} cores = 100 %): {busy:.0} % busy: this process (client, \
         server, scripted model) {:.0} %, PostgreSQL {:.0} %, everything else {others:.0} %; \
         time spent waiting for a core: this process {:.1} s, PostgreSQL {:.1} s (summed over \
         threads); load average now {}",
        share(own),
        share(postgres),
        own.wait_ns as f64 / 1e9,
        postgres.wait_ns as f64 / 1e9,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Nearest-rank percentile of sorted latencies, in ms.
fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn errors_text(errors: &BTreeMap<String, u64>) -> String {
    errors
        .iter()
        .map(|(kind, count)| format!("{kind}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints the table of a level; answers whether the goal was met.
fn report(mut stats: Stats, secs: f64, timeline: bool) -> bool {
    println!(
        "{:<38} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "route", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    let mut all_latencies = Vec::new();
    let mut all_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut worst_record_p99: f64 = 0.0;
    for (op, mut route) in Op::ALL.into_iter().zip(stats.routes) {
        route.latencies_us.sort_unstable();
        let sorted = &route.latencies_us;
        let errors: u64 = route.errors.values().sum();
        let p99 = percentile_ms(sorted, 0.99);
        if op.is_record_route() {
            worst_record_p99 = worst_record_p99.max(p99);
        }
        let detail = if errors > 0 {
            format!("  ({})", errors_text(&route.errors))
        } else {
            String::new()
        };
        println!(
            "{:<38} {:>9} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>7}{detail}",
            op.route(),
            sorted.len(),
            sorted.len() as f64 / secs,
            percentile_ms(sorted, 0.50),
            percentile_ms(sorted, 0.95),
            p99,
            errors,
        );
        all_latencies.extend_from_slice(sorted);
        for (kind, count) in route.errors {
            *all_errors.entry(kind).or_default() += count;
        }
    }
    all_latencies.sort_unstable();
    let errors: u64 = all_errors.values().sum();
    println!(
        "{:<38} {:>9} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>7}",
        "total",
        all_latencies.len(),
        all_latencies.len() as f64 / secs,
        percentile_ms(&all_latencies, 0.50),
        percentile_ms(&all_latencies, 0.95),
        percentile_ms(&all_latencies, 0.99),
        errors,
    );
    if errors > 0 {
        println!("errors by kind: {}", errors_text(&all_errors));
    }
    stats.lag_us.sort_unstable();
    println!(
        "sending lag behind schedule: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile_ms(&stats.lag_us, 0.50),
        percentile_ms(&stats.lag_us, 0.99),
        percentile_ms(&stats.lag_us, 1.0),
    );
    if timeline {
        println!("second  requests   p50 ms   p99 ms   max ms");
        for (second, latencies) in stats.seconds.iter_mut().enumerate() {
            latencies.sort_unstable();
            println!(
                "{second:>6} {:>9} {:>8.1} {:>8.1} {:>8.1}",
                latencies.len(),
                percentile_ms(latencies, 0.50),
                percentile_ms(latencies, 0.99),
                percentile_ms(latencies, 1.0),
            );
        }
    }
    let met = errors == 0 && worst_record_p99 <= GOAL_P99_MS;
    println!(
        "goal (p99 <= {GOAL_P99_MS:.0} ms on every record route, 0 errors): {} \
         (worst record-route p99 {worst_record_p99:.1} ms, {errors} errors)",
        if met { "MET" } else { "NOT MET" },
    );
    met
}

async fn level(settings: &Settings, users: usize) -> bool {
    let llm = ScriptedLlm::start().await;
    // Every model call (the router's and the agent's) answers the same: the router picks the
    // task agent, which answers in one word.
    llm.otherwise(Reply::Text(vec!["task_agent".to_owned()]));
    let base_url = llm.base_url();
    let mut overrides = vec![
        ("RATE_LIMIT_ENABLED", "true"),
        // Every simulated user registers from this one address before the window.
        ("AUTH_REGISTRATIONS_PER_ADDRESS", "1000000"),
        ("BCRYPT_COST", "4"),
        ("LLM_BASE_URL", base_url.as_str()),
        // The AI budgets are charged (their queries are part of a chat's cost) but never run
        // out during a level.
        ("AI_MONTHLY_TOKENS_FREE", "1000000000000"),
        ("AI_MONTHLY_TOKENS_PRO", "1000000000000"),
        ("AI_MONTHLY_TOKENS_POWER", "1000000000000"),
        ("AI_MONTHLY_TOKENS_TEAM", "1000000000000"),
    ];
    if settings.s3 && !settings.dynamo {
        // The harness's app with the local run's in-memory short-lived store.
        overrides.push(("DYNAMODB_TABLE", ""));
    }
    let target = target(settings, &overrides).await;
    let storage: Storage = target.context.get().expect("the storage service");
    if !settings.s3 {
        let pool = adiuva_db::DatabaseSettings::from_source(target.context.source())
            .expect("database settings")
            .max_connections;
        println!("server: a pool of {pool} PostgreSQL connections (DATABASE_MAX_CONNECTIONS)");
    }

    let setup_started = Instant::now();
    let prepared: Vec<User> = futures::stream::iter(0..users)
        .map(|n| setup_user(&target, &storage, settings, n))
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    println!(
        "setup: {users} users registered, on tier {} and seeded with {} records each in {:.1} s",
        settings.tier.as_str(),
        settings.seed_records,
        setup_started.elapsed().as_secs_f64()
    );

    let run = Arc::new(Run {
        client: target.client.clone(),
        address: target.address.clone(),
        interval: settings.interval(),
        samples: Mutex::new(Vec::new()),
    });
    let window = Duration::from_secs(settings.secs);
    // A moment for every task to be spawned before the first request.
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + window;
    let (cpu_before, cpu_clock) = (cpu_snapshot(), Instant::now());
    let tasks: Vec<_> = prepared
        .into_iter()
        .map(|user| tokio::spawn(user_loop(run.clone(), user, start, end)))
        .collect();
    let mut stats = Stats::default();
    for task in tasks {
        stats.merge(task.await.expect("a user task panicked"));
    }
    let finished = start.elapsed();
    let (cpu_after, cpu_wall) = (cpu_snapshot(), cpu_clock.elapsed());
    println!(
        "window: {:.1} s (the last answers came {:.2} s after its end)",
        window.as_secs_f64(),
        finished.saturating_sub(window).as_secs_f64()
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{}", cpu_line(cpu_before, cpu_after, cpu_wall, cores));
    let met = report(stats, window.as_secs_f64(), settings.timeline);
    let samples = run.samples.lock().unwrap_or_else(|p| p.into_inner());
    if !samples.is_empty() {
        println!("first error answers:");
        for sample in samples.iter() {
            println!("  {sample}");
        }
    }
    drop(samples);
    drop(run);
    drop(storage);
    drop(target);
    met
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: nothing to do then.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("load: run with `cargo bench -p tests --bench load`");
        return;
    }
    let settings = Settings::from_env();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "load bench: PostgreSQL on 127.0.0.1, blobs {}, rate limits on (counters {}), a fresh \
         app per level",
        if settings.s3 {
            "on moto_server S3"
        } else {
            "in a local folder"
        },
        if settings.dynamo {
            "in DynamoDB on moto_server"
        } else {
            "in process memory"
        }
    );
    println!(
        "each user: tier {} ({} requests/min allowed), sends {:.1}/min = one every {} ms; \
         window {} s",
        settings.tier.as_str(),
        settings.tier.limits().requests_per_minute,
        settings.per_minute(),
        settings.interval().as_millis(),
        settings.secs
    );
    println!(
        "the client, the server and the scripted model run in this process and share this \
         machine's {cores} cores with PostgreSQL{}",
        if settings.s3 || settings.dynamo {
            " and moto_server"
        } else {
            ""
        }
    );
    let mut results = Vec::new();
    for &users in &settings.levels {
        println!();
        println!(
            "== {users} users: {:.0} requests/s offered ==",
            users as f64 * settings.per_minute() / 60.0
        );
        let met = runtime.block_on(level(&settings, users));
        results.push((users, met));
    }
    println!();
    for (users, met) in results {
        println!(
            "{users} users: goal {}",
            if met { "met" } else { "not met" }
        );
    }
}
