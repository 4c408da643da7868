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

    /// The same timeline with at most one speaker at a time, as speech
    /// recognition alignment wants. Where turns overlap, the speaker who
    /// started last has the floor: at a hand-over the newcomer takes over as
    /// soon as they start, a backchannel keeps its few words, and the turn it
    /// interrupted resumes after it. Speakers keep their numbers.
    pub fn exclusive(&self) -> Diarization {
        let mut edges: Vec<f64> = self
            .turns
            .iter()
            .flat_map(|t| [t.start_seconds, t.end_seconds])
            .collect();
        edges.sort_by(f64::total_cmp);
        edges.dedup();
        let mut turns: Vec<Turn> = Vec::new();
        for span in edges.windows(2) {
            let (from, to) = (span[0], span[1]);
            let floor = self
                .turns
                .iter()
                .filter(|t| t.start_seconds <= from && to <= t.end_seconds)
                .max_by(|a, b| {
                    a.start_seconds
                        .total_cmp(&b.start_seconds)
                        .then(b.speaker.cmp(&a.speaker))
                });
            let Some(floor) = floor else { continue };
            match turns.last_mut() {
                Some(last) if last.speaker == floor.speaker && last.end_seconds == from => {
                    last.end_seconds = to;
                }
                _ => turns.push(Turn {
                    speaker: floor.speaker,
                    start_seconds: from,
                    end_seconds: to,
                }),
            }
        }
        Diarization {
            turns,
            num_speakers: self.num_speakers,
            duration_seconds: self.duration_seconds,
        }
    }
}

/// What a timeline may hold at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overlap {
    /// Several speakers at once where they talk at once (the default).
    #[default]
    Kept,
    /// At most one speaker at a time ([`Diarization::exclusive`]).
    Exclusive,
}

impl Overlap {
    /// `Exclusive` when a job asks for it, else `Kept`.
    pub fn chosen(exclusive: bool) -> Self {
        if exclusive {
            Self::Exclusive
        } else {
            Self::Kept
        }
    }

    pub fn apply(self, diarization: Diarization) -> Diarization {
        match self {
            Self::Kept => diarization,
            Self::Exclusive => diarization.exclusive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(speaker: usize, start_seconds: f64, end_seconds: f64) -> Turn {
        Turn {
            speaker: SpeakerId(speaker),
            start_seconds,
            end_seconds,
        }
    }

    #[test]
    fn the_latest_speaker_has_the_floor() {
        let d = Diarization {
            // 0 speaks, 1 backchannels inside, 2 takes over before 0 ends; then a pause.
            turns: vec![
                turn(0, 0.0, 10.0),
                turn(1, 3.0, 3.5),
                turn(2, 9.0, 12.0),
                turn(1, 13.0, 14.0),
            ],
            num_speakers: 3,
            duration_seconds: 15.0,
        };
        assert_eq!(
            d.exclusive().turns,
            vec![
                turn(0, 0.0, 3.0),
                turn(1, 3.0, 3.5),
                turn(0, 3.5, 9.0),
                turn(2, 9.0, 12.0),
                turn(1, 13.0, 14.0),
            ]
        );
        assert_eq!(d.exclusive().num_speakers, 3);
    }

    #[test]
    fn exclusive_without_overlap_changes_nothing() {
        let d = Diarization {
            turns: vec![turn(1, 0.5, 2.0), turn(0, 2.0, 3.0), turn(1, 4.0, 5.0)],
            num_speakers: 2,
            duration_seconds: 6.0,
        };
        assert_eq!(d.exclusive(), d);
        assert_eq!(Overlap::Kept.apply(d.clone()), d);
    }
}
