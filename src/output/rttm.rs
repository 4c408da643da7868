//! RTTM, the NIST format every diarization scorer reads: one `SPEAKER` line per turn.
//!
//! `SPEAKER <file_id> 1 <start> <duration> <NA> <NA> <label> <NA> <NA>`, times in seconds.

use std::fmt::Write as _;

use crate::diarization::{Diarization, SpeakerId, Turn};

/// A malformed line, numbered from 1.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RttmError {
    #[error("line {line}: expected 9 or 10 whitespace-separated fields, found {found}")]
    FieldCount { line: usize, found: usize },
    #[error("line {line}: only SPEAKER lines are supported, found {kind:?}")]
    UnsupportedType { line: usize, kind: String },
    #[error("line {line}: {field} {value:?} is not a number")]
    NotANumber {
        line: usize,
        field: &'static str,
        value: String,
    },
    #[error("line {line}: {field} {value} must be finite and non-negative")]
    OutOfRange {
        line: usize,
        field: &'static str,
        value: f64,
    },
}

/// The turns of one file id, in file order, with the labels as written.
#[derive(Debug, Clone, PartialEq)]
pub struct RttmFile {
    pub file_id: String,
    pub turns: Vec<RttmTurn>,
}

/// One `SPEAKER` line.
#[derive(Debug, Clone, PartialEq)]
pub struct RttmTurn {
    pub label: String,
    pub start_seconds: f64,
    pub duration_seconds: f64,
}

/// The RTTM file name for a file id.
pub fn file_name(file_id: &str) -> String {
    format!("{file_id}.rttm")
}

/// Formats every turn as one line, in the diarization's order, with millisecond precision.
///
/// Fields are whitespace-separated, so whitespace in `file_id` becomes `_`.
pub fn format_rttm(diarization: &Diarization, file_id: &str) -> String {
    let file_id: String = file_id
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    let mut text = String::new();
    for turn in &diarization.turns {
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "SPEAKER {file_id} 1 {:.3} {:.3} <NA> <NA> {} <NA> <NA>",
            turn.start_seconds,
            turn.duration_seconds(),
            turn.speaker.label(),
        );
    }
    text
}

/// Parses RTTM text into its files, in order of first appearance.
///
/// Blank lines and `;;` comments are skipped; any other line must be a `SPEAKER` line.
pub fn parse_rttm(text: &str) -> Result<Vec<RttmFile>, RttmError> {
    let mut files: Vec<RttmFile> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let fields: Vec<&str> = raw.split_whitespace().collect();
        if fields.is_empty() || fields[0].starts_with(";;") {
            continue;
        }
        if fields[0] != "SPEAKER" {
            return Err(RttmError::UnsupportedType {
                line,
                kind: fields[0].to_owned(),
            });
        }
        if !(9..=10).contains(&fields.len()) {
            return Err(RttmError::FieldCount {
                line,
                found: fields.len(),
            });
        }
        let turn = RttmTurn {
            label: fields[7].to_owned(),
            start_seconds: parse_seconds(line, "onset", fields[3])?,
            duration_seconds: parse_seconds(line, "duration", fields[4])?,
        };
        let file_id = fields[1];
        match files.iter_mut().find(|file| file.file_id == file_id) {
            Some(file) => file.turns.push(turn),
            None => files.push(RttmFile {
                file_id: file_id.to_owned(),
                turns: vec![turn],
            }),
        }
    }
    Ok(files)
}

fn parse_seconds(line: usize, field: &'static str, value: &str) -> Result<f64, RttmError> {
    let seconds: f64 = value.parse().map_err(|_| RttmError::NotANumber {
        line,
        field,
        value: value.to_owned(),
    })?;
    if seconds.is_finite() && seconds >= 0.0 {
        Ok(seconds)
    } else {
        Err(RttmError::OutOfRange {
            line,
            field,
            value: seconds,
        })
    }
}

impl RttmFile {
    /// Labels in `SpeakerId` order: order of first appearance in time, like the engine's ids.
    pub fn labels(&self) -> Vec<String> {
        self.numbered().0.into_iter().map(str::to_owned).collect()
    }

    /// The turns as a [`Diarization`] sorted by start, speakers numbered as in [`RttmFile::labels`].
    ///
    /// RTTM does not record the audio's length, so the duration is the last turn's end.
    pub fn to_diarization(&self) -> Diarization {
        let (labels, turns) = self.numbered();
        let duration_seconds = turns
            .iter()
            .map(|turn| turn.end_seconds)
            .fold(0.0, f64::max);
        Diarization {
            turns,
            num_speakers: labels.len(),
            duration_seconds,
        }
    }

    fn numbered(&self) -> (Vec<&str>, Vec<Turn>) {
        let mut by_start: Vec<&RttmTurn> = self.turns.iter().collect();
        by_start.sort_by(|a, b| a.start_seconds.total_cmp(&b.start_seconds));
        let mut labels: Vec<&str> = Vec::new();
        let mut turns = Vec::with_capacity(by_start.len());
        for turn in by_start {
            let id = match labels.iter().position(|label| *label == turn.label) {
                Some(id) => id,
                None => {
                    labels.push(&turn.label);
                    labels.len() - 1
                }
            };
            turns.push(Turn {
                speaker: SpeakerId(id),
                start_seconds: turn.start_seconds,
                end_seconds: turn.start_seconds + turn.duration_seconds,
            });
        }
        (labels, turns)
    }
}
