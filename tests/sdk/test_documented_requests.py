"""The request shapes of AudioPod's Speaker Extraction docs, verbatim except the base URL:
python `requests` (upload and url forms) and `curl` (upload and url forms, job status)."""

import json
import os
import subprocess
import time

import requests

from conftest import JOB_TIMEOUT_SECONDS, POLL_SECONDS


def test_requests_upload_with_num_speakers(base_url, api_key, sample_path, api):
    with open(sample_path, "rb") as audio_file:
        response = requests.post(
            f"{base_url}/api/v1/speaker/extract",
            headers={"X-API-Key": api_key},
            data={"num_speakers": 2},
            files={"file": audio_file},
            timeout=60,
        )
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["status"] == "PENDING" and created["job_type"] == "extraction", created
    job = api.wait_for_completion(created["id"])
    assert job["num_speakers"] == 2, job
    api.assert_outputs(job, with_tracks=True)


def test_requests_url_form(base_url, api_key, media_url, api):
    response = requests.post(
        f"{base_url}/api/v1/speaker/diarize",
        headers={"X-API-Key": api_key},
        data={"url": media_url, "num_speakers": 2},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["job_type"] == "diarization", created
    job = api.wait_for_completion(created["id"])
    assert job["num_speakers"] == 2, job
    api.assert_outputs(job, with_tracks=False)


def test_requests_with_the_api_key_as_bearer(base_url, api_key):
    response = requests.get(
        f"{base_url}/api/v1/speaker/jobs",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert {"items", "total", "hasMore"} <= response.json().keys(), response.text


def curl(*args, cwd=None):
    """Runs curl; returns (HTTP status, parsed JSON body)."""
    completed = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, f"curl {args} failed: {completed.stderr}"
    body, _, status = completed.stdout.rpartition("\n")
    return int(status), json.loads(body) if body.strip() else None


def curl_wait_for_completion(base_url, api_key, job_id):
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while True:
        status, job = curl("-H", f"X-API-Key: {api_key}", f"{base_url}/api/v1/speaker/jobs/{job_id}")
        assert status == 200, job
        if job["status"] == "COMPLETED":
            return job
        assert job["status"] in ("PENDING", "PROCESSING"), f"job {job_id} did not complete: {job}"
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(POLL_SECONDS)


def test_curl_upload(base_url, api_key, sample_path, api):
    directory, name = os.path.split(os.path.abspath(sample_path))
    status, created = curl(
        "-X", "POST", f"{base_url}/api/v1/speaker/extract",
        "-H", f"X-API-Key: {api_key}",
        "-F", f"file=@{name}",
        cwd=directory,
    )
    assert status == 200, created
    assert created["status"] == "PENDING", created
    job = curl_wait_for_completion(base_url, api_key, created["id"])
    api.assert_outputs(job, with_tracks=True)


def test_curl_url_form(base_url, api_key, media_url, api):
    status, created = curl(
        "-X", "POST", f"{base_url}/api/v1/speaker/extract",
        "-H", f"X-API-Key: {api_key}",
        "-d", f"url={media_url}",
        "-d", "num_speakers=2",
    )
    assert status == 200, created
    job = curl_wait_for_completion(base_url, api_key, created["id"])
    assert job["num_speakers"] == 2, job
    api.assert_outputs(job, with_tracks=True)


def test_curl_errors_are_json_with_detail(base_url, api_key):
    status, body = curl("-X", "POST", f"{base_url}/api/v1/speaker/extract", "-H", f"X-API-Key: {api_key}")
    assert status == 400, body
    assert isinstance(body["detail"], str), body
    status, body = curl(f"{base_url}/api/v1/speaker/jobs/999999999", "-H", f"X-API-Key: {api_key}")
    assert status == 404, body
    assert body == {"detail": "Job not found or access denied"}, body
