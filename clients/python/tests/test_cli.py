"""The `whospoke-client` command, run as `python -m whospoke_client` in a subprocess."""

from __future__ import annotations

import json
import wave
from pathlib import Path

from helpers import rttm_turns, run_cli

WRONG_KEY = "ap_" + "0" * 48


def test_stream_prints_events_then_the_rttm(base_url: str, api_key: str, sample_path: Path) -> None:
    env = {"WHOSPOKE_BASE_URL": base_url, "WHOSPOKE_API_KEY": api_key}
    result = run_cli("stream", str(sample_path), "--pace", "0", env=env)

    assert result.returncode == 0, result.stderr
    events, _, rttm = result.stdout.partition("\n\n")
    kinds = [line.split()[0] for line in events.splitlines()]
    assert kinds[0] == "ready" and kinds[-1] == "completed", result.stdout
    speaker_lines = [line for line in events.splitlines() if line.startswith("speaker")]
    assert any("provisional" in line for line in speaker_lines), result.stdout
    assert any(" final " in line for line in speaker_lines), result.stdout
    assert len({label for label, _, _ in rttm_turns(rttm)}) >= 2, result.stdout


def test_stream_json_prints_one_event_per_line(base_url: str, api_key: str, sample_path: Path) -> None:
    result = run_cli("stream", str(sample_path), "--pace", "0", "--json", "--url", base_url, "--api-key", api_key)

    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["type"] == "ready" and events[-1]["type"] == "completed"
    assert rttm_turns(events[-1]["rttm"])


def test_extract_downloads_tracks_and_rttm(base_url: str, api_key: str, sample_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("extract", str(sample_path), "--out", str(out), "--url", base_url, "--api-key", api_key)

    assert result.returncode == 0, result.stderr
    assert "COMPLETED" in result.stderr, result.stderr
    written = [Path(line) for line in result.stdout.splitlines()]
    assert all(path.parent == out and path.is_file() for path in written), written
    tracks = [path for path in written if path.suffix == ".wav"]
    assert len(tracks) >= 2, written
    for track in tracks:
        with wave.open(str(track), "rb") as wav:
            assert wav.getnframes() > 0
    rttm = next(path for path in written if path.suffix == ".rttm")
    assert {label for label, _, _ in rttm_turns(rttm.read_text())} == {path.stem.upper() for path in tracks}


def test_wrong_api_key_exits_with_the_reason(base_url: str, sample_path: Path, tmp_path: Path) -> None:
    live = run_cli("stream", str(sample_path), "--pace", "0", "--url", base_url, "--api-key", WRONG_KEY)
    batch = run_cli("extract", str(sample_path), "--out", str(tmp_path), "--url", base_url, "--api-key", WRONG_KEY)

    assert live.returncode == 1 and "unauthorized: Invalid API key" in live.stderr, live.stderr
    assert batch.returncode == 1 and "HTTP 401: Invalid API key" in batch.stderr, batch.stderr


def test_undecodable_file_exits_with_the_reason(base_url: str, api_key: str, garbage_file: Path) -> None:
    result = run_cli("stream", str(garbage_file), "--url", base_url, "--api-key", api_key)

    assert result.returncode == 1, result
    assert "cannot be decoded" in result.stderr and result.stdout == "", result


def test_missing_api_key_is_a_usage_error(sample_path: Path) -> None:
    result = run_cli("stream", str(sample_path), env={"WHOSPOKE_API_KEY": ""})

    assert result.returncode == 2
    assert "no API key" in result.stderr
