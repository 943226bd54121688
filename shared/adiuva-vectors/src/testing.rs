//! Test support (cargo feature `testing`): a real Qdrant server on loopback.
//!
//! [`qdrant`] starts one Qdrant server per test process (the binary at `QDRANT_BIN`, else
//! `../shared/bin/qdrant` beside the checkout) on free loopback ports with its storage in a
//! temporary directory, and [`qdrant_settings`] gives each test collections of its own, so
//! tests share the server but not their data. With `QDRANT_URL` set, that server is used
//! instead and nothing is started.
//!
//! Stopping: the server runs under `sh`, which starts it, then blocks reading its stdin, a pipe
//! whose write end only this process holds. When the test process ends, however it ends, the
//! kernel closes that end; `sh` reads end-of-file, stops the server and removes its directory.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long Qdrant may take to open its storage and bind (under a second here).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts the server with `$0`, then waits for stdin to close (see the module docs).
const WRAPPER: &str =
    r#""$0" & pid=$!; cat > /dev/null; kill "$pid" 2>/dev/null; wait "$pid"; rm -rf "$PWD""#;

/// A Qdrant server for the tests.
#[derive(Debug)]
pub struct QdrantServer {
    /// `http://127.0.0.1:{grpc port}`, for `QDRANT_URL`.
    pub url: String,
    /// Kept so the process is not reaped early; `None` for a server given by `QDRANT_URL`.
    _child: Option<Mutex<Child>>,
    _stdin: Option<Mutex<ChildStdin>>,
}

static QDRANT: OnceLock<Result<QdrantServer, String>> = OnceLock::new();

/// The process-wide Qdrant server, started on first use.
///
/// Panics with the reason (and how to provide a server) if it cannot start; every later call
/// panics with the same reason rather than trying again.
pub async fn qdrant() -> &'static QdrantServer {
    let server = tokio::task::spawn_blocking(|| QDRANT.get_or_init(start))
        .await
        .expect("Qdrant start-up thread panicked");
    match server {
        Ok(server) => server,
        Err(reason) => panic!("{reason}"),
    }
}

/// Settings of a vector store on the test server with collections no other test uses.
pub async fn qdrant_settings() -> Vec<(String, String)> {
    static COLLECTIONS: AtomicU64 = AtomicU64::new(0);
    let server = qdrant().await;
    let collection = format!(
        "adiuva_test_{}_{}",
        std::process::id(),
        COLLECTIONS.fetch_add(1, Ordering::Relaxed)
    );
    vec![
        ("QDRANT_URL".to_owned(), server.url.clone()),
        ("QDRANT_COLLECTION".to_owned(), collection),
    ]
}

fn binary() -> PathBuf {
    match std::env::var_os("QDRANT_BIN") {
        Some(path) => PathBuf::from(path),
        // shared/adiuva-vectors -> the checkout -> beside it: ../shared/bin/qdrant.
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bin/qdrant"),
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|err| err.to_string())?;
    Ok(listener.local_addr().map_err(|err| err.to_string())?.port())
}

/// `GET /readyz` answers 200 once every shard is ready.
fn ready(http_port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", http_port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{http_port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

fn start() -> Result<QdrantServer, String> {
    if let Some(url) = std::env::var("QDRANT_URL")
        .ok()
        .filter(|url| !url.is_empty())
    {
        return Ok(QdrantServer {
            url,
            _child: None,
            _stdin: None,
        });
    }
    let binary = binary();
    if !binary.is_file() {
        return Err(format!(
            "the Qdrant tests need a Qdrant server and {} does not exist: put the qdrant binary \
             there (see ../shared/bin/README.md), point QDRANT_BIN at one, or start a server and \
             set QDRANT_URL=http://127.0.0.1:6334",
            binary.display()
        ));
    }
    let dir = std::env::temp_dir().join(format!("adiuva-qdrant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    let (http_port, grpc_port) = (free_port()?, free_port()?);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WRAPPER)
        .arg(&binary)
        .current_dir(&dir)
        .env("QDRANT__SERVICE__HOST", "127.0.0.1")
        .env("QDRANT__SERVICE__HTTP_PORT", http_port.to_string())
        .env("QDRANT__SERVICE__GRPC_PORT", grpc_port.to_string())
        .env("QDRANT__STORAGE__STORAGE_PATH", dir.join("storage"))
        .env("QDRANT__STORAGE__SNAPSHOTS_PATH", dir.join("snapshots"))
        .env("QDRANT__TELEMETRY_DISABLED", "true")
        .env("QDRANT__LOG_LEVEL", "WARN")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("could not start {}: {err}", binary.display()))?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let started = Instant::now();
    // Ready means the REST port answers /readyz and the gRPC port (the one the store uses,
    // which Qdrant may open a moment after the REST one) accepts connections.
    while !ready(http_port) || TcpStream::connect(("127.0.0.1", grpc_port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{} exited with {status} before it was ready",
                binary.display()
            ));
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(format!(
                "{} was not ready within {START_TIMEOUT:?}",
                binary.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(QdrantServer {
        url: format!("http://127.0.0.1:{grpc_port}"),
        _child: Some(Mutex::new(child)),
        _stdin: Some(Mutex::new(stdin)),
    })
}
