//! One run: N streams at once, the server sampled beside them, a progress
//! line on stderr every few seconds.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::audio::{Clip, StreamAudio};
use crate::client::{StreamConfig, run_stream};
use crate::clock::Epoch;
use crate::procfs::{Sampler, ServerTrace};
use crate::record::{RunProgress, StreamRecord};

const PROGRESS_EVERY_SECONDS: f64 = 10.0;

/// What to run.
pub struct RunPlan {
    pub streams: Vec<StreamAudio>,
    pub config: StreamConfig,
    /// Stream starts are spread evenly over this many seconds.
    pub ramp_seconds: f64,
    pub server_pid: Option<u32>,
    /// Audio seconds at which to print the server's RSS as the run goes.
    pub marks: Vec<f64>,
}

pub struct RunResult {
    pub records: Vec<StreamRecord>,
    /// Stream tasks that died without a record (a bug in this tool).
    pub lost_streams: usize,
    pub trace: Option<ServerTrace>,
    pub wall_seconds: f64,
    pub epoch: Epoch,
}

/// Reads every file once; streams share the clips.
pub fn load_clips(paths: &[PathBuf]) -> anyhow::Result<Vec<Arc<Clip>>> {
    paths.iter().map(|p| Clip::load(p).map(Arc::new)).collect()
}

/// `count` streams, each playing one clip (round-robin), cut or looped to
/// `duration_seconds` when given.
pub fn round_robin(
    clips: &[Arc<Clip>],
    count: usize,
    duration_seconds: Option<f64>,
) -> anyhow::Result<Vec<StreamAudio>> {
    (0..count)
        .map(|i| StreamAudio::new(vec![clips[i % clips.len()].clone()], duration_seconds))
        .collect()
}

pub async fn execute(plan: RunPlan) -> anyhow::Result<RunResult> {
    let epoch = Epoch::now();
    let progress = Arc::new(RunProgress::default());
    let sampler = plan
        .server_pid
        .map(|pid| Sampler::start(pid, epoch, progress.clone()))
        .transpose()?;
    let config = Arc::new(plan.config);
    let count = plan.streams.len();
    let tasks: Vec<_> = plan
        .streams
        .into_iter()
        .enumerate()
        .map(|(i, audio)| {
            let start_at = plan.ramp_seconds * i as f64 / count as f64;
            let stream = run_stream(i, audio, config.clone(), epoch, start_at, progress.clone());
            tokio::spawn(stream)
        })
        .collect();

    let mut watcher = Watcher::new(count, plan.marks);
    let mut all = std::pin::pin!(futures_util::future::join_all(tasks));
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let joined = loop {
        tokio::select! {
            joined = &mut all => break joined,
            _ = ticker.tick() => watcher.tick(epoch, &progress, sampler.as_ref()),
        }
    };
    let wall_seconds = epoch.seconds();

    let mut records = Vec::with_capacity(count);
    let mut lost_streams = 0;
    for result in joined {
        match result.context("stream task failed") {
            Ok(record) => records.push(record),
            Err(e) => {
                eprintln!("warning: {e:#}");
                lost_streams += 1;
            }
        }
    }
    Ok(RunResult {
        records,
        lost_streams,
        trace: sampler.map(Sampler::finish),
        wall_seconds,
        epoch,
    })
}

/// Prints progress lines and RSS marks while the streams run.
struct Watcher {
    streams: usize,
    next_line_at: f64,
    marks: VecDeque<f64>,
}

impl Watcher {
    fn new(streams: usize, mut marks: Vec<f64>) -> Self {
        marks.sort_by(f64::total_cmp);
        Self {
            streams,
            next_line_at: PROGRESS_EVERY_SECONDS,
            marks: marks.into(),
        }
    }

    fn tick(&mut self, epoch: Epoch, progress: &RunProgress, sampler: Option<&Sampler>) {
        let now = epoch.seconds();
        let latest = sampler.and_then(Sampler::latest);
        // A mark is read from the first sample taken after the audio reached it.
        while let (Some(&mark), Some(sample)) = (self.marks.front(), latest) {
            if sample.audio_sent_seconds < mark {
                break;
            }
            eprintln!(
                "[{now:7.1} s] mark {mark:.0} s of audio: server RSS {:.1} MB",
                sample.rss_mb
            );
            self.marks.pop_front();
        }
        if now < self.next_line_at {
            return;
        }
        self.next_line_at += PROGRESS_EVERY_SECONDS;
        let server = latest.map_or(String::new(), |s| {
            let cpu = s.cpu_percent.map_or("-".into(), |c| format!("{c:.0}"));
            format!(", server CPU {cpu} % RSS {:.0} MB", s.rss_mb)
        });
        eprintln!(
            "[{now:7.1} s] streams done {}/{}, audio sent {:.0} s, events {}, errors {}{server}",
            progress.streams_done(),
            self.streams,
            progress.audio_seconds_sent(),
            progress.events(),
            progress.errors(),
        );
    }
}
