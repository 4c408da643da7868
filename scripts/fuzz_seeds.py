#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (fuzz/fuzz_targets), made from the test fixtures.

    python3 scripts/fuzz_seeds.py OUT_DIR

Writes OUT_DIR/<target>/<seed> for every target: audio files ffmpeg makes from the first
half second of tests/data/sample.wav, the stream tests' control messages, a WebRTC offer
like the WHIP tests' peer sends, Range headers and multipart submit bodies. Standard
library and ffmpeg only.
"""

import json
import os
import struct
import subprocess
import sys
import tempfile
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "tests", "data", "sample.wav")
SECONDS = 0.5

# Must match EXTENSIONS in fuzz/fuzz_targets/decode.rs: the first byte of a seed picks one.
EXTENSIONS = ["wav", "mp3", "flac", "ogg", "opus", "m4a", "mp4", "mov", "mkv", "webm", "aac",
              "caf", "aiff", "bin"]
# (name, extension, ffmpeg output arguments)
AUDIO = [
    ("s16.wav", "wav", ["-c:a", "pcm_s16le"]),
    ("f32-stereo.wav", "wav", ["-ac", "2", "-c:a", "pcm_f32le"]),
    ("u8-8k.wav", "wav", ["-ar", "8000", "-c:a", "pcm_u8"]),
    ("s24.wav", "wav", ["-c:a", "pcm_s24le"]),
    ("cbr.mp3", "mp3", ["-c:a", "libmp3lame", "-b:a", "32k"]),
    ("s.flac", "flac", ["-c:a", "flac"]),
    ("vorbis.ogg", "ogg", ["-c:a", "libvorbis"]),
    ("s.opus", "opus", ["-c:a", "libopus", "-b:a", "16k"]),
    ("aac.m4a", "m4a", ["-c:a", "aac", "-b:a", "32k"]),
    ("alac.m4a", "m4a", ["-c:a", "alac"]),
    ("pcm.mov", "mov", ["-c:a", "pcm_s16le"]),
    ("opus.mkv", "mkv", ["-c:a", "libopus"]),
    ("vorbis.webm", "webm", ["-c:a", "libvorbis"]),
    ("adts.aac", "aac", ["-c:a", "aac", "-b:a", "32k"]),
    ("s.caf", "caf", ["-c:a", "pcm_s16be"]),
    ("s.aiff", "aiff", ["-c:a", "pcm_s16be"]),
]

CONTROL = [
    {"type": "start", "sample_rate": 16000, "channels": 1, "encoding": "pcm_s16le"},
    {"type": "start", "sample_rate": 48000, "channels": 2, "encoding": "opus", "num_speakers": 2,
     "latency_ms": 1000, "extract": False, "name": "meeting", "exclusive": True},
    {"type": "start", "sample_rate": 44100, "channels": 2, "encoding": "pcm_f32le", "max_speakers": 4,
     "webhook_url": "https://hooks.example.com/done"},
    {"type": "keepalive"},
    {"type": "finalize"},
    {"type": "end"},
]

OFFER = "\r\n".join([
    "v=0",
    "o=- 4215775240449105457 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:Gh7s",
    "a=ice-pwd:o5ZGq4NQxNdZ9bPz5sYuyR7x",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 8A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9",
    "a=setup:actpass",
    "a=mid:0",
    "a=sendonly",
    "a=msid:- 7d5c1c1f-3a2b-4c5d-8e9f-0a1b2c3d4e5f",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:0 PCMU/8000",
    "a=ssrc:1001 cname:whip",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
    "",
])

RANGES = [(1000, "bytes=0-99"), (1000, "bytes=-500"), (1000, "bytes=100-"), (10, "bytes=0-0"),
          (1000, "BYTES=5-2000"), (0, "bytes=0-"), (2**40, "bytes=1099511627775-")]

BOUNDARY = "whospoke-fuzz"  # as in fuzz/fuzz_targets/multipart.rs


def write(out, target, name, data):
    directory = os.path.join(out, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def sample_pcm(seconds):
    with wave.open(SAMPLE) as w:
        return w.getframerate(), w.readframes(int(seconds * w.getframerate()))


def encode(tmp, name, args):
    path = os.path.join(tmp, name)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-t", str(SECONDS),
                    "-i", SAMPLE, *args, path], check=True)
    with open(path, "rb") as f:
        return f.read()


def ogg_packets(data):
    """The packets of an Ogg stream (pages' segments joined), headers included."""
    packets, packet, pos = [], b"", 0
    while data.startswith(b"OggS", pos):
        count = data[pos + 26]
        lacing = data[pos + 27:pos + 27 + count]
        body = pos + 27 + count
        for size in lacing:
            packet += data[body:body + size]
            body += size
            if size < 255:
                packets.append(packet)
                packet = b""
        pos = body
    return packets


def frames_seed(encoding, channels, rate, frames):
    head = bytes([encoding, channels]) + struct.pack("<H", rate)
    return head + b"".join(bytes([tag]) + struct.pack("<H", len(f) if tag % 2 == 0 else n) + f
                           for tag, n, f in frames)


def part(name, value, filename=None, content_type=None):
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + value + b"\r\n"


def main(out):
    with tempfile.TemporaryDirectory() as tmp:
        audio = {name: encode(tmp, name, args) for name, _, args in AUDIO}
        for name, extension, _ in AUDIO:
            write(out, "decode", name, bytes([EXTENSIONS.index(extension)]) + audio[name])
        opus_packets = ogg_packets(audio["s.opus"])[2:]  # without OpusHead and OpusTags
        stereo_opus = ogg_packets(encode(tmp, "stereo.opus", ["-ac", "2", "-ar", "48000",
                                                              "-c:a", "libopus"]))[2:]

    for i, message in enumerate(CONTROL):
        write(out, "control_message", f"{i}.json", json.dumps(message).encode())

    rate, pcm = sample_pcm(0.1)
    chunks = [pcm[i:i + 333] for i in range(0, len(pcm), 333)]  # split mid-sample
    floats = b"".join(struct.pack("<f", s / 32768) for (s,) in struct.iter_unpack("<h", pcm))
    write(out, "live_frames", "s16", frames_seed(0, 1, rate, [(0, 0, c) for c in chunks]))
    write(out, "live_frames", "f32-stereo-44k",
          frames_seed(1, 2, 44100, [(0, 0, floats[i:i + 1000]) for i in range(0, len(floats), 1000)]))
    write(out, "live_frames", "opus-16k",
          frames_seed(2, 1, 16000, [(0, 0, p) for p in opus_packets[:5]] + [(1, 320, b"")]
                      + [(0, 0, p) for p in opus_packets[5:8]]))
    write(out, "live_frames", "opus-48k-stereo",
          frames_seed(2, 2, 48000, [(0, 0, p) for p in stereo_opus[:4]] + [(1, 960, b"")]))

    write(out, "whip_offer", "offer.sdp", OFFER.encode())
    write(out, "whip_offer", "no-opus.sdp", OFFER.replace("a=rtpmap:111 opus/48000/2\r\n", "").encode())

    for i, (length, header) in enumerate(RANGES):
        write(out, "range", str(i), struct.pack("<Q", length) + header.encode())

    wav = audio["s16.wav"]
    end = f"--{BOUNDARY}--\r\n".encode()
    write(out, "multipart", "file", part("file", wav, "a.wav", "audio/wav") + end)
    write(out, "multipart", "file-and-fields",
          part("num_speakers", b"2") + part("exclusive", b"true")
          + part("file", wav[:2000], "meeting.wav", "audio/wav") + end)
    write(out, "multipart", "url", part("url", b"https://example.com/a.mp3")
          + part("webhook_url", b"https://hooks.example.com/x") + end)
    write(out, "multipart", "two-files", part("file", b"RIFF", "a.wav") + part("file", b"x", "b") + end)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
