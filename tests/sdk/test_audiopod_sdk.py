"""The official AudioPod Python SDK (audiopod 2.12.0 from PyPI) against whospoke.

Only `base_url` changes: the SDK sends `Authorization: Bearer <key>` and `X-API-Key: <key>`,
polls `/api/v1/jobs/{id}` every 5 s, and reads the AudioPod job and result fields.
"""

import pytest
from audiopod import Client
from audiopod.exceptions import APIError, AuthenticationError

from conftest import JOB_TIMEOUT_SECONDS


@pytest.fixture
def client(base_url, api_key):
    with Client(api_key=api_key, base_url=base_url) as client:
        yield client


def test_extract_waits_for_completion_and_the_tracks_play(client, sample_path, api):
    job = client.speaker.extract(sample_path, wait_for_completion=True, timeout=JOB_TIMEOUT_SECONDS)
    assert job["status"] == "COMPLETED", job
    assert job["job_type"] == "extraction", job
    assert len(job["result"]["speakers"]) == 2, f"the sample has two speakers: {job['result']}"
    api.assert_outputs(job, with_tracks=True)


def test_diarize_with_num_speakers_waits_for_completion(client, sample_path, api):
    job = client.speaker.diarize(
        sample_path, num_speakers=2, wait_for_completion=True, timeout=JOB_TIMEOUT_SECONDS
    )
    assert job["status"] == "COMPLETED", job
    assert job["job_type"] == "diarization", job
    assert job["num_speakers"] == 2, f"num_speakers=2 was asked for: {job}"
    api.assert_outputs(job, with_tracks=False)


def test_get_list_and_delete_job(client, sample_path, api):
    created = client.speaker.extract(sample_path)
    assert created["status"] == "PENDING", created
    job_id = created["id"]
    assert isinstance(job_id, int), created

    assert client.speaker.get_job(job_id)["id"] == job_id
    listing = client.speaker.list_jobs(skip=0, limit=200)
    assert job_id in [item["id"] for item in listing["items"]], listing
    assert listing["total"] >= 1 and "hasMore" in listing, listing

    api.wait_for_completion(job_id)
    assert client.speaker.delete_job(job_id) == {}, "DELETE returns 204 with no body"
    with pytest.raises(APIError) as error:
        client.speaker.get_job(job_id)
    assert error.value.status_code == 404, error.value
    listing = client.speaker.list_jobs(skip=0, limit=200)
    assert job_id not in [item["id"] for item in listing["items"]], listing


def test_a_wrong_key_is_an_authentication_error(base_url):
    with Client(api_key="ap_not_a_key_of_this_server", base_url=base_url) as client:
        with pytest.raises(AuthenticationError):
            client.speaker.list_jobs()
