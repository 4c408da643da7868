//! What the server sends: one JSON text message per event, the same on every
//! transport.

use serde::{Deserialize, Serialize};

/// A text message from the server. Times are seconds of audio since the
/// stream's first sample, to three decimals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The session started: the first message a client or watcher hears.
    Ready {
        session_id: String,
        job_id: i64,
        /// How far finals trail the audio.
        latency_ms: u64,
        /// How often provisional turns are restated.
        step_ms: u64,
    },
    /// A turn. Provisional turns are restated at every step until final.
    Speaker {
        /// `SPEAKER_n`.
        speaker: String,
        #[serde(rename = "start")]
        start_seconds: f64,
        /// `None` while the turn goes on.
        #[serde(rename = "end")]
        end_seconds: Option<f64>,
        #[serde(rename = "final")]
        is_final: bool,
        /// 0–1.
        confidence: f64,
    },
    /// Every past and future turn of `from` belongs to `to`.
    Relabel { from: String, to: String },
    /// Audio received so far and the credits it costs.
    Usage { audio_seconds: f64, credits: i64 },
    /// Something the client should know; the stream goes on.
    Warning { code: WarningCode, message: String },
    /// Why the session was refused or ends early; a close follows. Codes
    /// include `unauthorized`, `rate_limited`, `server_busy`, `bad_start`,
    /// `unsupported_encoding`, `audio_before_start`, `insufficient_credits`,
    /// `credits_exhausted`, `bad_message`, `bad_audio`, `message_too_large`,
    /// `frame_too_large`, `idle_timeout`, `max_duration`, `server_shutdown`
    /// and `internal`.
    Error { code: String, message: String },
    /// The session became a COMPLETED job; nothing follows.
    Completed(Completed),
    /// A message type newer than this crate; the server never sends it.
    #[serde(other)]
    Unknown,
}

/// Why the server warns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningCode {
    /// Audio arrives faster than it is analysed: the server reads no more
    /// until its buffer drains (backpressure).
    Behind,
    /// The server is shutting down: send `end` now. Audio that arrives in the next few
    /// seconds is still part of the job; then the stream ends with `server_shutdown`.
    ShuttingDown,
    /// A watcher reads too slowly and missed events.
    Lagged,
    /// A code newer than this crate.
    #[serde(other)]
    Unknown,
}

/// The finished job, as the stream's last message describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completed {
    pub job_id: i64,
    /// The RTTM file's text, labelled as the events were after their relabels.
    pub rttm: String,
    pub speakers: Vec<Speaker>,
    pub duration_seconds: f64,
    pub credits_used: i64,
}

/// One speaker of a finished stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Speaker {
    pub id: usize,
    pub label: String,
    /// Object key of the speaker's track; `None` without tracks.
    pub audio: Option<String>,
    pub stats: SpeakerStats,
}

/// How much and how loudly a speaker spoke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerStats {
    /// Length of the union of its turns.
    pub speaking_seconds: f64,
    /// `speaking_seconds` over everyone's speech, 0–1; overlapped speech
    /// counts for each speaker in it.
    pub share_of_speech: f64,
    pub turns: usize,
    /// Time this speaker and at least one other are both active.
    pub overlapped_seconds: f64,
    pub rms_db: f64,
    pub peak: f64,
    pub peak_db: f64,
}

impl ServerMessage {
    /// The message as a text frame.
    pub fn to_text(&self) -> String {
        // Only maps with non-string keys or failing `Serialize` impls can
        // fail to serialize, and these types have neither.
        serde_json::to_string(self).expect("live messages always serialize")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn round_trip(message: ServerMessage, wire: serde_json::Value) {
        assert_eq!(serde_json::to_value(&message).unwrap(), wire);
        assert_eq!(
            serde_json::from_value::<ServerMessage>(wire).unwrap(),
            message
        );
    }

    #[test]
    fn every_message_has_its_wire_form() {
        round_trip(
            ServerMessage::Ready {
                session_id: "s1".into(),
                job_id: 7,
                latency_ms: 2000,
                step_ms: 500,
            },
            json!({"type": "ready", "session_id": "s1", "job_id": 7,
                   "latency_ms": 2000, "step_ms": 500}),
        );
        round_trip(
            ServerMessage::Speaker {
                speaker: "SPEAKER_1".into(),
                start_seconds: 12.34,
                end_seconds: None,
                is_final: false,
                confidence: 0.9,
            },
            json!({"type": "speaker", "speaker": "SPEAKER_1", "start": 12.34,
                   "end": null, "final": false, "confidence": 0.9}),
        );
        round_trip(
            ServerMessage::Relabel {
                from: "SPEAKER_2".into(),
                to: "SPEAKER_0".into(),
            },
            json!({"type": "relabel", "from": "SPEAKER_2", "to": "SPEAKER_0"}),
        );
        round_trip(
            ServerMessage::Usage {
                audio_seconds: 3.5,
                credits: 97,
            },
            json!({"type": "usage", "audio_seconds": 3.5, "credits": 97}),
        );
        round_trip(
            ServerMessage::Warning {
                code: WarningCode::Behind,
                message: "slow".into(),
            },
            json!({"type": "warning", "code": "behind", "message": "slow"}),
        );
        round_trip(
            ServerMessage::Error {
                code: "bad_start".into(),
                message: "no".into(),
            },
            json!({"type": "error", "code": "bad_start", "message": "no"}),
        );
        let stats = SpeakerStats {
            speaking_seconds: 4.0,
            share_of_speech: 1.0,
            turns: 2,
            overlapped_seconds: 0.0,
            rms_db: -20.0,
            peak: 0.5,
            peak_db: -6.0,
        };
        round_trip(
            ServerMessage::Completed(Completed {
                job_id: 7,
                rttm: "SPEAKER x 1 0.000 4.000 <NA> <NA> SPEAKER_0 <NA> <NA>\n".into(),
                speakers: vec![Speaker {
                    id: 0,
                    label: "SPEAKER_0".into(),
                    audio: None,
                    stats,
                }],
                duration_seconds: 4.5,
                credits_used: 1,
            }),
            json!({"type": "completed", "job_id": 7,
                   "rttm": "SPEAKER x 1 0.000 4.000 <NA> <NA> SPEAKER_0 <NA> <NA>\n",
                   "speakers": [{"id": 0, "label": "SPEAKER_0", "audio": null, "stats": {
                       "speaking_seconds": 4.0, "share_of_speech": 1.0, "turns": 2,
                       "overlapped_seconds": 0.0, "rms_db": -20.0, "peak": 0.5, "peak_db": -6.0}}],
                   "duration_seconds": 4.5, "credits_used": 1}),
        );
    }

    #[test]
    fn newer_types_and_fields_are_tolerated() {
        let parse = |text| serde_json::from_str::<ServerMessage>(text).unwrap();
        assert_eq!(
            parse(r#"{"type":"heartbeat","n":1}"#),
            ServerMessage::Unknown
        );
        assert_eq!(
            parse(r#"{"type":"relabel","from":"A","to":"B","since":3.0}"#),
            ServerMessage::Relabel {
                from: "A".into(),
                to: "B".into()
            }
        );
        assert_eq!(
            parse(r#"{"type":"warning","code":"hot","message":"m"}"#),
            ServerMessage::Warning {
                code: WarningCode::Unknown,
                message: "m".into()
            }
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        for bad in [
            "not json",
            r#"{"type":"speaker","speaker":"A"}"#,
            r#"{"no_type":1}"#,
            r#"{"type":"ready","session_id":"s"}"#,
        ] {
            assert!(serde_json::from_str::<ServerMessage>(bad).is_err(), "{bad}");
        }
    }
}
