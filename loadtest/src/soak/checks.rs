//! The soak's verdict: what the clients recorded against the jobs the
//! server reports, its RSS and its log. Pure functions, tested below.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::server::Incarnation;
use super::tally::{BatchRecord, ProbeRecord, SessionRecord};

/// How far a stream job's duration may be from the audio sent.
pub const DURATION_TOLERANCE_SECONDS: f64 = 1.0;
/// RSS windows at the start and the end of the run.
pub const RSS_WINDOW_SECONDS: f64 = 300.0;
/// Largest relative change of mean RSS between the two windows.
pub const RSS_TOLERANCE: f64 = 0.10;
/// Failures listed per check; the rest are counted.
const LISTED: usize = 20;

/// A job as the listing gives it, reduced to what the checks read.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
    pub job_type: String,
    pub status: String,
    pub name: String,
    pub duration_seconds: Option<f64>,
    pub error_message: Option<String>,
}

impl Job {
    pub fn from_json(job: &Value) -> Option<Self> {
        let text = |key: &str| job[key].as_str().map(str::to_owned);
        Some(Self {
            id: job["id"].as_i64()?,
            job_type: text("job_type")?,
            status: text("status")?,
            name: text("filename")
                .or_else(|| text("display_name"))
                .unwrap_or_default(),
            duration_seconds: job["result"]["duration_seconds"]
                .as_f64()
                .or_else(|| job["duration_seconds"].as_f64()),
            error_message: text("error_message").filter(|m| !m.trim().is_empty()),
        })
    }

    fn is_terminal(&self) -> bool {
        !matches!(self.status.as_str(), "PENDING" | "PROCESSING")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    /// What was checked, in figures.
    pub summary: String,
    pub failures: Vec<String>,
    pub more_failures: usize,
}

impl Check {
    fn new(name: &'static str, summary: String, failures: Vec<String>) -> Self {
        let more_failures = failures.len().saturating_sub(LISTED);
        Self {
            name,
            passed: failures.is_empty(),
            summary,
            failures: failures.into_iter().take(LISTED).collect(),
            more_failures,
        }
    }
}

/// Every session that sent audio has exactly one stream job of its name,
/// the one `ready`/`X-Job-Id` named, COMPLETED with the audio's duration.
pub fn stream_jobs(sessions: &[SessionRecord], jobs: &[Job]) -> Check {
    let by_id: HashMap<i64, &Job> = jobs.iter().map(|j| (j.id, j)).collect();
    let mut per_name: HashMap<&str, usize> = HashMap::new();
    for job in jobs.iter().filter(|j| j.job_type == "stream") {
        *per_name.entry(job.name.as_str()).or_default() += 1;
    }
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut worst: f64 = 0.0;
    let mut failed_by: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for session in sessions.iter().filter(|s| s.sent_audio()) {
        checked += 1;
        let before = failures.len();
        check_session(session, &by_id, &per_name, &mut failures, &mut worst);
        let tally = failed_by.entry(session.ended_by()).or_default();
        tally.0 += 1;
        tally.1 += usize::from(failures.len() > before);
    }
    let by_ending: Vec<String> = failed_by
        .iter()
        .map(|(by, (all, failed))| format!("ended by {by}: {failed}/{all} failed"))
        .collect();
    Check::new(
        "stream_jobs",
        format!(
            "{checked} sessions sent audio ({}); worst duration difference {worst:.2} s \
             (tolerance {DURATION_TOLERANCE_SECONDS} s)",
            by_ending.join(", ")
        ),
        failures,
    )
}

fn check_session(
    session: &SessionRecord,
    by_id: &HashMap<i64, &Job>,
    per_name: &HashMap<&str, usize>,
    failures: &mut Vec<String>,
    worst: &mut f64,
) {
    let behind = if session.behind {
        ", server behind"
    } else {
        ""
    };
    let who = format!(
        "{} ({}, {}{behind})",
        session.name, session.fault, session.ending
    );
    let Some(id) = session.job_id else {
        failures.push(format!("{who}: sent audio but has no job id"));
        return;
    };
    let count = per_name.get(session.name.as_str()).copied().unwrap_or(0);
    if count != 1 {
        failures.push(format!("{who}: {count} stream jobs carry its name"));
    }
    let Some(job) = by_id.get(&id) else {
        failures.push(format!("{who}: job {id} is not listed"));
        return;
    };
    if job.job_type != "stream" || job.status != "COMPLETED" {
        failures.push(format!(
            "{who}: job {id} is {} {} ({})",
            job.job_type,
            job.status,
            job.error_message.as_deref().unwrap_or("no message")
        ));
        return;
    }
    let Some(duration) = job.duration_seconds else {
        failures.push(format!("{who}: job {id} has no duration"));
        return;
    };
    let off = (duration - session.audio_sent_seconds).abs();
    *worst = worst.max(off);
    if off > DURATION_TOLERANCE_SECONDS {
        failures.push(format!(
            "{who}: job {id} holds {duration:.2} s, the client sent {:.2} s",
            session.audio_sent_seconds
        ));
    }
}

/// Every accepted batch job ends COMPLETED or FAILED with a reason; good
/// files complete, bad ones fail or are refused with a 4xx.
pub fn batch_jobs(batches: &[BatchRecord], jobs: &[Job]) -> Check {
    let by_id: HashMap<i64, &Job> = jobs.iter().map(|j| (j.id, j)).collect();
    let mut failures = Vec::new();
    let mut judged = 0;
    for batch in batches {
        let who = format!("{} ({})", batch.filename, batch.kind);
        let Some(status) = batch.status else {
            continue; // the server was restarting: nothing was submitted
        };
        if status == 503 {
            continue; // refused while shutting down
        }
        judged += 1;
        match (status, batch.job_id) {
            (200..=299, Some(id)) => {
                let Some(job) = by_id.get(&id) else {
                    failures.push(format!("{who}: job {id} is not listed"));
                    continue;
                };
                match (job.status.as_str(), batch.is_good()) {
                    ("COMPLETED", true) => {}
                    ("FAILED", false) if job.error_message.is_some() => {}
                    ("FAILED", _) if job.error_message.is_none() => {
                        failures.push(format!("{who}: job {id} FAILED without a message"));
                    }
                    (other, _) => failures.push(format!(
                        "{who}: job {id} is {other} ({})",
                        job.error_message.as_deref().unwrap_or("no message")
                    )),
                }
            }
            (400..=499, _) if !batch.is_good() => {}
            _ => failures.push(format!("{who}: submit answered {status} {}", batch.detail)),
        }
    }
    Check::new(
        "batch_jobs",
        format!(
            "{judged} submissions judged ({} sent while the server was down or stopping)",
            batches.len() - judged
        ),
        failures,
    )
}

/// No job of the run is left PENDING or PROCESSING.
pub fn nothing_stuck(jobs: &[Job]) -> Check {
    let failures = jobs
        .iter()
        .filter(|j| !j.is_terminal())
        .map(|j| format!("job {} ({} {}) is {}", j.id, j.job_type, j.name, j.status))
        .collect();
    Check::new(
        "no_stuck_jobs",
        format!("{} jobs of the run", jobs.len()),
        failures,
    )
}

/// Mean RSS of the run's first and last windows, or `None` without samples.
pub fn rss_windows(incarnations: &[Incarnation], run_end: f64) -> Option<(f64, f64)> {
    let samples: Vec<(f64, f64)> = incarnations
        .iter()
        .flat_map(|i| i.rss.iter().copied())
        .filter(|&(t, _)| t <= run_end)
        .collect();
    let start = samples.first()?.0;
    let mean = |from: f64, to: f64| {
        let window: Vec<f64> = samples
            .iter()
            .filter(|&&(t, _)| t >= from && t < to)
            .map(|&(_, rss)| rss)
            .collect();
        (!window.is_empty()).then(|| window.iter().sum::<f64>() / window.len() as f64)
    };
    Some((
        mean(start, start + RSS_WINDOW_SECONDS)?,
        mean(run_end - RSS_WINDOW_SECONDS, run_end + 1.0)?,
    ))
}

pub fn rss_flat(incarnations: &[Incarnation], run_end: f64) -> Check {
    match rss_windows(incarnations, run_end) {
        Some((first, last)) => {
            let change = last / first - 1.0;
            let failures = if change.abs() > RSS_TOLERANCE {
                vec![format!(
                    "mean RSS moved {:+.1} % (limit ±{:.0} %)",
                    100.0 * change,
                    100.0 * RSS_TOLERANCE
                )]
            } else {
                Vec::new()
            };
            Check::new(
                "rss_flat",
                format!(
                    "first {:.0} s {first:.1} MB, last {:.0} s {last:.1} MB ({:+.1} %)",
                    RSS_WINDOW_SECONDS,
                    RSS_WINDOW_SECONDS,
                    100.0 * change
                ),
                failures,
            )
        }
        None => Check::new(
            "rss_flat",
            "no RSS samples".to_owned(),
            vec!["the server's RSS was never read".to_owned()],
        ),
    }
}

/// Lines of the server log that report a panic.
pub fn no_panics(log: &str) -> Check {
    let failures: Vec<String> = log
        .lines()
        .filter(|line| line.contains("panicked"))
        .map(str::to_owned)
        .collect();
    Check::new(
        "no_panics",
        format!("{} log lines read", log.lines().count()),
        failures,
    )
}

/// Every SIGTERM ended its server cleanly, without a kill.
pub fn clean_restarts(incarnations: &[Incarnation]) -> Check {
    let failures = incarnations
        .iter()
        .filter(|i| {
            i.killed
                || i.exit_code.is_some_and(|c| c != 0)
                || i.sigterm_at_seconds.is_none() && i.exited_at_seconds.is_some()
        })
        .map(|i| {
            format!(
                "pid {}: exit code {:?}, killed {}, SIGTERM {:?}",
                i.pid, i.exit_code, i.killed, i.sigterm_at_seconds
            )
        })
        .collect();
    Check::new(
        "clean_restarts",
        format!("{} incarnations", incarnations.len()),
        failures,
    )
}

/// Bad keys, broken starts and bad offers got the refusals they should.
pub fn probes(probes: &[ProbeRecord]) -> Check {
    let failures = probes
        .iter()
        .filter(|p| !p.expected)
        .map(|p| format!("{}: {}", p.kind, p.outcome))
        .collect();
    Check::new("refusals", format!("{} probes", probes.len()), failures)
}

#[cfg(test)]
mod tests {
    use super::super::tally::Transport;
    use super::*;

    fn job(id: i64, job_type: &str, status: &str, name: &str, duration: Option<f64>) -> Job {
        Job {
            id,
            job_type: job_type.into(),
            status: status.into(),
            name: name.into(),
            duration_seconds: duration,
            error_message: (status == "FAILED").then(|| "Unsupported audio format".into()),
        }
    }

    fn session(name: &str, job_id: Option<i64>, sent: f64) -> SessionRecord {
        let mut s = SessionRecord::new(Transport::Websocket, name.into(), "none", 0.0);
        s.job_id = job_id;
        s.audio_sent_seconds = sent;
        s
    }

    #[test]
    fn stream_jobs_need_one_completed_job_of_the_audio_sent() {
        let jobs = [
            job(1, "stream", "COMPLETED", "a", Some(60.4)),
            job(2, "stream", "COMPLETED", "b", Some(58.0)),
            job(3, "stream", "FAILED", "c", None),
            job(4, "stream", "COMPLETED", "d", Some(10.0)),
            job(5, "stream", "COMPLETED", "d", Some(10.0)),
        ];
        let sessions = [
            session("a", Some(1), 60.0),
            session("b", Some(2), 60.0),
            session("c", Some(3), 5.0),
            session("d", Some(4), 10.0),
            session("e", None, 3.0),
            session("quiet", Some(9), 0.0),
        ];
        let check = stream_jobs(&sessions, &jobs);
        assert!(!check.passed);
        let failures = check.failures.join("\n");
        assert_eq!(check.failures.len(), 4, "{failures}");
        assert!(failures.contains("b (none, ): job 2 holds 58.00 s, the client sent 60.00 s"));
        assert!(failures.contains("job 3 is stream FAILED"));
        assert!(failures.contains("d (none, ): 2 stream jobs carry its name"));
        assert!(failures.contains("e (none, ): sent audio but has no job id"));
        assert!(!failures.contains("a (") && !failures.contains("quiet"));
        assert!(stream_jobs(&sessions[..1], &jobs[..1]).passed);
    }

    #[test]
    fn batch_jobs_complete_fail_with_a_reason_or_are_refused() {
        let record = |name: &str, kind: &'static str, status: Option<u16>, job_id: Option<i64>| {
            BatchRecord {
                filename: name.into(),
                kind,
                status,
                job_id,
                detail: String::new(),
            }
        };
        let mut silent = job(13, "extraction", "FAILED", "s", None);
        silent.error_message = None;
        let jobs = [
            job(10, "extraction", "COMPLETED", "g", Some(12.0)),
            job(11, "extraction", "FAILED", "x", None),
            job(12, "extraction", "PROCESSING", "p", None),
            silent,
        ];
        let batches = [
            record("g", "good", Some(200), Some(10)),
            record("x", "corrupt_bytes", Some(200), Some(11)),
            record("e", "empty_file", Some(400), None),
            record("down", "good", None, None),
            record("stopping", "good", Some(503), None),
            record("p", "good", Some(200), Some(12)),
            record("s", "corrupt_bytes", Some(200), Some(13)),
            record("refused", "good", Some(400), None),
        ];
        let check = batch_jobs(&batches, &jobs);
        let failures = check.failures.join("\n");
        assert_eq!(check.failures.len(), 3, "{failures}");
        assert!(failures.contains("p (good): job 12 is PROCESSING"));
        assert!(failures.contains("s (corrupt_bytes): job 13 FAILED without a message"));
        assert!(failures.contains("refused (good): submit answered 400"));
        assert!(check.summary.starts_with("6 submissions judged"));
    }

    #[test]
    fn rss_compares_the_first_and_last_windows_across_incarnations() {
        let incarnation = |from: u32, to: u32, rss: f64| Incarnation {
            rss: (from..to).map(|t| (f64::from(t), rss)).collect(),
            ..Incarnation::default()
        };
        // 0–600 s at 400 MB, 610–1200 s at 430 MB: +7.5 %.
        let flat = [incarnation(0, 600, 400.0), incarnation(610, 1200, 430.0)];
        let (first, last) = rss_windows(&flat, 1199.0).unwrap();
        assert_eq!((first, last), (400.0, 430.0));
        assert!(rss_flat(&flat, 1199.0).passed);
        let grown = [incarnation(0, 600, 400.0), incarnation(610, 1200, 460.0)];
        assert!(!rss_flat(&grown, 1199.0).passed);
        // Samples after the run's end (the drain) do not count.
        assert!(rss_flat(&grown, 600.0).passed);
        assert!(!rss_flat(&[], 10.0).passed);
    }

    #[test]
    fn panics_and_stuck_jobs_are_found() {
        assert!(no_panics("INFO started\nINFO stream ended\n").passed);
        let log = "INFO x\nthread 'tokio-runtime-worker' panicked at src/live.rs:1:1:\n";
        assert_eq!(no_panics(log).failures.len(), 1);
        let jobs = [
            job(1, "stream", "COMPLETED", "a", Some(1.0)),
            job(2, "extraction", "PENDING", "b", None),
        ];
        let check = nothing_stuck(&jobs);
        assert_eq!(check.failures, ["job 2 (extraction b) is PENDING"]);
    }

    #[test]
    fn job_views_are_read_from_the_api_json() {
        let view = serde_json::json!({
            "id": 7, "job_type": "stream", "status": "COMPLETED", "filename": "soak-1-ws-0-0",
            "duration_seconds": 59.9, "error_message": null,
            "result": {"duration_seconds": 60.0},
        });
        let job = Job::from_json(&view).unwrap();
        assert_eq!(job.name, "soak-1-ws-0-0");
        assert_eq!(job.duration_seconds, Some(60.0));
        assert_eq!(job.error_message, None);
        assert!(Job::from_json(&serde_json::json!({"id": "x"})).is_none());
    }
}
