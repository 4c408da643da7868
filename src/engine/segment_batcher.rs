//! Segmentation shared by concurrent live runs. Each run hands in one window
//! and blocks until its log-probabilities come back; each worker takes the
//! windows waiting at that moment (of one length, at most [`MAX_BATCH`]) and
//! runs them in one model call. On one core a 5 s window alone costs about
//! 30 ms, in a batch of 4 about 22 ms each, so a busy server does a quarter
//! less segmentation. A lone window runs at once: nothing waits for company.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::model::ModelError;
use super::offline::RunError;
use super::segmentation::{Segmenter, WindowLogProbs};

/// Most windows in one model call; larger batches cost no less per window.
pub const MAX_BATCH: usize = 8;

type Reply = SyncSender<Result<WindowLogProbs, ModelError>>;

pub struct SegmentBatcher {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a batch is queued or the batcher closes.
    queued: Condvar,
}

struct State {
    /// Oldest first; only the newest batch of each window length has room.
    batches: VecDeque<Batch>,
    /// Workers still serving; once none is left, requests fail at once.
    workers: usize,
    /// Why a worker could not load its session.
    failure: Option<ModelError>,
    closed: bool,
}

/// Windows of one length back to back, and where each one's result goes.
struct Batch {
    window_samples: usize,
    samples: Vec<f32>,
    replies: Vec<Reply>,
}

impl SegmentBatcher {
    /// Starts `workers` threads, each loading its own one-thread session of `model`.
    pub fn start(model: PathBuf, workers: usize) -> Self {
        let workers = workers.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                batches: VecDeque::new(),
                workers,
                failure: None,
                closed: false,
            }),
            queued: Condvar::new(),
        });
        let workers = (0..workers)
            .map(|i| {
                let shared = Arc::clone(&shared);
                let model = model.clone();
                std::thread::Builder::new()
                    .name(format!("segmentation-{i}"))
                    .spawn(move || serve(&shared, &model))
                    .expect("spawn a segmentation worker")
            })
            .collect();
        Self { shared, workers }
    }

    /// Segments one window, in one model call with whatever other windows of
    /// its length are waiting.
    pub fn segment(&self, window: &[f32]) -> Result<WindowLogProbs, RunError> {
        let (reply, result) = sync_channel(1);
        {
            let mut state = self.shared.lock();
            if state.workers == 0 {
                return Err(state.stopped());
            }
            let open = state
                .batches
                .iter_mut()
                .find(|b| b.window_samples == window.len() && b.replies.len() < MAX_BATCH);
            match open {
                // A worker has been woken for it, or all are busy.
                Some(batch) => batch.add(window, reply),
                None => {
                    let mut batch = Batch {
                        window_samples: window.len(),
                        // Room for a full batch: no reallocation under the lock.
                        samples: Vec::with_capacity(window.len() * MAX_BATCH),
                        replies: Vec::with_capacity(MAX_BATCH),
                    };
                    batch.add(window, reply);
                    state.batches.push_back(batch);
                    self.shared.queued.notify_one();
                }
            }
        }
        match result.recv() {
            Ok(result) => result.map_err(RunError::from),
            // The window's worker panicked, or the last worker stopped.
            Err(_) => Err(self.shared.lock().stopped()),
        }
    }
}

impl Drop for SegmentBatcher {
    /// Waits for the workers: ONNX Runtime must not be torn down at exit while
    /// a session is still loading or running.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.queued.notify_all();
        for worker in self.workers.drain(..) {
            // A worker that panicked has nothing left to clean up.
            let _ = worker.join();
        }
    }
}

fn serve(shared: &Shared, model: &Path) {
    let _leaving = Leaving(shared);
    let mut segmenter = match Segmenter::load(model, 1) {
        Ok(segmenter) => segmenter,
        Err(e) => {
            tracing::error!("segmentation worker: {e}");
            shared.lock().failure = Some(e);
            return;
        }
    };
    while let Some(batch) = shared.next_batch() {
        metrics::histogram!("whospoke_live_segmentation_batch_size")
            .record(batch.replies.len() as f64);
        let result = segmenter.run(&batch.samples, batch.window_samples);
        batch.answer(result);
    }
}

impl Shared {
    /// The oldest batch, waiting for one; `None` once the batcher closes.
    fn next_batch(&self) -> Option<Batch> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(batch) = state.batches.pop_front() {
                return Some(batch);
            }
            state = self
                .queued
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock half-way through an update.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// The error for a request that no worker will answer.
    fn stopped(&self) -> RunError {
        self.failure
            .clone()
            .map_or(RunError::WorkerPanicked, RunError::Model)
    }
}

impl Batch {
    fn add(&mut self, window: &[f32], reply: Reply) {
        self.samples.extend_from_slice(window);
        self.replies.push(reply);
    }

    fn answer(self, result: Result<Vec<WindowLogProbs>, ModelError>) {
        // A send fails only if its caller is gone; there is no one to tell.
        match result {
            Ok(log_probs) => {
                for (reply, log_probs) in self.replies.into_iter().zip(log_probs) {
                    let _ = reply.send(Ok(log_probs));
                }
            }
            Err(e) => {
                for reply in self.replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Counts a worker out however it stops. The last one drops what is still
/// queued, so its callers wake to an error instead of waiting for ever.
struct Leaving<'s>(&'s Shared);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.workers -= 1;
        if state.workers == 0 {
            state.batches.clear();
        }
    }
}
