//! The official `audiopod` Python SDK and AudioPod's documented request shapes (requests and
//! curl), run by pytest (tests/sdk) against the real server.

use std::process::Command;

use crate::audio;
use crate::server::{Server, project_dir};

#[test]
fn the_official_sdk_and_the_documented_requests_work() {
    let python = project_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs pytest, requests and audiopod)",
        python.display()
    );
    let server = Server::start(&[]);
    let user = server.create_user(10_000_000);

    let output = Command::new(&python)
        .args(["-m", "pytest", "-v", "-p", "no:cacheprovider", "tests/sdk"])
        .current_dir(project_dir())
        .env("WHOSPOKE_BASE_URL", &server.base)
        .env("WHOSPOKE_API_KEY", &user.key)
        .env("WHOSPOKE_SAMPLE", audio::sample_path())
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
        "pytest tests/sdk failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
