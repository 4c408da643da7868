"""Helpers shared by the tests: WAV excerpts, RTTM parsing, running the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import whospoke_client


def wav_excerpt(source: Path, target: Path, start: float, seconds: float) -> Path:
    """Writes `seconds` of `source` from `start` as a WAV of the same format."""
    with wave.open(str(source), "rb") as wav:
        rate = wav.getframerate()
        wav.setpos(int(start * rate))
        frames = wav.readframes(int(seconds * rate))
        params = wav.getparams()
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        out.writeframes(frames)
    return target


def rttm_turns(text: str) -> list[tuple[str, float, float]]:
    """(label, start, duration) of each RTTM line, checking the line's shape."""
    turns = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        assert len(fields) >= 9 and fields[0] == "SPEAKER", f"not an RTTM line: {line!r}"
        start, duration = float(fields[3]), float(fields[4])
        assert start >= 0 and duration > 0, f"bad turn timing: {line!r}"
        turns.append((fields[7], start, duration))
    return turns


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m whospoke_client ARGS`, with this interpreter and import path."""
    package_root = str(Path(whospoke_client.__file__).parents[1])
    import_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    merged = {**os.environ, "PYTHONPATH": import_path, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "whospoke_client", *args],
        capture_output=True, text=True, env=merged, timeout=timeout,
    )
