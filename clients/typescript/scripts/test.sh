#!/usr/bin/env bash
# The package's tests against the real server, as `.ci/test` runs them: builds adiuva-local
# (the workspace's debug build, under CARGO_TARGET_DIR when set), installs the locked
# dependencies if they are not there, builds the package and runs `node --test`. Each test file
# starts its own adiuva-local on a free port with a fresh data folder.
set -euo pipefail
package=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$package/../.." && pwd)

if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null; then
    echo "the TypeScript client's tests need Node.js 20 or later (node: $(node --version 2>/dev/null || echo missing))" >&2
    exit 1
fi
if [ -z "${ADIUVA_LOCAL:-}" ]; then
    (cd "$root" && cargo build --quiet --workspace --bin adiuva-local)
fi
cd "$package"
npm ci --no-audit --no-fund --loglevel=error
# The package as published (DOM types, no Node types: nothing Node-only in src/), then the tests.
npm run --silent build
npm run --silent build:test
# --experimental-websocket: Node 20's WebSocket (global from Node 22) for chat.send.
# Each file has a server of its own: the files run side by side (their waits overlap).
node --experimental-websocket --test --test-concurrency=3 build-test/test/*.test.js
