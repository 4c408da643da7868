//! Downmix to mono and resample to the 16 kHz the analysis models expect.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};
use tracing::error;

use super::decode::{DecodeError, LimitExceeded};
use crate::engine::ANALYSIS_SAMPLE_RATE;

/// Input frames per FFT chunk, a hint: rubato rounds it to whole blocks of the rate pair
/// (fixed on both sides, so every chunk yields output).
const CHUNK_FRAMES: usize = 1_024;

/// Streaming downmix + resample to 16 kHz mono.
///
/// Output is aligned in time with the input (the resampler's delay is removed) and, after
/// [`finish`](Self::finish), holds exactly `round(input_frames * 16000 / input_rate)` samples.
pub struct AnalysisResampler {
    input_rate: u32,
    channels: usize,
    /// None at 16 kHz: the mono mix passes through untouched.
    fft: Option<Box<Fft<f32>>>,
    /// Mono frames waiting for a full chunk.
    pending: Vec<f32>,
    /// One chunk of resampler output.
    chunk_out: Vec<f32>,
    input_frames: u64,
    output_frames: u64,
    /// Leading output frames still to drop (the resampler's delay).
    delay_frames: usize,
}

impl AnalysisResampler {
    pub fn new(input_rate: u32, channels: u16) -> Result<Self, DecodeError> {
        if channels == 0 {
            return Err(LimitExceeded::Channels {
                channels: 0,
                max: u16::MAX,
            }
            .into());
        }
        let invalid_rate = || LimitExceeded::SampleRate {
            rate: input_rate,
            min: 1,
            max: u32::MAX,
        };
        let fft = if input_rate == ANALYSIS_SAMPLE_RATE {
            None
        } else {
            let rate = usize::try_from(input_rate).map_err(|_| invalid_rate())?;
            let fft = Fft::new(
                rate,
                ANALYSIS_SAMPLE_RATE as usize,
                CHUNK_FRAMES,
                1,
                FixedSync::Both,
            )
            .map_err(|_| invalid_rate())?;
            Some(Box::new(fft))
        };
        let mut resampler = Self {
            input_rate,
            channels: usize::from(channels),
            fft,
            pending: Vec::new(),
            chunk_out: Vec::new(),
            input_frames: 0,
            output_frames: 0,
            delay_frames: 0,
        };
        resampler.reset();
        Ok(resampler)
    }

    /// Downmixes interleaved input to mono (mean of channels) and resamples it to 16 kHz,
    /// appending to `out`. A trailing partial frame is ignored.
    pub fn push(&mut self, interleaved: &[f32], out: &mut Vec<f32>) {
        let frames = interleaved.chunks_exact(self.channels);
        self.input_frames += frames.len() as u64;
        let Some(fft) = &self.fft else {
            let before = out.len();
            downmix(frames, self.channels, out);
            self.output_frames += (out.len() - before) as u64;
            return;
        };
        let chunk = fft.input_frames_next();
        downmix(frames, self.channels, &mut self.pending);
        let mut start = 0;
        while self.pending.len() - start >= chunk {
            self.process(start, None, u64::MAX, out);
            start += chunk;
        }
        self.pending.drain(..start);
    }

    /// Flushes the tail so the total output is `round(input_frames * 16000 / input_rate)`,
    /// then makes the resampler ready for a new stream.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let expected = u64::try_from(
            (u128::from(self.input_frames) * u128::from(ANALYSIS_SAMPLE_RATE)
                + u128::from(self.input_rate / 2))
                / u128::from(self.input_rate),
        )
        .unwrap_or(u64::MAX);
        if self.fft.is_some() {
            let pending = self.pending.len();
            self.process(0, Some(pending), expected, out);
            self.pending.clear();
            // Zeros push the last real samples out past the resampler's delay.
            while self.output_frames < expected && self.process(0, Some(0), expected, out) > 0 {}
        }
        self.reset();
    }

    /// Resamples one chunk of `pending` from `offset` (`partial` frames of it, zero-padded,
    /// when given) and appends what follows the delay, up to `cap` frames in all. Returns
    /// the frames the resampler produced.
    fn process(
        &mut self,
        offset: usize,
        partial: Option<usize>,
        cap: u64,
        out: &mut Vec<f32>,
    ) -> usize {
        let Some(fft) = self.fft.as_mut() else {
            return 0;
        };
        let mut indexing = Indexing::new().input_offset(offset);
        if let Some(frames) = partial {
            indexing = indexing.partial_len(frames);
        }
        let processed =
            InterleavedSlice::new(&self.pending, 1, self.pending.len()).and_then(|input| {
                let frames = self.chunk_out.len();
                let mut output = InterleavedSlice::new_mut(&mut self.chunk_out, 1, frames)?;
                Ok(fft.process_into_buffer(&input, &mut output, Some(&indexing)))
            });
        let produced = match processed {
            Ok(Ok((_, produced))) => produced,
            // Buffer sizes are ours to get right; a failure here is a bug, not bad input.
            Ok(Err(failure)) => {
                error!(%failure, "resampler rejected a chunk");
                return 0;
            }
            Err(failure) => {
                error!(%failure, "resampler buffer has the wrong size");
                return 0;
            }
        };
        let chunk = self.chunk_out.get(..produced).unwrap_or_default();
        let skip = self.delay_frames.min(chunk.len());
        self.delay_frames -= skip;
        let room = usize::try_from(cap.saturating_sub(self.output_frames)).unwrap_or(usize::MAX);
        let kept = chunk.get(skip..).unwrap_or_default();
        let kept = kept.get(..room.min(kept.len())).unwrap_or_default();
        out.extend_from_slice(kept);
        self.output_frames += kept.len() as u64;
        produced
    }

    fn reset(&mut self) {
        self.pending.clear();
        self.input_frames = 0;
        self.output_frames = 0;
        if let Some(fft) = self.fft.as_mut() {
            fft.reset();
            self.delay_frames = fft.output_delay();
            self.chunk_out.resize(fft.output_frames_max(), 0.0);
        }
    }
}

/// Appends the mean of each frame's channels to `out`.
fn downmix<'a>(frames: impl Iterator<Item = &'a [f32]>, channels: usize, out: &mut Vec<f32>) {
    if channels == 1 {
        out.extend(frames.flatten());
    } else {
        let scale = 1.0 / channels as f32;
        out.extend(frames.map(|frame| frame.iter().sum::<f32>() * scale));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, frames: usize, channels: usize) -> Vec<f32> {
        (0..frames)
            .flat_map(|i| {
                let value = (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 0.5;
                std::iter::repeat_n(value, channels)
            })
            .collect()
    }

    fn resample_in_blocks(rate: u32, channels: u16, input: &[f32], block: usize) -> Vec<f32> {
        let mut resampler = AnalysisResampler::new(rate, channels).unwrap();
        let mut out = Vec::new();
        for piece in input.chunks(block * usize::from(channels)) {
            resampler.push(piece, &mut out);
        }
        resampler.finish(&mut out);
        out
    }

    #[test]
    fn analysis_rate_passes_through_bit_exactly() {
        let input = tone(16_000, 1_000, 1);
        assert_eq!(resample_in_blocks(16_000, 1, &input, 333), input);
    }

    #[test]
    fn output_length_is_rounded_ratio() {
        // 7919 Hz is prime, so rubato's FFT block is a whole second long.
        for (rate, frames) in [
            (7_919, 20_000),
            (44_100, 44_117),
            (48_000, 1),
            (8_000, 12_345),
            (22_050, 100_000),
        ] {
            let out = resample_in_blocks(rate, 2, &tone(rate, frames, 2), 1_000);
            let expected = (frames as f64 * 16_000.0 / f64::from(rate)).round() as usize;
            assert_eq!(out.len(), expected, "rate {rate}, frames {frames}");
        }
    }

    #[test]
    fn output_is_aligned_with_input() {
        let out = resample_in_blocks(48_000, 1, &tone(48_000, 48_000, 1), 4_800);
        let reference = tone(16_000, 16_000, 1);
        let error = out
            .iter()
            .zip(&reference)
            .skip(100)
            .take(15_800)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(error < 0.01, "max error {error}");
    }

    #[test]
    fn finish_makes_it_reusable() {
        let input = tone(44_100, 10_000, 1);
        let mut resampler = AnalysisResampler::new(44_100, 1).unwrap();
        let mut first = Vec::new();
        resampler.push(&input, &mut first);
        resampler.finish(&mut first);
        let mut second = Vec::new();
        resampler.push(&input, &mut second);
        resampler.finish(&mut second);
        assert_eq!(first, second);
    }
}
