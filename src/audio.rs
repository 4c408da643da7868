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
pub use resample::{ANALYSIS_SAMPLE_RATE, AnalysisResampler};

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
