//! The server's own CPU time and peak memory for one request. The tests run many apps in one
//! process, so neither can be read there: a measured test starts this test binary again, as a
//! child process that runs only [`serve_measured_app`] (the app on SQLite, a Power user, some
//! listed plugins), and reads the child's counters from `/proc`: CPU time as the sum of its
//! threads' `schedstat` (nanoseconds on a CPU), peak memory as `VmHWM` after resetting it
//! (`clear_refs`), against `VmRSS` before the request. Nothing else runs in the child.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::harness::{Backend, spawn_app};

/// Set in the child's environment: without it, [`serve_measured_app`] returns at once.
const CHILD: &str = "ADIUVA_MEASURED_CHILD";

/// Listed plugins with long names in the child, for the name check to compare with.
pub const LISTED: usize = 20;

/// The child's half: serves until its stdin closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the server half of the measured tests, started by them in a process of its own"]
async fn serve_measured_app() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let app = spawn_app(Backend::Sqlite).await;
    let user = app.register_user().await;
    app.set_subscription(&user.id, "power", "active").await;
    for n in 0..LISTED {
        adiuva_db::sqlx::query(
            "INSERT INTO plugins (id, name, description, version, author, category, price_cents, \
             permissions, status, created_at, updated_at) \
             VALUES ($1, $2, 'A listed plugin.', '1.0.0', 'Seeder', 'Productivity', 0, '[]', \
             'approved', 0, 0)",
        )
        .bind(format!("listed-{n}"))
        .bind(format!(
            "Listed plugin number {n:02} with a rather long name too"
        ))
        .execute(app.database.db.pool())
        .await
        .unwrap();
    }
    println!("MEASURED {} {}", app.address, user.tokens.access_token);
    std::io::stdout().flush().unwrap();
    // The parent closes stdin when it is done; the app (and its temporary files) then go.
    let (done, wait) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = done.send(());
    });
    let _ = wait.await;
}

/// The app in a child process of its own.
#[derive(Debug)]
pub struct MeasuredApp {
    child: Child,
    stdin: Option<ChildStdin>,
    pub address: String,
    /// A Power user's access token.
    pub token: String,
    pub client: reqwest::Client,
}

impl MeasuredApp {
    pub async fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "measure::serve_measured_app",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("failed to start the test binary again");
        let stdout = child.stdout.take().unwrap();
        let (found, started) = tokio::sync::oneshot::channel();
        // Reads the child's output to its end, so the child never writes into a closed pipe.
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest writes `test <name> ... ` before the test's own output.
                if let Some(at) = line.find("MEASURED ")
                    && let Some(found) = found.take()
                {
                    let _ = found.send(line[at..].to_owned());
                }
            }
        });
        let line = tokio::time::timeout(Duration::from_secs(120), started)
            .await
            .ok()
            .and_then(Result::ok)
            .expect("the measured app did not start");
        let mut parts = line.split(' ').skip(1);
        let (address, token) = (parts.next().unwrap(), parts.next().unwrap());
        Self {
            stdin: child.stdin.take(),
            child,
            address: address.to_owned(),
            token: token.to_owned(),
            client: crate::harness::http_client(),
        }
    }

    fn proc(&self, file: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.child.id())).unwrap()
    }

    /// Nanoseconds the child's threads have run, all of them (async workers, blocking pool,
    /// the SQLite worker).
    pub fn cpu_ns(&self) -> u64 {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).unwrap();
        tasks
            .filter_map(Result::ok)
            .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
            .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    fn status_kib(&self, field: &str) -> u64 {
        self.proc("status")
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    /// The resident memory now, after resetting the peak to it.
    pub fn reset_peak(&self) -> u64 {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .expect("cannot reset the peak resident memory (clear_refs)");
        self.status_kib("VmRSS:") * 1024
    }

    /// The peak resident memory since the last reset.
    pub fn peak(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    /// Sends `body` as JSON (already serialized) with the user's token; status and body.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .client
            .request(Method::POST, format!("{}{path}", self.address))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The server's CPU time for one request, and its answer.
    pub async fn cpu_of(&self, path: &str, body: Vec<u8>) -> (Duration, u16, Value) {
        let before = self.cpu_ns();
        let (status, answer) = self.post(path, body).await;
        // The answer is sent before the request's last lines run (its log line): let them.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let spent = self.cpu_ns().saturating_sub(before);
        (Duration::from_nanos(spent), status, answer)
    }

    /// How much the server's resident memory grew at its peak during one request, and its
    /// answer.
    pub async fn growth_of(&self, path: &str, body: Vec<u8>) -> (u64, u16, Value) {
        let before = self.reset_peak();
        let (status, answer) = self.post(path, body).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        (self.peak().saturating_sub(before), status, answer)
    }
}

impl Drop for MeasuredApp {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
