//! What a session tells its client, before any wire format.

use crate::engine::LiveEvent;
use crate::jobs::result::SpeakerResult;

#[derive(Debug, Clone)]
pub enum Event {
    /// The session started: the first thing its client and watchers hear.
    Ready {
        session_id: String,
        job_id: i64,
        latency_ms: u64,
        step_ms: u64,
    },
    /// A turn or a relabel from the online diarizer.
    Diarizer(LiveEvent),
    /// Audio received so far and what it costs.
    Usage { audio_seconds: f64, credits: i64 },
    /// The analysis buffer is full: the server reads no more audio until it drains.
    Behind,
    /// The server is shutting down; the client should end the stream now.
    ShuttingDown,
    /// The session became a COMPLETED job.
    Completed(Box<Completed>),
}

/// The finished job, as the client's last message describes it.
#[derive(Debug, Clone)]
pub struct Completed {
    pub job_id: i64,
    /// The RTTM file's text, labelled as the events were after their relabels.
    pub rttm: String,
    pub speakers: Vec<SpeakerResult>,
    pub duration_seconds: f64,
    pub credits_used: i64,
}
