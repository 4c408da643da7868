#!/usr/bin/env python3
"""Batch API benchmark: the real server on loopback, real uploads, real jobs.

    .venv/bin/python scripts/bench_batch.py [--jobs N] [--clients C] [--concurrent-jobs J]
                                            [--data DIR] [--bin PATH]

Starts `whospoke serve` on a fresh data directory, creates a user, uploads every dev
WAV (../shared/data/dev/wav, repeated to N jobs) from C client threads at once, waits
for all of them, and prints:
  - submit latency (upload → 200 PENDING) p50 / p95,
  - queue wait and processing time per job (from the job's timestamps and the server's
    metrics), end-to-end throughput as audio seconds per wall second (RTFx),
  - the same files diarized by `whospoke diarize` in one process, as the reference
    RTFx measured in the same run, and the ratio of the two.
Needs: the release binary (scripts/setup.sh builds it) and `requests` (in .venv).
"""

import argparse
import concurrent.futures
import json
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def wav_seconds(path):
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def start_server(binary, data_dir, concurrent_jobs):
    server = subprocess.Popen(
        [str(binary), "serve", "--port", "0", "--data-dir", str(data_dir),
         "--concurrent-jobs", str(concurrent_jobs), "--rate-limit-per-minute", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline().strip()
    if not line.startswith("whospoke listening on "):
        server.kill()
        sys.exit(f"bench_batch: the server did not start: {line!r}")
    return server, line.rsplit(" ", 1)[1]


def create_key(binary, data_dir):
    out = subprocess.run(
        [str(binary), "admin", "--data-dir", str(data_dir), "create-user",
         "--credits", "1000000000", "--json"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)["api_key"]


def submit(base, key, path):
    started = time.monotonic()
    with open(path, "rb") as f:
        r = requests.post(f"{base}/api/v1/speaker/extract", headers={"X-API-Key": key},
                          files={"file": (path.name, f, "audio/wav")}, timeout=600)
    r.raise_for_status()
    return r.json()["id"], time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=22)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--concurrent-jobs", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/dev")
    parser.add_argument("--bin", type=Path, default=ROOT / "target/release/whospoke")
    args = parser.parse_args()

    wavs = sorted((args.data / "wav").glob("*.wav"))
    if not wavs:
        sys.exit(f"bench_batch: no WAVs in {args.data / 'wav'}")
    inputs = [wavs[i % len(wavs)] for i in range(args.jobs)]
    audio_seconds = sum(wav_seconds(p) for p in inputs)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        key = create_key(args.bin, data_dir)
        server, base = start_server(args.bin, data_dir, args.concurrent_jobs)
        try:
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                submitted = list(pool.map(lambda p: submit(base, key, p), inputs))
            pending = {job_id for job_id, _ in submitted}
            while pending:
                for job_id in list(pending):
                    job = requests.get(f"{base}/api/v1/jobs/{job_id}",
                                       headers={"X-API-Key": key}, timeout=60).json()
                    if job["status"] == "FAILED":
                        sys.exit(f"bench_batch: job {job_id} failed: {job['error_message']}")
                    if job["status"] == "COMPLETED":
                        pending.discard(job_id)
                time.sleep(0.2)
            wall = time.monotonic() - started
            metrics = requests.get(f"{base}/metrics", timeout=60).text
        finally:
            server.terminate()
            server.wait(timeout=60)

        processing = next(float(line.split()[-1]) for line in metrics.splitlines()
                          if line.startswith("whospoke_job_processing_seconds_sum"))
        cli_out = Path(tmp) / "cli"
        cli_started = time.monotonic()
        subprocess.run([str(args.bin), "diarize", *map(str, inputs), "--out", str(cli_out),
                        "--json"], check=True, capture_output=True)
        cli_wall = time.monotonic() - cli_started

    latencies = [seconds for _, seconds in submitted]
    server_rtfx = audio_seconds / wall
    cli_rtfx = audio_seconds / cli_wall
    print(f"jobs {args.jobs} from {args.clients} clients, {audio_seconds:.0f} s of audio, "
          f"--concurrent-jobs {args.concurrent_jobs}")
    print(f"submit latency (upload of {statistics.mean(p.stat().st_size for p in inputs) / 1e6:.1f} MB avg → 200): "
          f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p95 {percentile(latencies, 0.95) * 1000:.0f} ms")
    print(f"server: all jobs COMPLETED in {wall:.1f} s → {server_rtfx:.1f}x real time "
          f"(job processing {processing:.1f} s summed)")
    print(f"CLI, same files, one process: {cli_wall:.1f} s → {cli_rtfx:.1f}x real time")
    print(f"server / CLI throughput: {server_rtfx / cli_rtfx:.2f}")


if __name__ == "__main__":
    main()
