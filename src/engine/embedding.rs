//! CAM++ speaker embeddings from log-mel features.

use std::path::Path;

use ort::session::Session;
use ort::value::TensorRef;

use super::fbank::NUM_MEL_BINS;
use super::model::{self, ModelError};

/// The model's file name in the models folder.
pub const MODEL_FILE: &str = "campplus-en-zh.onnx";
/// Embedding dimension.
pub const EMBEDDING_DIM: usize = 192;
/// Fewer frames make the model's std pooling divide by zero.
pub const MIN_FRAMES: usize = 3;

/// A speaker embedding, not normalised.
pub type Embedding = [f32; EMBEDDING_DIM];

/// Adds `x` to the running sum `sum` (centroids are sums of unit embeddings).
pub fn add(sum: &mut Embedding, x: &Embedding) {
    sum.iter_mut().zip(x).for_each(|(s, x)| *s += x);
}

/// `e` scaled to unit length (L2); `None` when its length is zero or not finite.
pub fn normalised(mut e: Embedding) -> Option<Embedding> {
    let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return None;
    }
    e.iter_mut().for_each(|x| *x /= norm);
    Some(e)
}

/// Euclidean distance; between unit vectors, `sqrt(2 - 2 cos)`.
pub fn distance(a: &Embedding, b: &Embedding) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

pub struct Embedder {
    session: Session,
}

impl Embedder {
    pub fn load(path: &Path, threads: usize) -> Result<Self, ModelError> {
        Ok(Self {
            session: model::load(path, threads)?,
        })
    }

    /// Embeds a batch of segments that all have `frames` frames; `features` is
    /// `[batch, frames, 80]` row-major. Never zero-pad a segment to batch it:
    /// padding changes its embedding.
    pub fn run(&mut self, features: &[f32], frames: usize) -> Result<Vec<Embedding>, ModelError> {
        let per_segment = frames * NUM_MEL_BINS;
        if frames < MIN_FRAMES || features.is_empty() || !features.len().is_multiple_of(per_segment)
        {
            return Err(ModelError::Shape {
                model: MODEL_FILE,
                detail: format!(
                    "{} values do not make segments of {frames} frames (minimum {MIN_FRAMES})",
                    features.len()
                ),
            });
        }
        let batch = features.len() / per_segment;
        let input = TensorRef::from_array_view(([batch, frames, NUM_MEL_BINS], features))
            .map_err(|e| model::run_error(MODEL_FILE, e))?;
        let outputs = self
            .session
            .run(ort::inputs!["fbank" => input])
            .map_err(|e| model::run_error(MODEL_FILE, e))?;
        let (shape, data) = outputs["embedding"]
            .try_extract_tensor::<f32>()
            .map_err(|e| model::run_error(MODEL_FILE, e))?;
        if **shape != [batch as i64, EMBEDDING_DIM as i64] {
            return Err(ModelError::Shape {
                model: MODEL_FILE,
                detail: format!("output shape {shape:?}"),
            });
        }
        Ok(data
            .chunks_exact(EMBEDDING_DIM)
            .map(|row| {
                let mut e = [0.0; EMBEDDING_DIM];
                e.copy_from_slice(row);
                e
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(values: &[(usize, f32)]) -> Embedding {
        let mut e = [0.0; EMBEDDING_DIM];
        values.iter().for_each(|&(i, x)| e[i] = x);
        e
    }

    #[test]
    fn normalised_has_unit_length_and_refuses_zero_or_non_finite() {
        let unit = normalised(vector(&[(0, 3.0), (7, 4.0)])).expect("a non-zero vector");
        assert_eq!(unit, vector(&[(0, 0.6), (7, 0.8)]));
        assert_eq!(normalised([0.0; EMBEDDING_DIM]), None);
        assert_eq!(normalised(vector(&[(1, f32::NAN)])), None);
        assert_eq!(normalised(vector(&[(1, f32::INFINITY)])), None);
    }

    #[test]
    fn distance_is_euclidean() {
        let (a, b) = (vector(&[(0, 1.0)]), vector(&[(1, 1.0)]));
        assert_eq!(distance(&a, &a), 0.0);
        assert_eq!(distance(&a, &b), 2.0f32.sqrt());
        assert_eq!(distance(&vector(&[(2, 3.0)]), &vector(&[(5, 4.0)])), 5.0);
    }
}
