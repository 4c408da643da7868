//! Finding and loading ONNX Runtime and the model files.
//!
//! `ort` is built with `load-dynamic`, so the runtime library is opened at run
//! time. We look for it ourselves, because `ort::init()` without a path panics
//! when the library is missing, and a user deserves an error that says what to run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

/// The library file as it comes in the PyPI `onnxruntime==1.31.1` wheel.
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";

/// Environment variable naming the ONNX Runtime library to load.
pub const ORT_LIBRARY_ENV: &str = "WHOSPOKE_ORT_LIB";

/// Environment variable naming the folder that holds the `.onnx` files.
pub const MODELS_DIR_ENV: &str = "WHOSPOKE_MODELS_DIR";

/// The command that installs the runtime library into the project.
pub const SETUP_COMMAND: &str = "scripts/setup.sh";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found (looked in: {}). Run `{SETUP_COMMAND}` to install it, \
         or point {ORT_LIBRARY_ENV} at {ORT_LIBRARY_FILE}",
        display_paths(searched)
    )]
    LibraryNotFound { searched: Vec<PathBuf> },
    #[error("failed to load ONNX Runtime from {path}: {message}")]
    LibraryLoad { path: PathBuf, message: String },
    #[error(
        "model file {file} not found (looked in: {}); set {MODELS_DIR_ENV} to the folder holding it",
        display_paths(searched)
    )]
    ModelNotFound {
        file: &'static str,
        searched: Vec<PathBuf>,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

/// The process-wide ONNX Runtime environment, loaded on first use.
///
/// `configured` is a library path from configuration; it takes precedence over
/// [`ORT_LIBRARY_ENV`], the project's `.onnxruntime/` folder and the binary's folder.
/// The first successful call fixes the library for the life of the process.
pub fn environment(configured: Option<&Path>) -> Result<&'static Environment, RuntimeError> {
    static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let path = find_library(configured)?;
    let load_error = |message: String| RuntimeError::LibraryLoad {
        path: path.clone(),
        message,
    };
    let env = ort::init_from(&path)
        .map_err(|e| load_error(e.to_string()))?
        .with_name("whospoke")
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}

fn find_library(configured: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let explicit = configured
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(ORT_LIBRARY_ENV).map(PathBuf::from));
    let candidates = match explicit {
        // An explicit choice is never silently replaced by another library.
        Some(path) => vec![path],
        None => {
            let mut dirs = vec![project_dir().join(".onnxruntime")];
            dirs.extend(binary_dir());
            dirs.into_iter().map(|d| d.join(ORT_LIBRARY_FILE)).collect()
        }
    };
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(RuntimeError::LibraryNotFound {
            searched: candidates,
        })
}

/// Finds a model file: in `configured`, else [`MODELS_DIR_ENV`], else the
/// project's `models/`, else `models/` next to the binary.
pub fn model_path(configured: Option<&Path>, file: &'static str) -> Result<PathBuf, RuntimeError> {
    let explicit = configured
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(MODELS_DIR_ENV).map(PathBuf::from));
    let dirs = match explicit {
        Some(dir) => vec![dir],
        None => {
            let mut dirs = vec![project_dir().join("models")];
            dirs.extend(binary_dir().map(|d| d.join("models")));
            dirs
        }
    };
    let candidates: Vec<PathBuf> = dirs.iter().map(|d| d.join(file)).collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(RuntimeError::ModelNotFound {
            file,
            searched: candidates,
        })
}

fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn binary_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
}
