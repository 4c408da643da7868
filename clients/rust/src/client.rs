//! What a client sends: JSON text messages between its binary audio frames.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest text message the server reads; a `start` with every field and a
/// long name is far smaller.
pub const MAX_TEXT_BYTES: usize = 4 * 1024;

/// A text message from the client. Fields a message does not know are
/// ignored, so older servers accept newer clients' options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Opens the stream: the first message, before any audio.
    Start(Start),
    /// Keeps a silent stream from timing out.
    Keepalive,
    /// Asks for finals of everything sent so far; the stream goes on.
    Finalize,
    /// No more audio: the server sends its last finals and `completed`.
    End,
}

/// Why a text message was refused.
#[derive(Debug)]
pub enum ParseError {
    /// Over [`MAX_TEXT_BYTES`]; not parsed at all.
    TooLarge,
    Invalid(serde_json::Error),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => write!(f, "text messages are at most {MAX_TEXT_BYTES} bytes"),
            Self::Invalid(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ParseError {}

impl ClientMessage {
    /// Parses a text message, refusing an oversize one before parsing it.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(ParseError::TooLarge);
        }
        serde_json::from_str(text).map_err(ParseError::Invalid)
    }
}

/// The options of a `start` message. Numbers are kept as sent, so the server
/// can say which range a value is out of; unset options take the defaults
/// noted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Start {
    /// Hz, 8000–48000; an Opus stream's is 8000, 12000, 16000, 24000 or 48000. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<i64>,
    /// 1 or 2, interleaved. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<i64>,
    /// How binary frames carry the audio. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// Exactly this many speakers, 1–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_speakers: Option<i64>,
    /// At most this many speakers, 1–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_speakers: Option<i64>,
    /// How far finals trail the audio, 500–5000 ms (default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// Cut one track per speaker when the stream ends (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<bool>,
    /// The job's file name (default `stream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the finished job's webhook is POSTed; http or https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The finished job's timeline has one speaker at a time (default false;
    /// the live events stay overlap-aware).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<bool>,
}

/// How the binary frames carry audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Interleaved 16-bit little-endian PCM, frames split anywhere.
    PcmS16le,
    /// Interleaved 32-bit float little-endian PCM, frames split anywhere.
    PcmF32le,
    /// One raw Opus packet per binary frame.
    Opus,
    /// A name the server does not take: kept, so its refusal can name it.
    #[serde(untagged)]
    Unsupported(String),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_every_message() {
        let start = ClientMessage::parse(
            r#"{"type":"start","sample_rate":16000,"channels":1,"encoding":"pcm_s16le","extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            start,
            ClientMessage::Start(Start {
                sample_rate: Some(16_000),
                channels: Some(1),
                encoding: Some(Encoding::PcmS16le),
                ..Start::default()
            })
        );
        for (text, message) in [
            (r#"{"type":"keepalive"}"#, ClientMessage::Keepalive),
            (r#"{"type":"finalize","x":[1]}"#, ClientMessage::Finalize),
            (r#"{"type":"end"}"#, ClientMessage::End),
        ] {
            assert_eq!(ClientMessage::parse(text).unwrap(), message);
        }
    }

    #[test]
    fn keeps_unsupported_encodings_and_refuses_bad_types() {
        let ClientMessage::Start(start) =
            ClientMessage::parse(r#"{"type":"start","encoding":"mp3"}"#).unwrap()
        else {
            panic!("not a start");
        };
        assert_eq!(start.encoding, Some(Encoding::Unsupported("mp3".into())));
        for bad in [
            r#"{"type":"start","sample_rate":"x"}"#,
            r#"{"type":"start","encoding":5}"#,
            r#"{"type":"stop"}"#,
            r#"{"sample_rate":16000}"#,
            "not json",
        ] {
            assert!(
                matches!(ClientMessage::parse(bad), Err(ParseError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_oversize_messages_before_parsing() {
        let padded = format!(r#"{{"type":"keepalive"}}{}"#, " ".repeat(MAX_TEXT_BYTES));
        assert!(matches!(
            ClientMessage::parse(&padded),
            Err(ParseError::TooLarge)
        ));
        let fits = format!(
            r#"{{"type":"keepalive"}}{}"#,
            " ".repeat(MAX_TEXT_BYTES - 20)
        );
        assert_eq!(
            ClientMessage::parse(&fits).unwrap(),
            ClientMessage::Keepalive
        );
    }

    #[test]
    fn serializes_only_the_options_set() {
        let start = ClientMessage::Start(Start {
            sample_rate: Some(48_000),
            channels: Some(2),
            encoding: Some(Encoding::Opus),
            max_speakers: Some(4),
            exclusive: Some(true),
            ..Start::default()
        });
        assert_eq!(
            serde_json::to_value(&start).unwrap(),
            json!({"type": "start", "sample_rate": 48000, "channels": 2,
                   "encoding": "opus", "max_speakers": 4, "exclusive": true})
        );
        assert_eq!(
            serde_json::to_value(ClientMessage::End).unwrap(),
            json!({"type": "end"})
        );
    }
}
