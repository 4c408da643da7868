//! What one stream saw, and the counters the whole run shares while it goes.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;
use whospoke_protocol::ServerMessage;

use crate::audio::StreamAudio;
use crate::delay::SendLog;

/// Counters the whole run shares, for progress lines and memory marks.
#[derive(Debug, Default)]
pub struct RunProgress {
    audio_ms_sent: AtomicU64,
    events: AtomicU64,
    errors: AtomicU64,
    streams_done: AtomicU64,
}

impl RunProgress {
    pub fn audio_seconds_sent(&self) -> f64 {
        self.audio_ms_sent.load(Ordering::Relaxed) as f64 / 1000.0
    }
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
    pub fn streams_done(&self) -> u64 {
        self.streams_done.load(Ordering::Relaxed)
    }

    pub fn add_audio_ms(&self, ms: u64) {
        self.audio_ms_sent.fetch_add(ms, Ordering::Relaxed);
    }
    pub fn count_event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_stream_done(&self) {
        self.streams_done.fetch_add(1, Ordering::Relaxed);
    }
}

/// A parsed server message and when it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// Wall time of receipt, seconds since the run's epoch.
    pub at_seconds: f64,
    /// Audio this stream had sent by then, in seconds.
    pub audio_sent_seconds: f64,
    pub message: ServerMessage,
    /// The message as the server sent it, for `events.jsonl`.
    pub raw: Value,
}

/// What went wrong on one stream, by kind.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct ErrorCounts {
    /// TCP/handshake failures, including HTTP refusals (401, 402, 429…).
    pub connect_failures: u64,
    /// `{"type":"error"}` messages.
    pub error_messages: u64,
    /// Text that is not a known message shape, or binary from the server.
    pub malformed_messages: u64,
    /// The socket closed (or broke) before a clean `completed` + close 1000.
    pub unexpected_closes: u64,
    /// No `completed` arrived.
    pub missing_completed: u64,
    /// A send failed or stayed blocked past the completion timeout.
    pub send_failures: u64,
}

/// One kind of failure, to count in [`ErrorCounts`].
#[derive(Debug, Clone, Copy)]
pub enum ErrorKind {
    Connect,
    ErrorMessage,
    Malformed,
    UnexpectedClose,
    MissingCompleted,
    SendFailure,
}

impl ErrorCounts {
    fn slot(&mut self, kind: ErrorKind) -> &mut u64 {
        match kind {
            ErrorKind::Connect => &mut self.connect_failures,
            ErrorKind::ErrorMessage => &mut self.error_messages,
            ErrorKind::Malformed => &mut self.malformed_messages,
            ErrorKind::UnexpectedClose => &mut self.unexpected_closes,
            ErrorKind::MissingCompleted => &mut self.missing_completed,
            ErrorKind::SendFailure => &mut self.send_failures,
        }
    }

    pub fn total(&self) -> u64 {
        self.connect_failures
            + self.error_messages
            + self.malformed_messages
            + self.unexpected_closes
            + self.missing_completed
            + self.send_failures
    }

    pub fn add(&mut self, other: &Self) {
        self.connect_failures += other.connect_failures;
        self.error_messages += other.error_messages;
        self.malformed_messages += other.malformed_messages;
        self.unexpected_closes += other.unexpected_closes;
        self.missing_completed += other.missing_completed;
        self.send_failures += other.send_failures;
    }
}

/// Error texts kept per stream; the counts go on past this.
const MAX_ERROR_NOTES: usize = 10;

/// Everything one stream saw.
#[derive(Debug)]
pub struct StreamRecord {
    pub index: usize,
    pub name: String,
    pub whole_file: bool,
    pub audio_seconds: f64,
    pub connect_at_seconds: f64,
    pub ready_at_seconds: Option<f64>,
    /// `ready`'s ids and step, as the server sent them.
    pub ready: Option<Value>,
    pub sends: SendLog,
    /// Largest lateness of a frame against its pace schedule.
    pub max_send_lag_seconds: f64,
    pub end_sent_at_seconds: Option<f64>,
    pub events: Vec<Received>,
    pub overloaded: u64,
    pub completed_at_seconds: Option<f64>,
    pub rttm: Option<String>,
    pub close_code: Option<u16>,
    pub errors: ErrorCounts,
    pub error_notes: Vec<String>,
}

impl StreamRecord {
    pub fn new(index: usize, audio: &StreamAudio) -> Self {
        Self {
            index,
            name: audio.name().to_owned(),
            whole_file: audio.is_whole_file(),
            audio_seconds: audio.duration_seconds(),
            connect_at_seconds: 0.0,
            ready_at_seconds: None,
            ready: None,
            sends: SendLog::default(),
            max_send_lag_seconds: 0.0,
            end_sent_at_seconds: None,
            events: Vec::new(),
            overloaded: 0,
            completed_at_seconds: None,
            rttm: None,
            close_code: None,
            errors: ErrorCounts::default(),
            error_notes: Vec::new(),
        }
    }

    pub fn note(&mut self, progress: &RunProgress, kind: ErrorKind, text: String) {
        *self.errors.slot(kind) += 1;
        progress.errors.fetch_add(1, Ordering::Relaxed);
        if self.error_notes.len() < MAX_ERROR_NOTES {
            self.error_notes.push(text);
        }
    }

    /// Wall seconds between the last audio sent and `completed`.
    pub fn completion_lag_seconds(&self) -> Option<f64> {
        let last_sent = self.sends.frames().last()?.sent_at_seconds;
        Some(self.completed_at_seconds? - last_sent)
    }
}
