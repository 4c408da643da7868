//! The browser page at `/` (clients/web) in a real headless Chromium, driven by Playwright
//! from pytest (tests/web), against the real server: sign-in, an upload with its timeline
//! and players, and a live stream from a fake microphone playing the sample.

use std::process::Command;

use crate::audio;
use crate::server::{Server, project_dir};

#[test]
fn the_browser_page_signs_in_uploads_and_streams_live() {
    let python = project_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs pytest, Playwright and chromium)",
        python.display()
    );
    let server = Server::start(&[]);
    let user = server.create_user(10_000_000);
    let artifacts = project_dir().join("target/web-artifacts");

    let output = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-v",
            "-s",
            "-p",
            "no:cacheprovider",
            "tests/web",
        ])
        .current_dir(project_dir())
        .env("WHOSPOKE_BASE_URL", &server.base)
        .env("WHOSPOKE_API_KEY", &user.key)
        .env("WHOSPOKE_SAMPLE", audio::sample_path())
        .env("WHOSPOKE_WEB_ARTIFACTS", &artifacts)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "pytest tests/web failed ({}); screenshots in {}:\n{stdout}\n{stderr}",
        output.status,
        artifacts.display()
    );
}
