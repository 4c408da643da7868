//! `result.json`: everything about one diarized input, in one document.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::OutputError;
use super::rttm;
use super::stats::{SpeakerStats, SpeechStats};
use super::tracks::{self, TrackFormat};
use crate::diarization::{Diarization, SpeakerId};

/// File name of the report inside the output directory.
pub const RESULT_FILE: &str = "result.json";

/// The content of `result.json`. File names are relative to the report's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub file_id: String,
    /// Length of the decoded original audio.
    pub duration_seconds: f64,
    /// Of the original audio, and so of every track.
    pub sample_rate: u32,
    pub channels: u16,
    pub num_speakers: usize,
    /// `speakers[i]` has id `i`.
    pub speakers: Vec<SpeakerReport>,
    /// Turns in time order.
    pub segments: Vec<Segment>,
    /// The RTTM file name.
    pub rttm: String,
    pub total_speech_seconds: f64,
    pub overlap_seconds: f64,
    /// Stage timings, whose shape the caller owns; absent from the JSON when `None`.
    /// [`super::write_all`] leaves it `None`: set it, then [`Report::write_json`] again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<serde_json::Value>,
}

/// One speaker: its names, its track and its statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerReport {
    pub id: usize,
    /// `SPEAKER_<id>`, as in the RTTM and in `segments`.
    pub label: String,
    /// Track file name, e.g. `speaker_0.wav`.
    pub track: String,
    #[serde(flatten)]
    pub stats: SpeakerStats,
}

/// One turn, times in seconds rounded to the millisecond.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Segment {
    pub speaker: String,
    pub start: f64,
    pub end: f64,
}

impl Report {
    /// A report without timing; `format` is the original audio's.
    pub fn new(
        file_id: &str,
        format: TrackFormat,
        diarization: &Diarization,
        stats: &SpeechStats,
    ) -> Self {
        let speakers = stats
            .speakers
            .iter()
            .enumerate()
            .map(|(id, stats)| SpeakerReport {
                id,
                label: SpeakerId(id).label(),
                track: tracks::file_name(SpeakerId(id)),
                stats: stats.clone(),
            })
            .collect();
        let segments = diarization
            .turns
            .iter()
            .map(|turn| Segment {
                speaker: turn.speaker.label(),
                start: round_to_ms(turn.start_seconds),
                end: round_to_ms(turn.end_seconds),
            })
            .collect();
        Self {
            file_id: file_id.to_owned(),
            duration_seconds: stats.duration_seconds,
            sample_rate: format.sample_rate,
            channels: format.channels,
            num_speakers: diarization.num_speakers,
            speakers,
            segments,
            rttm: rttm::file_name(file_id),
            total_speech_seconds: stats.total_speech_seconds,
            overlap_seconds: stats.overlap_seconds,
            timing: None,
        }
    }

    /// Writes the report as pretty JSON, replacing `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), OutputError> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| OutputError::Json {
            path: path.to_owned(),
            source,
        })?;
        fs::write(path, json).map_err(|source| OutputError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

fn round_to_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}
