#!/usr/bin/env bash
# A local whospoke cluster for trying and testing (issue 13), everything on loopback:
#
#   scripts/cluster.sh [N]
#   scripts/cluster.sh bench [JOBS [WORKERS]]
#
#   - PostgreSQL: a throwaway cluster (initdb + pg_ctl, as the postgres user when run as root)
#   - S3: moto's server from .venv (scripts/setup.sh installs it), bucket "whospoke"
#   - N nodes of target/release/whospoke (default 3): one --role api, the rest --role worker;
#     N=1 is one --role all node. Each has its own data dir and port.
#   - one user with 1,000,000 credits (whospoke admin create-user)
#
# It prints the nodes' URLs and the API key, then waits. Ctrl-C (or SIGTERM) stops everything
# and removes the temporary directory (logs included: look at them before stopping).
#
# `bench` starts only the PostgreSQL, runs the database benchmark on it
# (examples/cluster_bench.rs: job claims per second with WORKERS concurrent workers, default 8,
# over JOBS jobs, default 2000; the shared rate limiter's latency per request), and stops.
#
# Environment: WHOSPOKE_PG_BIN (PostgreSQL's bin dir, default /usr/lib/postgresql/15/bin),
# WHOSPOKE_LOG (node log filter, default info).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH=()
if [ "${1:-}" = bench ]; then
    BENCH=("${2:-2000}" "${3:-8}")
    set -- 1
fi
NODES="${1:-3}"
BIN="$ROOT/target/release/whospoke"
MOTO="$ROOT/.venv/bin/moto_server"
PG_BIN="${WHOSPOKE_PG_BIN:-/usr/lib/postgresql/15/bin}"
BUCKET=whospoke

die() { printf 'cluster.sh: %s\n' "$*" >&2; exit 1; }
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "usage: scripts/cluster.sh [N] (N >= 1 nodes)"
[ -x "$BIN" ] || die "$BIN is missing: run scripts/setup.sh"
[ -x "$MOTO" ] || die "$MOTO is missing: run scripts/setup.sh"
[ -x "$PG_BIN/initdb" ] || die "no PostgreSQL in $PG_BIN: run scripts/setup.sh (Debian's postgresql)"

# PostgreSQL refuses to run as root.
if [ "$(id -u)" -eq 0 ]; then
    as_postgres() { runuser -u postgres -- "$@"; }
else
    as_postgres() { "$@"; }
fi

DIR="$(mktemp -d -t whospoke-cluster-XXXXXX)"
PIDS=()
stop() {
    trap - EXIT INT TERM
    echo
    echo "stopping the cluster"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -f "$DIR/pg/data/postmaster.pid" ] && as_postgres "$PG_BIN/pg_ctl" -D "$DIR/pg/data" stop -m fast >/dev/null
    rm -rf "$DIR"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls until "$@" succeeds, for up to $1 seconds.
wait_for() {
    local seconds="$1" what="$2"
    shift 2
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what did not come up (logs in $DIR)"
}

echo "==> PostgreSQL"
mkdir "$DIR/pg"
if [ "$(id -u)" -eq 0 ]; then
    chmod 711 "$DIR"    # mktemp's 0700 would keep the postgres user out
    chown postgres "$DIR/pg"
fi
PG_PORT="$(free_port)"
as_postgres "$PG_BIN/initdb" -D "$DIR/pg/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
as_postgres "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/postgres.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $DIR/pg" start >/dev/null
"$PG_BIN/psql" -X -q -d "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -c 'CREATE DATABASE whospoke'
DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/whospoke"

if [ "${#BENCH[@]}" -gt 0 ]; then
    echo "==> cargo run --release --example cluster_bench -- $DATABASE_URL ${BENCH[*]}"
    (cd "$ROOT" && cargo run --release --quiet --example cluster_bench -- "$DATABASE_URL" "${BENCH[@]}")
    exit 0
fi

echo "==> S3 (moto)"
S3_PORT="$(free_port)"
"$MOTO" -H 127.0.0.1 -p "$S3_PORT" >"$DIR/moto.log" 2>&1 &
PIDS+=($!)
# moto takes unsigned requests: a plain PUT makes the bucket.
wait_for 60 "moto" curl -sf -X PUT "http://127.0.0.1:$S3_PORT/$BUCKET"
export AWS_ENDPOINT="http://127.0.0.1:$S3_PORT" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export WHOSPOKE_LOG="${WHOSPOKE_LOG:-info}" NO_COLOR=1

echo "==> $NODES node(s)"
URLS=()
for i in $(seq "$NODES"); do
    if [ "$NODES" -eq 1 ]; then role=all; elif [ "$i" -eq 1 ]; then role=api; else role=worker; fi
    port="$(free_port)"
    url="http://127.0.0.1:$port"
    (cd "$ROOT" && exec "$BIN" serve --host 127.0.0.1 --port "$port" --public-url "$url" \
        --role "$role" --node-id "node-$i" --data-dir "$DIR/node-$i" \
        --database-url "$DATABASE_URL" --storage-url "s3://$BUCKET/cluster") \
        >"$DIR/node-$i.out" 2>"$DIR/node-$i.log" &
    PIDS+=($!)
    URLS+=("$url  ($role, log $DIR/node-$i.log)")
    # One at a time: the first node migrates the database.
    wait_for 120 "node $i ($url)" curl -sf "$url/healthz"
done

USER_JSON="$(WHOSPOKE_LOG=warn "$BIN" admin create-user --database-url "$DATABASE_URL" --credits 1000000 --json)"
API_KEY="$(printf '%s' "$USER_JSON" | python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])')"

cat <<EOF

whospoke cluster: $NODES node(s) on PostgreSQL and S3
  database  $DATABASE_URL
  storage   s3://$BUCKET/cluster at $AWS_ENDPOINT
  nodes:
$(printf '    %s\n' "${URLS[@]}")
  API key   $API_KEY (1000000 credits)

  curl -H "X-API-Key: $API_KEY" -F file=@tests/data/sample.wav ${URLS[0]%% *}/api/v1/speaker/extract

Ctrl-C stops the cluster and removes $DIR.
EOF
wait
