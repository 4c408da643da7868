#!/usr/bin/env bash
# DER table for the dev set and the hard set, offline and live, with exact-count rates.
#
#   scripts/eval_hard.sh [--offline-only] [--latency MS] [--] [extra `whospoke diarize` args...]
#
# Offline: target/release/whospoke diarize. Live: the online_dev example at --latency
# (default 2000 ms). The hard set (target/hard) is made by scripts/make_hard_set.py when
# missing. Prints per set and mode DER (collar 0.25 and none) with miss / false alarm /
# confusion and the share of files with the exact speaker count, then, per set, on how
# many files offline scores no worse than live (collar 0.25).
# Hypotheses and der.py's JSON are kept in target/eval_hard/<set>/<mode>/.
# Needs: scripts/setup.sh, and `cargo build --release --example online_dev` for live.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release/whospoke"
LIVE="$ROOT/target/release/examples/online_dev"
PY="$ROOT/.venv/bin/python"
DER="$ROOT/../shared/tools/der.py"
DEV="$ROOT/../shared/data/dev"
HARD="$ROOT/target/hard"
OUT="$ROOT/target/eval_hard"

LATENCY=2000
MODES=(offline live)
while [ $# -gt 0 ]; do
    case "$1" in
        --offline-only) MODES=(offline); shift ;;
        --latency) LATENCY="$2"; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
EXTRA=("$@")

die() { printf 'eval_hard.sh: error: %s\n' "$*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not found: run scripts/setup.sh"
[ -x "$PY" ] || die "$PY not found: run scripts/setup.sh"
[[ " ${MODES[*]} " != *" live "* ]] || [ -x "$LIVE" ] \
    || die "$LIVE not found: cargo build --release --example online_dev"
[ -f "$HARD/all.uem" ] || "$PY" "$ROOT/scripts/make_hard_set.py" --out "$HARD" > /dev/null

for set in dev hard; do
    data="$DEV"; [ "$set" = hard ] && data="$HARD"
    wavs=("$data"/wav/*.wav)
    for mode in "${MODES[@]}"; do
        dir="$OUT/$set/$mode"
        rm -rf "$dir" && mkdir -p "$dir/rttm"
        echo "== $set, $mode (${#wavs[@]} files)" >&2
        if [ "$mode" = offline ]; then
            "$BIN" diarize "${wavs[@]}" --out "$dir/out" --json "${EXTRA[@]}" > "$dir/run.json"
            cp "$dir"/out/*/*.rttm "$dir/rttm/"
            rm -rf "$dir/out"
        else
            "$LIVE" "$dir/rttm" "$LATENCY" "${wavs[@]}" > "$dir/run.txt"
        fi
        "$PY" "$DER" "$data/rttm" "$dir/rttm" --json "$dir/scores.json" > "$dir/table.txt"
    done
done

"$PY" - "$OUT" "${MODES[@]}" <<'EOF'
import json, sys
from pathlib import Path
out, modes = Path(sys.argv[1]), sys.argv[2:]
print(f"{'set':5} {'mode':8} | {'DER@0.25':>8} {'miss':>6} {'FA':>6} {'conf':>6} | {'DER@0':>6} {'miss':>6} {'FA':>6} {'conf':>6} | exact count")
scores = {}
for s in ("dev", "hard"):
    for m in modes:
        d = json.load(open(out / s / m / "scores.json"))
        scores[s, m] = d
        c, n = d["total"]["collar"], d["total"]["nocollar"]
        exact = sum(f["n_hyp_spk"] == f["n_ref_spk"] for f in d["files"])
        print(f"{s:5} {m:8} | {c['der']:8.2f} {c['miss']:6.2f} {c['fa']:6.2f} {c['conf']:6.2f} | "
              f"{n['der']:6.2f} {n['miss']:6.2f} {n['fa']:6.2f} {n['conf']:6.2f} | {exact}/{len(d['files'])}")
if "live" in modes:
    for s in ("dev", "hard"):
        off = {f["uri"]: f["collar"]["der"] for f in scores[s, "offline"]["files"]}
        live = {f["uri"]: f["collar"]["der"] for f in scores[s, "live"]["files"]}
        worse = sorted((u for u in off if off[u] > live[u] + 1e-9), key=lambda u: live[u] - off[u])
        print(f"{s}: offline <= live on {len(off) - len(worse)}/{len(off)} files"
              + (f"; worse on {', '.join(f'{u} ({off[u]:.1f} vs {live[u]:.1f})' for u in worse)}" if worse else ""))
EOF
