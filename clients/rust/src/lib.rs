//! The live protocol's message types, for Rust clients and for the server
//! that speaks it: the JSON text messages of a stream's WebSocket
//! (`GET /api/v1/speaker/stream`), of a WHIP session's data channel and of a
//! watcher's WebSocket or SSE feed (`GET /api/v1/speaker/stream/{id}/events`).
//!
//! ```text
//! client                                        server
//!   start ───────────────────────────────────────▶
//!        ◀─────────────────────────────────────── ready
//!   audio (binary frames), keepalive, finalize ──▶
//!        ◀──────────── speaker, relabel, usage, warning …
//!   end ─────────────────────────────────────────▶
//!        ◀─────────────────── completed, close 1000
//! ```
//!
//! A refusal or an early end is an `error` message, then a close whose code
//! is one of [`close`]'s.

mod client;
mod server;

pub use client::{ClientMessage, Encoding, MAX_TEXT_BYTES, ParseError, Start};
pub use server::{Completed, ServerMessage, Speaker, SpeakerStats, WarningCode};

/// Close codes the server ends a stream with (RFC 6455 §7.4 and the
/// application range).
pub mod close {
    /// After `completed`.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Refused: authentication, rate limit, or a message out of order.
    pub const POLICY: u16 = 1008;
    /// A frame or text message over its limit.
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    /// Every live slot is taken.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// A malformed `start` or undecodable audio.
    pub const BAD_REQUEST: u16 = 4400;
    /// Not enough credits to start, or they ran out.
    pub const PAYMENT_REQUIRED: u16 = 4402;
    /// Idle for too long, or the session's maximum length reached.
    pub const TIMEOUT: u16 = 4408;
}
