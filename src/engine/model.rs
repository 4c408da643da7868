//! Loading an ONNX model into a CPU session.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::runtime::{self, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("failed to load model {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("model {model} failed: {message}")]
    Run {
        model: &'static str,
        message: String,
    },
    #[error("model {model}: unexpected tensor shape: {detail}")]
    Shape { model: &'static str, detail: String },
}

/// Loads `path` with full graph optimisation and `threads` intra-op threads.
/// One thread per session, with sessions side by side, uses a small CPU best.
pub fn load(path: &Path, threads: usize) -> Result<Session, ModelError> {
    let env = runtime::environment(None)?;
    let load_error = |message: String| ModelError::Load {
        path: path.to_path_buf(),
        message,
    };
    Session::builder(env)
        .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
        .and_then(|b| Ok(b.with_intra_threads(threads.max(1))?))
        .and_then(|b| Ok(b.with_config_entry("session.intra_op.allow_spinning", "0")?))
        .and_then(|mut b| b.commit_from_file(path))
        .map_err(|e| load_error(e.to_string()))
}

pub fn run_error(model: &'static str, e: ort::Error) -> ModelError {
    ModelError::Run {
        model,
        message: e.to_string(),
    }
}
