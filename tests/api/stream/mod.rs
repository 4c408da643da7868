//! Live diarization over WebSocket (issue 4): `GET /api/v1/speaker/stream` through a real
//! WebSocket client (tokio-tungstenite) against the real server binary.
//!
//! Audio: `tests/data/sample.wav` (30 s, two speakers, reference `tests/data/sample.rttm`) and,
//! when the shared dev set sits next to the repository (`../shared/data/dev`), the first 30 s
//! of `sim_d01` (two speakers) for the PCM happy paths. Every stream is sent faster than real
//! time: each frame goes out as soon as TCP takes it, and a reader task drains the server's
//! events meanwhile, so neither side can block the other.

mod auth;
mod checks;
mod formats;
mod harness;
mod limits;
mod sessions;
mod shutdown;

pub use checks::job_id_of;
pub use harness::{Auth, Pcm, Reference, WsSession, sample, start_message, whole_stream};
