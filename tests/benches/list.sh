#!/usr/bin/env bash
# Record-list throughput against the number of records a user owns: `tests/benches/list.sh`.
#
# Starts adiuva-local (optimised build, PostgreSQL on loopback, rate limits off), registers one
# user, gives it N records (`LIST_COUNTS`, default "100 100000"; rows written with SQL, since
# the list reads metadata only), then runs wrk (Debian's package, installed if missing) for
# `LIST_SECS` seconds at `LIST_CONNECTIONS` connections on:
#   first - GET /api/v1/storage/records?limit=50            (what the client asks for most)
#   deep  - the same with the cursor of the row in the middle (a keyset page half-way down)
#   page  - ?page=<middle>&limit=50                          (the offset page older clients send)
# With `LIST_WITHOUT_INDEXES=1` it first drops the indexes that migration 0008 added, which puts
# the database back where it was before keyset paging (the list then sorts all of the user's
# rows for every page), for a before/after comparison on the same binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

counts=${LIST_COUNTS:-"100 100000"}
secs=${LIST_SECS:-10}
connections=${LIST_CONNECTIONS:-64}
database=adiuva_list_bench

command -v wrk >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "start PostgreSQL first (.ci/test does)" >&2; exit 1; }

cargo build --quiet --profile bench -p local
bin="${CARGO_TARGET_DIR:-target}/release/adiuva-local"

psql() { command psql -q -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 "$@"; }
work=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port/api/v1"

for count in $counts; do
    psql -d postgres -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database"
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/$database" ADIUVA_DATA_DIR="$work/data" \
        PORT="$port" RATE_LIMIT_ENABLED=false BCRYPT_COST=4 RUST_LOG=warn "$bin" >"$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        curl -sf "$base/health" >/dev/null && break
        sleep 0.1
    done
    token=$(curl -sf -X POST "$base/auth/register" -H 'content-type: application/json' \
        -d '{"email":"list-bench@example.com","password":"correct-horse-battery"}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
    psql -d "$database" <<SQL
INSERT INTO storage_records (id, user_id, table_name, s3_key, checksum, size_bytes, version, created_at, updated_at)
SELECT 'rec-' || n, u.id, CASE WHEN n % 2 = 0 THEN 'tasks' ELSE 'notes' END, u.id || '/tasks/rec-' || n,
       repeat('0', 64), 1024, 1, 1700000000000 + n, 1700000000000 + n
FROM users u, generate_series(1, $count) AS n;
ANALYZE storage_records;
SQL
    if [ "${LIST_WITHOUT_INDEXES:-0}" = 1 ]; then
        psql -d "$database" -c "DROP INDEX storage_records_user_created_idx" \
            -c "DROP INDEX storage_records_user_table_created_idx"
    fi
    middle=$((count / 2 / 50 > 0 ? count / 2 / 50 : 1))
    echo
    echo "== $count records$([ "${LIST_WITHOUT_INDEXES:-0}" = 1 ] && echo ', without the keyset indexes')"
    for case in first deep page; do
        case $case in
            first) path="/storage/records?limit=50" ;;
            deep)
                # The cursor after page `middle`: the keyset page half-way down the list.
                cursor=$(curl -sf -D - -o /dev/null "$base/storage/records?limit=50&page=$middle" \
                    -H "authorization: Bearer $token" | tr -d '\r' |
                    awk -F': ' 'tolower($1) == "x-next-cursor" { print $2 }')
                path="/storage/records?limit=50&cursor=$cursor" ;;
            page) path="/storage/records?limit=50&page=$middle" ;;
        esac
        status=$(curl -s -o /dev/null -w '%{http_code}' "$base$path" -H "authorization: Bearer $token")
        [ "$status" = 200 ] || { echo "$case answered $status" >&2; exit 1; }
        printf '%-6s ' "$case"
        wrk -t2 -c"$connections" -d"${secs}s" --latency -H "authorization: Bearer $token" "$base$path" |
            awk '/Requests\/sec/ { rps = $2 } /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
                 /Non-2xx/ { errors = $NF }
                 END { printf "%10s req/s  p50 %8s  p99 %8s  non-2xx %s\n", rps, p50, p99, errors + 0 }'
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
done
