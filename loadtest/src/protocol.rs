//! The live API's wire messages, as the client sends and reads them.
//! Inbound text is parsed once here; the rest of the tool sees only
//! [`ServerMessage`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audio::Encoding;

/// The `start` message that opens a stream.
#[derive(Debug, Serialize)]
pub struct StartRequest<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sample_rate: u32,
    pub channels: u16,
    pub encoding: Encoding,
    pub latency_ms: u64,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_speakers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_speakers: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub extract: bool,
}

/// The text that ends the audio; the server answers with its last finals
/// and `completed`.
pub const END_MESSAGE: &str = r#"{"type":"end"}"#;

/// One JSON text message from the server. Fields this tool does not use
/// are ignored; ids are kept as raw JSON since their type is the server's
/// business.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Ready {
        #[serde(default)]
        session_id: Value,
        #[serde(default)]
        job_id: Value,
        latency_ms: Option<u64>,
        step_ms: Option<u64>,
    },
    /// A speaker turn; `start_seconds`/`end_seconds` are audio time since the
    /// stream's first sample, `end_seconds` is `None` while the turn goes on.
    Speaker {
        speaker: String,
        #[serde(rename = "start")]
        start_seconds: f64,
        #[serde(rename = "end")]
        end_seconds: Option<f64>,
        #[serde(rename = "final")]
        is_final: bool,
    },
    /// Events of `from` (all of them, or those from `since_seconds` of audio
    /// time on) now mean `to`.
    Relabel {
        from: String,
        to: String,
        #[serde(rename = "since")]
        since_seconds: Option<f64>,
    },
    Usage {},
    Error {
        #[serde(default)]
        code: Value,
        #[serde(default)]
        message: Value,
    },
    /// Backpressure or refusal of capacity; counted apart from errors.
    Overloaded {},
    Completed {
        #[serde(default)]
        job_id: Value,
        #[serde(default)]
        rttm: String,
    },
    /// A type this tool does not know yet: kept in the log, otherwise ignored.
    #[serde(other)]
    Other,
}

impl ServerMessage {
    /// Parses one text frame; the error carries a short reason for the report.
    pub fn parse(text: &str) -> Result<(Self, Value), String> {
        let raw: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let message = Self::deserialize(&raw).map_err(|e| format!("bad message: {e}"))?;
        Ok((message, raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_speaker_events() {
        let (m, _) = ServerMessage::parse(
            r#"{"type":"speaker","speaker":"SPEAKER_1","start":12.34,"end":null,"final":false,"confidence":0.9}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ServerMessage::Speaker {
                speaker: "SPEAKER_1".into(),
                start_seconds: 12.34,
                end_seconds: None,
                is_final: false
            }
        );
    }

    #[test]
    fn unknown_types_and_extra_fields_are_tolerated() {
        let (m, raw) = ServerMessage::parse(r#"{"type":"heartbeat","n":1}"#).unwrap();
        assert_eq!(m, ServerMessage::Other);
        assert_eq!(raw["n"], 1);
        let (m, _) =
            ServerMessage::parse(r#"{"type":"usage","audio_seconds":3.5,"credits":97}"#).unwrap();
        assert_eq!(m, ServerMessage::Usage {});
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        assert!(ServerMessage::parse("not json").is_err());
        assert!(ServerMessage::parse(r#"{"type":"speaker","speaker":"A"}"#).is_err());
        assert!(ServerMessage::parse(r#"{"no_type":1}"#).is_err());
    }

    #[test]
    fn start_request_omits_unset_options() {
        let start = StartRequest {
            kind: "start",
            sample_rate: 16000,
            channels: 1,
            encoding: Encoding::PcmS16le,
            latency_ms: 2000,
            name: "x",
            num_speakers: None,
            max_speakers: Some(4),
            extract: false,
        };
        let json: Value = serde_json::to_value(&start).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type":"start","sample_rate":16000,"channels":1,
                "encoding":"pcm_s16le","latency_ms":2000,"name":"x","max_speakers":4})
        );
    }
}
