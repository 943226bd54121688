#!/usr/bin/env python3
"""Cold init of each Lambda binary under a stand-in Runtime API.

Starts every `bootstrap` built by `cargo lambda build --release` with AWS_LAMBDA_RUNTIME_API
pointing at a local stand-in, and measures the time from starting the process to its first
`GET /2018-06-01/runtime/invocation/next`: what the function does before it can take its first
event (process start, settings, clients and pools built, router assembled). Nothing answers
the request; the process is killed once it has asked. Each function runs the settings of its
deployment (infra/template.yaml) against endpoints that need not be reachable, since a cold
start must do no network I/O.

    cargo lambda build --release -p health -p auth ...   # or what .ci/run builds
    python3 tests/benches/cold_start.py [runs]           # median and max over runs (default 20)
"""

import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))

COMMON = {
    "ENV": "prod",
    "LOG_FORMAT": "json",
    "RUST_LOG": "warn",
    "DATABASE_URL": "postgres://adiuva:secret@127.0.0.1:5432/adiuva",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "example-secret",
    "AWS_SESSION_TOKEN": "example-token",
    "AWS_REGION": "eu-central-1",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
    "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
}
JWT = {"JWT_SECRET": "0123456789abcdef0123456789abcdef-bench"}
TABLE = {"DYNAMODB_TABLE": "adiuva-short-lived"}
BUCKET = {"S3_BUCKET": "adiuva-blobs", "S3_REGION": "eu-central-1"}
QDRANT = {"QDRANT_URL": "https://qdrant.example:6334", "QDRANT_API_KEY": "example"}
LLM = {"OPENAI_API_KEY": "sk-example", "LLM_MODEL": "gpt-4o", "LLM_ROUTER_MODEL": "gpt-4o-mini"}
STRIPE = {"STRIPE_SECRET_KEY": "sk_test_example", "STRIPE_WEBHOOK_SECRET": "whsec_example"}

FUNCTIONS = {
    "health": {},
    "auth": {**JWT, **TABLE},
    "account": {**JWT, **TABLE, **BUCKET, **QDRANT},
    "storage": {**JWT, **TABLE, **BUCKET},
    "backup": {**JWT, **TABLE, **BUCKET},
    "vectors": {**JWT, **TABLE, **QDRANT},
    "plans": {**JWT, **TABLE},
    "chat": {**JWT, **TABLE, **LLM},
    "chat-ws": {**JWT, **TABLE, **LLM},
    "billing": {**JWT, **TABLE, **STRIPE},
    "plugins": {**JWT, **TABLE, **BUCKET, **STRIPE},
    "janitor": {**BUCKET, **QDRANT},
}


class RuntimeApi:
    """Accepts connections and notes when the first request arrives."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.address = "127.0.0.1:%d" % self.server.getsockname()[1]
        self.asked = threading.Event()
        self.at = None
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(connection)
            data = connection.recv(4096)
            if b"/runtime/invocation/next" in data and not self.asked.is_set():
                self.at = time.perf_counter()
                self.asked.set()

    def close(self):
        for connection in self.connections:
            connection.close()
        self.server.close()


def cold_start(binary, settings):
    api = RuntimeApi()
    env = {"PATH": os.environ.get("PATH", ""), **COMMON, **settings,
           "AWS_LAMBDA_FUNCTION_NAME": os.path.basename(os.path.dirname(binary)),
           "AWS_LAMBDA_RUNTIME_API": api.address}
    started = time.perf_counter()
    process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not api.asked.wait(10):
            process.kill()
            _, err = process.communicate()
            raise SystemExit("%s never asked for an event: %s" % (binary, err.decode()[-2000:]))
        return (api.at - started) * 1000
    finally:
        process.kill()
        process.wait()
        api.close()


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print("| function | median ms | max ms | binary MB |")
    print("|---|---|---|---|")
    for name, settings in FUNCTIONS.items():
        binary = os.path.join(TARGET, "lambda", name, "bootstrap")
        if not os.path.exists(binary):
            raise SystemExit("%s is missing: run cargo lambda build --release first" % binary)
        times = [cold_start(binary, settings) for _ in range(runs)]
        print("| %s | %.1f | %.1f | %.1f |" % (
            name, statistics.median(times), max(times), os.path.getsize(binary) / 1e6))


if __name__ == "__main__":
    main()
