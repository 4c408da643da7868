//! A throwaway PostgreSQL server for the tests, and a fresh database per caller.
//!
//! The server is started at most once per test process, in a new temporary directory, on a
//! free loopback port with trust authentication. A detached watchdog stops it and removes
//! its directory when the test process exits, however it exits (even `kill -9`).
//! With `WHOSPOKE_TEST_POSTGRES_URL` set (a superuser's URL), that server is used instead.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Url;

/// Debian's PostgreSQL 15 (scripts/setup.sh installs the `postgresql` package).
const DEBIAN_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The server refuses to run as root, so as root it runs as this user.
const OS_USER: &str = "postgres";
/// Every test server opens a connection pool of its own, and many run at once.
const MAX_CONNECTIONS: &str = "500";

/// A new, empty database on the test server: its `postgres://` URL.
pub fn database_url() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "whospoke_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let server = server_url();
    run(
        Command::new(bin("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", server.as_str()])
            .args(["-c", &format!("CREATE DATABASE {name}")]),
        &format!("create database {name}"),
    );
    let mut url = server.clone();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The superuser URL of the server, starting it on first use.
fn server_url() -> &'static Url {
    static SERVER: OnceLock<Url> = OnceLock::new();
    SERVER.get_or_init(|| {
        let url = match std::env::var("WHOSPOKE_TEST_POSTGRES_URL") {
            Ok(url) => url,
            Err(_) => start(),
        };
        Url::parse(&url).unwrap_or_else(|e| panic!("a PostgreSQL URL, got {url:?}: {e}"))
    })
}

fn bin(program: &str) -> PathBuf {
    let debian = Path::new(DEBIAN_BIN).join(program);
    if debian.exists() {
        debian
    } else {
        PathBuf::from(program)
    }
}

/// initdb + pg_ctl start in a new temporary directory; returns the superuser URL.
fn start() -> String {
    let dir = tempfile::Builder::new()
        .prefix("whospoke-postgres-")
        .tempdir()
        .expect("a temporary directory for PostgreSQL")
        .keep();
    // The directory is ours: if root owns it, we are root.
    let as_root = std::fs::metadata(&dir).expect("stat it").uid() == 0;
    if as_root {
        run(
            Command::new("chown").arg(OS_USER).arg(&dir),
            &format!(
                "chown {OS_USER} {} (is Debian's postgresql installed?)",
                dir.display()
            ),
        );
    }
    let postgres = |program: &str| -> Command {
        if as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", OS_USER, "--"]).arg(bin(program));
            command
        } else {
            Command::new(bin(program))
        }
    };
    let data = dir.join("data");
    run(
        postgres("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C"]),
        "initdb (scripts/setup.sh installs Debian's postgresql)",
    );
    let port = crate::server::free_port();
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections={MAX_CONNECTIONS} \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        dir.display()
    );
    let log = dir.join("postgres.log");
    let started = postgres("pg_ctl")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-o", &options, "start"])
        .stdout(Stdio::null())
        .status()
        .expect("run pg_ctl start");
    assert!(
        started.success(),
        "pg_ctl start failed ({started}); postgres.log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    watch(&dir, &data, as_root);
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// Leaves a watchdog shell behind that, once this process is gone, stops the server at once
/// and removes its directory. It runs in the background of a shell that exits at once, so
/// init adopts it, and in a process group of its own, so a Ctrl-C does not reach it.
fn watch(dir: &Path, data: &Path, as_root: bool) {
    let pg_ctl = bin("pg_ctl");
    let stop = if as_root {
        format!("runuser -u {OS_USER} -- '{}'", pg_ctl.display())
    } else {
        format!("'{}'", pg_ctl.display())
    };
    let watchdog = format!(
        "(while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
         {stop} -D '{data}' stop -m immediate; rm -rf '{dir}') &",
        parent = std::process::id(),
        data = data.display(),
        dir = dir.display(),
    );
    let spawned = Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .status()
        .expect("run sh for the PostgreSQL watchdog");
    assert!(
        spawned.success(),
        "starting the PostgreSQL watchdog: {spawned}"
    );
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what}: {command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
