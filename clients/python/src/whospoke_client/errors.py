"""Exceptions: one base class, so callers can catch everything the client raises."""

from __future__ import annotations


class WhospokeError(Exception):
    """Anything that went wrong talking to a whospoke server or reading audio."""


class ApiError(WhospokeError):
    """The server answered an HTTP request with an error status; `detail` is its reason."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class AuthenticationError(ApiError):
    """401/403: the API key is missing, wrong or revoked."""


class InsufficientCreditsError(ApiError):
    """402: the account's balance does not cover the audio."""


class NotFoundError(ApiError):
    """404: no such job, or it belongs to another user."""


class FileTooLargeError(ApiError):
    """413: the upload exceeds the server's --max-upload-bytes."""


class UndecodableFileError(ApiError):
    """422: the server could not decode the upload as audio or video."""


class RateLimitError(ApiError):
    """429: too many requests; `retry_after` says when to try again (seconds)."""


class JobFailedError(WhospokeError):
    """A batch job ended FAILED; `job` is its last JSON."""

    def __init__(self, job: dict) -> None:
        super().__init__(f"job {job.get('id')} failed: {job.get('error_message') or 'no reason given'}")
        self.job = job


class StreamError(WhospokeError):
    """The live stream ended with an `error` frame, or closed before `completed`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AudioDecodeError(WhospokeError):
    """The input file could not be read as audio (by `wave` nor ffmpeg)."""
