"""Fixtures for the SDK and documented-request tests.

They talk to a running whospoke server. `cargo test --release --test api` starts one
(tests/api/sdk.rs) and runs `python -m pytest tests/sdk` with:

    WHOSPOKE_BASE_URL  http://127.0.0.1:PORT
    WHOSPOKE_API_KEY   an ap_ key of a user with plenty of credits
    WHOSPOKE_SAMPLE    tests/data/sample.wav (30 s, two speakers)

Without them every test fails at setup, saying so; collection works regardless.
"""

import functools
import http.server
import io
import os
import threading
import time
import wave

import pytest
import requests

JOB_TIMEOUT_SECONDS = 300
POLL_SECONDS = 0.5


def _required_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: these tests need a running server; run them with "
            "`cargo test --release --test api`, which starts one and sets "
            "WHOSPOKE_BASE_URL, WHOSPOKE_API_KEY and WHOSPOKE_SAMPLE",
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def base_url():
    return _required_env("WHOSPOKE_BASE_URL").rstrip("/")


@pytest.fixture(scope="session")
def api_key():
    key = _required_env("WHOSPOKE_API_KEY")
    assert key.startswith("ap_"), f"AudioPod keys start with ap_, got {key!r}"
    return key


@pytest.fixture(scope="session")
def sample_path():
    path = _required_env("WHOSPOKE_SAMPLE")
    assert os.path.isfile(path), f"WHOSPOKE_SAMPLE={path} is not a file"
    return path


@pytest.fixture(scope="session")
def sample_format(sample_path):
    """(sample rate, channels, frames) of the input."""
    with wave.open(sample_path, "rb") as wav:
        return wav.getframerate(), wav.getnchannels(), wav.getnframes()


@pytest.fixture(scope="session")
def media_url(sample_path):
    """The sample served over HTTP from 127.0.0.1 (the server runs with --allow-private-urls)."""
    directory, name = os.path.split(os.path.abspath(sample_path))

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{name}"
    finally:
        server.shutdown()
        server.server_close()


class Api:
    """Plain-HTTP helpers (python `requests`, `X-API-Key`) to follow jobs and check outputs."""

    def __init__(self, base_url, api_key, sample_format):
        self.base_url = base_url
        self.headers = {"X-API-Key": api_key}
        self.sample_format = sample_format

    def get_job(self, job_id):
        response = requests.get(
            f"{self.base_url}/api/v1/speaker/jobs/{job_id}", headers=self.headers, timeout=30
        )
        assert response.status_code == 200, f"GET job {job_id}: {response.status_code} {response.text}"
        return response.json()

    def wait_for_completion(self, job_id):
        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while True:
            job = self.get_job(job_id)
            if job["status"] == "COMPLETED":
                return job
            assert job["status"] in ("PENDING", "PROCESSING"), f"job {job_id} did not complete: {job}"
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {JOB_TIMEOUT_SECONDS} s"
            time.sleep(POLL_SECONDS)

    def download(self, url, what):
        """GET a download_url, with no credentials (it is signed)."""
        response = requests.get(url, timeout=60)
        assert response.status_code == 200, f"{what}: GET {url} -> {response.status_code} {response.text[:300]}"
        return response

    def assert_track_plays(self, url, what):
        """The track is a WAV in the input's format, as long as the input, with sound."""
        data = self.download(url, what).content
        with wave.open(io.BytesIO(data), "rb") as wav:
            frames = wav.getnframes()
            assert frames > 0, f"{what}: no audio frames"
            rate, channels, input_frames = self.sample_format
            assert wav.getframerate() == rate, f"{what}: sample rate {wav.getframerate()}, input has {rate}"
            assert wav.getnchannels() == channels, f"{what}: {wav.getnchannels()} channels, input has {channels}"
            assert frames == input_frames, f"{what}: {frames} frames, the input has {input_frames}"
            pcm = wav.readframes(frames)
            assert len(pcm) == frames * channels * wav.getsampwidth(), f"{what}: truncated audio data"
        assert any(pcm), f"{what}: the track is all digital silence"

    def rttm_turns(self, url, what):
        """Parses the RTTM: [(label, start, duration)]."""
        response = self.download(url, what)
        content_type = response.headers.get("Content-Type", "")
        assert content_type.startswith("text/plain"), f"{what}: Content-Type {content_type!r}"
        turns = []
        for line in response.text.splitlines():
            if not line.strip():
                continue
            fields = line.split()
            assert len(fields) >= 9 and fields[0] == "SPEAKER", f"{what}: not an RTTM line: {line!r}"
            start, duration = float(fields[3]), float(fields[4])
            assert start >= 0 and duration > 0, f"{what}: bad turn timing: {line!r}"
            turns.append((fields[7], start, duration))
        assert turns, f"{what}: the RTTM has no turns"
        return turns

    def assert_outputs(self, job, with_tracks):
        """A COMPLETED job's files download: tracks play (extraction), the RTTM parses and
        names exactly the job's speakers."""
        assert job["status"] == "COMPLETED", job
        result = job["result"]
        labels = {speaker["label"] for speaker in result["speakers"]}
        assert labels, f"the sample has speech, so speakers: {result}"
        audio_files = [f for f in result["files"] if f["type"] == "audio"]
        rttm_files = [f for f in result["files"] if f["type"] == "rttm"]
        assert len(rttm_files) == 1, f"one rttm file: {result['files']}"
        if with_tracks:
            assert {f["speaker"] for f in audio_files} == labels, f"a track per speaker: {result['files']}"
            for speaker in result["speakers"]:
                self.assert_track_plays(speaker["download_url"], f"track of {speaker['label']}")
        else:
            assert not audio_files, f"diarization has no tracks: {result['files']}"
        turns = self.rttm_turns(rttm_files[0]["download_url"], f"RTTM of job {job['id']}")
        assert {label for label, _, _ in turns} == labels, f"RTTM speakers {turns} vs {labels}"


@pytest.fixture(scope="session")
def api(base_url, api_key, sample_format):
    return Api(base_url, api_key, sample_format)
