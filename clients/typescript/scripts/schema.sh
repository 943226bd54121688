#!/usr/bin/env bash
# Generates src/schema.d.ts (openapi-typescript, pinned in package.json) from the OpenAPI
# document adiuva-local serves: builds the local server, starts it on a free loopback port with
# an empty data folder, reads /api/v1/openapi.json and generates the types from it.
#   scripts/schema.sh          regenerate src/schema.d.ts (commit the result)
#   scripts/schema.sh --check  fail if src/schema.d.ts is not what the server's document gives
# The binary is the workspace's debug build (under CARGO_TARGET_DIR when set); ADIUVA_LOCAL
# names another one and skips the build.
set -euo pipefail
package=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$package/../.." && pwd)
check=false
[ "${1:-}" = --check ] && check=true

if [ -z "${ADIUVA_LOCAL:-}" ]; then
    # The whole workspace is selected so that features resolve as for the other steps of CI
    # and what they built is reused; only the binary is built.
    (cd "$root" && cargo build --quiet --workspace --bin adiuva-local)
    target=${CARGO_TARGET_DIR:-target}
    case "$target" in /*) ;; *) target="$root/$target" ;; esac
    ADIUVA_LOCAL="$target/debug/adiuva-local"
fi
[ -d "$package/node_modules/openapi-typescript" ] || (cd "$package" && npm ci --silent)

work=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
# From the empty folder, so that no .env of the checkout is read.
(cd "$work" && ADIUVA_DATA_DIR="$work/data" PORT="$port" LOG_FORMAT=json RUST_LOG=warn \
    exec "$ADIUVA_LOCAL" > "$work/server.log" 2>&1) &
server=$!
document="http://127.0.0.1:$port/api/v1/openapi.json"
for _ in $(seq 1 100); do
    curl -sf "$document" -o "$work/openapi.json" && break
    sleep 0.1
done
[ -s "$work/openapi.json" ] || { cat "$work/server.log" >&2; echo "adiuva-local did not serve $document" >&2; exit 1; }

# Empty objects (`{"type": "object"}`: any keys) as `unknown`, not `Record<string, never>`.
"$package/node_modules/.bin/openapi-typescript" "$work/openapi.json" -o "$work/schema.d.ts" --silent \
    --empty-objects-unknown
if $check; then
    if ! diff -u "$package/src/schema.d.ts" "$work/schema.d.ts" > "$work/diff"; then
        head -n 80 "$work/diff" >&2
        echo "clients/typescript/src/schema.d.ts is not what the served OpenAPI document generates:" >&2
        echo "run clients/typescript/scripts/schema.sh and commit the result" >&2
        exit 1
    fi
    echo "clients/typescript/src/schema.d.ts matches the served OpenAPI document"
else
    cp "$work/schema.d.ts" "$package/src/schema.d.ts"
    echo "wrote clients/typescript/src/schema.d.ts"
fi
