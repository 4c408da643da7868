//! pyannote segmentation-3.0: 10 s of audio in, powerset log-probabilities out.

use std::path::Path;

use ort::session::Session;
use ort::value::TensorRef;

use super::model::{self, ModelError};

/// The model's file name in the models folder.
pub const MODEL_FILE: &str = "segmentation-3.0.onnx";
/// The same model with int8 LSTM weights (`models/quantize_live.py`): live
/// runs segment every half second, and this costs them a third less with the
/// same accuracy.
pub const LIVE_MODEL_FILE: &str = "segmentation-3.0-live.onnx";
/// Samples in the 10 s window the model was trained on.
pub const TRAINED_WINDOW_SAMPLES: usize = 160_000;
/// Shortest input that yields a frame.
pub const MIN_WINDOW_SAMPLES: usize = FRAME_SPAN_SAMPLES;
/// Hop between output frames, in 16 kHz samples (16.875 ms).
pub const FRAME_STEP_SAMPLES: usize = 270;
/// Samples one output frame sees (61.9 ms).
pub const FRAME_SPAN_SAMPLES: usize = 991;
/// Powerset classes: {}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}.
pub const POWERSET_CLASSES: usize = 7;

/// Log-probabilities of one window, shape `(frames, POWERSET_CLASSES)`, row-major.
pub type WindowLogProbs = Vec<f32>;

/// Output frames for a window of `samples` (SincNet stride, then three max-pools).
pub fn frames_for(samples: usize) -> usize {
    if samples < MIN_WINDOW_SAMPLES {
        return 0;
    }
    let sinc = (samples - 251) / 10 + 1;
    ((sinc / 3 - 4) / 3 - 4) / 3
}

pub struct Segmenter {
    session: Session,
    /// The file it was loaded from ([`MODEL_FILE`] or [`LIVE_MODEL_FILE`]), for errors.
    model: &'static str,
}

impl Segmenter {
    pub fn load(path: &Path, model: &'static str, threads: usize) -> Result<Self, ModelError> {
        Ok(Self {
            session: model::load(path, threads)?,
            model,
        })
    }

    /// Runs a batch of windows of `window_samples` each, back to back in `windows`.
    pub fn run(
        &mut self,
        windows: &[f32],
        window_samples: usize,
    ) -> Result<Vec<WindowLogProbs>, ModelError> {
        let batch = windows.len() / window_samples.max(1);
        let frames = frames_for(window_samples);
        if batch == 0 || frames == 0 || !windows.len().is_multiple_of(window_samples) {
            return Err(ModelError::Shape {
                model: self.model,
                detail: format!("{} samples is not a whole number of windows", windows.len()),
            });
        }
        let input = TensorRef::from_array_view(([batch, 1, window_samples], windows))
            .map_err(|e| model::run_error(self.model, e))?;
        let outputs = self
            .session
            .run(ort::inputs!["waveform" => input])
            .map_err(|e| model::run_error(self.model, e))?;
        let (shape, data) = outputs["log_probs"]
            .try_extract_tensor::<f32>()
            .map_err(|e| model::run_error(self.model, e))?;
        let expected = [batch as i64, frames as i64, POWERSET_CLASSES as i64];
        if **shape != expected {
            return Err(ModelError::Shape {
                model: self.model,
                detail: format!("output shape {shape:?}, expected {expected:?}"),
            });
        }
        Ok(data
            .chunks_exact(frames * POWERSET_CLASSES)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counts_match_the_model() {
        assert_eq!(frames_for(TRAINED_WINDOW_SAMPLES), 589);
        assert_eq!(frames_for(80_000), 293);
        assert_eq!(frames_for(32_000), 115);
        assert_eq!(frames_for(MIN_WINDOW_SAMPLES), 1);
        assert_eq!(frames_for(MIN_WINDOW_SAMPLES - 1), 0);
    }
}
