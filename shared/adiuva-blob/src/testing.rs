//! Test support (cargo feature `testing`): a real S3-compatible server on loopback.
//!
//! [`moto`] starts one moto_server per test process, on a port the server picks itself (port 0,
//! so parallel test processes never race for a port), and [`s3_settings`] / [`s3_store`] give each
//! test a bucket of its own, so tests share the server but not their data.
//!
//! Stopping: the server runs under a small Python wrapper that blocks reading its stdin, a pipe
//! whose write end only this process holds (Rust opens pipes close-on-exec, so no grandchild
//! inherits it). When the test process ends, however it ends (normal exit, panic, SIGKILL), the
//! kernel closes that end, the wrapper reads end-of-file and exits with the server. No signal
//! handler, `prctl` or `unsafe` is needed, and nothing is left running after the tests.
//!
//! If moto is not installed, it is installed with `python3 -m pip install 'moto[server]'`; if
//! that fails, the test fails with a message saying how to install it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

use crate::{BlobStore, S3Store};

/// How long moto may take to import and bind (it imports every AWS service model).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The Python interpreter to run moto with.
const PYTHON: &str = "python3";

const INSTALL_HINT: &str = "the S3 tests need moto_server: install it with \
     `python3 -m pip install 'moto[server]'`";

/// Runs moto's threaded server on 127.0.0.1, prints the port it bound, then waits for stdin to
/// close (see the module docs) and exits.
///
/// moto's API Gateway Management API (PostToConnection, used by the `chat-ws` function) keeps
/// only the concatenation of what was posted and accepts any connection id. Two hooks make it
/// observable the way API Gateway behaves: every post is also kept as one frame, readable as a
/// JSON list at `GET {frames}/frames/{connection_id}` on a second port printed after the first;
/// and ids starting with `gone-` answer 410 GoneException, as API Gateway does for a closed
/// connection.
const WRAPPER: &str = r#"
import json, logging, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
from moto.core.exceptions import JsonRESTError
from moto.apigatewaymanagementapi import models as management

FRAMES = {}

class GoneException(JsonRESTError):
    code = 410
    def __init__(self):
        super().__init__("GoneException", "the connection is gone")

def post_to_connection(self, data, connection_id):
    if connection_id.startswith("gone-"):
        raise GoneException()
    self.get_connection(connection_id).data += data
    FRAMES.setdefault(connection_id, []).append(data.decode("utf-8", "replace"))

management.ApiGatewayManagementApiBackend.post_to_connection = post_to_connection

# DynamoDB applies each item write, with its condition, atomically; moto's threaded server
# does not (two concurrent conditional updates of one item can both pass their condition).
# One lock around the item operations gives the tests DynamoDB's guarantee.
from moto.dynamodb import models as dynamodb
ITEMS = threading.RLock()
def atomic(name):
    original = getattr(dynamodb.DynamoDBBackend, name)
    def locked(self, *args, **kwargs):
        with ITEMS:
            return original(self, *args, **kwargs)
    setattr(dynamodb.DynamoDBBackend, name, locked)
for name in ("get_item", "put_item", "update_item", "delete_item", "query",
             "batch_write_item", "transact_write_items"):
    atomic(name)

class Frames(BaseHTTPRequestHandler):
    def do_GET(self):
        connection_id = unquote(self.path.rsplit("/", 1)[-1])
        body = json.dumps(FRAMES.get(connection_id, [])).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

frames = ThreadingHTTPServer(("127.0.0.1", 0), Frames)
threading.Thread(target=frames.serve_forever, daemon=True).start()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], frames.server_address[1], flush=True)
sys.stdin.buffer.read()
os._exit(0)
"#;

/// A moto_server child process serving S3 on loopback.
#[derive(Debug)]
pub struct MotoServer {
    /// `http://127.0.0.1:{port}`, for `S3_ENDPOINT_URL`.
    pub endpoint: String,
    /// `http://127.0.0.1:{port}` of the frames moto's Management API received (see `WRAPPER`).
    pub frames_endpoint: String,
    /// Kept so the process is not reaped early; it is never waited on.
    _child: Mutex<Child>,
    /// The pipe whose closing stops the server; held for the life of the process.
    _stdin: Mutex<ChildStdin>,
}

static MOTO: OnceLock<Result<MotoServer, String>> = OnceLock::new();

/// The process-wide moto server, started on first use.
///
/// Panics with the reason (and how to install moto) if it cannot start; every later call
/// panics with the same reason rather than trying again.
pub async fn moto() -> &'static MotoServer {
    let server = tokio::task::spawn_blocking(|| MOTO.get_or_init(start_moto))
        .await
        .expect("moto start-up thread panicked");
    match server {
        Ok(server) => server,
        Err(reason) => panic!("{reason}"),
    }
}

/// Settings pointing at a fresh bucket on the moto server, as environment-style pairs.
///
/// `overrides` (`("UPLOAD_URL_EXPIRE_MINUTES", "1")`) are applied over the test defaults: the
/// moto endpoint, region `us-east-1`, dummy credentials and a unique `S3_BUCKET`, which is
/// created before this returns.
pub async fn s3_settings(overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    static BUCKETS: AtomicU64 = AtomicU64::new(0);
    let server = moto().await;
    let bucket = format!(
        "adiuva-test-{}-{}",
        std::process::id(),
        BUCKETS.fetch_add(1, Ordering::Relaxed)
    );
    let mut values: HashMap<String, String> = [
        ("S3_BUCKET", bucket.as_str()),
        ("S3_ENDPOINT_URL", server.endpoint.as_str()),
        ("S3_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    values.extend(
        overrides
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
    );
    let settings =
        crate::BlobSettings::from_source(&adiuva_config::Source::from_pairs(values.clone()))
            .expect("test settings are valid");
    let s3 = settings.s3.as_ref().expect("S3_BUCKET is set");
    let store = S3Store::new(s3, settings.upload_ttl).expect("S3 store for the test bucket");
    let mut create = store.client().create_bucket().bucket(store.bucket());
    if s3.region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(s3.region.as_str()))
                .build(),
        );
    }
    if let Err(err) = create.send().await {
        panic!(
            "failed to create test bucket {} on {}: {}",
            store.bucket(),
            server.endpoint,
            aws_sdk_s3::error::DisplayErrorContext(&err)
        );
    }
    let mut pairs: Vec<(String, String)> = values.into_iter().collect();
    pairs.sort();
    pairs
}

/// An S3 [`BlobStore`] on a fresh bucket of the moto server (see [`s3_settings`]).
pub async fn s3_store(overrides: &[(&str, &str)]) -> BlobStore {
    let source = adiuva_config::Source::from_pairs(s3_settings(overrides).await);
    let settings = crate::BlobSettings::from_source(&source).expect("test settings are valid");
    BlobStore::from_settings(&settings).expect("S3 store for the test bucket")
}

fn start_moto() -> Result<MotoServer, String> {
    ensure_moto_installed()?;
    let mut child = Command::new(PYTHON)
        .args(["-c", WRAPPER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("failed to run {PYTHON}: {err}; {INSTALL_HINT}"))?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");

    // Read the port on a thread so a hung start-up hits the timeout instead of blocking forever.
    let (port_sender, port_receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        let _ = port_sender.send(lines.read_line(&mut line).map(|_| line));
        // Keep draining, so the server never blocks on a full pipe.
        let _ = std::io::copy(&mut lines, &mut std::io::sink());
    });
    let ports = match port_receiver.recv_timeout(START_TIMEOUT) {
        Ok(Ok(line)) => match line.split_whitespace().collect::<Vec<_>>()[..] {
            [port, frames] => port.parse::<u16>().ok().zip(frames.parse::<u16>().ok()),
            _ => None,
        },
        _ => None,
    };
    let Some((port, frames_port)) = ports else {
        let _ = child.kill();
        let mut output = String::new();
        let _ = stderr.read_to_string(&mut output);
        let _ = child.wait();
        return Err(format!(
            "moto_server did not start within {START_TIMEOUT:?}: {}\n{INSTALL_HINT}",
            output.trim()
        ));
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
    });
    Ok(MotoServer {
        endpoint: format!("http://127.0.0.1:{port}"),
        frames_endpoint: format!("http://127.0.0.1:{frames_port}"),
        _child: Mutex::new(child),
        _stdin: Mutex::new(stdin),
    })
}

fn ensure_moto_installed() -> Result<(), String> {
    let importable = || {
        Command::new(PYTHON)
            .args(["-c", "import moto.server, flask, werkzeug"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if importable() {
        return Ok(());
    }
    eprintln!("moto_server is not installed; running `{PYTHON} -m pip install 'moto[server]'`");
    let installed = Command::new(PYTHON)
        .args(["-m", "pip", "install", "--quiet", "moto[server]"])
        .status()
        .is_ok_and(|status| status.success());
    if installed && importable() {
        Ok(())
    } else {
        Err(format!(
            "moto could not be installed automatically; {INSTALL_HINT}"
        ))
    }
}
