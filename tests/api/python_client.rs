//! The Python client package (clients/python, `whospoke_client`): its pytest tests
//! (clients/python/tests) run against the real server, the package imported from its source.

use std::process::Command;

use crate::audio;
use crate::server::{Server, project_dir};

#[test]
fn the_python_client_works_against_the_server() {
    let python = project_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs pytest, requests and websockets)",
        python.display()
    );
    let server = Server::start(&[]);
    let user = server.create_user(10_000_000);

    let output = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-v",
            "-p",
            "no:cacheprovider",
            "clients/python/tests",
        ])
        .current_dir(project_dir())
        .env("PYTHONPATH", project_dir().join("clients/python/src"))
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
        "pytest clients/python/tests failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
