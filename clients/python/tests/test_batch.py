"""Batch API through Client: upload, wait, download, list, delete, and its errors."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest
from helpers import rttm_turns

from whospoke_client import AuthenticationError, Client, NotFoundError, UndecodableFileError


def test_extract_wait_download(client: Client, sample_path: Path, tmp_path: Path) -> None:
    job = client.extract(sample_path)
    assert job["status"] in ("PENDING", "PROCESSING", "COMPLETED"), job

    done = client.wait(job["id"], timeout=300, poll_seconds=0.5)
    written = client.download(done, tmp_path / "out")

    labels = {speaker["label"] for speaker in done["result"]["speakers"]}
    assert len(labels) >= 2, f"the sample has two speakers: {done['result']['speakers']}"
    wavs = sorted(path for path in written if path.suffix == ".wav")
    rttms = [path for path in written if path.suffix == ".rttm"]
    assert len(wavs) == len(labels) and len(rttms) == 1, written
    with wave.open(str(sample_path), "rb") as original:
        frames = original.getnframes()
    for path in wavs:
        with wave.open(str(path), "rb") as track:
            assert track.getnframes() == frames, f"{path.name} is as long as the input"
            assert any(track.readframes(frames)), f"{path.name} has sound"
    turns = rttm_turns(rttms[0].read_text())
    assert {label for label, _, _ in turns} == labels


def test_jobs_are_listed_and_deleted(client: Client, sample_path: Path) -> None:
    job = client.extract(sample_path, num_speakers=2, tracks=False)
    client.wait(job["id"], timeout=300, poll_seconds=0.5)
    assert job["id"] in [item["id"] for item in client.list_jobs(limit=200)["items"]]

    client.delete_job(job["id"])
    with pytest.raises(NotFoundError, match="not found"):
        client.get_job(job["id"])


def test_wrong_api_key_is_an_authentication_error(base_url: str, sample_path: Path) -> None:
    wrong = Client(base_url, "ap_" + "0" * 48)
    with pytest.raises(AuthenticationError) as raised:
        wrong.extract(sample_path)
    assert raised.value.status == 401
    assert "API key" in raised.value.detail


def test_garbage_upload_is_refused_with_the_reason(client: Client, garbage_file: Path) -> None:
    with pytest.raises(UndecodableFileError) as raised:
        client.extract(garbage_file)
    assert raised.value.status == 422
    assert "cannot be decoded" in raised.value.detail
