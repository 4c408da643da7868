#!/usr/bin/env bash
# Diarize the dev set with the release binary and score it with ../shared/tools/der.py.
#
#   scripts/eval_dev.sh [DATA_DIR] [--] [extra `whospoke diarize` args...]
#
# DATA_DIR (default: <repo>/../shared/data/dev) holds wav/*.wav and rttm/*.rttm
# (and all.uem, which der.py picks up). Every other argument goes to `whospoke diarize`,
# e.g. `scripts/eval_dev.sh -- --threads 1`.
# Prints the DER table (collar 0.25 and no collar). The hypothesis RTTMs, the CLI's JSON
# and the scores are kept in target/eval_dev/last/ (rttm/, run.json, scores.json).
# Needs: scripts/setup.sh (the release binary and .venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release/whospoke"
PY="$ROOT/.venv/bin/python"
DER="$ROOT/../shared/tools/der.py"

DATA="$ROOT/../shared/data/dev"
if [ $# -gt 0 ] && [ "$1" != "--" ] && [ "${1#-}" = "$1" ]; then
    DATA="$1"
    shift
fi
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")

die() { printf 'eval_dev.sh: error: %s\n' "$*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not found: run scripts/setup.sh (or cargo build --release)"
[ -x "$PY" ] || die "$PY not found: run scripts/setup.sh"
[ -f "$DER" ] || die "$DER not found"
[ -d "$DATA/wav" ] && [ -d "$DATA/rttm" ] || die "$DATA must contain wav/ and rttm/"
DATA="$(cd "$DATA" && pwd)"
shopt -s nullglob
WAVS=("$DATA"/wav/*.wav)
[ "${#WAVS[@]}" -gt 0 ] || die "no .wav files in $DATA/wav"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/whospoke-eval.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
SAVE="$ROOT/target/eval_dev/last"
rm -rf "$SAVE"
mkdir -p "$SAVE/rttm"

echo "== whospoke diarize: ${#WAVS[@]} files from $DATA/wav ${EXTRA[*]:+(args: ${EXTRA[*]})}"
t0=$(date +%s.%N)
rc=0
"$BIN" diarize "${WAVS[@]}" --out "$TMP/out" --json "${EXTRA[@]}" > "$TMP/run.json" || rc=$?
t1=$(date +%s.%N)
cp "$TMP/run.json" "$SAVE/run.json"
[ "$rc" -eq 0 ] || echo "eval_dev.sh: warning: whospoke exited with status $rc; scoring what it wrote" >&2

# The CLI writes <out>/<stem>/<stem>.rttm; gather them in one folder for der.py.
n=0
for wav in "${WAVS[@]}"; do
    stem="$(basename "$wav" .wav)"
    if [ -f "$TMP/out/$stem/$stem.rttm" ]; then
        cp "$TMP/out/$stem/$stem.rttm" "$SAVE/rttm/"
        n=$((n + 1))
    else
        echo "eval_dev.sh: warning: no RTTM for $stem (scored as all missed)" >&2
    fi
done

python3 - "$SAVE/run.json" "$t0" "$t1" "$n" "${#WAVS[@]}" <<'EOF'
import json, sys
path, t0, t1, n, total = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
wall = t1 - t0
try:
    run = json.load(open(path))
except Exception as e:  # the CLI failed before printing its JSON
    print(f"   (no JSON from the CLI: {e}); process wall {wall:.2f} s; RTTMs {n}/{total}")
    sys.exit(0)
results = run.get("results", [])
audio = sum((r.get("report") or {}).get("duration_seconds", 0.0) for r in results if r.get("ok"))
failed = [r.get("input") for r in results if not r.get("ok")]
line = f"   RTTMs {n}/{total}; audio {audio/60:.2f} min; process wall {wall:.2f} s"
if audio and wall:
    line += f" ({audio/wall:.1f}x real time incl. load)"
if run.get("model_load_seconds") is not None:
    line += f"; model load {run['model_load_seconds']:.2f} s"
if run.get("peak_rss_mb") is not None:
    line += f"; peak RSS {run['peak_rss_mb']:.0f} MB"
print(line)
for f in failed:
    print(f"   FAILED: {f}")
EOF

echo "== DER (../shared/tools/der.py)"
"$PY" "$DER" "$DATA/rttm" "$SAVE/rttm" --json "$SAVE/scores.json"
echo "(hypotheses and scores kept in ${SAVE#"$ROOT"/})"
exit "$rc"
