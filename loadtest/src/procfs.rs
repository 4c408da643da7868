//! Samples the server's CPU and memory from /proc once a second.
//!
//! CPU % is the change of utime + stime between two samples over the wall
//! time between them (so 200 % is both cores of this machine); RSS is
//! `VmRSS` from /proc/PID/status.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::clock::Epoch;
use crate::record::RunProgress;

const SAMPLE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProcSample {
    pub at_seconds: f64,
    /// `None` for the first and the closing sample, which measure no interval.
    pub cpu_percent: Option<f64>,
    pub rss_mb: f64,
    /// Audio sent by all streams when the sample was taken.
    pub audio_sent_seconds: f64,
}

/// All samples of one run, and when the process vanished if it did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ServerTrace {
    pub pid: u32,
    pub samples: Vec<ProcSample>,
    pub exited_at_seconds: Option<f64>,
}

impl ServerTrace {
    /// The first sample taken once `audio_seconds` of audio had been sent.
    pub fn at_audio(&self, audio_seconds: f64) -> Option<&ProcSample> {
        self.samples
            .iter()
            .find(|s| s.audio_sent_seconds >= audio_seconds)
    }
}

/// `utime + stime` in clock ticks from the text of /proc/PID/stat.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself, so count fields from the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11); // state is field 3; utime is 14
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in kB from the text of /proc/PID/status.
pub fn parse_rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Reading {
    cpu_ticks: u64,
    rss_kb: u64,
}

fn read(pid: u32) -> Option<Reading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Reading {
        cpu_ticks: parse_cpu_ticks(&stat)?,
        rss_kb: parse_rss_kb(&status)?,
    })
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// A running sampler; [`Sampler::finish`] stops it and hands over the trace.
pub struct Sampler {
    pid: u32,
    epoch: Epoch,
    progress: Arc<RunProgress>,
    trace: Arc<Mutex<ServerTrace>>,
    task: JoinHandle<()>,
}

impl Sampler {
    /// Fails at once if the process cannot be read, so a wrong
    /// `--server-pid` is caught before any stream starts.
    pub fn start(pid: u32, epoch: Epoch, progress: Arc<RunProgress>) -> anyhow::Result<Self> {
        read(pid).with_context(|| format!("cannot read /proc/{pid}: is --server-pid right?"))?;
        let trace = Arc::new(Mutex::new(ServerTrace {
            pid,
            ..ServerTrace::default()
        }));
        let task = tokio::spawn(sample(pid, epoch, progress.clone(), trace.clone()));
        Ok(Self {
            pid,
            epoch,
            progress,
            trace,
            task,
        })
    }

    /// The newest sample, for live progress lines.
    pub fn latest(&self) -> Option<ProcSample> {
        let trace = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
        trace.samples.last().copied()
    }

    /// Stops sampling after one closing reading, so the end RSS and a mark
    /// at the very end of the audio see the state after the last stream.
    pub fn finish(self) -> ServerTrace {
        self.task.abort();
        let mut trace = self
            .trace
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if trace.exited_at_seconds.is_none() {
            let at_seconds = self.epoch.seconds();
            match read(self.pid) {
                Some(reading) => trace.samples.push(ProcSample {
                    at_seconds,
                    cpu_percent: None,
                    rss_mb: reading.rss_kb as f64 / 1024.0,
                    audio_sent_seconds: self.progress.audio_seconds_sent(),
                }),
                None => trace.exited_at_seconds = Some(at_seconds),
            }
        }
        trace
    }
}

async fn sample(
    pid: u32,
    epoch: Epoch,
    progress: Arc<RunProgress>,
    trace: Arc<Mutex<ServerTrace>>,
) {
    let ticks_per_second = clock_ticks_per_second();
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<(f64, u64)> = None;
    loop {
        ticker.tick().await;
        let at_seconds = epoch.seconds();
        let reading = read(pid);
        let mut trace = trace.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(reading) = reading else {
            trace.exited_at_seconds = Some(at_seconds);
            return;
        };
        let cpu_percent = previous.map(|(t, ticks)| {
            let cpu_seconds = reading.cpu_ticks.saturating_sub(ticks) as f64 / ticks_per_second;
            100.0 * cpu_seconds / (at_seconds - t).max(1e-3)
        });
        previous = Some((at_seconds, reading.cpu_ticks));
        trace.samples.push(ProcSample {
            at_seconds,
            cpu_percent,
            rss_mb: reading.rss_kb as f64 / 1024.0,
            audio_sent_seconds: progress.audio_seconds_sent(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (who spoke (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    731 269 0 0 20 0 9 0 123456 1000000 5000 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(1000));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn rss_comes_from_vmrss() {
        let status = "Name:\twhospoke\nVmPeak:\t  900000 kB\nVmRSS:\t  412340 kB\nThreads:\t9\n";
        assert_eq!(parse_rss_kb(status), Some(412_340));
        assert_eq!(parse_rss_kb("Name:\tkthread\n"), None);
    }

    #[tokio::test]
    async fn samples_this_process() {
        let progress = Arc::new(RunProgress::default());
        let sampler = Sampler::start(std::process::id(), Epoch::now(), progress).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(sampler.latest().is_some());
        let trace = sampler.finish();
        assert!(
            trace.samples.len() >= 3,
            "two ticks and the closing reading"
        );
        assert!(trace.samples[0].cpu_percent.is_none());
        assert!(trace.samples[1].cpu_percent.is_some_and(|c| c >= 0.0));
        assert!(trace.samples.last().unwrap().cpu_percent.is_none());
        assert!(trace.samples.iter().all(|s| s.rss_mb > 0.0));
        assert!(trace.exited_at_seconds.is_none());
    }

    #[tokio::test]
    async fn a_missing_process_is_refused() {
        // PIDs are below 2^22 on Linux.
        let result = Sampler::start(u32::MAX, Epoch::now(), Arc::default());
        assert!(result.is_err());
    }
}
