"""Fixtures: the client tests talk to a real whospoke server.

`cargo test --release --test api python_client` (tests/api/python_client.rs) starts one and
runs pytest here with PYTHONPATH=clients/python/src and:

    WHOSPOKE_BASE_URL  http://127.0.0.1:PORT
    WHOSPOKE_API_KEY   an ap_ key of a user with plenty of credits
    WHOSPOKE_SAMPLE    tests/data/sample.wav (30 s, two speakers)

Without them every test fails at setup, saying so; collection works regardless.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from whospoke_client import Client


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: these tests need a running server; run them with "
            "`cargo test --release --test api python_client`, which starts one and sets "
            "WHOSPOKE_BASE_URL, WHOSPOKE_API_KEY and WHOSPOKE_SAMPLE",
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def base_url() -> str:
    return _required_env("WHOSPOKE_BASE_URL").rstrip("/")


@pytest.fixture(scope="session")
def api_key() -> str:
    return _required_env("WHOSPOKE_API_KEY")


@pytest.fixture(scope="session")
def sample_path() -> Path:
    path = Path(_required_env("WHOSPOKE_SAMPLE"))
    assert path.is_file(), f"WHOSPOKE_SAMPLE={path} is not a file"
    return path


@pytest.fixture(scope="session")
def client(base_url: str, api_key: str) -> Client:
    return Client(base_url, api_key)


@pytest.fixture
def garbage_file(tmp_path: Path) -> Path:
    """Random bytes named like audio: neither `wave` nor ffmpeg can read them."""
    path = tmp_path / "garbage.wav"
    path.write_bytes(os.urandom(20_000))
    return path
