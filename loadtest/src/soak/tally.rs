//! What the soak's clients did, as the checks and the report need it:
//! one record per live session and per batch submission, and counts of
//! the faults injected.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Websocket,
    Whip,
}

/// One live session, from connect to its end.
#[derive(Debug, Clone, Serialize)]
pub struct SessionRecord {
    pub transport: Transport,
    /// Unique in the run; sent as the stream's `name`.
    pub name: String,
    /// The fault this session carries (`none` for a clean one).
    pub fault: &'static str,
    /// From `ready` (WebSocket) or `X-Job-Id` (WHIP).
    pub job_id: Option<i64>,
    /// Audio the server was given: whole sample frames written, as seconds.
    pub audio_sent_seconds: f64,
    /// `duration_seconds` of the `completed` the client heard, if any.
    pub completed_seconds: Option<f64>,
    /// From `end` (or DELETE) to `completed`: how far the server was behind.
    pub completion_lag_seconds: Option<f64>,
    /// How it ended: `end`, `delete`, `dropped`, `vanished`, `server:<code>`,
    /// or why it never started.
    pub ending: String,
    /// `error` codes the server sent.
    pub server_errors: Vec<String>,
    /// The server warned it was behind (its buffer full, reading paused).
    pub behind: bool,
    pub started_at_seconds: f64,
    pub ended_at_seconds: f64,
}

impl SessionRecord {
    pub fn new(transport: Transport, name: String, fault: &'static str, at: f64) -> Self {
        Self {
            transport,
            name,
            fault,
            job_id: None,
            audio_sent_seconds: 0.0,
            completed_seconds: None,
            completion_lag_seconds: None,
            ending: String::new(),
            server_errors: Vec::new(),
            behind: false,
            started_at_seconds: at,
            ended_at_seconds: at,
        }
    }

    pub fn sent_audio(&self) -> bool {
        self.audio_sent_seconds > 0.0
    }

    /// Who ended the session, as the duration check reports it: the client
    /// in order with its audio (`end`, a shut socket, a bad frame), the
    /// client out of band (WHIP DELETE or a vanished peer), or the server.
    pub fn ended_by(&self) -> &'static str {
        if self.ending.starts_with("server:") {
            "server"
        } else if self.transport == Transport::Whip {
            "client, out of band"
        } else {
            "client, in order"
        }
    }
}

/// One batch submission.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRecord {
    pub filename: String,
    /// `good`, or the kind of bad file.
    pub kind: &'static str,
    /// HTTP status of the submit; `None` when the server could not be reached.
    pub status: Option<u16>,
    pub job_id: Option<i64>,
    pub detail: String,
}

impl BatchRecord {
    pub fn is_good(&self) -> bool {
        self.kind == "good"
    }
}

/// A request that must be refused (bad key, bad start, bad SDP …) and how.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRecord {
    pub kind: &'static str,
    pub outcome: String,
    pub expected: bool,
}

/// Everything the clients record, shared by all of them.
#[derive(Default)]
pub struct Tally {
    sessions: Mutex<Vec<SessionRecord>>,
    batches: Mutex<Vec<BatchRecord>>,
    probes: Mutex<Vec<ProbeRecord>>,
    /// Faults injected, by kind.
    faults: Mutex<BTreeMap<&'static str, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Tally {
    pub fn session(&self, record: SessionRecord) {
        lock(&self.sessions).push(record);
    }

    pub fn batch(&self, record: BatchRecord) {
        lock(&self.batches).push(record);
    }

    pub fn probe(&self, record: ProbeRecord) {
        self.fault(record.kind);
        lock(&self.probes).push(record);
    }

    pub fn fault(&self, kind: &'static str) {
        *lock(&self.faults).entry(kind).or_default() += 1;
    }

    pub fn sessions(&self) -> Vec<SessionRecord> {
        lock(&self.sessions).clone()
    }

    pub fn batches(&self) -> Vec<BatchRecord> {
        lock(&self.batches).clone()
    }

    pub fn probes(&self) -> Vec<ProbeRecord> {
        lock(&self.probes).clone()
    }

    pub fn faults(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.faults).clone()
    }

    /// (sessions, batch submissions, faults) so far, for progress lines.
    pub fn counts(&self) -> (usize, usize, u64) {
        (
            lock(&self.sessions).len(),
            lock(&self.batches).len(),
            lock(&self.faults).values().sum(),
        )
    }
}
