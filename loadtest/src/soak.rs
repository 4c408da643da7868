//! `soak`: the server for a long run under faults, then a verdict.
//!
//! ```text
//! supervisor: start server ─▶ RSS each second ─▶ SIGTERM, wait, start … ─▶ stop
//! live slots (WS, WHIP, …): session with a fault ─▶ record ─▶ next session … until the run ends
//! batch: an upload every few seconds     probes: a bad key / bad start / bad SDP every few seconds
//! end: grace for the queue ─▶ list the run's jobs ─▶ stop the server ─▶ checks ─▶ summary
//! ```
//!
//! Live slots alternate WebSocket and WHIP. Every session streams the dev
//! WAVs (looped, from a different one each time) at real time under a name
//! unique to the run, so its job is found by id and by name.

mod batch;
mod checks;
mod probes;
mod server;
mod tally;
mod whip;
mod ws;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::watch;
use url::Url;

use crate::audio::{Clip, StreamAudio};
use crate::clock::Epoch;
use crate::output;
use checks::{Check, Job};
use server::{Incarnation, Supervisor};
use tally::{SessionRecord, Tally, Transport};

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// The server's base address, as its command binds it (`http://127.0.0.1:PORT`).
    #[arg(long)]
    pub url: String,
    /// API key of a user kept for the soak (plenty of credits).
    #[arg(long)]
    pub api_key: String,
    /// WAV files (16-bit mono), looped for every session.
    #[arg(long, num_args = 1.., required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, default_value_t = 1800.0)]
    pub duration_seconds: f64,
    /// Live streams kept going; even ones WebSocket, odd ones WHIP.
    #[arg(long, default_value_t = 16)]
    pub streams: usize,
    /// Each session lasts between these many seconds of audio.
    #[arg(long, default_value_t = 45.0)]
    pub session_min_seconds: f64,
    #[arg(long, default_value_t = 180.0)]
    pub session_max_seconds: f64,
    /// One batch upload every this many seconds.
    #[arg(long, default_value_t = 6.0)]
    pub batch_every_seconds: f64,
    /// One refused request (bad key, bad start, bad SDP) every this many seconds.
    #[arg(long, default_value_t = 3.0)]
    pub probe_every_seconds: f64,
    /// SIGTERM and restart the server every this many seconds (0: never).
    #[arg(long, default_value_t = 600.0)]
    pub restart_every_seconds: f64,
    /// After the run, how long jobs may take to settle.
    #[arg(long, default_value_t = 300.0)]
    pub grace_seconds: f64,
    /// The server's `--live-max-frame-bytes`; oversized frames go past it.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_frame_bytes: usize,
    #[arg(long, default_value_t = 2000)]
    pub latency_ms: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for summary.json, summary.txt, the records and server.log (must be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// The server's command line, after `--`.
    #[arg(last = true, required = true)]
    pub server_command: Vec<String>,
}

/// What every client reads.
pub struct Settings {
    base: Url,
    ws_url: Url,
    api_key: String,
    latency_ms: u64,
    max_frame_bytes: usize,
    seed: u64,
    /// Names of the run's sessions and uploads start with it.
    prefix: String,
    connect_timeout: Duration,
    completion_timeout: Duration,
}

/// Shared by every task of the run.
pub struct Soak {
    settings: Settings,
    http: reqwest::Client,
    epoch: Epoch,
    tally: Tally,
    /// True while the server answers.
    up: watch::Receiver<bool>,
}

impl Soak {
    /// Waits until the server is up; false once the run is over.
    async fn server_up(&self, until: f64) -> bool {
        let mut up = self.up.clone();
        let left = (until - self.epoch.seconds()).max(0.0);
        tokio::time::timeout(Duration::from_secs_f64(left), up.wait_for(|u| *u))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    ensure!(args.streams > 0, "--streams must be positive");
    ensure!(
        args.session_min_seconds >= 5.0 && args.session_min_seconds <= args.session_max_seconds,
        "need 5 <= --session-min-seconds <= --session-max-seconds"
    );
    ensure!(
        args.duration_seconds > 0.0
            && args.batch_every_seconds > 0.0
            && args.probe_every_seconds > 0.0,
        "--duration-seconds, --batch-every-seconds and --probe-every-seconds must be positive"
    );
    let base = Url::parse(&args.url).context("--url")?;
    ensure!(base.scheme() == "http", "--url must be http://HOST:PORT");
    output::prepare(&args.out)?;
    let clips: Vec<Arc<Clip>> = crate::run::load_clips(&args.files)?;
    for clip in &clips {
        ensure!(
            clip.channels == 1
                && [8_000, 12_000, 16_000, 24_000, 48_000].contains(&clip.sample_rate),
            "{}: the soak needs mono WAVs at an Opus rate (8, 12, 16, 24 or 48 kHz)",
            clip.stem
        );
    }
    let epoch = Epoch::now();
    let prefix = format!("soak-{}", epoch.unix_seconds(0.0) as u64);
    let settings = Settings {
        ws_url: crate::cli::stream_url(base.as_str())?,
        base: base.clone(),
        api_key: args.api_key.clone(),
        latency_ms: args.latency_ms,
        max_frame_bytes: args.max_frame_bytes,
        seed: args.seed,
        prefix,
        connect_timeout: Duration::from_secs(15),
        completion_timeout: Duration::from_secs(300),
    };
    let http = reqwest::Client::new();
    let supervisor = Supervisor::new(
        args.server_command.clone(),
        base,
        &args.out.join("server.log"),
        epoch,
    )?;
    let incarnations = supervisor.incarnations();
    let soak = Arc::new(Soak {
        settings,
        http: http.clone(),
        epoch,
        tally: Tally::default(),
        up: supervisor.up(),
    });
    let (stop_server, stop) = watch::channel(false);
    let restart_every = (args.restart_every_seconds > 0.0)
        .then(|| Duration::from_secs_f64(args.restart_every_seconds));
    // No restart in the last minute: the run ends on a running server.
    let restarts_until = args.duration_seconds - 60.0;
    let supervisor = tokio::spawn(supervisor.run(http, restart_every, restarts_until, stop));

    let end = args.duration_seconds;
    let mut tasks = Vec::new();
    for slot in 0..args.streams {
        tasks.push(tokio::spawn(live_slot(
            Arc::clone(&soak),
            slot,
            clips.clone(),
            (args.session_min_seconds, args.session_max_seconds),
            end,
        )));
    }
    let uploads = batch::uploads(&clips, args.seed)?;
    tasks.push(tokio::spawn(batch_loop(
        Arc::clone(&soak),
        uploads,
        args.batch_every_seconds,
        end,
    )));
    tasks.push(tokio::spawn(probe_loop(
        Arc::clone(&soak),
        args.probe_every_seconds,
        end,
    )));
    let progress = tokio::spawn(progress(Arc::clone(&soak), Arc::clone(&incarnations)));
    for task in tasks {
        task.await.context("a client task failed")?;
    }
    let clients_done = epoch.seconds();
    eprintln!("[{clients_done:7.1} s] clients done; waiting for the jobs to settle");

    let jobs = settle(&soak, args.grace_seconds).await;
    progress.abort();
    let _ = stop_server.send(true);
    supervisor.await.context("the supervisor failed")??;
    let jobs = jobs?;
    let log = std::fs::read_to_string(args.out.join("server.log")).unwrap_or_default();
    let incarnations = incarnations
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let sessions = soak.tally.sessions();
    let batches = soak.tally.batches();
    let probes = soak.tally.probes();
    let checks = vec![
        checks::stream_jobs(&sessions, &jobs),
        checks::batch_jobs(&batches, &jobs),
        checks::nothing_stuck(&jobs),
        checks::rss_flat(&incarnations, end),
        checks::no_panics(&log),
        checks::clean_restarts(&incarnations),
        checks::probes(&probes),
    ];
    let summary = summarize(&args, &soak, &jobs, &incarnations, &checks, end);
    let table = table(&summary, &checks);
    print!("{table}");
    std::fs::write(args.out.join("summary.txt"), &table)?;
    output::write_json(&args.out.join("summary.json"), &summary)?;
    output::write_json(&args.out.join("sessions.json"), &sessions)?;
    output::write_json(&args.out.join("batches.json"), &batches)?;
    output::write_json(&args.out.join("probes.json"), &probes)?;
    output::write_json(&args.out.join("jobs.json"), &jobs)?;
    write_rss(&args.out.join("rss.csv"), &incarnations)?;
    println!("(written to {})", args.out.display());
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name)
        .collect();
    if !failed.is_empty() {
        bail!("soak checks failed: {}", failed.join(", "));
    }
    Ok(())
}

/// One live stream kept going: sessions one after another, each with the
/// next fault of its transport's rotation, until the run ends.
async fn live_slot(
    soak: Arc<Soak>,
    slot: usize,
    clips: Vec<Arc<Clip>>,
    (shortest, longest): (f64, f64),
    end: f64,
) {
    let transport = if slot.is_multiple_of(2) {
        Transport::Websocket
    } else {
        Transport::Whip
    };
    let mut rng = fastrand::Rng::with_seed(soak.settings.seed.wrapping_add(slot as u64));
    for n in 0.. {
        if !soak.server_up(end).await {
            return;
        }
        let left = end - soak.epoch.seconds();
        if left < shortest.min(20.0) {
            return;
        }
        let seconds = (shortest + rng.f64() * (longest - shortest))
            .min(left)
            .floor();
        // Start each session on another file, so slots do not play in step.
        let mut order = clips.clone();
        order.rotate_left((slot + n) % clips.len());
        let Ok(audio) = StreamAudio::new(order, Some(seconds)) else {
            return;
        };
        let name = format!(
            "{}-{}-{slot:02}-{n:03}",
            soak.settings.prefix,
            match transport {
                Transport::Websocket => "ws",
                Transport::Whip => "whip",
            }
        );
        let turn = slot / 2 + n;
        let record = match transport {
            Transport::Websocket => {
                let fault = ws::WsFault::ROTATION[turn % ws::WsFault::ROTATION.len()];
                ws::session(&soak, name, fault, audio).await
            }
            Transport::Whip => {
                let fault = whip::WhipFault::ROTATION[turn % whip::WhipFault::ROTATION.len()];
                whip::session(&soak, name, fault, audio).await
            }
        };
        let failed_to_start = record.job_id.is_none();
        soak.tally.session(record);
        if failed_to_start {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn batch_loop(soak: Arc<Soak>, uploads: Vec<batch::Upload>, every: f64, end: f64) {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(every));
    for index in 0.. {
        ticker.tick().await;
        if soak.epoch.seconds() >= end {
            return;
        }
        if !*soak.up.borrow() {
            continue;
        }
        let record = batch::submit(&soak, index, &uploads[index % uploads.len()]).await;
        soak.tally.batch(record);
    }
}

async fn probe_loop(soak: Arc<Soak>, every: f64, end: f64) {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(every));
    for index in 0.. {
        ticker.tick().await;
        if soak.epoch.seconds() >= end {
            return;
        }
        if !*soak.up.borrow() {
            continue;
        }
        let probe = probes::Probe::ROTATION[index % probes::Probe::ROTATION.len()];
        let record = probes::send(&soak, probe).await;
        // An answer given while the server went down tells nothing.
        if let Some(record) = record.filter(|_| *soak.up.borrow()) {
            soak.tally.probe(record);
        }
    }
}

async fn progress(soak: Arc<Soak>, incarnations: Arc<std::sync::Mutex<Vec<Incarnation>>>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(30));
    loop {
        ticker.tick().await;
        let (sessions, batches, faults) = soak.tally.counts();
        let rss = incarnations
            .lock()
            .ok()
            .and_then(|i| i.last().and_then(|i| i.rss.last().copied()))
            .map_or(0.0, |(_, rss)| rss);
        eprintln!(
            "[{:7.1} s] sessions {sessions}, batch uploads {batches}, faults {faults}, server RSS {rss:.0} MB",
            soak.epoch.seconds()
        );
    }
}

/// Waits (at most `grace` seconds) until no job of the run is PENDING or
/// PROCESSING; returns the run's jobs as last listed.
async fn settle(soak: &Soak, grace: f64) -> anyhow::Result<Vec<Job>> {
    let deadline = soak.epoch.seconds() + grace;
    loop {
        let jobs = if soak.server_up(deadline).await {
            list_jobs(soak).await
        } else {
            Err(anyhow::anyhow!("the server was not up to list jobs"))
        };
        let settled = jobs.as_ref().is_ok_and(|jobs| {
            jobs.iter()
                .all(|j| !matches!(j.status.as_str(), "PENDING" | "PROCESSING"))
        });
        if settled || soak.epoch.seconds() >= deadline {
            return jobs;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Every job of the soak's user whose name starts with the run's prefix.
async fn list_jobs(soak: &Soak) -> anyhow::Result<Vec<Job>> {
    const PAGE: usize = 200;
    let mut jobs = Vec::new();
    for skip in (0..).step_by(PAGE) {
        let mut url = soak.settings.base.join("/api/v1/speaker/jobs")?;
        url.query_pairs_mut()
            .append_pair("skip", &skip.to_string())
            .append_pair("limit", &PAGE.to_string());
        let page: Value = soak
            .http
            .get(url)
            .header("X-API-Key", &soak.settings.api_key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let items = page["items"]
            .as_array()
            .context("a job listing without items")?;
        jobs.extend(
            items
                .iter()
                .filter_map(Job::from_json)
                .filter(|j| j.name.starts_with(&soak.settings.prefix)),
        );
        if !page["hasMore"].as_bool().unwrap_or(false) {
            return Ok(jobs);
        }
    }
    unreachable!("the loop returns on the last page")
}

fn summarize(
    args: &SoakArgs,
    soak: &Soak,
    jobs: &[Job],
    incarnations: &[Incarnation],
    checks: &[Check],
    end: f64,
) -> Value {
    let sessions = soak.tally.sessions();
    let count = |f: &dyn Fn(&SessionRecord) -> bool| sessions.iter().filter(|s| f(s)).count();
    let mut endings = std::collections::BTreeMap::<String, usize>::new();
    for s in &sessions {
        let key = s.ending.split(':').next().unwrap_or_default();
        let key = if s.ending.starts_with("server:") {
            s.ending.as_str()
        } else {
            key
        };
        *endings.entry(key.to_owned()).or_default() += 1;
    }
    let mut batch_outcomes = std::collections::BTreeMap::<String, usize>::new();
    let by_id: std::collections::HashMap<i64, &Job> = jobs.iter().map(|j| (j.id, j)).collect();
    for b in soak.tally.batches() {
        let outcome = match (b.status, b.job_id.and_then(|id| by_id.get(&id))) {
            (None, _) => "not submitted (server down)".to_owned(),
            (Some(_), Some(job)) => job.status.clone(),
            (Some(status), None) => format!("HTTP {status}"),
        };
        *batch_outcomes
            .entry(format!("{} {outcome}", b.kind))
            .or_default() += 1;
    }
    let mut by_fault = std::collections::BTreeMap::<&str, usize>::new();
    for s in &sessions {
        *by_fault.entry(s.fault).or_default() += 1;
    }
    let mut lags: Vec<f64> = sessions
        .iter()
        .filter_map(|s| s.completion_lag_seconds)
        .collect();
    lags.sort_by(f64::total_cmp);
    let lag = |q: f64| {
        lags.get(((lags.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    let (rss_first, rss_last) = checks::rss_windows(incarnations, end).unzip();
    json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "duration_seconds": args.duration_seconds,
        "streams": args.streams,
        "sessions": {
            "total": sessions.len(),
            "websocket": count(&|s| s.transport == Transport::Websocket),
            "whip": count(&|s| s.transport == Transport::Whip),
            "sent_audio": count(&|s| s.sent_audio()),
            "audio_sent_seconds": sessions.iter().map(|s| s.audio_sent_seconds).sum::<f64>(),
            "endings": endings,
            "by_fault": by_fault,
            "completion_lag_seconds": { "p50": lag(0.5), "p95": lag(0.95), "max": lags.last() },
        },
        "faults": soak.tally.faults(),
        "batch": batch_outcomes,
        "jobs": jobs.len(),
        "restarts": incarnations.len().saturating_sub(1),
        "incarnations": incarnations,
        "rss_mb": { "first_window": rss_first, "last_window": rss_last, "window_seconds": checks::RSS_WINDOW_SECONDS },
        "checks": checks,
        "passed": checks.iter().all(|c| c.passed),
    })
}

fn table(summary: &Value, checks: &[Check]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let s = &summary["sessions"];
    let _ = writeln!(
        out,
        "soak: {} s, {} streams, {} restarts",
        summary["duration_seconds"], summary["streams"], summary["restarts"]
    );
    let _ = writeln!(
        out,
        "sessions: {} ({} WebSocket, {} WHIP), {} sent audio, {:.0} s of audio in all",
        s["total"],
        s["websocket"],
        s["whip"],
        s["sent_audio"],
        s["audio_sent_seconds"].as_f64().unwrap_or(0.0)
    );
    let lag = &s["completion_lag_seconds"];
    let _ = writeln!(
        out,
        "end/DELETE → completed: p50 {} s, p95 {} s, max {} s",
        lag["p50"], lag["p95"], lag["max"]
    );
    for (title, map) in [
        ("sessions by fault", &s["by_fault"]),
        ("session endings", &s["endings"]),
        (
            "faults injected (frames, packets, requests)",
            &summary["faults"],
        ),
        ("batch uploads", &summary["batch"]),
    ] {
        let _ = writeln!(out, "{title}:");
        if let Some(map) = map.as_object() {
            for (k, v) in map {
                let _ = writeln!(out, "  {k:<45} {v:>6}");
            }
        }
    }
    let _ = writeln!(out, "checks:");
    for check in checks {
        let verdict = if check.passed { "PASS" } else { "FAIL" };
        let _ = writeln!(out, "  {verdict} {:<15} {}", check.name, check.summary);
        for failure in &check.failures {
            let _ = writeln!(out, "       - {failure}");
        }
        if check.more_failures > 0 {
            let _ = writeln!(out, "       … and {} more", check.more_failures);
        }
    }
    out
}

fn write_rss(path: &std::path::Path, incarnations: &[Incarnation]) -> anyhow::Result<()> {
    let mut text = String::from("incarnation,pid,seconds,rss_mb\n");
    for (n, i) in incarnations.iter().enumerate() {
        for (t, rss) in &i.rss {
            text.push_str(&format!("{n},{},{t:.1},{rss:.1}\n", i.pid));
        }
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
