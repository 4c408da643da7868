//! Kaldi-style log-mel filterbank, the input of the CAM++ embedding model.
//!
//! This reproduces `torchaudio.compliance.kaldi.fbank(num_mel_bins=80, dither=0)`
//! followed by per-segment mean subtraction, as 3D-Speaker trains CAM++ (see
//! `models/README.md` for the recipe this follows step by step).

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{RealFftPlanner, RealToComplex};

/// Mel bins per frame.
pub const NUM_MEL_BINS: usize = 80;
/// 25 ms frames at 16 kHz.
pub const FRAME_LENGTH_SAMPLES: usize = 400;
/// 10 ms hop at 16 kHz.
pub const FRAME_SHIFT_SAMPLES: usize = 160;

const FFT_SIZE: usize = 512;
const PREEMPHASIS: f32 = 0.97;
const LOW_FREQ_HZ: f32 = 20.0;
const NYQUIST_HZ: f32 = 8000.0;
/// Kaldi floors energies at FLT_EPSILON before the log.
const LOG_FLOOR: f32 = f32::EPSILON;

/// Number of frames Kaldi's `snip_edges=true` framing gives for `num_samples`.
pub fn num_frames(num_samples: usize) -> usize {
    if num_samples < FRAME_LENGTH_SAMPLES {
        0
    } else {
        1 + (num_samples - FRAME_LENGTH_SAMPLES) / FRAME_SHIFT_SAMPLES
    }
}

/// One triangular mel filter: its weights over consecutive FFT bins from `first_bin`.
struct MelFilter {
    first_bin: usize,
    weights: Vec<f32>,
}

/// Computes features for one segment at a time; owns its FFT scratch space.
pub struct Fbank {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    filters: Vec<MelFilter>,
    frame: Vec<f32>,
    spectrum: Vec<Complex32>,
    scratch: Vec<Complex32>,
    power: Vec<f32>,
}

impl Default for Fbank {
    fn default() -> Self {
        Self::new()
    }
}

impl Fbank {
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(FFT_SIZE);
        let spectrum = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        Self {
            window: povey_window(),
            filters: mel_filters(),
            frame: vec![0.0; FFT_SIZE],
            power: vec![0.0; spectrum.len()],
            spectrum,
            scratch,
            fft,
        }
    }

    /// Mean-normalised log-mel features of `samples` (16 kHz, `int16 / 32768`
    /// scale), appended to `features` row-major as `[frames, 80]`.
    /// Returns the number of frames.
    pub fn compute(&mut self, samples: &[f32], features: &mut Vec<f32>) -> usize {
        let frames = num_frames(samples.len());
        let first = features.len();
        features.reserve(frames * NUM_MEL_BINS);
        for t in 0..frames {
            let start = t * FRAME_SHIFT_SAMPLES;
            self.frame_log_mel(&samples[start..start + FRAME_LENGTH_SAMPLES], features);
        }
        subtract_mean(&mut features[first..], frames);
        frames
    }

    fn frame_log_mel(&mut self, raw: &[f32], features: &mut Vec<f32>) {
        let mean = raw.iter().sum::<f32>() / raw.len() as f32;
        let frame = &mut self.frame;
        for (dst, &x) in frame.iter_mut().zip(raw) {
            *dst = x - mean;
        }
        for i in (1..FRAME_LENGTH_SAMPLES).rev() {
            frame[i] -= PREEMPHASIS * frame[i - 1];
        }
        frame[0] -= PREEMPHASIS * frame[0];
        for (x, w) in frame.iter_mut().zip(&self.window) {
            *x *= w;
        }
        frame[FRAME_LENGTH_SAMPLES..].fill(0.0);

        // Lengths are fixed at construction, so the FFT cannot fail.
        let _ = self
            .fft
            .process_with_scratch(frame, &mut self.spectrum, &mut self.scratch);
        for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
            *p = c.norm_sqr();
        }
        for filter in &self.filters {
            let bins = &self.power[filter.first_bin..filter.first_bin + filter.weights.len()];
            let energy: f32 = bins.iter().zip(&filter.weights).map(|(p, w)| p * w).sum();
            features.push(energy.max(LOG_FLOOR).ln());
        }
    }
}

fn subtract_mean(features: &mut [f32], frames: usize) {
    if frames == 0 {
        return;
    }
    let mut mean = [0.0f64; NUM_MEL_BINS];
    for row in features.chunks_exact(NUM_MEL_BINS) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    for m in &mut mean {
        *m /= frames as f64;
    }
    for row in features.chunks_exact_mut(NUM_MEL_BINS) {
        for (v, &m) in row.iter_mut().zip(&mean) {
            *v -= m as f32;
        }
    }
}

fn povey_window() -> Vec<f32> {
    let denominator = (FRAME_LENGTH_SAMPLES - 1) as f64;
    (0..FRAME_LENGTH_SAMPLES)
        .map(|k| {
            let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * k as f64 / denominator).cos();
            hann.powf(0.85) as f32
        })
        .collect()
}

fn mel(hz: f32) -> f32 {
    1127.0 * (1.0 + hz / 700.0).ln()
}

fn mel_filters() -> Vec<MelFilter> {
    let bin_hz = 16_000.0 / FFT_SIZE as f32;
    let low = mel(LOW_FREQ_HZ);
    let delta = (mel(NYQUIST_HZ) - low) / (NUM_MEL_BINS + 1) as f32;
    (0..NUM_MEL_BINS)
        .map(|m| {
            let left = low + m as f32 * delta;
            let centre = left + delta;
            let right = centre + delta;
            // Bin FFT_SIZE/2 (Nyquist) always has weight 0 in Kaldi.
            let weights: Vec<(usize, f32)> = (0..FFT_SIZE / 2)
                .map(|k| {
                    let m_k = mel(bin_hz * k as f32);
                    let up = (m_k - left) / (centre - left);
                    let down = (right - m_k) / (right - centre);
                    (k, up.min(down).max(0.0))
                })
                .filter(|&(_, w)| w > 0.0)
                .collect();
            MelFilter {
                first_bin: weights.first().map_or(0, |&(k, _)| k),
                weights: weights.into_iter().map(|(_, w)| w).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counts_follow_snip_edges() {
        assert_eq!(num_frames(399), 0);
        assert_eq!(num_frames(16_000), 98);
        assert_eq!(num_frames(24_000), 148);
        assert_eq!(num_frames(160_000), 998);
    }

    #[test]
    fn features_are_mean_normalised() {
        let samples: Vec<f32> = (0..8000).map(|i| (i as f32 * 0.05).sin() * 0.1).collect();
        let mut features = Vec::new();
        let frames = Fbank::new().compute(&samples, &mut features);
        assert_eq!(features.len(), frames * NUM_MEL_BINS);
        for bin in 0..NUM_MEL_BINS {
            let mean: f32 = (0..frames)
                .map(|t| features[t * NUM_MEL_BINS + bin])
                .sum::<f32>()
                / frames as f32;
            assert!(mean.abs() < 1e-4, "bin {bin} mean {mean}");
        }
    }
}
