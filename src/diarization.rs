//! The result of diarization: speaker turns on the input's timeline.

use serde::Serialize;

/// A global speaker, numbered from 0 in order of first appearance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SpeakerId(pub usize);

impl SpeakerId {
    /// The label used on the wire and in RTTM files, e.g. `SPEAKER_0`.
    pub fn label(self) -> String {
        format!("SPEAKER_{}", self.0)
    }
}

/// One stretch of speech by one speaker. Turns of different speakers may overlap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Turn {
    pub speaker: SpeakerId,
    pub start_seconds: f64,
    pub end_seconds: f64,
}

impl Turn {
    pub fn duration_seconds(&self) -> f64 {
        self.end_seconds - self.start_seconds
    }
}

/// Who spoke when in one recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diarization {
    /// Turns sorted by start time.
    pub turns: Vec<Turn>,
    /// Number of distinct speakers; every `SpeakerId` in `turns` is below it.
    pub num_speakers: usize,
    /// Length of the analysed audio.
    pub duration_seconds: f64,
}

impl Diarization {
    /// Turns of one speaker, in time order.
    pub fn turns_of(&self, speaker: SpeakerId) -> impl Iterator<Item = &Turn> {
        self.turns.iter().filter(move |t| t.speaker == speaker)
    }
}
