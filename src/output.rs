//! What a diarization leaves on disk: an RTTM file, one track per speaker, and `result.json`.
//!
//! ```text
//! Diarization ─────────────────────────────────────▶ rttm ──▶ <file_id>.rttm
//!      │
//!      ├─▶ gain ─▶ tracks (second pass over the ORIGINAL audio) ──▶ speaker_N.wav
//!      │                │ levels (rms, peak)
//!      └────────────────▶ stats ──▶ report ──▶ result.json
//! ```
//!
//! Nothing here knows where the audio comes from: [`tracks::write_tracks`] reads any
//! [`tracks::BlockSource`], so files and spooled live streams share one writer.

pub mod gain;
pub mod report;
pub mod rttm;
pub mod stats;
pub mod tracks;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::audio::{AudioReader, DecodeError};
use crate::diarization::{Diarization, SpeakerId};

pub use gain::FADE_SECONDS;
pub use report::{RESULT_FILE, Report, Segment, SpeakerReport};
pub use rttm::{RttmError, RttmFile, RttmTurn, format_rttm, parse_rttm};
pub use stats::{DB_FLOOR, Levels, SpeakerStats, SpeechStats};
pub use tracks::{BlockSource, TrackFormat, WrittenTracks, write_tracks, write_tracks_from_reader};

/// Everything that can go wrong while writing the outputs of one input.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("decoding the original audio: {0}")]
    Decode(#[from] DecodeError),
    #[error("{path}: {source}")]
    Wav { path: PathBuf, source: hound::Error },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("file id {file_id:?} must be a non-empty file name without path separators")]
    InvalidFileId { file_id: String },
    #[error("turn {index} belongs to {speaker:?}, but the diarization has {num_speakers} speakers")]
    UnknownSpeaker {
        index: usize,
        speaker: SpeakerId,
        num_speakers: usize,
    },
    #[error("turn {index} spans {start_seconds} s to {end_seconds} s")]
    InvalidTurn {
        index: usize,
        start_seconds: f64,
        end_seconds: f64,
    },
    #[error("audio has {channels} channels at {sample_rate} Hz; both must be non-zero")]
    InvalidFormat { sample_rate: u32, channels: u16 },
    #[error("a block of {samples} samples does not hold whole frames of {channels} channels")]
    PartialFrame { samples: usize, channels: u16 },
    #[error("tracks in {dir}: a WAV file holds at most {max_frames} frames in this format")]
    TrackTooLong { dir: PathBuf, max_frames: u64 },
}

/// Writes `DIR/<file_id>.rttm`, `DIR/speaker_N.wav` and `DIR/result.json` for one input.
///
/// `reader` must be freshly opened on the original input: the tracks are cut from it
/// at its own rate, channel count and sample format. `DIR` is created if missing.
#[tracing::instrument(skip_all, fields(file_id = %file_id))]
pub fn write_all(
    reader: AudioReader,
    diarization: &Diarization,
    file_id: &str,
    dir: &Path,
) -> Result<Report, OutputError> {
    check_file_id(file_id)?;
    check_turns(diarization)?;
    fs::create_dir_all(dir).map_err(|source| OutputError::Io {
        path: dir.to_owned(),
        source,
    })?;

    write_rttm(diarization, file_id, dir)?;
    let format = TrackFormat::from(reader.info());
    let tracks = write_tracks_from_reader(reader, diarization, dir)?;
    let duration_seconds = tracks.frames as f64 / f64::from(format.sample_rate);
    let stats = stats::summarize(diarization, &tracks.levels, duration_seconds)?;

    let report = Report::new(file_id, format, diarization, &stats);
    report.write_json(&dir.join(RESULT_FILE))?;
    tracing::info!(
        speakers = report.num_speakers,
        duration_seconds,
        "outputs written"
    );
    Ok(report)
}

/// Writes `DIR/<file_id>.rttm` and returns its path.
pub fn write_rttm(
    diarization: &Diarization,
    file_id: &str,
    dir: &Path,
) -> Result<PathBuf, OutputError> {
    check_file_id(file_id)?;
    let path = dir.join(rttm::file_name(file_id));
    fs::write(&path, format_rttm(diarization, file_id)).map_err(|source| OutputError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// A file id names the RTTM file next to the tracks, so it must not leave `dir`.
fn check_file_id(file_id: &str) -> Result<(), OutputError> {
    let plain = !file_id.is_empty()
        && file_id != "."
        && file_id != ".."
        && !file_id
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    if plain {
        Ok(())
    } else {
        Err(OutputError::InvalidFileId {
            file_id: file_id.to_owned(),
        })
    }
}

/// Per-speaker outputs index by `SpeakerId`, so every turn must name a known speaker.
fn check_turns(diarization: &Diarization) -> Result<(), OutputError> {
    for (index, turn) in diarization.turns.iter().enumerate() {
        if turn.speaker.0 >= diarization.num_speakers {
            return Err(OutputError::UnknownSpeaker {
                index,
                speaker: turn.speaker,
                num_speakers: diarization.num_speakers,
            });
        }
        let finite = turn.start_seconds.is_finite() && turn.end_seconds.is_finite();
        if !finite || turn.end_seconds < turn.start_seconds {
            return Err(OutputError::InvalidTurn {
                index,
                start_seconds: turn.start_seconds,
                end_seconds: turn.end_seconds,
            });
        }
    }
    Ok(())
}
