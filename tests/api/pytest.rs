//! Python test suites run by pytest against the real server: the official SDK (tests/sdk),
//! the Python client (clients/python/tests) and the browser page (tests/web).

use std::path::Path;
use std::process::Command;

use crate::audio;
use crate::server::{Server, project_dir};

/// Starts a server with a well-funded user and runs `suite` against it, with
/// `WHOSPOKE_BASE_URL`, `WHOSPOKE_API_KEY`, `WHOSPOKE_SAMPLE` and `env` set.
/// `installs` names what scripts/setup.sh provides for it, for the error message.
pub fn run_pytest(suite: &str, installs: &str, env: &[(&str, &Path)]) {
    let python = project_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs {installs})",
        python.display()
    );
    let server = Server::start(&[]);
    let user = server.create_user(10_000_000);
    let mut command = Command::new(&python);
    command
        .args(["-m", "pytest", "-v", "-s", "-p", "no:cacheprovider", suite])
        .current_dir(project_dir())
        .env("WHOSPOKE_BASE_URL", &server.base)
        .env("WHOSPOKE_API_KEY", &user.key)
        .env("WHOSPOKE_SAMPLE", audio::sample_path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "pytest {suite} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
