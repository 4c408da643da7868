"""Fixtures for the browser tests of the page at `/` (clients/web).

A real headless Chromium (Debian's `chromium`, driven by Playwright-Python; Playwright's own
browser downloads are never used) against a running whospoke server. `cargo test --release
--test api web` starts one (tests/api/web.rs) and runs `python -m pytest tests/web` with:

    WHOSPOKE_BASE_URL       http://127.0.0.1:PORT
    WHOSPOKE_API_KEY        an ap_ key of a user with plenty of credits
    WHOSPOKE_SAMPLE         tests/data/sample.wav (30 s, two speakers): the upload, and the
                            fake microphone's sound
    WHOSPOKE_WEB_ARTIFACTS  where screenshots go (target/web-artifacts)
    WHOSPOKE_CHROMIUM       optional: the browser binary (default: chromium on PATH)
"""

import os
import shutil
import subprocess
import tempfile

import pytest

SETUP_HINT = "run scripts/setup.sh (it installs Debian's chromium and Playwright into .venv)"


def _required_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: these tests need a running server; run them with "
            "`cargo test --release --test api web`, which starts one and sets it",
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def base_url():
    return _required_env("WHOSPOKE_BASE_URL").rstrip("/")


@pytest.fixture(scope="session")
def api_key():
    key = _required_env("WHOSPOKE_API_KEY")
    assert key.startswith("ap_"), f"keys start with ap_, got {key!r}"
    return key


@pytest.fixture(scope="session")
def sample_path():
    path = os.path.abspath(_required_env("WHOSPOKE_SAMPLE"))
    assert os.path.isfile(path), f"WHOSPOKE_SAMPLE={path} is not a file"
    return path


@pytest.fixture(scope="session")
def artifacts_dir():
    path = os.environ.get("WHOSPOKE_WEB_ARTIFACTS") or os.path.join("target", "web-artifacts")
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def chromium_path():
    candidates = [os.environ.get("WHOSPOKE_CHROMIUM"), "chromium", "chromium-browser"]
    for candidate in filter(None, candidates):
        found = shutil.which(candidate)
        if found:
            return found
    pytest.fail(f"no chromium found on PATH: {SETUP_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def fake_microphone(sample_path):
    """The sample as Chromium's fake capture device wants it: a 48 kHz 16-bit stereo WAV."""
    directory = tempfile.mkdtemp(prefix="whospoke-web-")
    path = os.path.join(directory, "microphone.wav")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail(f"ffmpeg is missing: {SETUP_HINT}", pytrace=False)
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-i", sample_path, "-ar", "48000", "-ac", "2",
         "-c:a", "pcm_s16le", path],
        check=True,
    )
    yield path
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def playwright_instance():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"Playwright is not installed in this Python: {SETUP_HINT}", pytrace=False)
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance, chromium_path, fake_microphone):
    browser = playwright_instance.chromium.launch(
        executable_path=chromium_path,
        headless=True,
        args=[
            "--no-sandbox",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={fake_microphone}",
            "--allow-loopback-in-peer-connection",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )
    yield browser
    browser.close()


@pytest.fixture
def page(browser, base_url):
    """A fresh browser context (empty localStorage) on the page, logging the console."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.grant_permissions(["microphone"], origin=base_url)
    page = context.new_page()
    page.on("console", lambda message: print(f"[console.{message.type}] {message.text}"))
    page.on("pageerror", lambda error: print(f"[pageerror] {error}"))
    page.goto("/")
    yield page
    context.close()


def sign_in(page, key):
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
