"""Live diarization over the server's WebSocket: send audio, yield events as they arrive.

One thread sends the audio (paced like a live source, or as fast as the server reads it),
while the generator reads the server's events, so events arrive while audio still flows.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from .audio import Audio, open_file, open_microphone
from .errors import StreamError

STREAM_PATH = "/api/v1/speaker/stream"
Event = dict[str, Any]


def stream_file(
    path: str | os.PathLike[str],
    *,
    base_url: str,
    api_key: str,
    pace: float = 1.0,
    chunk_ms: int = 100,
    **options: Any,
) -> Iterator[Event]:
    """Streams a file and yields every server event, ending with `completed`.

    `pace` 1.0 sends in real time, 2.0 twice as fast, 0 as fast as the server reads.
    `options` go into the `start` message: latency_ms, num_speakers, max_speakers,
    extract, name (default: the file's stem). Raises AudioDecodeError for an unreadable
    file (before connecting) and StreamError for an `error` frame.
    """
    options.setdefault("name", Path(path).stem)
    yield from stream_audio(open_file(path, chunk_ms), base_url=base_url, api_key=api_key, pace=pace, **options)


def stream_microphone(
    *,
    base_url: str,
    api_key: str,
    duration: float | None = None,
    stop: threading.Event | None = None,
    sample_rate: int = 16000,
    chunk_ms: int = 100,
    **options: Any,
) -> Iterator[Event]:
    """Streams the default microphone until `duration` passes or `stop` is set, then yields
    the last events and `completed`. Needs `sounddevice` (the `mic` extra): without it,
    fails at once rather than at the first event."""
    audio = open_microphone(sample_rate, 1, chunk_ms, duration, stop)
    return stream_audio(audio, base_url=base_url, api_key=api_key, pace=0, **options)


def stream_audio(audio: Audio, *, base_url: str, api_key: str, pace: float = 0, **options: Any) -> Iterator[Event]:
    """Streams any Audio source; see stream_file."""
    start = {"type": "start", "sample_rate": audio.sample_rate, "channels": audio.channels, "encoding": "pcm_s16le"}
    start.update((name, value) for name, value in options.items() if value is not None)
    with contextlib.ExitStack() as resources:
        resources.callback(audio.close)
        ws = _connect(resources, stream_url(base_url), api_key)
        sender = _Sender(ws, audio, pace)
        try:
            with contextlib.suppress(ConnectionClosed):  # a refusal may close first; its error frame is read next
                ws.send(json.dumps(start))
            yield _receive(ws, sender)  # ready: audio may only follow it
            sender.start()
            while True:
                event = _receive(ws, sender)
                if event["type"] == "warning" and event.get("code") == "shutting_down":
                    sender.ending.set()  # end now: audio sent until then is kept
                yield event
                if event["type"] == "completed":
                    return
        finally:
            sender.stopping.set()
            sender.ending.set()
            ws.close()
            if sender.is_alive():
                sender.join()


def stream_url(base_url: str) -> str:
    """http(s)://host → ws(s)://host/api/v1/speaker/stream."""
    scheme, sep, rest = base_url.rstrip("/").partition("://")
    ws_scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
    return f"{ws_scheme}{sep}{rest}{STREAM_PATH}"


def final_turns(events: Iterable[Event]) -> list[tuple[str, float, float]]:
    """The final `speaker` turns as (label, start, end), with every relabel applied, past
    turns included: what the completed RTTM says."""
    renamed: dict[str, str] = {}
    turns: list[tuple[str, float, float]] = []
    for event in events:
        if event["type"] == "relabel":
            source, target = event["from"], event["to"]
            renamed = {label: (target if now == source else now) for label, now in renamed.items()}
            renamed[source] = target
        elif event["type"] == "speaker" and event["final"]:
            turns.append((event["speaker"], event["start"], event["end"]))
    return [(renamed.get(label, label), start, end) for label, start, end in turns]


def _connect(resources: contextlib.ExitStack, url: str, api_key: str) -> ClientConnection:
    """Opens the socket, closed with `resources`."""
    try:
        return resources.enter_context(connect(url, additional_headers={"X-API-Key": api_key}, max_size=None))
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as e:
        raise StreamError("connect", f"cannot open {url}: {e}") from e


def _receive(ws: ClientConnection, sender: _Sender) -> Event:
    """The next event; an `error` frame, or a close before `completed`, raises."""
    try:
        message = ws.recv()
    except ConnectionClosed as closed:
        if sender.error:
            raise sender.error from None
        code = closed.rcvd.code if closed.rcvd else "none"
        raise StreamError("closed", f"the server closed the stream (close code {code}) before completing it") from None
    event = json.loads(message)
    if event.get("type") == "error":
        raise StreamError(event.get("code", "unknown"), event.get("message", ""))
    return event


class _Sender(threading.Thread):
    """Sends the audio chunks, then `end`. A failure reading the audio closes the socket
    and is re-raised by the reader."""

    def __init__(self, ws: ClientConnection, audio: Audio, pace: float) -> None:
        super().__init__(name="whospoke-sender", daemon=True)
        self.ws = ws
        self.audio = audio
        self.pace = pace
        self.stopping = threading.Event()  # the caller left: send nothing more
        self.ending = threading.Event()  # the server shuts down (or the caller left): send `end` now
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._send_all()
        except ConnectionClosed:
            pass  # the reader hears why
        except Exception as e:  # noqa: BLE001 - handed to the reader thread
            self.error = e
            self.ws.close()

    def _send_all(self) -> None:
        began = time.monotonic()
        sent_bytes = 0
        for chunk in self.audio.chunks:
            if self.pace > 0:
                due = began + sent_bytes / self.audio.bytes_per_second / self.pace
                self.ending.wait(max(0.0, due - time.monotonic()))
            if self.ending.is_set():
                break
            self.ws.send(chunk)
            sent_bytes += len(chunk)
        if not self.stopping.is_set():
            self.ws.send(json.dumps({"type": "end"}))
