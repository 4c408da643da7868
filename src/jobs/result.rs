//! What a COMPLETED job stores: the report of its run, with object keys in
//! place of local file names. Download links are added by whoever serves it,
//! since they expire.

use serde::{Deserialize, Serialize};

use crate::output::{Report, Segment, SpeakerStats};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobResult {
    pub num_speakers: usize,
    pub duration_seconds: f64,
    pub sample_rate: u32,
    pub channels: u16,
    pub total_speech_seconds: f64,
    pub overlap_seconds: f64,
    pub speakers: Vec<SpeakerResult>,
    pub segments: Vec<Segment>,
    /// Object key of the RTTM file.
    pub rttm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpeakerResult {
    pub id: usize,
    pub label: String,
    /// Object key of the speaker's track; `None` for diarization-only jobs.
    pub audio: Option<String>,
    pub stats: SpeakerStats,
}

impl JobResult {
    /// `key` maps a file name of the report's directory to its object key;
    /// tracks are left out unless `with_tracks`.
    pub fn from_report(report: Report, with_tracks: bool, key: impl Fn(&str) -> String) -> Self {
        let speakers = report
            .speakers
            .into_iter()
            .map(|speaker| SpeakerResult {
                id: speaker.id,
                label: speaker.label,
                audio: with_tracks.then(|| key(&speaker.track)),
                stats: speaker.stats,
            })
            .collect();
        Self {
            num_speakers: report.num_speakers,
            duration_seconds: report.duration_seconds,
            sample_rate: report.sample_rate,
            channels: report.channels,
            total_speech_seconds: report.total_speech_seconds,
            overlap_seconds: report.overlap_seconds,
            speakers,
            segments: report.segments,
            rttm: key(&report.rttm),
            timing: report.timing,
        }
    }
}
