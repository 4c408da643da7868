//! A session's events as the live protocol's messages, the same on every
//! transport: a WebSocket, a WebRTC data channel, or a watcher's WebSocket or
//! SSE feed.

use whospoke_protocol::{self as protocol, ServerMessage, WarningCode};

use crate::engine::LiveEvent;
use crate::jobs::result::SpeakerResult;
use crate::live::{Completed, Event};

/// The event's message.
pub fn live_message(event: &Event) -> ServerMessage {
    match event {
        Event::Ready {
            session_id,
            job_id,
            latency_ms,
            step_ms,
        } => ServerMessage::Ready {
            session_id: session_id.clone(),
            job_id: *job_id,
            latency_ms: *latency_ms,
            step_ms: *step_ms,
        },
        Event::Diarizer(LiveEvent::Speaker {
            speaker,
            start_seconds,
            end_seconds,
            is_final,
            confidence,
        }) => ServerMessage::Speaker {
            speaker: speaker.label(),
            start_seconds: round_ms(*start_seconds),
            end_seconds: end_seconds.map(round_ms),
            is_final: *is_final,
            confidence: round_ms(f64::from(*confidence)),
        },
        Event::Diarizer(LiveEvent::Relabel { from, to }) => ServerMessage::Relabel {
            from: from.label(),
            to: to.label(),
        },
        Event::Usage {
            audio_seconds,
            credits,
        } => ServerMessage::Usage {
            audio_seconds: round_ms(*audio_seconds),
            credits: *credits,
        },
        Event::Behind => ServerMessage::Warning {
            code: WarningCode::Behind,
            message:
                "Audio arrives faster than it is analysed; reading pauses until the buffer drains"
                    .to_owned(),
        },
        Event::ShuttingDown => ServerMessage::Warning {
            code: WarningCode::ShuttingDown,
            message: "The server is shutting down: send end now; audio sent until then is kept"
                .to_owned(),
        },
        Event::Completed(done) => ServerMessage::Completed(completed(done)),
    }
}

fn completed(done: &Completed) -> protocol::Completed {
    protocol::Completed {
        job_id: done.job_id,
        rttm: done.rttm.clone(),
        speakers: done.speakers.iter().map(speaker).collect(),
        duration_seconds: done.duration_seconds,
        credits_used: done.credits_used,
    }
}

fn speaker(result: &SpeakerResult) -> protocol::Speaker {
    let stats = &result.stats;
    protocol::Speaker {
        id: result.id,
        label: result.label.clone(),
        audio: result.audio.clone(),
        stats: protocol::SpeakerStats {
            speaking_seconds: stats.speaking_seconds,
            share_of_speech: stats.share_of_speech,
            turns: stats.turns,
            overlapped_seconds: stats.overlapped_seconds,
            rms_db: stats.rms_db,
            peak: stats.peak,
            peak_db: stats.peak_db,
        },
    }
}

/// Seconds (or a score) to three decimals.
fn round_ms(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
