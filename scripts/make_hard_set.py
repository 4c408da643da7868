#!/usr/bin/env python3
"""Builds the hard dev set: far-field meetings remixed from ../shared/data/dev.

    .venv/bin/python scripts/make_hard_set.py [--dev DIR] [--out DIR] [--clips N] [--seed S]

Writes OUT/wav/<uri>.wav (16 kHz mono s16), OUT/rttm/<uri>.rttm, OUT/uem/<uri>.uem,
OUT/all.uem and OUT/manifest.json (every turn: source file, offset, position, level,
room, noise). Deterministic: the same seed, dev data and numpy/scipy give the same bytes
(OUT/SHA256SUMS lists them). How the clips are made is in tests/data/hard/README.md.
"""

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

RATE = 16_000
SPEED_OF_SOUND = 343.0
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- source material


def read_rttm(path):
    turns = []
    for line in path.read_text().splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            turns.append((f[7], float(f[3]), float(f[3]) + float(f[4])))
    return turns


def single_speaker_stretches(turns, min_seconds=0.4):
    """Stretches where the reference has exactly one speaker: (speaker, start, end)."""
    edges = sorted({t for _, s, e in turns for t in (s, e)})
    out = []
    for a, b in zip(edges, edges[1:]):
        mid = (a + b) / 2
        active = [spk for spk, s, e in turns if s <= mid < e]
        if len(active) == 1:
            if out and out[-1][0] == active[0] and abs(out[-1][2] - a) < 1e-9:
                out[-1] = (active[0], out[-1][1], b)
            else:
                out.append((active[0], a, b))
    return [s for s in out if s[2] - s[1] >= min_seconds]


def load_material(dev):
    """Per speaker: list of (uri, start, end, samples) of single-speaker speech."""
    material = {}
    for rttm in sorted((dev / "rttm").glob("*.rttm")):
        uri = rttm.stem
        audio, rate = sf.read(dev / "wav" / f"{uri}.wav", dtype="float64")
        assert rate == RATE
        for spk, s, e in single_speaker_stretches(read_rttm(rttm)):
            piece = audio[int(round(s * RATE)) : int(round(e * RATE))]
            material.setdefault(spk, []).append((uri, s, e, piece))
    return material


# ---------------------------------------------------------------- room acoustics


def image_method_rir(room, source, mic, rt60, length_seconds):
    """Allen & Berkley image-method impulse response of a shoebox room.

    Every wall reflects with the same coefficient, from Sabine's RT60; each
    image contributes beta^reflections / (4 pi d) at delay d / c, placed with
    linear fractional-delay interpolation; an 80 Hz high-pass removes the
    method's DC build-up, as Allen & Berkley recommend.
    """
    room = np.asarray(room, float)
    source = np.asarray(source, float)
    mic = np.asarray(mic, float)
    volume = room.prod()
    surface = 2 * (room[0] * room[1] + room[0] * room[2] + room[1] * room[2])
    alpha = min(0.161 * volume / (surface * rt60), 1.0)
    beta = np.sqrt(1.0 - alpha)
    length = int(length_seconds * RATE)
    reach = SPEED_OF_SOUND * length_seconds
    rir = np.zeros(length + 2)
    orders = [np.arange(-int(np.ceil(reach / (2 * L))) - 1, int(np.ceil(reach / (2 * L))) + 2) for L in room]
    for px in (0, 1):
        for py in (0, 1):
            for pz in (0, 1):
                p = np.array([px, py, pz])
                nx, ny, nz = np.meshgrid(*orders, indexing="ij")
                n = np.stack([nx.ravel(), ny.ravel(), nz.ravel()], axis=1)
                image = (1 - 2 * p) * source + 2 * n * room
                d = np.linalg.norm(image - mic, axis=1)
                keep = d < reach
                n, d = n[keep], d[keep]
                reflections = np.abs(n - p).sum(axis=1) + np.abs(n).sum(axis=1)
                gain = beta**reflections / (4 * np.pi * np.maximum(d, 0.05))
                delay = d / SPEED_OF_SOUND * RATE
                i = np.floor(delay).astype(int)
                frac = delay - i
                np.add.at(rir, i, gain * (1 - frac))
                np.add.at(rir, i + 1, gain * frac)
    sos = scipy.signal.butter(2, 80, "highpass", fs=RATE, output="sos")
    rir = scipy.signal.sosfilt(sos, rir[:length])
    return rir / np.abs(rir).max()


def random_position(rng, room, margin=0.5):
    return np.array([rng.uniform(margin, L - margin) for L in room[:2]] + [rng.uniform(1.1, 1.7)])


def position_at(rng, room, mic, distance):
    """A point about `distance` from the mic, inside the room."""
    for _ in range(100):
        angle = rng.uniform(0, 2 * np.pi)
        p = mic + np.array([distance * np.cos(angle), distance * np.sin(angle), rng.uniform(-0.3, 0.4)])
        if all(0.3 < p[k] < room[k] - 0.3 for k in range(3)):
            return p
    return random_position(rng, room)


# ---------------------------------------------------------------- noise


def coloured_noise(rng, n, exponent):
    """Gaussian noise with power spectrum 1/f^exponent (1: pink, 2: brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    f[0] = f[1]
    spectrum /= f ** (exponent / 2)
    spectrum[f < 20] = 0
    noise = np.fft.irfft(spectrum, n)
    return noise / np.sqrt(np.mean(noise**2))


def babble(rng, n, material, exclude, room, mic, talkers=8):
    """Many far talkers not in the meeting, each from its own corner of the room."""
    others = sorted(set(material) - set(exclude))
    out = np.zeros(n)
    for spk in rng.choice(others, size=talkers, replace=False):
        pieces = material[spk]
        stream = np.concatenate([pieces[k][3] for k in rng.permutation(len(pieces))])
        while len(stream) < n:
            stream = np.concatenate([stream, stream])
        start = rng.integers(0, len(stream) - n + 1)
        voice = stream[start : start + n]
        rir = image_method_rir(room, position_at(rng, room, mic, rng.uniform(3.0, 5.0)), mic, 0.6, 0.4)
        voice = scipy.signal.fftconvolve(voice, rir)[:n]
        out += voice / np.sqrt(np.mean(voice**2) + 1e-12)
    return out / np.sqrt(np.mean(out**2))


# ---------------------------------------------------------------- the conversation


def take_piece(rng, material, spk, seconds, used):
    """A piece of about `seconds` of one speaker's single-speaker speech, preferring unused stretches."""
    stretches = material[spk]
    order = sorted(range(len(stretches)), key=lambda k: (used.get((spk, k), 0), rng.random()))
    k = max(order[:3], key=lambda k: min(stretches[k][2] - stretches[k][1], seconds))
    used[(spk, k)] = used.get((spk, k), 0) + 1
    uri, s, e, samples = stretches[k]
    n = min(int(seconds * RATE), len(samples))
    # Backchannels start where the stretch starts (a word onset); turns anywhere.
    start = 0 if seconds < 1.0 else rng.integers(0, len(samples) - n + 1)
    piece = samples[start : start + n].copy()
    fade = min(160, n // 4)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade))
    piece[:fade] *= ramp
    piece[n - fade :] *= ramp[::-1]
    return piece, {"source": uri, "offset": round(s + start / RATE, 3)}


def plan_turns(rng, speakers, minor, duration, p_overlap, p_backchannel):
    """(speaker, start, seconds, kind) for one clip; kind is turn, minor or backchannel."""
    main = [s for s in speakers if s not in minor]
    minor_turns = []
    for spk in minor:
        total = rng.uniform(2.5, 5.0)
        parts = rng.integers(1, 3)
        minor_turns += [(spk, total / parts) for _ in range(parts)]
    plan, t, previous = [], rng.uniform(0.3, 1.0), None
    # Minor speakers speak at random points of the meeting, between main turns.
    expected_turns = max(2, int(duration / 4.5))
    slots = sorted(zip(rng.integers(1, expected_turns, len(minor_turns)).tolist(), range(len(minor_turns))))
    k = 0
    while t < duration - 2.0:
        if slots and slots[0][0] <= k:
            spk, seconds = minor_turns[slots.pop(0)[1]]
            kind = "minor"
        else:
            choices = [s for s in main if s != previous] or main
            spk = choices[rng.integers(len(choices))]
            seconds = rng.uniform(1.5, 7.0)
            kind = "turn"
        seconds = min(seconds, duration - 0.5 - t)
        if plan and plan[-1][0] != spk and rng.random() < p_overlap:
            start = max(plan[-1][1] + 0.5, t - rng.uniform(0.3, 2.0))
        else:
            start = t + rng.uniform(0.1, 1.2)
        seconds = min(seconds, duration - 0.5 - start)
        if seconds < 0.6:
            break
        plan.append((spk, start, seconds, kind))
        if kind == "turn" and seconds > 2.0 and len(main) > 1 and rng.random() < p_backchannel:
            others = [s for s in main if s != spk]
            who = others[rng.integers(len(others))]
            length = rng.uniform(0.35, 0.95)
            at = start + rng.uniform(0.5, seconds - length - 0.2)
            plan.append((who, at, length, "backchannel"))
        t = max(t, start + seconds)
        previous = spk
        k += 1
    # Minor turns not yet placed (a short clip) go into the last gaps.
    for _, m in slots:
        spk, seconds = minor_turns[m]
        start = rng.uniform(1.0, max(1.5, duration - seconds - 1.0))
        plan.append((spk, start, seconds, "minor"))
    return sorted(plan, key=lambda x: x[1])


def speech_stats(plan, duration):
    """Share of speech with two or more speakers, and seconds of speech (10 ms grid)."""
    grid = np.zeros(int(duration * 100) + 1, int)
    for spk in {p[0] for p in plan}:
        own = np.zeros_like(grid)
        for who, s, n, _ in plan:
            if who == spk:
                own[int(s * 100) : int((s + n) * 100)] = 1
        grid += own
    speech = (grid > 0).sum()
    return ((grid > 1).sum() / max(speech, 1)), speech / 100


def reference_segments(plan):
    """Merged (speaker, start, end) per speaker."""
    out = []
    for spk in sorted({p[0] for p in plan}):
        spans = sorted((s, s + n) for who, s, n, _ in plan if who == spk)
        merged = [list(spans[0])]
        for a, b in spans[1:]:
            if a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out += [(spk, a, b) for a, b in merged]
    return sorted(out, key=lambda x: x[1])


def active_level_db(signal, spans):
    idx = np.concatenate([np.arange(int(a * RATE), min(int(b * RATE), len(signal))) for a, b in spans])
    return 10 * np.log10(np.mean(signal[idx] ** 2) + 1e-20)


def make_clip(index, seed, material, rich):
    rng = np.random.default_rng([seed, index])
    n_speakers = int(rng.choice([2, 3, 4, 5, 6], p=[0.2, 0.25, 0.25, 0.15, 0.15]))
    duration = float(rng.uniform(30, 90))
    pool = sorted(material)
    # Main speakers need material for several turns; anyone can be a minor speaker.
    # At least two main speakers, so that turns can overlap.
    n_minor = int(rng.integers(1, min(2, n_speakers - 2) + 1)) if n_speakers > 2 else 0
    main = list(rng.choice(rich, size=n_speakers - n_minor, replace=False))
    minor = list(rng.choice(sorted(set(pool) - set(main)), size=n_minor, replace=False))
    speakers = main + minor

    # Overlap of 15-25 % of speech: redraw the plan until it lands there.
    target = rng.uniform(0.15, 0.25)
    for attempt in range(200):
        plan_rng = np.random.default_rng([seed, index, attempt])
        p_overlap = plan_rng.uniform(0.15, 0.6)
        plan = plan_turns(plan_rng, speakers, minor, duration, p_overlap, plan_rng.uniform(0.15, 0.5))
        overlap, _ = speech_stats(plan, duration)
        if abs(overlap - target) < 0.025 and 0.15 <= overlap <= 0.25:
            break
    else:
        raise RuntimeError(f"clip {index}: no plan with {target:.2f} overlap")

    room = np.array([rng.uniform(4, 9), rng.uniform(3.5, 7), rng.uniform(2.6, 3.4)])
    rt60 = float(rng.uniform(0.3, 0.8))
    mic = np.array([room[0] / 2 + rng.uniform(-0.5, 0.5), room[1] / 2 + rng.uniform(-0.5, 0.5), 0.8])
    # Near and far talkers: levels spread over 10-20 dB, the quiet ones farther away.
    spread = float(rng.uniform(10, 20))
    order = rng.permutation(n_speakers)
    levels = {}
    distances = {}
    for rank, k in enumerate(order):
        share = rank / max(n_speakers - 1, 1)
        levels[speakers[k]] = -24.0 - spread * share
        distances[speakers[k]] = 0.5 + 3.0 * share + rng.uniform(0, 0.3)

    n = int(duration * RATE)
    mix = np.zeros(n)
    used = {}
    turns = []
    for spk in speakers:
        dry = np.zeros(n)
        for who, start, seconds, kind in plan:
            if who != spk:
                continue
            piece, origin = take_piece(rng, material, spk, seconds, used)
            at = int(start * RATE)
            piece = piece[: n - at]
            dry[at : at + len(piece)] += piece
            turns.append({"speaker": spk, "start": round(start, 3), "seconds": round(len(piece) / RATE, 3), "kind": kind, **origin})
        source = position_at(rng, room, mic, distances[spk])
        rir = image_method_rir(room, source, mic, rt60, min(rt60, 0.6))
        wet = scipy.signal.fftconvolve(dry, rir)[:n]
        spans = [(s, s + sec) for who, s, sec, _ in plan if who == spk]
        wet *= 10 ** ((levels[spk] - active_level_db(wet, spans)) / 20)
        mix += wet

    speech_spans = [(a, b) for _, a, b in reference_segments(plan)]
    kind = str(rng.choice(["pink", "brown", "babble"]))
    snr = float(rng.uniform(10, 20) if kind == "babble" else rng.uniform(5, 20))
    if kind == "babble":
        noise = babble(rng, n, material, speakers, room, mic) + 0.3 * coloured_noise(rng, n, 1)
    else:
        noise = coloured_noise(rng, n, 1 if kind == "pink" else 2)
    noise_db = 10 * np.log10(np.mean(noise**2))
    noise *= 10 ** ((active_level_db(mix, speech_spans) - snr - noise_db) / 20)
    mix += noise
    peak = np.abs(mix).max()
    if peak > 0.95:
        mix *= 0.95 / peak

    overlap, speech = speech_stats(plan, duration)
    meta = {
        "duration": round(duration, 3),
        "speakers": {s: {"level_db": round(levels[s], 1), "distance_m": round(distances[s], 2), "minor": s in minor} for s in speakers},
        "room_m": [round(x, 2) for x in room],
        "rt60": round(rt60, 2),
        "noise": kind,
        "snr_db": round(snr, 1),
        "overlap_of_speech": round(float(overlap), 3),
        "speech_seconds": round(float(speech), 1),
        "turns": sorted(turns, key=lambda t: t["start"]),
    }
    return mix, reference_segments(plan), meta


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", type=Path, default=ROOT.parent / "shared" / "data" / "dev")
    parser.add_argument("--out", type=Path, default=ROOT / "target" / "hard")
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()

    material = load_material(args.dev)
    talk = {s: sum(p[2] - p[1] for p in pieces) for s, pieces in material.items()}
    rich = sorted(s for s, t in talk.items() if t >= 12.0)
    for sub in ("wav", "rttm", "uem"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    manifest = {"seed": args.seed, "numpy": np.__version__, "scipy": scipy.__version__, "clips": {}}
    uems, sums = [], []
    for i in range(args.clips):
        uri = f"hard_{i:02d}"
        mix, segments, meta = make_clip(i, args.seed, material, rich)
        wav = args.out / "wav" / f"{uri}.wav"
        sf.write(wav, mix, RATE, subtype="PCM_16")
        (args.out / "rttm" / f"{uri}.rttm").write_text(
            "".join(f"SPEAKER {uri} 1 {a:.3f} {b - a:.3f} <NA> <NA> {spk} <NA> <NA>\n" for spk, a, b in segments)
        )
        uem = f"{uri} 1 0.000 {meta['duration']:.3f}\n"
        (args.out / "uem" / f"{uri}.uem").write_text(uem)
        uems.append(uem)
        sums.append(f"{hashlib.sha256(wav.read_bytes()).hexdigest()}  wav/{uri}.wav\n")
        manifest["clips"][uri] = meta
        print(
            f"{uri}: {meta['duration']:5.1f} s, {len(meta['speakers'])} speakers, overlap {meta['overlap_of_speech']:.0%}, "
            f"{meta['noise']} {meta['snr_db']:.0f} dB, RT60 {meta['rt60']:.2f} s"
        )
    (args.out / "all.uem").write_text("".join(uems))
    (args.out / "SHA256SUMS").write_text("".join(sums))
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
