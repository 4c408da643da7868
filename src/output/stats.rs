//! Who spoke how much, how often over someone else, and how loud.
//!
//! Times come from the turns alone; levels come from the track pass ([`Levels`]).

use serde::{Deserialize, Serialize};

use super::OutputError;
use crate::diarization::Diarization;

/// Level reported for silence, so that JSON never holds `-inf`.
pub const DB_FLOOR: f64 = -120.0;

/// Running RMS and peak of one speaker's samples inside its turns, all channels.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Levels {
    sum_of_squares: f64,
    samples: u64,
    peak: f32,
}

impl Levels {
    pub fn add(&mut self, sample: f32) {
        self.sum_of_squares += f64::from(sample) * f64::from(sample);
        self.samples += 1;
        self.peak = self.peak.max(sample.abs());
    }

    /// RMS in dBFS, at least [`DB_FLOOR`].
    pub fn rms_db(&self) -> f64 {
        if self.samples == 0 {
            return DB_FLOOR;
        }
        to_db((self.sum_of_squares / self.samples as f64).sqrt())
    }

    /// Largest absolute sample, linear (1.0 is full scale).
    pub fn peak(&self) -> f64 {
        f64::from(self.peak)
    }

    /// [`Levels::peak`] in dBFS, at least [`DB_FLOOR`].
    pub fn peak_db(&self) -> f64 {
        to_db(self.peak())
    }
}

fn to_db(linear: f64) -> f64 {
    if linear > 0.0 {
        (20.0 * linear.log10()).max(DB_FLOOR)
    } else {
        DB_FLOOR
    }
}

/// Statistics of one speaker, serialised into its `result.json` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SpeakerStats {
    /// Length of the union of its turns.
    pub speaking_seconds: f64,
    /// `speaking_seconds` over the total speech of everyone, in 0..=1. Shares sum to 1 or more
    /// because overlapped speech counts for every speaker in it.
    pub share_of_speech: f64,
    /// Number of turns.
    pub turns: usize,
    /// Time this speaker and at least one other are both active.
    pub overlapped_seconds: f64,
    pub rms_db: f64,
    pub peak: f64,
    pub peak_db: f64,
}

/// Statistics of one recording; `speakers[i]` is `SpeakerId(i)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechStats {
    pub speakers: Vec<SpeakerStats>,
    /// Length of the union of all turns.
    pub total_speech_seconds: f64,
    /// Time at least two speakers are active.
    pub overlap_seconds: f64,
    pub duration_seconds: f64,
}

/// Combines the turns with the levels measured by the track pass (`levels[i]` is `SpeakerId(i)`;
/// a missing entry counts as silence).
pub fn summarize(
    diarization: &Diarization,
    levels: &[Levels],
    duration_seconds: f64,
) -> Result<SpeechStats, OutputError> {
    super::check_turns(diarization)?;
    let num_speakers = diarization.num_speakers;

    // Sweep turn edges in time order, tracking how many turns of each speaker are open.
    let mut edges: Vec<(f64, usize, bool)> = diarization
        .turns
        .iter()
        .flat_map(|turn| {
            [
                (turn.start_seconds, turn.speaker.0, true),
                (turn.end_seconds, turn.speaker.0, false),
            ]
        })
        .collect();
    // Stable: a zero-length turn keeps its start before its end, so counts never underflow.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut open = vec![0usize; num_speakers];
    let mut speaking = vec![0.0; num_speakers];
    let mut overlapped = vec![0.0; num_speakers];
    let mut total_speech_seconds = 0.0;
    let mut overlap_seconds = 0.0;
    let mut previous_seconds = edges.first().map_or(0.0, |edge| edge.0);
    for (seconds, speaker, opens) in edges {
        let span = seconds - previous_seconds;
        let active = open.iter().filter(|&&count| count > 0).count();
        if span > 0.0 && active > 0 {
            total_speech_seconds += span;
            if active > 1 {
                overlap_seconds += span;
            }
            for (id, _) in open.iter().enumerate().filter(|(_, count)| **count > 0) {
                speaking[id] += span;
                if active > 1 {
                    overlapped[id] += span;
                }
            }
        }
        if opens {
            open[speaker] += 1;
        } else {
            open[speaker] -= 1;
        }
        previous_seconds = seconds;
    }

    let speakers = (0..num_speakers)
        .map(|id| {
            let levels = levels.get(id).copied().unwrap_or_default();
            SpeakerStats {
                speaking_seconds: speaking[id],
                share_of_speech: if total_speech_seconds > 0.0 {
                    speaking[id] / total_speech_seconds
                } else {
                    0.0
                },
                turns: diarization
                    .turns
                    .iter()
                    .filter(|turn| turn.speaker.0 == id)
                    .count(),
                overlapped_seconds: overlapped[id],
                rms_db: levels.rms_db(),
                peak: levels.peak(),
                peak_db: levels.peak_db(),
            }
        })
        .collect();
    Ok(SpeechStats {
        speakers,
        total_speech_seconds,
        overlap_seconds,
        duration_seconds,
    })
}
