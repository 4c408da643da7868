#!/usr/bin/env bash
# Coverage-guided fuzzing of what untrusted clients send (fuzz/fuzz_targets, cargo fuzz).
#
#   bash scripts/fuzz.sh [--dev] [SECONDS] [TARGET...]
#
# Builds every target (nightly toolchain, cargo-fuzz; no sanitizer, with debug assertions:
# the product is safe Rust, and overflow checks find what ASan would not; --dev: the dev
# profile, which builds in a third of the time, for CI's smoke run), seeds its corpus
# from the test fixtures (scripts/fuzz_seeds.py) and runs each TARGET (default: all) for
# SECONDS (default 30). Prints per target: executions, exec/s, coverage (cov/ft from
# libFuzzer's last status line), corpus size and crashes. The grown corpora stay in
# fuzz/corpus/<target> (gitignored) and carry over to the next run; a crashing input is kept
# in fuzz/artifacts/<target>/. Exits non-zero when any target crashed.
#
# Environment: FUZZ_ARGS, more libFuzzer options (e.g. "-fork=1 -ignore_crashes=1" to go on
# past a crash and collect them all). Builds go to fuzz/target, apart from the
# stable build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

FLAGS=(--sanitizer none --debug-assertions)
if [ "${1:-}" = "--dev" ]; then
    FLAGS+=(--dev)
    shift
fi
SECONDS_EACH="${1:-30}"
shift || true
ALL=(decode control_message live_frames whip_offer range multipart)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi

rustup toolchain list | grep -q '^nightly' || {
    echo "fuzz.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
}
# cargo-fuzz is only needed here, so it is installed here rather than by setup.sh.
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

start=$(date +%s)
cargo +nightly fuzz build "${FLAGS[@]}" 2>&1 | tail -n 3
echo "fuzz build: $(( $(date +%s) - start ))s, fuzz/target: $(du -sh target | cut -f1)"

SEEDS="$(mktemp -d)"
trap 'rm -rf "$SEEDS"' EXIT
python3 "$ROOT/scripts/fuzz_seeds.py" "$SEEDS"

failed=0
summary=()
for target in "${TARGETS[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log="target/fuzz-$target.log"
    stamp="target/fuzz-$target.start"
    touch "$stamp"
    # -timeout: an input that takes longer is a hang, reported like a crash.
    set +e
    cargo +nightly fuzz run "${FLAGS[@]}" "$target" "corpus/$target" "$SEEDS/$target" -- \
        -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    set -e
    status=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -n 1)
    # -fork=N (in FUZZ_ARGS) prints no final stats: its status lines carry the totals.
    execs=$(grep -oP 'stat::number_of_executed_units: \K[0-9]+' "$log" ||
        grep -oP '^#\K[0-9]+' <<<"$status" || echo "?")
    rate=$(grep -oP 'stat::average_exec_per_sec: \K[0-9]+' "$log" ||
        grep -oP 'exec/s: \K[0-9]+' <<<"$status" || echo "?")
    cov=$(grep -oP 'cov: \K[0-9]+' <<<"$status" || echo "?")
    ft=$(grep -oP 'ft: \K[0-9]+' <<<"$status" || echo "?")
    corpus=$(find "corpus/$target" -type f | wc -l)
    crashes=$(find "artifacts/$target" -type f -newer "$stamp" | wc -l)
    if [ "$rc" -ne 0 ]; then
        failed=1
        echo "---- $target failed (exit $rc); last lines of fuzz/$log ----"
        grep -vE '^#[0-9]+' "$log" | tail -n 30
    fi
    summary+=("$(printf '%-16s %10s %8s %6s %7s %7s %8s' "$target" "$execs" "$rate" "$cov" "$ft" "$corpus" "$crashes")")
done

printf '\n%-16s %10s %8s %6s %7s %7s %8s\n' target executions exec/s cov ft corpus crashes
printf '%s\n' "${summary[@]}"
echo "each target ${SECONDS_EACH}s; total $(( $(date +%s) - start ))s; fuzz/target: $(du -sh target | cut -f1)"
exit "$failed"
