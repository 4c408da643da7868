//! What the stream's writer sends: the live protocol's messages, and the
//! close frame that ends the connection after some of them.

use axum::extract::ws::{CloseFrame, Message};
use whospoke_protocol::{ServerMessage, close};

use crate::live::Event;
use crate::server::live_message::live_message;

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
        let (message, close) = match self {
            Self::Event(event) => {
                // The job is done: nothing follows `completed`.
                let close = matches!(event, Event::Completed(_)).then_some(close::NORMAL);
                (live_message(&event), close)
            }
            Self::Failure(failure) => (
                ServerMessage::Error {
                    code: failure.code.to_owned(),
                    message: failure.message,
                },
                Some(failure.close),
            ),
        };
        let close = close.map(|code| {
            Message::Close(Some(CloseFrame {
                code,
                reason: "".into(),
            }))
        });
        (Message::Text(message.to_text().into()), close)
    }
}
