"""Live streaming through stream_file: events, their order, their agreement with the RTTM."""

from __future__ import annotations

import importlib.util
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import rttm_turns, wav_excerpt

from whospoke_client import (
    AudioDecodeError,
    Client,
    StreamError,
    WhospokeError,
    final_turns,
    stream_file,
    stream_microphone,
)


def stream(path: Path, base_url: str, api_key: str, **options: Any) -> list[dict[str, Any]]:
    return list(stream_file(path, base_url=base_url, api_key=api_key, **options))


def assert_complete_stream(events: list[dict[str, Any]], min_speakers: int) -> dict[str, Any]:
    """ready first, completed last, and the RTTM names the final turns' speakers after relabels."""
    kinds = [event["type"] for event in events]
    assert kinds[0] == "ready" and kinds[-1] == "completed", kinds
    assert kinds.count("completed") == 1 and "error" not in kinds, kinds
    completed = events[-1]
    assert completed["job_id"] == events[0]["job_id"]
    rttm_labels = {label for label, _, _ in rttm_turns(completed["rttm"])}
    assert len(rttm_labels) >= min_speakers, completed["rttm"]
    assert {label for label, _, _ in final_turns(events)} == rttm_labels, (final_turns(events), completed["rttm"])
    assert {speaker["label"] for speaker in completed["speakers"]} == rttm_labels
    return completed


def test_stream_as_fast_as_possible(base_url: str, api_key: str, sample_path: Path, client: Client) -> None:
    events = stream(sample_path, base_url, api_key, pace=0)

    completed = assert_complete_stream(events, min_speakers=2)
    speakers = [event for event in events if event["type"] == "speaker"]
    assert any(not event["final"] for event in speakers), "provisional turns while the audio flows"
    assert any(event["final"] for event in speakers), "final turns"
    assert completed["duration_seconds"] == pytest.approx(30.0, abs=0.1)
    job = client.get_job(completed["job_id"])
    assert job["status"] == "COMPLETED", job
    streams = client.list_jobs(job_type="stream", limit=200)["items"]
    assert completed["job_id"] in [item["id"] for item in streams]


def test_real_time_events_arrive_while_streaming(
    base_url: str, api_key: str, sample_path: Path, tmp_path: Path
) -> None:
    seconds = 10.0
    excerpt = wav_excerpt(sample_path, tmp_path / "excerpt.wav", start=6.5, seconds=seconds)
    began = time.monotonic()
    arrivals = []
    for event in stream_file(excerpt, base_url=base_url, api_key=api_key, pace=1.0, latency_ms=1000):
        arrivals.append((time.monotonic() - began, event))

    events = [event for _, event in arrivals]
    assert_complete_stream(events, min_speakers=1)
    assert arrivals[-1][0] >= seconds - 0.5, "the audio was sent in real time"
    # `end` goes only after the last chunk, sent at about `seconds`: these came before it.
    early = [event for at, event in arrivals if at < seconds - 1.0 and event["type"] == "speaker"]
    assert any(not event["final"] for event in early), f"provisional turns mid-stream: {arrivals}"
    assert any(event["final"] for event in early), f"final turns mid-stream: {arrivals}"


def test_other_formats_go_through_ffmpeg(base_url: str, api_key: str, sample_path: Path, tmp_path: Path) -> None:
    flac = tmp_path / "sample.flac"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(sample_path), str(flac)], check=True)

    completed = assert_complete_stream(stream(flac, base_url, api_key, pace=0), min_speakers=2)
    assert completed["duration_seconds"] == pytest.approx(30.0, abs=0.1)


def test_wrong_api_key_is_an_unauthorized_error(base_url: str, sample_path: Path) -> None:
    with pytest.raises(StreamError) as raised:
        stream(sample_path, base_url, "ap_" + "0" * 48, pace=0)
    assert raised.value.code == "unauthorized"
    assert "API key" in raised.value.message


def test_invalid_start_option_is_a_bad_start_error(base_url: str, api_key: str, sample_path: Path) -> None:
    with pytest.raises(StreamError) as raised:
        stream(sample_path, base_url, api_key, pace=0, latency_ms=99_999)
    assert raised.value.code == "bad_start"
    assert "latency" in raised.value.message


def test_garbage_file_fails_before_connecting(api_key: str, garbage_file: Path) -> None:
    # A closed port: the error must come from decoding, not from the connection.
    with pytest.raises(AudioDecodeError, match="cannot be decoded"):
        stream(garbage_file, "http://127.0.0.1:9", api_key, pace=0)


def test_microphone_needs_sounddevice(base_url: str, api_key: str) -> None:
    if importlib.util.find_spec("sounddevice"):
        pytest.skip("sounddevice is installed: nothing to refuse")
    with pytest.raises(WhospokeError, match="sounddevice"):
        list(stream_microphone(base_url=base_url, api_key=api_key, duration=1))


def test_final_turns_follow_relabels_of_past_turns() -> None:
    events = [
        {"type": "speaker", "speaker": "SPEAKER_2", "start": 0.0, "end": 1.0, "final": True},
        {"type": "speaker", "speaker": "SPEAKER_0", "start": 1.0, "end": None, "final": False},
        {"type": "relabel", "from": "SPEAKER_2", "to": "SPEAKER_1"},
        {"type": "speaker", "speaker": "SPEAKER_3", "start": 1.0, "end": 2.0, "final": True},
        {"type": "relabel", "from": "SPEAKER_1", "to": "SPEAKER_0"},
    ]
    assert final_turns(events) == [("SPEAKER_0", 0.0, 1.0), ("SPEAKER_3", 1.0, 2.0)]
