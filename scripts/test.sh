#!/usr/bin/env bash
# The whole test suite in one command (what the README and .ci/run give):
#   1. cargo test --release [ARGS...]: every test on the embedded default (SQLite, local files),
#      plus the cluster tests (tests/api/cluster.rs: nodes on PostgreSQL and moto's S3);
#   2. the API suite again with every server on a fresh PostgreSQL database
#      (WHOSPOKE_TEST_DATABASE=postgres), the same binaries, no rebuild;
#   3. the live protocol crate's own tests (clients/rust, serde only: seconds to build).
# The tests start a throwaway PostgreSQL themselves (Debian's postgresql, see scripts/setup.sh),
# or use WHOSPOKE_TEST_POSTGRES_URL (a superuser's URL) when it is set.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

header() { printf '\n==================== %s ====================\n' "$*"; }

header "cargo test --release $*"
cargo test --release "$@"
sqlite=$?

header "API suite on PostgreSQL (WHOSPOKE_TEST_DATABASE=postgres cargo test --release --test api)"
WHOSPOKE_TEST_DATABASE=postgres cargo test --release --test api -- --skip cluster::
postgres=$?

header "live protocol crate (cargo test --release -p whospoke-protocol)"
cargo test --release -p whospoke-protocol
protocol=$?

header "summary"
verdict() { if [ "$1" -eq 0 ]; then echo "passed"; else echo "FAILED (exit $1)"; fi; }
echo "all tests (SQLite and cluster): $(verdict $sqlite)"
echo "API suite on PostgreSQL:        $(verdict $postgres)"
echo "live protocol crate:            $(verdict $protocol)"
[ "$sqlite" -eq 0 ] && [ "$postgres" -eq 0 ] && [ "$protocol" -eq 0 ]
