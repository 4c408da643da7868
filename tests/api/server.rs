//! The real `whospoke serve` binary on loopback: start, kill, terminate, restart; users made
//! with `whospoke admin`; and the few API calls every test needs (credits, jobs, polling).
//!
//! Each `Server` owns a fresh temporary directory holding its `--data-dir` (`data/`) and the
//! server's stderr (`server.log`). When a test fails, the tail of that log is printed.
//!
//! `WHOSPOKE_TEST_DATABASE=postgres` gives every server a fresh database on the test
//! PostgreSQL (`postgres.rs`) instead of SQLite in its data directory, so the same suite runs
//! on both. A [`Cluster`] starts nodes that share one database and one S3 bucket.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::RequestBuilder;
use serde_json::Value;
use tempfile::TempDir;

use crate::client::{WithKey, expect_json};
use crate::postgres;
use crate::s3::{BUCKET, S3Server};

/// How long the binary may take to print its `listening` line (it loads two ONNX models).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a job may take to reach the status a test waits for. The test machine is slow
/// and shared (2 cores), and tests run in parallel, so this is generous.
const JOB_TIMEOUT: Duration = Duration::from_secs(180);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a SIGTERMed server may take beyond its grace period before the test calls it hung.
const EXIT_MARGIN: Duration = Duration::from_secs(90);
/// Unless a test sets its own, the rate limits are out of the way (polling sends many requests).
const UNLIMITED_RATE: &str = "1000000";
const LOG_TAIL_LINES: usize = 80;
/// Cluster nodes' job leases: a dead node's work moves on within a test.
pub const LEASE_SECONDS: u64 = 4;
/// Cluster nodes' live-session checkpoints to the bucket.
pub const CHECKPOINT_SECONDS: u64 = 2;

pub fn project_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A loopback port nothing listens on (for helpers that cannot take port 0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The `--database-url` that `WHOSPOKE_TEST_DATABASE` asks for: none (SQLite in the data
/// directory, the default) or a fresh PostgreSQL database.
pub fn test_database() -> Option<String> {
    match std::env::var("WHOSPOKE_TEST_DATABASE").as_deref() {
        Err(_) | Ok("sqlite") => None,
        Ok("postgres") => Some(postgres::database_url()),
        Ok(other) => panic!("WHOSPOKE_TEST_DATABASE is sqlite or postgres, not {other:?}"),
    }
}

/// A user made with `whospoke admin create-user`.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub key: String,
}

pub struct Server {
    /// `http://127.0.0.1:PORT`, as printed by the server (it changes on restart).
    pub base: String,
    dir: TempDir,
    args: Vec<String>,
    /// `--database-url`, when not the default SQLite file in the data directory.
    database_url: Option<String>,
    envs: Vec<(String, String)>,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Server {
    /// `whospoke serve --port 0 --data-dir <fresh dir> --allow-private-urls EXTRA...`
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(true, extra, &[])
    }

    /// Full control: whether to pass `--allow-private-urls`, extra flags, extra environment.
    pub fn start_with(allow_private_urls: bool, extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("create a temporary directory for the server");
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if allow_private_urls {
            args.push("--allow-private-urls".into());
        }
        for limit in ["--rate-limit-per-minute", "--ip-rate-limit-per-minute"] {
            if !extra.contains(&limit) {
                args.extend([limit.into(), UNLIMITED_RATE.into()]);
            }
        }
        if !extra.contains(&"--database-url")
            && let Some(url) = test_database()
        {
            args.extend(["--database-url".into(), url]);
        }
        let database_url = args
            .iter()
            .position(|arg| arg == "--database-url")
            .map(|i| args[i + 1].clone());
        let mut server = Server {
            base: String::new(),
            dir,
            args,
            database_url,
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(300))
                .build()
                .expect("build the HTTP client"),
        };
        server.spawn();
        server
    }

    /// The process id of the running server, for reading its /proc entries.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("pid: the server is not running")
            .id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "spawn: the previous server is still running"
        );
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open server.log");
        let data_dir = self.data_dir();
        let mut command = Command::new(env!("CARGO_BIN_EXE_whospoke"));
        command
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir"])
            .arg(&data_dir)
            .args(&self.args)
            .current_dir(project_dir())
            .env(
                "WHOSPOKE_LOG",
                std::env::var("WHOSPOKE_LOG").unwrap_or_else(|_| "info".to_string()),
            )
            // Plain text: tests read the log.
            .env("NO_COLOR", "1")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command.spawn().expect("start `whospoke serve`");
        let stdout = child.stdout.take().expect("the server's stdout is piped");

        // Read the single `listening` line on a thread, so a silent server cannot hang us;
        // afterwards keep draining stdout so the server never blocks writing to it.
        let (first_line, receive) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first_line.send(lines.next());
            for _ in lines {}
        });
        let line = match receive.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            outcome => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!(
                    "`whospoke serve {}` did not print its `listening` line \
                     (got {outcome:?}, exit status {status:?}); server log:\n{}",
                    self.args.join(" "),
                    self.log_tail()
                );
            }
        };
        let base = line
            .trim()
            .strip_prefix("whospoke listening on ")
            .unwrap_or_else(|| {
                panic!("first stdout line should be `whospoke listening on URL`, got {line:?}")
            });
        assert!(
            base.starts_with("http://127.0.0.1:"),
            "the server should listen on loopback, it printed {line:?}"
        );
        self.base = base.to_string();
        self.child = Some(child);
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("kill: the server is not running");
        child.kill().expect("send SIGKILL to the server");
        child.wait().expect("reap the killed server");
    }

    /// SIGTERM, then wait for the process to exit on its own: `grace` (what the server was
    /// told with --shutdown-grace-seconds) plus a generous margin before calling it hung.
    pub fn terminate(&mut self, grace: Duration) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("terminate: the server is not running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", child.id());
        let deadline = Instant::now() + grace + EXIT_MARGIN;
        loop {
            if let Some(status) = child.try_wait().expect("poll the server process") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server did not exit within {:?} of SIGTERM (grace {grace:?}); log:\n{}",
                    grace + EXIT_MARGIN,
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Starts the binary again with the same flags and data directory (new port).
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Everything the server has logged (its stderr), across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    // ----- admin CLI -----------------------------------------------------------------------

    /// `whospoke admin --data-dir D [--database-url U] ARGS... --json`, parsed.
    pub fn admin(&self, args: &[&str]) -> Value {
        let database = self
            .database_url
            .as_deref()
            .map(|url| ["--database-url", url]);
        let output = Command::new(env!("CARGO_BIN_EXE_whospoke"))
            .arg("admin")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(database.iter().flatten())
            .args(args)
            .arg("--json")
            .current_dir(project_dir())
            .output()
            .expect("run `whospoke admin`");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "`whospoke admin {}` failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            args.join(" "),
            output.status
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "`whospoke admin {}` should print JSON ({e}): {stdout}",
                args.join(" ")
            )
        })
    }

    pub fn create_user(&self, credits: u64) -> User {
        let out = self.admin(&["create-user", "--credits", &credits.to_string()]);
        let id = out["user_id"].as_str().expect("create-user prints user_id");
        let key = out["api_key"].as_str().expect("create-user prints api_key");
        assert!(
            key.starts_with("ap_"),
            "API keys must start with ap_ (the SDK requires it), got {key}"
        );
        assert_eq!(
            out["credits"], credits,
            "create-user reports the credits given: {out}"
        );
        User {
            id: id.to_string(),
            key: key.to_string(),
        }
    }

    // ----- HTTP ----------------------------------------------------------------------------

    /// `path` is either absolute (a download_url) or relative to the server (`/api/v1/...`).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// The WebSocket URL of `path` (relative to the server, query allowed): `ws://127.0.0.1:PORT/...`.
    pub fn ws_url(&self, path: &str) -> String {
        let authority = self
            .base
            .strip_prefix("http://")
            .expect("the server's base URL is http://");
        format!("ws://{authority}{path}")
    }

    /// `127.0.0.1:PORT`, for tests that open the TCP connection themselves.
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        self.base
            .strip_prefix("http://")
            .and_then(|authority| authority.parse().ok())
            .unwrap_or_else(|| panic!("the server's base URL is http://IP:PORT: {}", self.base))
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(self.url(path))
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.http.delete(self.url(path))
    }

    /// `GET /api/v1/credits` → balance (after checking the response names this user).
    pub async fn balance(&self, user: &User) -> i64 {
        let response = self.get("/api/v1/credits").with_key(user).send().await;
        let body = expect_json(response, 200, "GET /api/v1/credits").await;
        assert_eq!(
            body["user_id"],
            user.id.as_str(),
            "credits of the wrong user: {body}"
        );
        body["balance"]
            .as_i64()
            .unwrap_or_else(|| panic!("credits balance should be an integer: {body}"))
    }

    /// `GET /api/v1/jobs/{id}` (the path the official SDK polls).
    pub async fn job(&self, user: &User, id: i64) -> Value {
        let response = self
            .get(&format!("/api/v1/jobs/{id}"))
            .with_key(user)
            .send()
            .await;
        expect_json(response, 200, &format!("GET /api/v1/jobs/{id}")).await
    }

    /// `GET /api/v1/speaker/jobs?QUERY`
    pub async fn list(&self, user: &User, query: &str) -> Value {
        let path = format!("/api/v1/speaker/jobs?{query}");
        let response = self.get(&path).with_key(user).send().await;
        expect_json(response, 200, &format!("GET {path}")).await
    }

    /// Polls the job until it has `status`. Panics on a timeout, and as soon as the job
    /// reaches a different final state (COMPLETED or FAILED), with the job in the message.
    pub async fn wait_for_status(&self, user: &User, id: i64, status: &str) -> Value {
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            let job = self.job(user, id).await;
            let current = job["status"].as_str().unwrap_or_default();
            if current == status {
                return job;
            }
            let final_state = matches!(current, "COMPLETED" | "FAILED");
            assert!(
                !final_state,
                "job {id} ended {current} while waiting for {status}: {job:#}"
            );
            assert!(
                Instant::now() < deadline,
                "job {id} did not reach {status} within {JOB_TIMEOUT:?}: {job:#}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- whospoke serve {} — last {LOG_TAIL_LINES} lines of server.log ----\n{}\n----",
                self.args.join(" "),
                self.log_tail()
            );
        }
    }
}

/// Nodes of one cluster, as in production behind a load balancer: each its own process and
/// data directory, all on one PostgreSQL database and one S3 bucket (moto).
pub struct Cluster {
    database_url: String,
    storage_url: String,
    s3: S3Server,
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster {
            database_url: postgres::database_url(),
            storage_url: format!("s3://{BUCKET}/cluster"),
            s3: S3Server::start().await,
        }
    }

    /// `whospoke serve --role ROLE EXTRA...` on the cluster's database and bucket, with
    /// short leases and checkpoints, one job at a time on one thread (the cores are shared).
    /// No `--signing-secret`: the nodes share the one in the database.
    pub fn node(&self, role: &str, extra: &[&str]) -> Server {
        let lease = LEASE_SECONDS.to_string();
        let checkpoint = CHECKPOINT_SECONDS.to_string();
        let mut args = vec![
            "--role",
            role,
            "--database-url",
            &self.database_url,
            "--storage-url",
            &self.storage_url,
            "--lease-seconds",
            &lease,
            "--live-checkpoint-seconds",
            &checkpoint,
            "--concurrent-jobs",
            "1",
            "--threads",
            "1",
        ];
        args.extend(extra);
        Server::start_with(true, &args, &self.s3.env())
    }
}
