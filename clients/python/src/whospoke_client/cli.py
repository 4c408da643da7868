"""The `whospoke-client` command: `stream` and `mic` (live), `extract` (batch)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests

from .client import Client
from .errors import WhospokeError
from .live import Event, stream_file, stream_microphone

DEFAULT_URL = "http://127.0.0.1:8080"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.api_key:
        print("whospoke-client: error: no API key: pass --api-key or set WHOSPOKE_API_KEY", file=sys.stderr)
        return 2
    try:
        return args.run(args)
    except (WhospokeError, TimeoutError, requests.RequestException) as e:
        print(f"whospoke-client: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("whospoke-client: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", default=os.environ.get("WHOSPOKE_BASE_URL", DEFAULT_URL),
                        help="server base URL (env WHOSPOKE_BASE_URL; default %(default)s)")
    server.add_argument("--api-key", default=os.environ.get("WHOSPOKE_API_KEY"),
                        help="ap_... key (env WHOSPOKE_API_KEY)")
    speakers = argparse.ArgumentParser(add_help=False)
    speakers.add_argument("--num-speakers", type=int, help="exact number of speakers, when known")
    speakers.add_argument("--max-speakers", type=int, help="at most this many speakers")
    live = argparse.ArgumentParser(add_help=False)
    live.add_argument("--latency-ms", type=int, help="how old a turn is when it becomes final (500-5000)")
    live.add_argument("--json", action="store_true", help="print each event as one JSON line")

    parser = argparse.ArgumentParser(prog="whospoke-client", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    stream = commands.add_parser("stream", parents=[server, speakers, live],
                                 help="diarize a file live, printing events as they arrive, then the RTTM")
    stream.add_argument("file")
    stream.add_argument("--pace", type=float, default=1.0,
                        help="1 = real time (default), 2 = twice as fast, 0 = as fast as possible")
    stream.set_defaults(run=_stream)
    mic = commands.add_parser("mic", parents=[server, speakers, live],
                              help="diarize the microphone live until Ctrl+C (needs sounddevice)")
    mic.add_argument("--seconds", type=float, help="stop after this long")
    mic.set_defaults(run=_mic)
    extract = commands.add_parser("extract", parents=[server, speakers],
                                  help="batch: upload, wait, download a WAV per speaker and the RTTM")
    extract.add_argument("file")
    extract.add_argument("--out", required=True, help="directory for the downloaded files")
    extract.add_argument("--min-speakers", type=int, help="at least this many speakers")
    extract.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the job")
    extract.set_defaults(run=_extract)
    return parser


def _stream(args: argparse.Namespace) -> int:
    events = stream_file(args.file, base_url=args.url, api_key=args.api_key, pace=args.pace, **_live_options(args))
    return _print_events(events, args.json)


def _mic(args: argparse.Namespace) -> int:
    stop = threading.Event()
    _on_first_interrupt(stop.set)
    events = stream_microphone(base_url=args.url, api_key=args.api_key, duration=args.seconds, stop=stop,
                               **_live_options(args))
    print("listening: Ctrl+C ends the stream", file=sys.stderr)
    return _print_events(events, args.json)


def _live_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"latency_ms": args.latency_ms, "num_speakers": args.num_speakers, "max_speakers": args.max_speakers}


def _on_first_interrupt(action: Callable[[], None]) -> None:
    """The first Ctrl+C ends the audio (the stream still completes); a second one aborts."""
    def handler(_signum: int, _frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nstopping: waiting for the last events (Ctrl+C again aborts)", file=sys.stderr)
        action()

    signal.signal(signal.SIGINT, handler)


def _print_events(events: Iterator[Event], as_json: bool) -> int:
    for event in events:
        print(json.dumps(event) if as_json else describe(event), flush=True)
        if event["type"] == "completed" and not as_json:
            print(flush=True)
            print(event["rttm"], end="" if event["rttm"].endswith("\n") else "\n", flush=True)
    return 0


def describe(event: Event) -> str:
    """One human-readable line per event."""
    kind = event["type"]
    if kind == "ready":
        detail = (f"session {event['session_id']}, job {event['job_id']} "
                  f"(latency {event['latency_ms']} ms, step {event['step_ms']} ms)")
    elif kind == "speaker":
        end = "..." if event["end"] is None else f"{event['end']:8.2f}"
        state = "final" if event["final"] else "provisional"
        detail = f"{event['speaker']:<11} {event['start']:8.2f} - {end:>8}  {state:<11} {event['confidence']:.2f}"
    elif kind == "relabel":
        detail = f"{event['from']} -> {event['to']}"
    elif kind == "usage":
        detail = f"{event['audio_seconds']:.1f} s of audio, {event['credits']} credits"
    elif kind == "warning":
        detail = f"{event.get('code')}: {event.get('message')}"
    elif kind == "completed":
        detail = (f"job {event['job_id']}: {event['duration_seconds']:.1f} s of audio, "
                  f"{len(event['speakers'])} speakers, {event['credits_used']} credits")
    else:
        detail = json.dumps(event)
    return f"{kind:<10} {detail}"


def _extract(args: argparse.Namespace) -> int:
    client = Client(args.url, args.api_key)
    job = client.extract(args.file, num_speakers=args.num_speakers, min_speakers=args.min_speakers,
                         max_speakers=args.max_speakers)
    print(f"job {job['id']}: uploaded {args.file}", file=sys.stderr)
    began = time.monotonic()
    seen: list[str] = []

    def progress(current: dict[str, Any]) -> None:
        if current["status"] not in seen:
            seen.append(current["status"])
            print(f"job {job['id']}: {current['status']} ({time.monotonic() - began:.1f} s)", file=sys.stderr)

    done = client.wait(job["id"], timeout=args.timeout, on_status=progress)
    for path in client.download(done, args.out):
        print(path)
    print(f"job {job['id']}: {len(done['result']['speakers'])} speakers", file=sys.stderr)
    return 0
