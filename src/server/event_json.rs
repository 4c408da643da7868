//! The live protocol's events as JSON, the same on every transport: a
//! WebSocket, a WebRTC data channel, or a watcher's WebSocket or SSE feed.

use serde_json::{Value, json};

use crate::engine::LiveEvent;
use crate::live::Event;

/// The event's JSON message.
pub fn event_json(event: &Event) -> Value {
    match event {
        Event::Ready {
            session_id,
            job_id,
            latency_ms,
            step_ms,
        } => json!({ "type": "ready", "session_id": session_id, "job_id": job_id,
                     "latency_ms": latency_ms, "step_ms": step_ms }),
        Event::Diarizer(LiveEvent::Speaker {
            speaker,
            start_seconds,
            end_seconds,
            is_final,
            confidence,
        }) => json!({
            "type": "speaker",
            "speaker": speaker.label(),
            "start": round_ms(*start_seconds),
            "end": end_seconds.map(round_ms),
            "final": is_final,
            "confidence": round_ms(f64::from(*confidence)),
        }),
        Event::Diarizer(LiveEvent::Relabel { from, to }) => {
            json!({ "type": "relabel", "from": from.label(), "to": to.label() })
        }
        Event::Usage {
            audio_seconds,
            credits,
        } => {
            json!({ "type": "usage", "audio_seconds": round_ms(*audio_seconds), "credits": credits })
        }
        Event::Behind => json!({
            "type": "warning",
            "code": "behind",
            "message": "Audio arrives faster than it is analysed; reading pauses until the buffer drains",
        }),
        Event::Completed(done) => json!({
            "type": "completed",
            "job_id": done.job_id,
            "rttm": done.rttm,
            "speakers": done.speakers,
            "duration_seconds": done.duration_seconds,
            "credits_used": done.credits_used,
        }),
    }
}

/// Seconds (or a score) to three decimals.
fn round_ms(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
