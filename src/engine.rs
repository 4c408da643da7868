//! The diarization engine: 16 kHz mono audio in, speaker turns out.
//!
//! ```text
//! 10 s windows ──segment──▶ local activity (3 local speakers per window)
//!        │                         │
//!        └──── clean speech ──embed──▶ one embedding per local speaker
//!                                  │
//!                     cluster ◀────┘  (centroid AHC, then Hungarian per window)
//!                        │
//!                   reconstruct ──▶ Diarization (overlap kept)
//! ```
//!
//! The engine knows nothing of files or transports: callers push samples into
//! an [`OfflineRun`] and take a [`Diarization`](crate::Diarization) at the end.
//! Models are loaded once into an [`Engine`] and shared by every run.

pub mod cluster;
pub mod embedding;
pub mod fbank;
mod model;
mod offline;
mod online;
mod pool;
pub mod powerset;
pub mod reconstruct;
pub mod segmentation;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

pub use model::ModelError;
pub use offline::{OfflineRun, RunError, StageTimes};
pub use online::{LiveEvent, OnlineParams, OnlineRun};

use crate::runtime;
use embedding::Embedder;
use pool::Pool;
use segmentation::Segmenter;

/// Sample rate of the audio the models take, in Hz: callers resample to it
/// ([`AnalysisResampler`](crate::audio::AnalysisResampler)).
pub const ANALYSIS_SAMPLE_RATE: u32 = 16_000;

/// How many speakers to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeakerCount {
    /// Exactly this many (at least 1).
    Exact(usize),
    /// As many as the clustering finds, kept within the bounds.
    Auto {
        min: Option<usize>,
        max: Option<usize>,
    },
}

impl Default for SpeakerCount {
    fn default() -> Self {
        Self::Auto {
            min: None,
            max: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeakerCountError {
    #[error("num_speakers must be at least 1")]
    ZeroSpeakers,
    #[error("give either num_speakers or min/max_speakers, not both")]
    Conflicting,
    #[error("min_speakers ({min}) is greater than max_speakers ({max})")]
    MinAboveMax { min: usize, max: usize },
}

impl SpeakerCount {
    /// Parses the user-facing options once, at the edge.
    pub fn new(
        exact: Option<usize>,
        min: Option<usize>,
        max: Option<usize>,
    ) -> Result<Self, SpeakerCountError> {
        match (exact, min, max) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(SpeakerCountError::Conflicting),
            (Some(0), ..) | (_, _, Some(0)) => Err(SpeakerCountError::ZeroSpeakers),
            (Some(n), ..) => Ok(Self::Exact(n)),
            (None, Some(a), Some(b)) if a > b => {
                Err(SpeakerCountError::MinAboveMax { min: a, max: b })
            }
            (None, min, max) => Ok(Self::Auto { min, max }),
        }
    }
}

/// Algorithm settings. Defaults were chosen on the dev set (see README).
#[derive(Debug, Clone, Copy)]
pub struct DiarizationParams {
    /// Length of a segmentation window; range 2.0–10.0. Default 5.0: the model
    /// was trained on 10 s, but a window holds at most 3 local speakers, and
    /// in lively conversation 10 s often holds more (dev DER 5.5 % → 2.7 %).
    pub window_seconds: f64,
    /// Hop between windows, rounded to whole frames; range 0.5 to the window.
    /// Default 2.5: every moment is seen twice. On long recordings smaller is
    /// slower, no better.
    pub step_seconds: f64,
    /// Hop for recordings of at most `short_recording_seconds` (as their
    /// container states): twice the windows, so twice the embeddings where a
    /// minute of audio gives each speaker only a handful. Default 1.25 (hard
    /// set 21.8 → 19.8 % DER, dev 2.53 → 2.41 %; twice the analysis time).
    pub short_step_seconds: f64,
    /// Default 300: by five minutes a speaker has embeddings to spare.
    pub short_recording_seconds: f64,
    /// A local speaker with at least this much clean (non-overlapped) speech
    /// in a window is embedded from its clean speech only. Default 1.0.
    pub min_clean_seconds: f64,
    /// Local speakers with less speech than this get no embedding. Default 0.4.
    pub min_embed_seconds: f64,
    /// At most this much of a local speaker's speech is embedded, the part
    /// nearest the window's centre. Default 3.0 (no less accurate on dev than 5).
    pub max_embed_seconds: f64,
    /// Local speakers with this much clean speech shape the clusters; the rest
    /// are only assigned to them. Default 2.0.
    pub min_reliable_seconds: f64,
    /// Clustering threshold and minimum cluster size.
    pub cluster: cluster::ClusterParams,
    /// Gap filling and short-turn removal.
    pub turns: reconstruct::TurnParams,
}

impl Default for DiarizationParams {
    fn default() -> Self {
        Self {
            window_seconds: 5.0,
            step_seconds: 2.5,
            short_step_seconds: 1.25,
            short_recording_seconds: 300.0,
            min_clean_seconds: 1.0,
            min_embed_seconds: 0.4,
            max_embed_seconds: 3.0,
            min_reliable_seconds: 2.0,
            cluster: cluster::ClusterParams {
                threshold: 0.95,
                min_cluster_size: 2,
                distinct_distance: 1.15,
                lone_merge_distance: 1.0,
                apart_merge_distance: 1.0,
            },
            turns: reconstruct::TurnParams {
                onset: 0.5,
                offset: 0.4,
                min_gap_seconds: 0.3,
                min_turn_seconds: 0.0,
            },
        }
    }
}

/// Runtime settings: where the models are and how much CPU to use.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Folder holding the `.onnx` files; `None` searches the usual places.
    pub models_dir: Option<PathBuf>,
    /// Worker threads per offline run, each with its own model sessions, and
    /// live segmentation sessions shared by all live runs. Default 2.
    pub threads: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            models_dir: None,
            threads: 2,
        }
    }
}

/// Loaded models, shared by all runs. Each worker thread checks out its own
/// sessions, so runs in parallel never wait on one another's inference; live
/// runs take turns on their own segmentation sessions, one window at a time.
pub struct Engine {
    segmenters: Pool<Segmenter>,
    embedders: Arc<Pool<Embedder>>,
    /// Background session loads; joined on drop, since ONNX Runtime must not
    /// be torn down at exit while a session is still loading.
    loaders: Vec<JoinHandle<()>>,
    /// Segmentation sessions of the live runs' model (int8 LSTMs, see
    /// [`segmentation::LIVE_MODEL_FILE`]); loaded by the first live run, so
    /// offline use loads nothing more.
    live_segmenters: OnceLock<Pool<Segmenter>>,
    live_segmentation_path: PathBuf,
    threads: usize,
    params: DiarizationParams,
}

impl Engine {
    pub fn load(config: &EngineConfig) -> Result<Self, ModelError> {
        let threads = config.threads.max(1);
        let dir = config.models_dir.as_deref();
        let segmentation_path = runtime::model_path(dir, segmentation::MODEL_FILE)?;
        let live_segmentation_path = runtime::model_path(dir, segmentation::LIVE_MODEL_FILE)?;
        let embedding_path = runtime::model_path(dir, embedding::MODEL_FILE)?;
        let segmenters = Pool::empty();
        for _ in 0..threads {
            segmenters.supply(Ok(Segmenter::load(
                &segmentation_path,
                segmentation::MODEL_FILE,
                1,
            )?));
        }
        // CAM++ takes about a second per session to load; the first batch of
        // windows is decoded and segmented meanwhile, so start-up does not wait.
        let embedders = Arc::new(Pool::empty());
        let loaders = (0..threads)
            .map(|_| {
                let pool = Arc::clone(&embedders);
                let path = embedding_path.clone();
                std::thread::spawn(move || pool.supply(Embedder::load(&path, 1)))
            })
            .collect();
        Ok(Self {
            segmenters,
            embedders,
            loaders,
            live_segmenters: OnceLock::new(),
            live_segmentation_path,
            threads,
            params: DiarizationParams::default(),
        })
    }

    /// Replaces the algorithm settings (for tuning and tests).
    pub fn with_params(mut self, params: DiarizationParams) -> Self {
        self.params = params;
        self
    }

    pub fn params(&self) -> &DiarizationParams {
        &self.params
    }

    /// Starts diarizing one recording; push its 16 kHz mono samples into the
    /// run. `duration_seconds` is the recording's length when known: a short
    /// one is analysed in finer steps.
    pub fn start(&self, speakers: SpeakerCount, duration_seconds: Option<f64>) -> OfflineRun<'_> {
        OfflineRun::new(self, speakers, duration_seconds)
    }

    /// A live run: push audio as it arrives, get turns `latency` after they happen.
    pub fn start_online(&self, params: OnlineParams) -> OnlineRun<'_> {
        // Loaded now rather than when the first window is due.
        self.live_segmenters();
        OnlineRun::new(self, params)
    }

    /// One window at a time per call: int8 dynamic quantisation scales a
    /// batch as a whole, so batched windows would depend on one another.
    fn live_segmenters(&self) -> &Pool<Segmenter> {
        self.live_segmenters.get_or_init(|| {
            let pool = Pool::empty();
            for _ in 0..self.threads {
                pool.supply(Segmenter::load(
                    &self.live_segmentation_path,
                    segmentation::LIVE_MODEL_FILE,
                    1,
                ));
            }
            pool
        })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for loader in self.loaders.drain(..) {
            // A loader that panicked has nothing left to clean up.
            let _ = loader.join();
        }
    }
}
