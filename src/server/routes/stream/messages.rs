//! The stream protocol's JSON messages and close codes.

use axum::extract::ws::{CloseFrame, Message};
use serde::Deserialize;
use serde_json::json;

use crate::live::{Event, StartFields};
use crate::server::event_json::event_json;

/// Close codes (RFC 6455 §7.4 and the application range).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const BAD_REQUEST: u16 = 4400;
    pub const PAYMENT_REQUIRED: u16 = 4402;
    pub const TIMEOUT: u16 = 4408;
}

/// Largest text message; a `start` with every field and a long name is far smaller.
pub const MAX_TEXT_BYTES: usize = 4 * 1024;

/// A text message from the client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Start(StartFields),
    Keepalive {},
    Finalize {},
    End {},
}

/// Why a text message was refused.
#[derive(Debug)]
pub enum BadMessage {
    TooLarge,
    Invalid(serde_json::Error),
}

impl ClientMessage {
    /// Parses a text message, refusing an oversize one before parsing it.
    pub fn parse(text: &str) -> Result<Self, BadMessage> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(BadMessage::TooLarge);
        }
        serde_json::from_str(text).map_err(BadMessage::Invalid)
    }
}

/// Why a session is refused or ends early: the error frame and the close that follows it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
    pub close: u16,
}

impl Failure {
    pub fn new(code: &'static str, message: impl Into<String>, close: u16) -> Self {
        Self {
            code,
            message: message.into(),
            close,
        }
    }
}

/// Everything the server sends, in order, through the connection's writer.
#[derive(Debug)]
pub enum Outgoing {
    Event(Event),
    /// An error frame, then the close.
    Failure(Failure),
}

impl From<Event> for Outgoing {
    fn from(event: Event) -> Self {
        Self::Event(event)
    }
}

impl Outgoing {
    /// The frames to send: a JSON text message, and the close that ends the
    /// connection after it, if any.
    pub fn into_frames(self) -> (Message, Option<Message>) {
        let (body, close) = match self {
            Self::Event(event) => {
                // The job is done: nothing follows `completed`.
                let close = matches!(event, Event::Completed(_)).then_some(close::NORMAL);
                (event_json(&event), close)
            }
            Self::Failure(failure) => (
                json!({ "type": "error", "code": failure.code, "message": failure.message }),
                Some(failure.close),
            ),
        };
        let close = close.map(|code| {
            Message::Close(Some(CloseFrame {
                code,
                reason: "".into(),
            }))
        });
        (Message::Text(body.to_string().into()), close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_messages() {
        let start: ClientMessage = serde_json::from_str(
            r#"{"type":"start","sample_rate":16000,"channels":1,"encoding":"pcm_s16le","extra":1}"#,
        )
        .unwrap();
        assert!(matches!(start, ClientMessage::Start(f) if f.sample_rate == Some(16_000)));
        let end: ClientMessage = serde_json::from_str(r#"{"type":"end"}"#).unwrap();
        assert!(matches!(end, ClientMessage::End {}));
        assert!(matches!(
            ClientMessage::parse(r#"{"type":"start","sample_rate":"x"}"#),
            Err(BadMessage::Invalid(_))
        ));
    }

    #[test]
    fn refuses_oversize_messages_before_parsing() {
        let padded = format!(r#"{{"type":"keepalive"}}{}"#, " ".repeat(MAX_TEXT_BYTES));
        assert!(matches!(
            ClientMessage::parse(&padded),
            Err(BadMessage::TooLarge)
        ));
        let fits = format!(
            r#"{{"type":"keepalive"}}{}"#,
            " ".repeat(MAX_TEXT_BYTES - 20)
        );
        assert!(matches!(
            ClientMessage::parse(&fits),
            Ok(ClientMessage::Keepalive {})
        ));
    }
}
