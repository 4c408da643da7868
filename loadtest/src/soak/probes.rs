//! Requests that must be refused without harm, sent in turn at a modest
//! rate: bad keys on each entry point, broken `start`s, audio before
//! `start`, garbage and oversized SDP offers.

use futures_util::{SinkExt, StreamExt};
use reqwest::header::CONTENT_TYPE;
use tokio_tungstenite::tungstenite::Message;

use super::Soak;
use super::tally::ProbeRecord;
use super::whip::WHIP_PATH;
use super::ws::connect;
use whospoke_protocol::ServerMessage;

const BAD_KEY: &str = "ap_soak_not_a_key";

#[derive(Debug, Clone, Copy)]
pub enum Probe {
    BadKeyHttp,
    BadKeyWebsocket,
    BadKeyWhip,
    BadStart,
    AudioBeforeStart,
    GarbageSdp,
    OversizedSdp,
}

impl Probe {
    pub const ROTATION: [Self; 7] = [
        Self::BadKeyHttp,
        Self::BadStart,
        Self::BadKeyWebsocket,
        Self::GarbageSdp,
        Self::BadKeyWhip,
        Self::AudioBeforeStart,
        Self::OversizedSdp,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::BadKeyHttp => "bad_key_http",
            Self::BadKeyWebsocket => "bad_key_websocket",
            Self::BadKeyWhip => "bad_key_whip",
            Self::BadStart => "ws_bad_start",
            Self::AudioBeforeStart => "ws_audio_before_start",
            Self::GarbageSdp => "whip_garbage_sdp",
            Self::OversizedSdp => "whip_oversized_sdp",
        }
    }

    /// The answers that are right: a refusal in the API's terms (a 429
    /// from the per-IP limit is right for a bad key too).
    fn expected(self) -> &'static [&'static str] {
        match self {
            Self::BadKeyHttp | Self::BadKeyWhip => &["HTTP 401", "HTTP 429"],
            Self::BadKeyWebsocket => &["error unauthorized", "HTTP 429"],
            Self::BadStart => &["error bad_start"],
            Self::AudioBeforeStart => &["error audio_before_start"],
            Self::GarbageSdp => &["HTTP 400"],
            Self::OversizedSdp => &["HTTP 413"],
        }
    }
}

/// Sends one probe; `None` when the server could not be reached at all
/// (it is restarting).
pub async fn send(soak: &Soak, probe: Probe) -> Option<ProbeRecord> {
    let outcome = match probe {
        Probe::BadKeyHttp => {
            let url = soak.settings.base.join("/api/v1/speaker/jobs").ok()?;
            let response = soak.http.get(url).header("X-API-Key", BAD_KEY).send().await;
            format!("HTTP {}", response.ok()?.status().as_u16())
        }
        Probe::BadKeyWhip => whip_offer(soak, BAD_KEY, "v=0\r\n".to_owned()).await?,
        Probe::GarbageSdp => {
            let key = soak.settings.api_key.clone();
            whip_offer(soak, &key, "hello, not SDP".to_owned()).await?
        }
        Probe::OversizedSdp => {
            let key = soak.settings.api_key.clone();
            let sdp = format!("v=0\r\n{}", "a=x\r\n".repeat(40_000));
            whip_offer(soak, &key, sdp).await?
        }
        Probe::BadKeyWebsocket => first_answer(soak, BAD_KEY, None).await?,
        Probe::BadStart => {
            let start = r#"{"type":"start","sample_rate":"loud","channels":-1,"encoding":7}"#;
            let key = soak.settings.api_key.clone();
            first_answer(soak, &key, Some(Message::text(start))).await?
        }
        Probe::AudioBeforeStart => {
            let key = soak.settings.api_key.clone();
            first_answer(soak, &key, Some(Message::binary(vec![0u8; 3200]))).await?
        }
    };
    let expected = probe.expected().contains(&outcome.as_str());
    Some(ProbeRecord {
        kind: probe.name(),
        outcome,
        expected,
    })
}

async fn whip_offer(soak: &Soak, key: &str, sdp: String) -> Option<String> {
    let url = soak.settings.base.join(WHIP_PATH).ok()?;
    let response = soak
        .http
        .post(url)
        .bearer_auth(key)
        .header(CONTENT_TYPE, "application/sdp")
        .body(sdp)
        .send()
        .await
        .ok()?;
    Some(format!("HTTP {}", response.status().as_u16()))
}

/// Opens the stream socket with `key`, sends `first` (if any), and names
/// the first answer: `error <code>`, or the HTTP refusal.
async fn first_answer(soak: &Soak, key: &str, first: Option<Message>) -> Option<String> {
    let mut socket = match connect(soak, key).await {
        Ok(socket) => socket,
        Err(reason) if reason.starts_with("refused: ") => {
            return Some(reason["refused: ".len()..].to_owned());
        }
        Err(_) => return None,
    };
    if let Some(first) = first {
        socket.send(first).await.ok()?;
    }
    let answer = tokio::time::timeout(soak.settings.connect_timeout, async {
        while let Some(Ok(message)) = socket.next().await {
            match message {
                Message::Text(text) => {
                    return match serde_json::from_str(&text) {
                        Ok(ServerMessage::Error { code, .. }) => {
                            format!("error {code}")
                        }
                        Ok(ServerMessage::Ready { .. }) => "ready".to_owned(),
                        _ => format!("unexpected text: {text}"),
                    };
                }
                Message::Close(frame) => return format!("closed: {frame:?}"),
                _ => {}
            }
        }
        "socket ended".to_owned()
    })
    .await
    .unwrap_or_else(|_| "no answer".to_owned());
    let _ = socket.close(None).await;
    Some(answer)
}
