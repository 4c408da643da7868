"""Batch API: upload a file, follow the job, download the speaker tracks and the RTTM."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import requests

from . import errors

JOB_PATH = "/api/v1/speaker/jobs"
FINISHED = ("COMPLETED", "FAILED")

_ERRORS_BY_STATUS: dict[int, type[errors.ApiError]] = {
    401: errors.AuthenticationError,
    403: errors.AuthenticationError,
    402: errors.InsufficientCreditsError,
    404: errors.NotFoundError,
    413: errors.FileTooLargeError,
    422: errors.UndecodableFileError,
    429: errors.RateLimitError,
}


class Client:
    """A whospoke (or AudioPod-compatible) server, reached with one API key."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["X-API-Key"] = api_key

    def extract(
        self,
        path: str | os.PathLike[str],
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        tracks: bool = True,
    ) -> dict[str, Any]:
        """Uploads a file and returns the new job (PENDING); `tracks=False` only diarizes."""
        endpoint = "extract" if tracks else "diarize"
        options = {"num_speakers": num_speakers, "min_speakers": min_speakers, "max_speakers": max_speakers}
        form = {name: str(value) for name, value in options.items() if value is not None}
        with open(path, "rb") as file:
            files = {"file": (Path(path).name, file, "application/octet-stream")}
            # Uploads can be large: no read timeout until the server has it all.
            return self._request("POST", f"/api/v1/speaker/{endpoint}", data=form, files=files, timeout=None)

    def get_job(self, job_id: int) -> dict[str, Any]:
        return self._request("GET", f"{JOB_PATH}/{job_id}")

    def list_jobs(
        self, status: str | None = None, job_type: str | None = None, skip: int = 0, limit: int = 50
    ) -> dict[str, Any]:
        """One page, newest first: `{items, total, hasMore}`; job_type is extraction,
        diarization or stream."""
        params = {"status": status, "job_type": job_type, "skip": skip, "limit": limit}
        return self._request("GET", JOB_PATH, params=params)

    def delete_job(self, job_id: int) -> None:
        """Deletes the job and its files."""
        self._request("DELETE", f"{JOB_PATH}/{job_id}")

    def credits(self) -> float:
        return self._request("GET", "/api/v1/credits")["balance"]

    def wait(
        self,
        job_id: int,
        timeout: float = 600.0,
        poll_seconds: float = 1.0,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Polls until the job is COMPLETED and returns it; `on_status` sees every poll.

        Raises JobFailedError when it FAILED, TimeoutError when `timeout` passes first.
        """
        deadline = time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if on_status:
                on_status(job)
            if job["status"] == "FAILED":
                raise errors.JobFailedError(job)
            if job["status"] == "COMPLETED":
                return job
            if time.monotonic() + poll_seconds > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout:g} s")
            time.sleep(poll_seconds)

    def download(self, job: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
        """Writes a COMPLETED job's files (a WAV per speaker, the RTTM) into `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for file in job["result"]["files"]:
            url = urljoin(self.base_url + "/", file["download_url"])
            target = out / Path(file.get("path") or urlparse(url).path).name
            self._fetch(url, target)
            written.append(target)
        return written

    def _fetch(self, url: str, target: Path) -> None:
        """GETs a signed link without the API key (it may point at another host) into `target`."""
        with requests.get(url, stream=True, timeout=self.timeout) as response:
            _raise_for_status(response)
            partial = target.with_name(target.name + ".partial")
            with open(partial, "wb") as out:
                for chunk in response.iter_content(1 << 16):
                    out.write(chunk)
            partial.replace(target)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        response = self._session.request(method, self.base_url + path, **kwargs)
        _raise_for_status(response)
        return response.json() if response.content else None


def _raise_for_status(response: requests.Response) -> None:
    """Turns an error status into the matching ApiError, carrying the server's `detail`."""
    if response.ok:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    retry_after = response.headers.get("Retry-After", "")
    error = _ERRORS_BY_STATUS.get(response.status_code, errors.ApiError)
    raise error(
        response.status_code,
        str(detail or response.text or response.reason),
        float(retry_after) if retry_after.isdigit() else None,
    )
