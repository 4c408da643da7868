//! The `--out` directory of a run:
//!
//! ```text
//! summary.json
//! rttm/<stem>.rttm                   one per file played whole (for der.py)
//! streams/<NNN>-<stem>/events.jsonl   every server message with its receipt times
//! streams/<NNN>-<stem>/stream.json    the stream's timings, errors and send log
//! streams/<NNN>-<stem>/<stem>.rttm    the RTTM from `completed`
//! ```
//!
//! Every stream of a file played whole produces an RTTM, but `rttm/` keeps
//! only the first per file: der.py would merge two RTTMs of the same file.

use std::collections::HashSet;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, ensure};
use serde::Serialize;
use serde_json::json;

use crate::clock::Epoch;
use crate::record::StreamRecord;
use crate::report::{RunSettings, RunSummary};
use crate::run::RunResult;

/// Refuses a non-empty directory, before the run, so results of two runs
/// never mix.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let mut entries =
            fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        ensure!(
            entries.next().is_none(),
            "{} is not empty: give --out a new directory",
            dir.display()
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

pub fn write_run(dir: &Path, summary: &RunSummary, result: &RunResult) -> anyhow::Result<()> {
    let settings = summary.settings;
    fs::create_dir_all(dir.join("rttm"))?;
    write_json(&dir.join("summary.json"), summary)?;
    let mut scored = HashSet::new();
    for record in &result.records {
        let stream_dir = dir
            .join("streams")
            .join(format!("{:03}-{}", record.index, record.name));
        fs::create_dir_all(&stream_dir)
            .with_context(|| format!("creating {}", stream_dir.display()))?;
        write_events(&stream_dir.join("events.jsonl"), record, result.epoch)?;
        write_json(
            &stream_dir.join("stream.json"),
            &stream_meta(record, settings),
        )?;
        if let Some(rttm) = &record.rttm {
            let file = format!("{}.rttm", record.name);
            fs::write(stream_dir.join(&file), rttm)?;
            if record.whole_file && scored.insert(record.name.clone()) {
                fs::write(dir.join("rttm").join(&file), rttm)?;
            }
        }
    }
    Ok(())
}

fn write_events(path: &Path, record: &StreamRecord, epoch: Epoch) -> anyhow::Result<()> {
    let file = fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for event in &record.events {
        let line = json!({
            "recv_s": event.at_seconds,
            "recv_unix": epoch.unix_seconds(event.at_seconds),
            "audio_sent_s": event.audio_sent_seconds,
            "event": event.raw,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

/// What `scripts/live_eval.py` needs besides the events: the pace and when
/// each frame's audio left (as `[audio_end_s, sent_s]` pairs).
fn stream_meta(record: &StreamRecord, settings: RunSettings) -> serde_json::Value {
    let sends: Vec<[f64; 2]> = record
        .sends
        .frames()
        .iter()
        .map(|f| [f.audio_end_seconds, f.sent_at_seconds])
        .collect();
    json!({
        "index": record.index,
        "name": record.name,
        "whole_file": record.whole_file,
        "audio_seconds": record.audio_seconds,
        "pace": settings.pace,
        "frame_ms": settings.frame_ms,
        "latency_ms": settings.latency_ms,
        "connect_s": record.connect_at_seconds,
        "ready_s": record.ready_at_seconds,
        "ready": record.ready,
        "end_sent_s": record.end_sent_at_seconds,
        "completed_s": record.completed_at_seconds,
        "close_code": record.close_code,
        "errors": record.errors,
        "error_notes": record.error_notes,
        "sends": sends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_refuses_a_used_directory() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("new/run");
        prepare(&fresh).unwrap();
        assert!(fresh.is_dir());
        prepare(&fresh).unwrap(); // still empty
        fs::write(fresh.join("summary.json"), "{}").unwrap();
        assert!(prepare(&fresh).is_err());
    }
}
