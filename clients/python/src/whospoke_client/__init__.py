"""Python client for whospoke: batch speaker extraction and live diarization."""

from .client import Client
from .errors import (
    ApiError,
    AudioDecodeError,
    AuthenticationError,
    FileTooLargeError,
    InsufficientCreditsError,
    JobFailedError,
    NotFoundError,
    RateLimitError,
    StreamError,
    UndecodableFileError,
    WhospokeError,
)
from .live import final_turns, stream_audio, stream_file, stream_microphone

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "AudioDecodeError",
    "AuthenticationError",
    "Client",
    "FileTooLargeError",
    "InsufficientCreditsError",
    "JobFailedError",
    "NotFoundError",
    "RateLimitError",
    "StreamError",
    "UndecodableFileError",
    "WhospokeError",
    "final_turns",
    "stream_audio",
    "stream_file",
    "stream_microphone",
]
