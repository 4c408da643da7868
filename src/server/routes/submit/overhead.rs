//! A bound on everything in a multipart body that is not file data.
//!
//! multer buffers part headers, preambles and padding whole while it looks
//! for their end, so a client could send gigabytes of "header". Counting the
//! body as it arrives, minus the file bytes handed on, stops such a body
//! before multer holds more than the budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::body::Body;
use futures_util::StreamExt;

/// Part headers, boundaries and text fields of one request, plus one
/// in-flight chunk of file data.
pub const MAX_OVERHEAD_BYTES: u64 = 1 << 20;

#[derive(Default)]
struct Counts {
    received: AtomicU64,
    file: AtomicU64,
    exceeded: AtomicBool,
    /// The request is refused: what is drained now is dropped, not held.
    draining: AtomicBool,
}

/// Shared between the counting body and the handler that streams the file.
#[derive(Clone, Default)]
pub struct Overhead(Arc<Counts>);

#[derive(Debug, thiserror::Error)]
#[error("multipart overhead exceeds {MAX_OVERHEAD_BYTES} bytes")]
struct Exceeded;

impl Overhead {
    /// `body`, failing as soon as its non-file bytes pass the budget.
    pub fn count(&self, body: Body) -> Body {
        let counts = Arc::clone(&self.0);
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let chunk = chunk?;
            if counts.draining.load(Ordering::Relaxed) {
                return Ok(chunk);
            }
            let received = counts
                .received
                .fetch_add(chunk.len() as u64, Ordering::Relaxed)
                + chunk.len() as u64;
            if received.saturating_sub(counts.file.load(Ordering::Relaxed)) > MAX_OVERHEAD_BYTES {
                counts.exceeded.store(true, Ordering::Relaxed);
                return Err(axum::Error::new(Exceeded));
            }
            Ok(chunk)
        }))
    }

    /// Notes file bytes taken out of the body: they are not overhead.
    pub fn file_bytes(&self, len: usize) {
        self.0.file.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Stops counting: the request is being refused and its rest drained.
    pub fn drain(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the body was cut off for passing the budget.
    pub fn exceeded(&self) -> bool {
        self.0.exceeded.load(Ordering::Relaxed)
    }
}
