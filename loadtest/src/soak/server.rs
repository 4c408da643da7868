//! The server under test: started from its command line, restarted with
//! SIGTERM on a schedule, its RSS read from `/proc` once a second per
//! incarnation, its output appended to one log.

use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::clock::Epoch;
use crate::procfs::parse_rss_kb;

/// How long a start may take to answer `/readyz` (models load first).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long SIGTERM may take before the server is killed (and that counted).
const EXIT_TIMEOUT: Duration = Duration::from_secs(180);

/// One run of the server process.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Incarnation {
    pub pid: u32,
    pub started_at_seconds: f64,
    pub ready_at_seconds: Option<f64>,
    pub sigterm_at_seconds: Option<f64>,
    pub exited_at_seconds: Option<f64>,
    /// Exit code after SIGTERM (`None`: killed by a signal or still running).
    pub exit_code: Option<i32>,
    /// SIGTERM was not enough: it was killed after [`EXIT_TIMEOUT`].
    pub killed: bool,
    /// (run seconds, RSS MB), once a second while it ran.
    #[serde(skip)]
    pub rss: Vec<(f64, f64)>,
}

/// The server's lifecycle, driven by [`Supervisor::run`].
pub struct Supervisor {
    command: Vec<String>,
    base: url::Url,
    log: File,
    epoch: Epoch,
    incarnations: Arc<Mutex<Vec<Incarnation>>>,
    /// True while an incarnation answers `/readyz`.
    up: watch::Sender<bool>,
}

impl Supervisor {
    pub fn new(
        command: Vec<String>,
        base: url::Url,
        log_path: &Path,
        epoch: Epoch,
    ) -> anyhow::Result<Self> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        Ok(Self {
            command,
            base,
            log,
            epoch,
            incarnations: Arc::default(),
            up: watch::Sender::new(false),
        })
    }

    pub fn up(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    pub fn incarnations(&self) -> Arc<Mutex<Vec<Incarnation>>> {
        Arc::clone(&self.incarnations)
    }

    /// Starts the server, restarts it every `restart_every` (SIGTERM, wait
    /// for its exit, start again) until `stop` turns true, then stops it.
    pub async fn run(
        self,
        http: reqwest::Client,
        restart_every: Option<Duration>,
        restarts_until: f64,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        loop {
            let mut child = self.start(&http).await?;
            let restart_at = restart_every
                .map(|every| self.epoch.seconds() + every.as_secs_f64())
                .filter(|&at| at < restarts_until);
            let pid = child.id().unwrap_or_default();
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            let stopping = loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        let now = self.epoch.seconds();
                        if let Some(rss) = read_rss_mb(pid) {
                            self.with_current(|i| i.rss.push((now, rss)));
                        }
                        if restart_at.is_some_and(|at| now >= at) {
                            break false;
                        }
                    }
                    status = child.wait() => {
                        // It died on its own: note it and start it again.
                        let code = status.ok().and_then(|s| s.code());
                        let now = self.epoch.seconds();
                        self.with_current(|i| { i.exited_at_seconds = Some(now); i.exit_code = code; });
                        self.up.send_replace(false);
                        eprintln!("[{now:7.1} s] the server exited by itself (code {code:?}); starting it again");
                        break false;
                    }
                    _ = stop.wait_for(|s| *s) => break true,
                }
            };
            self.terminate(&mut child).await;
            if stopping {
                return Ok(());
            }
        }
    }

    async fn start(&self, http: &reqwest::Client) -> anyhow::Result<Child> {
        let started = self.epoch.seconds();
        let (program, args) = self.command.split_first().context("empty server command")?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(self.log.try_clone()?)
            .stderr(self.log.try_clone()?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let pid = child.id().unwrap_or_default();
        lock(&self.incarnations).push(Incarnation {
            pid,
            started_at_seconds: started,
            ..Incarnation::default()
        });
        let ready = self.base.join("/readyz")?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            let answered = http
                .get(ready.clone())
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if answered {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the server did not answer /readyz within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let now = self.epoch.seconds();
        self.with_current(|i| i.ready_at_seconds = Some(now));
        self.up.send_replace(true);
        eprintln!(
            "[{now:7.1} s] server pid {pid} ready after {:.1} s",
            now - started
        );
        Ok(child)
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`EXIT_TIMEOUT`]).
    async fn terminate(&self, child: &mut Child) {
        if self.current_exited() {
            return;
        }
        self.up.send_replace(false);
        let now = self.epoch.seconds();
        self.with_current(|i| i.sigterm_at_seconds = Some(now));
        if let Some(pid) = child.id() {
            eprintln!("[{now:7.1} s] SIGTERM to server pid {pid}");
            // SAFETY: kill(2) on our own child's pid; it has not been reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        let (code, killed) = match tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await {
            Ok(status) => (status.ok().and_then(|s| s.code()), false),
            Err(_) => {
                let _ = child.kill().await;
                (None, true)
            }
        };
        let now = self.epoch.seconds();
        self.with_current(|i| {
            i.exited_at_seconds = Some(now);
            i.exit_code = code;
            i.killed = killed;
        });
        eprintln!("[{now:7.1} s] server exited (code {code:?}, killed {killed})");
    }

    fn current_exited(&self) -> bool {
        lock(&self.incarnations)
            .last()
            .is_some_and(|i| i.exited_at_seconds.is_some())
    }

    fn with_current(&self, f: impl FnOnce(&mut Incarnation)) {
        if let Some(current) = lock(&self.incarnations).last_mut() {
            f(current);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(parse_rss_kb(&status)? as f64 / 1024.0)
}
