//! Turns a run's records into the numbers people read: a summary (also
//! `summary.json`) and the tables printed on stdout.

use serde::Serialize;
use whospoke_protocol::ServerMessage;

use crate::delay::{final_delays, first_seen_delays};
use crate::procfs::ServerTrace;
use crate::record::{ErrorCounts, StreamRecord};
use crate::run::RunResult;
use crate::stats::{Distribution, mean_and_max};

/// Run settings worth repeating in the report.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RunSettings {
    pub pace: f64,
    pub latency_ms: u64,
    pub frame_ms: u32,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct EventCounts {
    pub provisional: u64,
    pub finals: u64,
    pub relabels: u64,
    pub usage: u64,
    pub overloaded: u64,
    /// Types this tool does not know.
    pub other: u64,
}

impl EventCounts {
    fn of(record: &StreamRecord) -> Self {
        let mut counts = Self {
            overloaded: record.overloaded,
            ..Self::default()
        };
        for event in &record.events {
            match event.message {
                ServerMessage::Speaker { is_final: true, .. } => counts.finals += 1,
                ServerMessage::Speaker { .. } => counts.provisional += 1,
                ServerMessage::Relabel { .. } => counts.relabels += 1,
                ServerMessage::Usage { .. } => counts.usage += 1,
                ServerMessage::Unknown => counts.other += 1,
                _ => {}
            }
        }
        counts
    }

    fn add(&mut self, other: &Self) {
        self.provisional += other.provisional;
        self.finals += other.finals;
        self.relabels += other.relabels;
        self.usage += other.usage;
        self.overloaded += other.overloaded;
        self.other += other.other;
    }
}

#[derive(Debug, Serialize)]
pub struct StreamSummary {
    pub index: usize,
    pub name: String,
    pub audio_seconds: f64,
    pub audio_sent_seconds: f64,
    /// Connect to `ready`, in milliseconds.
    pub ready_ms: Option<f64>,
    /// Worst lateness of a frame against the pace schedule.
    pub max_send_lag_seconds: f64,
    /// Last audio sent → `completed`: how far the stream's end lagged the audio.
    pub completion_lag_seconds: Option<f64>,
    /// Audio seconds per wall second from connect to `completed`.
    pub realtime_factor: Option<f64>,
    pub events: EventCounts,
    pub final_delay: Option<Distribution>,
    pub first_seen_delay: Option<Distribution>,
    pub errors: ErrorCounts,
    pub error_notes: Vec<String>,
    pub close_code: Option<u16>,
}

#[derive(Debug, Serialize)]
pub struct ServerSummary {
    pub pid: u32,
    pub samples: usize,
    pub cpu_mean_percent: Option<f64>,
    pub cpu_max_percent: Option<f64>,
    pub rss_start_mb: Option<f64>,
    pub rss_max_mb: Option<f64>,
    pub rss_end_mb: Option<f64>,
    /// When the server process disappeared, if it did.
    pub exited_at_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct MarkReading {
    pub audio_seconds: f64,
    pub at_seconds: f64,
    pub rss_mb: f64,
}

#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub streams: usize,
    pub settings: RunSettings,
    pub wall_seconds: f64,
    pub audio_seconds_sent: f64,
    pub completed_streams: usize,
    pub events: EventCounts,
    /// Receipt of a final − send of the audio at its end (paced runs only).
    pub final_delay: Option<Distribution>,
    /// Receipt of the first event covering a turn start − send of the audio
    /// at that start (paced runs only).
    pub first_seen_delay: Option<Distribution>,
    pub errors: ErrorCounts,
    pub lost_streams: usize,
    /// All errors, lost streams and a vanished server together.
    pub error_total: u64,
    pub server: Option<ServerSummary>,
    pub marks: Vec<MarkReading>,
    pub per_stream: Vec<StreamSummary>,
}

impl RunSummary {
    pub fn new(result: &RunResult, settings: RunSettings, marks: &[f64]) -> Self {
        // Delays mean something only when audio went out on a clock.
        let paced = settings.pace > 0.0;
        let mut finals = Vec::new();
        let mut first_seen = Vec::new();
        let mut events = EventCounts::default();
        let mut errors = ErrorCounts::default();
        let mut per_stream = Vec::with_capacity(result.records.len());
        for record in &result.records {
            let stream_finals = if paced {
                final_delays(&record.events, &record.sends)
            } else {
                Vec::new()
            };
            let stream_first = if paced {
                first_seen_delays(&record.events, &record.sends)
            } else {
                Vec::new()
            };
            let summary = stream_summary(record, &stream_finals, &stream_first);
            finals.extend(stream_finals);
            first_seen.extend(stream_first);
            events.add(&summary.events);
            errors.add(&record.errors);
            per_stream.push(summary);
        }
        let server = result.trace.as_ref().map(server_summary);
        let server_gone = server
            .as_ref()
            .is_some_and(|s| s.exited_at_seconds.is_some());
        let error_total = errors.total() + result.lost_streams as u64 + u64::from(server_gone);
        Self {
            streams: result.records.len() + result.lost_streams,
            settings,
            wall_seconds: result.wall_seconds,
            audio_seconds_sent: per_stream.iter().map(|s| s.audio_sent_seconds).sum(),
            completed_streams: result
                .records
                .iter()
                .filter(|r| r.completed_at_seconds.is_some())
                .count(),
            events,
            final_delay: Distribution::of(&finals),
            first_seen_delay: Distribution::of(&first_seen),
            errors,
            lost_streams: result.lost_streams,
            error_total,
            server,
            marks: result
                .trace
                .as_ref()
                .map_or_else(Vec::new, |t| mark_readings(t, marks)),
            per_stream,
        }
    }

    /// The ramp's test: p95 final delay within latency + slack, no error,
    /// no overload. A step without finals cannot pass.
    pub fn keeps_up(&self, slack_seconds: f64) -> bool {
        let limit = self.settings.latency_ms as f64 / 1000.0 + slack_seconds;
        self.error_total == 0
            && self.events.overloaded == 0
            && self.final_delay.is_some_and(|d| d.p95_seconds <= limit)
    }
}

fn stream_summary(record: &StreamRecord, finals: &[f64], first_seen: &[f64]) -> StreamSummary {
    let realtime_factor = record.completed_at_seconds.and_then(|done| {
        let wall = done - record.connect_at_seconds;
        (wall > 0.0).then(|| record.sends.audio_seconds() / wall)
    });
    StreamSummary {
        index: record.index,
        name: record.name.clone(),
        audio_seconds: record.audio_seconds,
        audio_sent_seconds: record.sends.audio_seconds(),
        ready_ms: record
            .ready_at_seconds
            .map(|r| (r - record.connect_at_seconds) * 1000.0),
        max_send_lag_seconds: record.max_send_lag_seconds,
        completion_lag_seconds: record.completion_lag_seconds(),
        realtime_factor,
        events: EventCounts::of(record),
        final_delay: Distribution::of(finals),
        first_seen_delay: Distribution::of(first_seen),
        errors: record.errors,
        error_notes: record.error_notes.clone(),
        close_code: record.close_code,
    }
}

fn server_summary(trace: &ServerTrace) -> ServerSummary {
    let cpu: Vec<f64> = trace.samples.iter().filter_map(|s| s.cpu_percent).collect();
    let cpu = mean_and_max(&cpu);
    let rss: Vec<f64> = trace.samples.iter().map(|s| s.rss_mb).collect();
    ServerSummary {
        pid: trace.pid,
        samples: trace.samples.len(),
        cpu_mean_percent: cpu.map(|c| c.0),
        cpu_max_percent: cpu.map(|c| c.1),
        rss_start_mb: rss.first().copied(),
        rss_max_mb: mean_and_max(&rss).map(|r| r.1),
        rss_end_mb: rss.last().copied(),
        exited_at_seconds: trace.exited_at_seconds,
    }
}

fn mark_readings(trace: &ServerTrace, marks: &[f64]) -> Vec<MarkReading> {
    marks
        .iter()
        .filter_map(|&mark| {
            let sample = trace.at_audio(mark)?;
            Some(MarkReading {
                audio_seconds: mark,
                at_seconds: sample.at_seconds,
                rss_mb: sample.rss_mb,
            })
        })
        .collect()
}

fn seconds(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.2}"))
}

fn distribution_line(label: &str, d: Option<Distribution>) -> String {
    match d {
        Some(d) => format!(
            "{label:<22} n={:<6} p50 {:>6.2} s   p95 {:>6.2} s   max {:>6.2} s",
            d.count, d.p50_seconds, d.p95_seconds, d.max_seconds
        ),
        None => format!("{label:<22} -"),
    }
}

pub fn print_run(summary: &RunSummary) {
    let s = &summary.settings;
    println!(
        "== {} streams, pace {}, latency {} ms, {} ms frames: wall {:.1} s, audio sent {:.1} s, completed {}/{}",
        summary.streams,
        s.pace,
        s.latency_ms,
        s.frame_ms,
        summary.wall_seconds,
        summary.audio_seconds_sent,
        summary.completed_streams,
        summary.streams
    );
    let e = &summary.events;
    println!(
        "events: {} provisional, {} final, {} relabel, {} usage, {} overloaded, {} other",
        e.provisional, e.finals, e.relabels, e.usage, e.overloaded, e.other
    );
    if s.pace > 0.0 {
        println!(
            "{}",
            distribution_line("final-event delay", summary.final_delay)
        );
        println!(
            "{}",
            distribution_line("first-seen delay", summary.first_seen_delay)
        );
    } else {
        println!("delays: not measured at pace 0 (audio is not sent on a clock)");
    }
    let x = &summary.errors;
    let server_gone = summary
        .server
        .as_ref()
        .is_some_and(|s| s.exited_at_seconds.is_some());
    println!(
        "errors: {} (connect {}, error messages {}, malformed {}, unexpected closes {}, missing completed {}, send failures {}, lost streams {}, server exited {})",
        summary.error_total,
        x.connect_failures,
        x.error_messages,
        x.malformed_messages,
        x.unexpected_closes,
        x.missing_completed,
        x.send_failures,
        summary.lost_streams,
        u64::from(server_gone)
    );
    if let Some(server) = &summary.server {
        println!(
            "server pid {}: CPU mean {} % max {} %; RSS start {} MB, max {} MB, end {} MB ({} samples){}",
            server.pid,
            one_decimal(server.cpu_mean_percent),
            one_decimal(server.cpu_max_percent),
            one_decimal(server.rss_start_mb),
            one_decimal(server.rss_max_mb),
            one_decimal(server.rss_end_mb),
            server.samples,
            server
                .exited_at_seconds
                .map_or(String::new(), |t| format!("; EXITED at {t:.1} s"))
        );
    }
    println!(
        "{:>3}  {:<24} {:>8} {:>8} {:>8} {:>9} {:>7} {:>6} {:>6} {:>9} {:>6}",
        "#",
        "file",
        "audio_s",
        "ready_ms",
        "send_lag",
        "compl_lag",
        "rtfx",
        "prov",
        "final",
        "p95_final",
        "errors"
    );
    for st in &summary.per_stream {
        println!(
            "{:>3}  {:<24} {:>8.1} {:>8} {:>8.2} {:>9} {:>7} {:>6} {:>6} {:>9} {:>6}",
            st.index,
            truncate(&st.name, 24),
            st.audio_sent_seconds,
            st.ready_ms.map_or("-".into(), |r| format!("{r:.0}")),
            st.max_send_lag_seconds,
            seconds(st.completion_lag_seconds),
            st.realtime_factor
                .map_or("-".into(), |r| format!("{r:.1}x")),
            st.events.provisional,
            st.events.finals,
            seconds(st.final_delay.map(|d| d.p95_seconds)),
            st.errors.total()
        );
    }
    for st in summary
        .per_stream
        .iter()
        .filter(|st| !st.error_notes.is_empty())
    {
        for note in &st.error_notes {
            println!("  stream {} ({}): {note}", st.index, st.name);
        }
    }
}

pub fn print_marks(summary: &RunSummary) {
    println!("{:>12} {:>10} {:>10}", "audio_s", "wall_s", "rss_mb");
    for m in &summary.marks {
        println!(
            "{:>12.0} {:>10.1} {:>10.1}",
            m.audio_seconds, m.at_seconds, m.rss_mb
        );
    }
    if let Some(server) = &summary.server {
        println!(
            "RSS start {} MB, max {} MB, end {} MB",
            one_decimal(server.rss_start_mb),
            one_decimal(server.rss_max_mb),
            one_decimal(server.rss_end_mb)
        );
    }
}

/// One line of the ramp table.
#[derive(Debug, Serialize)]
pub struct RampStep {
    pub streams: usize,
    pub keeps_up: bool,
    pub final_delay: Option<Distribution>,
    pub first_seen_delay: Option<Distribution>,
    pub error_total: u64,
    pub overloaded: u64,
    pub cpu_mean_percent: Option<f64>,
    pub rss_max_mb: Option<f64>,
    pub max_completion_lag_seconds: Option<f64>,
}

impl RampStep {
    pub fn new(summary: &RunSummary, slack_seconds: f64) -> Self {
        let server = summary.server.as_ref();
        Self {
            streams: summary.streams,
            keeps_up: summary.keeps_up(slack_seconds),
            final_delay: summary.final_delay,
            first_seen_delay: summary.first_seen_delay,
            error_total: summary.error_total,
            overloaded: summary.events.overloaded,
            cpu_mean_percent: server.and_then(|s| s.cpu_mean_percent),
            rss_max_mb: server.and_then(|s| s.rss_max_mb),
            max_completion_lag_seconds: summary
                .per_stream
                .iter()
                .filter_map(|s| s.completion_lag_seconds)
                .reduce(f64::max),
        }
    }
}

/// The largest N that kept up, if any did.
pub fn largest_passing(steps: &[RampStep]) -> Option<usize> {
    steps.iter().filter(|s| s.keeps_up).map(|s| s.streams).max()
}

pub fn print_ramp(steps: &[RampStep], limit_seconds: f64) {
    println!(
        "{:>7} {:>9} {:>9} {:>9} {:>10} {:>6} {:>6} {:>8} {:>8} {:>9}  keeps up",
        "streams",
        "final_p50",
        "final_p95",
        "final_max",
        "first_p95",
        "errors",
        "overld",
        "cpu_%",
        "rss_mb",
        "compl_lag"
    );
    for s in steps {
        println!(
            "{:>7} {:>9} {:>9} {:>9} {:>10} {:>6} {:>6} {:>8} {:>8} {:>9}  {}",
            s.streams,
            seconds(s.final_delay.map(|d| d.p50_seconds)),
            seconds(s.final_delay.map(|d| d.p95_seconds)),
            seconds(s.final_delay.map(|d| d.max_seconds)),
            seconds(s.first_seen_delay.map(|d| d.p95_seconds)),
            s.error_total,
            s.overloaded,
            s.cpu_mean_percent.map_or("-".into(), |c| format!("{c:.0}")),
            s.rss_max_mb.map_or("-".into(), |r| format!("{r:.0}")),
            seconds(s.max_completion_lag_seconds),
            if s.keeps_up { "yes" } else { "NO" }
        );
    }
    match largest_passing(steps) {
        Some(n) => println!(
            "largest N that keeps up: {n} (p95 final delay <= {limit_seconds:.2} s, no errors, no overload)"
        ),
        None => println!(
            "no step kept up (p95 final delay <= {limit_seconds:.2} s, no errors, no overload)"
        ),
    }
}

fn one_decimal(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.1}"))
}

fn truncate(text: &str, width: usize) -> String {
    text.chars().take(width).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(streams: usize, keeps_up: bool) -> RampStep {
        RampStep {
            streams,
            keeps_up,
            final_delay: None,
            first_seen_delay: None,
            error_total: 0,
            overloaded: 0,
            cpu_mean_percent: None,
            rss_max_mb: None,
            max_completion_lag_seconds: None,
        }
    }

    #[test]
    fn largest_passing_ignores_failed_steps() {
        let steps = [
            step(8, true),
            step(12, true),
            step(16, false),
            step(20, true),
        ];
        assert_eq!(largest_passing(&steps), Some(20));
        assert_eq!(largest_passing(&[step(8, false)]), None);
    }
}
