#!/usr/bin/env python3
"""Live labelling delay per reference turn, from a whospoke-loadtest recording.

    /work/main/.venv/bin/python scripts/live_eval.py REF_DIR OUT_DIR [--tolerance 0.25]
                                                     [--json PATH]

REF_DIR holds reference RTTMs (<name>.rttm, e.g. ../shared/data/dev/rttm). OUT_DIR is
a `whospoke-loadtest run --out` directory recorded at pace 1 (any folder under which
streams/*/stream.json lie, so a ramp's output works too). Only streams that played
one whole file are scored; each stream of the same file counts on its own.

Per stream, hypothesis speakers are mapped one-to-one onto reference speakers by the
Hungarian algorithm on overlap, from the final RTTM the server sent in `completed`
(relabel events applied to every event first, exactly as the loadtest does). Then
for every reference turn (segments of one speaker with gaps under 0.3 s merged):

  first delay = receipt of the first speaker event (provisional or final) whose
                mapped speaker is the turn's and whose span covers the turn start
                +/- tolerance, minus the wall time the audio at that start was sent;
  final delay = the same for the first final event.

An open event (end null) spans up to the audio sent when it arrived. Prints the
median and p95 of both over all turns, and how many turns were never labelled
(never finalised). Accuracy is scored separately: ../shared/tools/der.py REF OUT/rttm.
Needs numpy and scipy (both in the pyannote.metrics venv).
"""

import argparse
import bisect
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

# The same gaps as the loadtest's delay.rs.
CONTINUATION_GAP_SECONDS = 0.3
ROUNDING_SLACK_SECONDS = 0.01


def read_rttm(path):
    """-> [(start, end, speaker)] sorted by start."""
    turns = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0] == "SPEAKER" and float(fields[4]) > 0:
            start = float(fields[3])
            turns.append((start, start + float(fields[4]), fields[7]))
    return sorted(turns)


def merge_turns(segments):
    """Joins a speaker's segments separated by less than the continuation gap."""
    by_speaker = defaultdict(list)
    for start, end, speaker in segments:
        by_speaker[speaker].append([start, end])
    merged = []
    for speaker, spans in by_speaker.items():
        spans.sort()
        current = spans[0]
        for start, end in spans[1:]:
            if start - current[1] < CONTINUATION_GAP_SECONDS:
                current[1] = max(current[1], end)
            else:
                merged.append((current[0], current[1], speaker))
                current = [start, end]
        merged.append((current[0], current[1], speaker))
    return sorted(merged)


def resolve_labels(events):
    """Speaker events as dicts with the label every relabel (in order) gives them."""
    relabels = [(e["from"], e["to"], e.get("since")) for e in events if e["type"] == "relabel"]

    def resolve(label, start):
        for old, new, since in relabels:
            if label == old and (since is None or start >= since):
                label = new
        return label

    return [{**e, "speaker": resolve(e["speaker"], e["start"])}
            for e in events if e["type"] == "speaker"]


def overlap(a, b):
    """Seconds two lists of (start, end, _) spans overlap."""
    total = 0.0
    for s1, e1, _ in a:
        for s2, e2, _ in b:
            total += max(0.0, min(e1, e2) - max(s1, s2))
    return total


def map_speakers(hyp, ref):
    """{hyp speaker: ref speaker}, one-to-one, maximising total overlap."""
    hyp_labels = sorted({s for _, _, s in hyp})
    ref_labels = sorted({s for _, _, s in ref})
    if not hyp_labels or not ref_labels:
        return {}
    gain = np.zeros((len(hyp_labels), len(ref_labels)))
    for i, h in enumerate(hyp_labels):
        for j, r in enumerate(ref_labels):
            gain[i, j] = overlap([t for t in hyp if t[2] == h], [t for t in ref if t[2] == r])
    rows, cols = linear_sum_assignment(gain, maximize=True)
    return {hyp_labels[i]: ref_labels[j] for i, j in zip(rows, cols) if gain[i, j] > 0}


class SendClock:
    """When the audio at a given time had been sent, from stream.json's send log."""

    def __init__(self, sends):
        self.audio_ends = [a for a, _ in sends]
        self.sent = [s for _, s in sends]

    def sent_at(self, audio_seconds):
        i = bisect.bisect_left(self.audio_ends, audio_seconds - ROUNDING_SLACK_SECONDS)
        return self.sent[i] if i < len(self.sent) else None


def first_covering(speaker_events, label, start, tolerance, finals_only):
    for e in speaker_events:
        if finals_only and not e["final"]:
            continue
        reach = e["end"] if e["end"] is not None else e["audio_sent_s"]
        if e["speaker"] == label and e["start"] - tolerance <= start <= reach + tolerance:
            return e
    return None


def evaluate_stream(stream_dir, ref_dir, tolerance):
    """-> (name, [per-turn dict], notes)"""
    meta = json.loads((stream_dir / "stream.json").read_text())
    name = meta["name"]
    if not meta.get("whole_file"):
        return name, [], [f"{stream_dir.name}: not one whole file, skipped"]
    if not meta.get("pace"):
        return name, [], [f"{stream_dir.name}: pace 0 has no clock, skipped"]
    ref_path = ref_dir / f"{name}.rttm"
    if not ref_path.exists():
        return name, [], [f"{stream_dir.name}: no reference {ref_path}, skipped"]
    notes = []
    if meta["pace"] != 1:
        notes.append(f"{stream_dir.name}: pace {meta['pace']}, delays are in wall seconds")

    events = []
    with open(stream_dir / "events.jsonl") as f:
        for line in f:
            record = json.loads(line)
            events.append({**record["event"], "recv_s": record["recv_s"],
                           "audio_sent_s": record["audio_sent_s"]})
    speaker_events = resolve_labels(events)
    labels = {e["speaker"] for e in speaker_events}

    hyp_path = stream_dir / f"{name}.rttm"
    hyp = read_rttm(hyp_path) if hyp_path.exists() else []
    if not hyp or not labels & {s for _, _, s in hyp}:
        # Without a usable RTTM the final events are the best hypothesis there is.
        notes.append(f"{stream_dir.name}: RTTM missing or its labels differ from the "
                     "events'; speakers mapped from the final events")
        hyp = [(e["start"], e["end"], e["speaker"]) for e in speaker_events
               if e["final"] and e["end"] is not None]
    ref = read_rttm(ref_path)
    to_ref = map_speakers(hyp, ref)
    to_hyp = {r: h for h, r in to_ref.items()}

    clock = SendClock(meta["sends"])
    turns = []
    for start, end, speaker in merge_turns(ref):
        sent = clock.sent_at(start)
        label = to_hyp.get(speaker)
        turn = {"file": name, "speaker": speaker, "start": start, "end": end,
                "first_delay": None, "final_delay": None}
        if label is not None and sent is not None:
            first = first_covering(speaker_events, label, start, tolerance, finals_only=False)
            final = first_covering(speaker_events, label, start, tolerance, finals_only=True)
            turn["first_delay"] = first["recv_s"] - sent if first else None
            turn["final_delay"] = final["recv_s"] - sent if final else None
        turns.append(turn)
    return name, turns, notes


def quantiles(values):
    if not values:
        return None, None
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def fmt(value):
    return "-" if value is None else f"{value:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref_dir", type=Path, help="reference RTTM directory")
    parser.add_argument("out_dir", type=Path, help="whospoke-loadtest --out directory")
    parser.add_argument("--tolerance", type=float, default=0.25,
                        help="seconds an event may miss the turn start by (default 0.25)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    stream_dirs = sorted(p.parent for p in args.out_dir.rglob("stream.json"))
    if not stream_dirs:
        sys.exit(f"live_eval: no streams/*/stream.json under {args.out_dir}")

    all_turns, rows, notes = [], [], []
    for stream_dir in stream_dirs:
        name, turns, stream_notes = evaluate_stream(stream_dir, args.ref_dir, args.tolerance)
        notes += stream_notes
        if not turns:
            continue
        all_turns += turns
        first = [t["first_delay"] for t in turns if t["first_delay"] is not None]
        final = [t["final_delay"] for t in turns if t["final_delay"] is not None]
        rows.append((stream_dir.name, len(turns), len(first), len(final),
                     *quantiles(first), *quantiles(final)))

    print(f"{'stream':<28} {'turns':>5} {'label':>5} {'final':>5} | {'first p50':>9} "
          f"{'p95':>6} | {'final p50':>9} {'p95':>6}")
    for stream, n, n_first, n_final, f50, f95, g50, g95 in rows:
        print(f"{stream[:28]:<28} {n:5d} {n_first:5d} {n_final:5d} | {fmt(f50):>9} "
              f"{fmt(f95):>6} | {fmt(g50):>9} {fmt(g95):>6}")
    first = [t["first_delay"] for t in all_turns if t["first_delay"] is not None]
    final = [t["final_delay"] for t in all_turns if t["final_delay"] is not None]
    f50, f95 = quantiles(first)
    g50, g95 = quantiles(final)
    unlabelled = len(all_turns) - len(first)
    unfinalised = len(all_turns) - len(final)
    print(f"ALL: {len(all_turns)} turns; first label: median {fmt(f50)} s, p95 {fmt(f95)} s; "
          f"final: median {fmt(g50)} s, p95 {fmt(g95)} s")
    print(f"never labelled: {unlabelled} turns; never finalised: {unfinalised} turns "
          f"(tolerance +/-{args.tolerance:g} s)")
    for note in notes:
        print(f"note: {note}")

    if args.json:
        summary = {"turns": len(all_turns), "never_labelled": unlabelled,
                   "never_finalised": unfinalised,
                   "first_delay": {"median": f50, "p95": f95},
                   "final_delay": {"median": g50, "p95": g95},
                   "tolerance": args.tolerance, "notes": notes, "per_turn": all_turns}
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    if not all_turns:
        sys.exit("live_eval: no stream could be scored (see the notes)")


if __name__ == "__main__":
    main()
