//! One time origin per run, so every stream's sends and receipts, and the
//! server samples, are on the same axis.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct Epoch {
    start: Instant,
    /// Unix time of `start`, to line the logs up with the server's.
    start_unix_seconds: f64,
}

impl Epoch {
    pub fn now() -> Self {
        let start_unix_seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            start: Instant::now(),
            start_unix_seconds,
        }
    }

    /// Seconds since the run began.
    pub fn seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The instant `seconds` after the run began.
    pub fn instant(&self, seconds: f64) -> Instant {
        self.start + Duration::from_secs_f64(seconds.max(0.0))
    }

    pub fn unix_seconds(&self, seconds: f64) -> f64 {
        self.start_unix_seconds + seconds
    }
}
