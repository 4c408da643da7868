#!/usr/bin/env bash
# Offline throughput benchmark: diarize one long file (dev-set WAVs concatenated) and report
# real-time factors, start-up, peak RSS and where the time goes.
#
#   scripts/bench_offline.sh [--minutes N] [--threads N] [--data DIR] [-- extra diarize args]
#
#   --minutes N   length of the benchmark audio (default 32); the file is cached as
#                 target/bench/dev_concat_<N>min.wav and reused.
#   --threads N   passed to `whospoke diarize --threads N`.
#   --data DIR    dev set with wav/*.wav (default <repo>/../shared/data/dev).
# The CLI's JSON and this script's numbers are kept in target/bench/last_run.json.
# Needs: cargo, ffmpeg (or falls back to Python's wave module), python3 (stdlib only).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/target/release/whospoke"
BENCH="$ROOT/target/bench"
DATA="$ROOT/../shared/data/dev"
MINUTES=32
THREADS=()
EXTRA=()

die() { printf 'bench_offline.sh: error: %s\n' "$*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) [ $# -ge 2 ] || die "--minutes needs a value"; MINUTES="$2"; shift 2 ;;
        --threads) [ $# -ge 2 ] || die "--threads needs a value"; THREADS=(--threads "$2"); shift 2 ;;
        --data) [ $# -ge 2 ] || die "--data needs a value"; DATA="$2"; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $1 (try --help)" ;;
    esac
done
[[ "$MINUTES" =~ ^[0-9]+$ ]] && [ "$MINUTES" -gt 0 ] || die "--minutes must be a positive integer"

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

echo "== cargo build --release"
cargo build --release --quiet
[ -x "$BIN" ] || die "$BIN was not built"

shopt -s nullglob
WAVS=("$DATA"/wav/*.wav)
[ "${#WAVS[@]}" -gt 0 ] || die "no .wav files in $DATA/wav"
mkdir -p "$BENCH"
BIG="$BENCH/dev_concat_${MINUTES}min.wav"
ONE="$BENCH/one_second.wav"

# ---------------------------------------------------------------------------------------
# Benchmark audio (cached): the dev WAVs (16 kHz mono s16) repeated, cut to exactly N min.
# ---------------------------------------------------------------------------------------
make_audio() {
    local target_s=$((MINUTES * 60))
    if command -v ffmpeg >/dev/null 2>&1; then
        local set_s reps list="$BENCH/concat_list.txt"
        set_s=$(python3 -c 'import sys, wave
print(sum(w.getnframes() / w.getframerate() for w in map(wave.open, sys.argv[1:])))' "${WAVS[@]}")
        reps=$(python3 -c "import math; print(math.ceil($target_s / $set_s))")
        : > "$list"
        for _ in $(seq "$reps"); do
            for w in "${WAVS[@]}"; do
                printf "file '%s'\n" "$(readlink -f "$w" | sed "s/'/'\\\\''/g")" >> "$list"
            done
        done
        ffmpeg -nostdin -hide_banner -loglevel error -y -f concat -safe 0 -i "$list" \
            -t "$target_s" -ac 1 -ar 16000 -c:a pcm_s16le "$BIG.partial.wav"
        rm -f "$list"
        ffmpeg -nostdin -hide_banner -loglevel error -y -ss 5 -t 1 -i "${WAVS[0]}" \
            -ac 1 -ar 16000 -c:a pcm_s16le "$ONE.partial.wav"
    else
        echo "   (ffmpeg not found: concatenating with Python's wave module)"
        python3 - "$target_s" "$BIG.partial.wav" "$ONE.partial.wav" "${WAVS[@]}" <<'EOF'
import sys, wave
target_s, big, one, wavs = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
need = target_s * 16000
with wave.open(big, "wb") as out:
    out.setnchannels(1); out.setsampwidth(2); out.setframerate(16000)
    while need > 0:
        for p in wavs:
            with wave.open(p) as w:
                assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000), p
                n = min(need, w.getnframes())
                out.writeframes(w.readframes(n))
                need -= n
            if need == 0:
                break
with wave.open(wavs[0]) as w, wave.open(one, "wb") as out:
    out.setparams(w.getparams()); w.setpos(5 * 16000); out.writeframes(w.readframes(16000))
EOF
    fi
    mv -f "$BIG.partial.wav" "$BIG"
    mv -f "$ONE.partial.wav" "$ONE"
}
if [ -s "$BIG" ] && [ -s "$ONE" ]; then
    echo "== audio: reusing ${BIG#"$ROOT"/}"
else
    echo "== audio: making ${BIG#"$ROOT"/} (${MINUTES} min from ${#WAVS[@]} dev files)"
    make_audio
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/whospoke-bench.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
now() { date +%s.%N; }

# ---------------------------------------------------------------------------------------
# Start-up: the whole process on a 1 s file, 3 runs (the first also warms the page cache).
# ---------------------------------------------------------------------------------------
echo "== start-up: whospoke diarize on a 1 s file (3 runs)"
STARTUP=()
for i in 1 2 3; do
    t0=$(now)
    "$BIN" diarize "$ONE" --out "$TMP/one$i" --json "${THREADS[@]}" "${EXTRA[@]}" > "$TMP/one$i.json"
    t1=$(now)
    STARTUP+=("$(python3 -c "print($t1 - $t0)")")
done

# ---------------------------------------------------------------------------------------
# Calibration: the bare models in Python's onnxruntime, 1 thread, against the figures
# measured when ../shared/models/MODELS.md was written. These VMs are shared and their
# speed drifts; the ratio says how this run's machine compares.
# ---------------------------------------------------------------------------------------
CALIBRATION="$TMP/calibration.json"
if [ -x "$ROOT/.venv/bin/python" ] && "$ROOT/.venv/bin/python" -c 'import onnxruntime' 2>/dev/null; then
    echo "== calibration: bare CAM++ and segmentation calls in onnxruntime"
    "$ROOT/.venv/bin/python" - "$ROOT/models" > "$CALIBRATION" <<'EOF'
import json, sys, time
import numpy as np
import onnxruntime as ort

def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

def median_ms(sess, name, x, runs=10):
    sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return 1000 * sorted(times)[len(times) // 2]

rng = np.random.default_rng(0)
models = sys.argv[1]
campplus = median_ms(session(f"{models}/campplus-en-zh.onnx"), "fbank", rng.standard_normal((1, 298, 80), dtype=np.float32))
segmentation = median_ms(session(f"{models}/segmentation-3.0.onnx"), "waveform", 0.1 * rng.standard_normal((1, 1, 160000), dtype=np.float32))
print(json.dumps({"campplus_3s_ms": campplus, "segmentation_10s_ms": segmentation}))
EOF
else
    echo "== calibration skipped: .venv has no onnxruntime (run scripts/setup.sh)"
    echo '{}' > "$CALIBRATION"
fi

# ---------------------------------------------------------------------------------------
# The benchmark run
# ---------------------------------------------------------------------------------------
echo "== diarize ${BIG#"$ROOT"/} ${THREADS[*]} ${EXTRA[*]}"
t0=$(now)
"$BIN" diarize "$BIG" --out "$TMP/big" --json "${THREADS[@]}" "${EXTRA[@]}" > "$TMP/run.json"
t1=$(now)

python3 - "$TMP/run.json" "$t0" "$t1" "$BENCH/last_run.json" "$TMP" "$CALIBRATION" "${STARTUP[@]}" <<'EOF'
import json, os, statistics, sys, wave

run_path, t0, t1, save, tmp = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
calibration = json.load(open(sys.argv[6]))
startup = [float(x) for x in sys.argv[7:]]
wall = t1 - t0
run = json.load(open(run_path))
res = run["results"][0]
if not res.get("ok"):
    sys.exit(f"bench: diarization failed: {json.dumps(res)[:500]}")
rep = res["report"]
timing = rep.get("timing", {})
audio = rep.get("duration_seconds")
if not audio:
    with wave.open(res["input"]) as w:
        audio = w.getnframes() / w.getframerate()
load = run.get("model_load_seconds") or 0.0
analysis = timing.get("analysis_seconds")
fastest = min(range(len(startup)), key=startup.__getitem__)
one = json.load(open(os.path.join(tmp, f"one{fastest + 1}.json")))

def rtfx(den):
    return f"{audio / den:8.1f}x" if den and den > 0 else "     n/a"

print()
print(f"audio                      {audio / 60:8.2f} min  ({audio:.1f} s, {rep.get('num_speakers', '?')} speakers found)")
print(f"process wall               {wall:8.2f} s")
print(f"RTFx incl. load            {rtfx(wall)}   (audio / process wall)")
print(f"RTFx excl. load            {rtfx(wall - load)}   (audio / (process wall - model load))")
print(f"RTFx analysis only         {rtfx(analysis)}   (audio / analysis_seconds = {analysis if analysis is not None else float('nan'):.2f} s)")
print(f"start-up (model load)      {load:8.3f} s")
def num(x):
    return float("nan") if x is None else float(x)

print(f"start-up, 1 s file         {startup[fastest]:8.3f} s  fastest of {len(startup)} runs, whole process (runs: {', '.join(f'{s:.3f}' for s in startup)}; its model load {num(one.get('model_load_seconds')):.3f} s)")
print(f"peak RSS                   {num(run.get('peak_rss_mb')):8.1f} MB")
print(f"CLI total_seconds          {num(run.get('total_seconds')):8.2f} s")

stages = ["decode", "fbank", "segmentation", "embedding", "clustering", "outputs"]
vals = {s: timing.get(f"{s}_seconds") for s in stages}
known = sum(v for v in vals.values() if v is not None)
print()
print("time split (segmentation / fbank / embedding are sums over worker threads;")
print("% is of the sum of the stages listed)")
for s in stages:
    v = vals[s]
    if v is None:
        print(f"  {s:<14} {'n/a':>8}")
    else:
        pct = 100 * v / known if known else 0.0
        print(f"  {s:<14} {v:8.2f} s {pct:6.1f} %   ({audio / v if v else float('inf'):8.0f}x RT)")
print(f"  {'sum':<14} {known:8.2f} s")

# MODELS.md section 3, 1 intra-op thread: 43.9 ms per 3 s CAM++ call, 36.6 ms per 10 s window.
REFERENCE = {"campplus_3s_ms": 43.9, "segmentation_10s_ms": 36.6}
slowdown = None
if calibration:
    print()
    print("calibration (bare models in Python onnxruntime, 1 thread; reference = MODELS.md)")
    ratios = []
    for key, ref in REFERENCE.items():
        now = calibration[key]
        ratios.append(now / ref)
        print(f"  {key:<22} {now:7.1f} ms now vs {ref:5.1f} ms then ({now / ref:.2f}x slower)")
    slowdown = statistics.mean(ratios)
    print(f"  machine is {slowdown:.2f}x slower than when MODELS.md/PERF.md were measured;")
    print(f"  RTFx excl. load scaled to that state: {audio / (wall - load) * slowdown:.1f}x, analysis only: {audio / analysis * slowdown if analysis else float('nan'):.1f}x")

json.dump({
    "audio_seconds": audio, "process_wall_seconds": wall,
    "rtfx_including_load": audio / wall, "rtfx_excluding_load": audio / (wall - load) if wall > load else None,
    "rtfx_analysis": audio / analysis if analysis else None,
    "startup_1s_file_seconds": startup, "calibration": calibration, "machine_slowdown": slowdown, "cli": run,
}, open(save, "w"), indent=1)
print(f"\n(saved {os.path.relpath(save)})")
EOF
