"""Audio sources for live streaming: 16-bit PCM chunks from a file or the microphone."""

from __future__ import annotations

import itertools
import os
import queue
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import IO

from .errors import AudioDecodeError, WhospokeError

#: What ffmpeg decodes non-WAV input to: the server's native analysis format.
FFMPEG_RATE = 16000
SAMPLE_BYTES = 2


@dataclass
class Audio:
    """Interleaved pcm_s16le chunks of `chunk_ms` each, their format, and what releases the
    source (a file, an ffmpeg process) whether or not the chunks were read."""

    sample_rate: int
    channels: int
    chunks: Iterator[bytes]
    close: Callable[[], None]

    @property
    def bytes_per_second(self) -> int:
        return self.sample_rate * self.channels * SAMPLE_BYTES


def open_file(path: str | os.PathLike[str], chunk_ms: int = 100) -> Audio:
    """A 16-bit WAV is sent as it is (its own rate and channels); anything else goes
    through ffmpeg to mono 16 kHz. Raises AudioDecodeError when neither can read it."""
    if not os.path.isfile(path):
        raise AudioDecodeError(f"{path}: no such file")
    try:
        wav = wave.open(os.fspath(path), "rb")
    except (wave.Error, EOFError):
        return _ffmpeg(path, chunk_ms)
    if wav.getsampwidth() != SAMPLE_BYTES:
        wav.close()
        return _ffmpeg(path, chunk_ms)
    frames = max(1, wav.getframerate() * chunk_ms // 1000)
    return Audio(wav.getframerate(), wav.getnchannels(), iter(lambda: wav.readframes(frames), b""), wav.close)


def _ffmpeg(path: str | os.PathLike[str], chunk_ms: int) -> Audio:
    """Starts ffmpeg and reads its first chunk now, so an undecodable file fails here,
    before any connection is made."""
    size = FFMPEG_RATE * SAMPLE_BYTES * chunk_ms // 1000
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", os.fspath(path),
               "-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1", "-ar", str(FFMPEG_RATE), "-"]
    log = tempfile.TemporaryFile()
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
    except FileNotFoundError:
        log.close()
        raise AudioDecodeError(
            f"{path}: not a 16-bit WAV, and ffmpeg (needed for other formats) is not installed"
        ) from None
    stdout: IO[bytes] = process.stdout  # type: ignore[assignment] # a PIPE, so never None

    def close() -> None:
        process.kill()
        process.wait()
        stdout.close()
        log.close()

    first = stdout.read(size)
    if not first:
        process.wait()
        log.seek(0)
        reason = log.read().decode(errors="replace").strip().splitlines()
        close()
        raise AudioDecodeError(f"{path}: cannot be decoded: {reason[-1] if reason else 'no audio'}")
    rest = iter(lambda: stdout.read(size), b"")
    return Audio(FFMPEG_RATE, 1, itertools.chain([first], rest), close)


def open_microphone(
    sample_rate: int = 16000,
    channels: int = 1,
    chunk_ms: int = 100,
    duration: float | None = None,
    stop: threading.Event | None = None,
) -> Audio:
    """The default input device, until `duration` seconds have passed or `stop` is set.
    Needs the `sounddevice` package (pip install 'whospoke-client[mic]')."""
    try:
        import sounddevice
    except (ImportError, OSError) as e:
        raise WhospokeError(
            f"the microphone needs the sounddevice package and PortAudio: pip install 'whospoke-client[mic]' ({e})"
        ) from e
    frames = max(1, sample_rate * chunk_ms // 1000)
    chunks = _microphone_chunks(sounddevice, sample_rate, channels, frames, duration, stop or threading.Event())
    return Audio(sample_rate, channels, chunks, chunks.close)


def _microphone_chunks(
    sounddevice, sample_rate: int, channels: int, frames: int, duration: float | None, stop: threading.Event
) -> Generator[bytes, None, None]:
    captured: queue.Queue[bytes] = queue.Queue()

    def on_audio(data, _frames, _time, _status) -> None:
        captured.put(bytes(data))

    deadline = None if duration is None else time.monotonic() + duration
    with sounddevice.RawInputStream(
        samplerate=sample_rate, channels=channels, dtype="int16", blocksize=frames, callback=on_audio
    ):
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                yield captured.get(timeout=0.1)
            except queue.Empty:
                continue
