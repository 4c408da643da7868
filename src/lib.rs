//! whospoke: who spoke when, and one clean audio track per speaker.
//!
//! Audio flows through one path, whatever its transport:
//!
//! ```text
//! decode ──▶ resample (16 kHz mono) ──▶ segment ──▶ embed ──▶ cluster ──▶ reconstruct
//!   │                                                                       │
//!   └──────────── original audio (second pass) ──────────────▶ tracks, RTTM, stats
//! ```
//!
//! - [`audio`] decodes any common file and resamples it for analysis.
//! - [`engine`] runs the two ONNX models and turns 16 kHz audio into a [`Diarization`].
//! - [`output`] writes the RTTM, the per-speaker tracks and the statistics.
//! - [`pipeline`] joins them for one file.
//! - [`jobs`] runs files as batch jobs, kept in the [`db`] and a file store.
//! - [`live`] diarizes streams as they arrive and finalizes them into jobs.
//! - [`server`] is the HTTP and WebSocket transport over the jobs and live sessions.

pub mod audio;
pub mod db;
pub mod diarization;
pub mod engine;
pub mod jobs;
pub mod live;
pub mod output;
pub mod pipeline;
pub mod runtime;
pub mod server;

pub use diarization::{Diarization, Overlap, SpeakerId, Turn};
