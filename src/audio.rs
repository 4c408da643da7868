//! Audio input: decode any common file, then downmix and resample it for analysis.
//!
//! ```text
//! file ──▶ AudioReader (original rate, interleaved f32) ──▶ AnalysisResampler ──▶ 16 kHz mono
//!            ├─ Symphonia demux + decode (libopus for Opus)
//!            └─ ffmpeg subprocess for everything else
//! ```

pub mod decode;
pub mod resample;

mod ffmpeg;
mod native;
mod opus;

use std::path::Path;

pub use decode::{AudioInfo, AudioReader, DecodeError, DecodeLimits, LimitExceeded, SampleFormat};
pub use resample::AnalysisResampler;

/// Decodes a whole file to 16 kHz mono (convenience for tests and short files).
pub fn read_analysis_audio(path: &Path) -> Result<(AudioInfo, Vec<f32>), DecodeError> {
    let mut reader = AudioReader::open(path)?;
    let info = reader.info().clone();
    let mut resampler = AnalysisResampler::new(info.sample_rate, info.channels)?;
    let mut samples = Vec::new();
    while let Some(block) = reader.next_block()? {
        resampler.push(block, &mut samples);
    }
    resampler.finish(&mut samples);
    Ok((info, samples))
}

/// Blocks decoded to check that a file with a stated duration really holds audio.
const PROBE_BLOCKS: usize = 8;

/// Checks that `path` decodes and returns its duration in seconds: from the
/// container when it states one (after decoding a few blocks), else by decoding
/// the whole file, within the default limits.
pub fn probe_duration(path: &Path) -> Result<f64, DecodeError> {
    let mut reader = AudioReader::open(path)?;
    let info = reader.info().clone();
    let stated = info.duration_seconds();
    let mut samples = 0u64;
    let mut blocks = 0;
    while let Some(block) = reader.next_block()? {
        samples += block.len() as u64;
        blocks += 1;
        if stated.is_some() && blocks == PROBE_BLOCKS {
            break;
        }
    }
    if samples == 0 {
        return Err(DecodeError::Empty {
            path: path.to_owned(),
        });
    }
    let decoded = samples as f64 / f64::from(info.channels) / f64::from(info.sample_rate);
    Ok(stated.map_or(decoded, |stated| stated.max(decoded)))
}
