//! One WebSocket session with its fault: connect, `start`, `ready` (the job
//! id), paced PCM with the fault applied, then `end` (or the fault's own
//! ending), reading the server's messages all along.
//!
//! The sender accounts exactly what the server was given: frames it
//! dropped for "packet loss" are not counted, garbage and odd-length frames
//! are (they are PCM to the server), and nothing after a frame that ends
//! the session (malformed or oversized) is sent.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::Soak;
use super::tally::{SessionRecord, Transport};
use crate::audio::{Encoding, StreamAudio};
use whospoke_protocol::{ClientMessage, ServerMessage, Start, WarningCode};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const FRAME_MS: u32 = 100;
const ENCODING: Encoding = Encoding::PcmS16le;

/// The faults a WebSocket session may carry; sessions take them in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsFault {
    None,
    /// 10 % of the audio frames are never sent.
    Loss,
    /// The socket is shut (TCP FIN, no close frame, no `end`) mid-stream.
    Drop,
    /// Frames split at odd byte offsets (half samples carried over).
    OddFrames,
    /// Some frames replaced by random bytes of random length.
    Garbage,
    /// A text frame that is not JSON, mid-stream.
    BadJson,
    /// A text frame of the wrong JSON types.
    WrongTypes,
    /// A binary frame just over the server's frame limit.
    OversizedFrame,
    /// A binary frame far over the limit (the protocol layer refuses it).
    HugeFrame,
    /// A text frame over the server's text limit.
    OversizedText,
}

impl WsFault {
    /// Clean sessions come up twice as often as each fault.
    pub const ROTATION: [Self; 11] = [
        Self::None,
        Self::Loss,
        Self::Drop,
        Self::OddFrames,
        Self::None,
        Self::Garbage,
        Self::BadJson,
        Self::WrongTypes,
        Self::OversizedFrame,
        Self::HugeFrame,
        Self::OversizedText,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Loss => "ws_loss_10pct",
            Self::Drop => "ws_drop_mid_stream",
            Self::OddFrames => "ws_odd_length_pcm",
            Self::Garbage => "ws_garbage_binary",
            Self::BadJson => "ws_bad_json",
            Self::WrongTypes => "ws_wrong_types",
            Self::OversizedFrame => "ws_oversized_frame",
            Self::HugeFrame => "ws_huge_frame",
            Self::OversizedText => "ws_oversized_text",
        }
    }

    /// Whether one injected frame ends the session at the fault point.
    fn ends_session(self) -> bool {
        matches!(
            self,
            Self::BadJson
                | Self::WrongTypes
                | Self::OversizedFrame
                | Self::HugeFrame
                | Self::OversizedText
        )
    }
}

/// Runs one session to its end.
pub async fn session(
    soak: &Soak,
    name: String,
    fault: WsFault,
    audio: StreamAudio,
) -> SessionRecord {
    let mut record = SessionRecord::new(
        Transport::Websocket,
        name,
        fault.name(),
        soak.epoch.seconds(),
    );
    match open(soak, &audio, &mut record).await {
        Ok(socket) => stream(soak, socket, fault, &audio, &mut record).await,
        Err(reason) => record.ending = reason,
    }
    record.ended_at_seconds = soak.epoch.seconds();
    record
}

/// Connects, sends `start`, waits for `ready` and keeps its job id.
async fn open(
    soak: &Soak,
    audio: &StreamAudio,
    record: &mut SessionRecord,
) -> Result<Socket, String> {
    let mut socket = connect(soak, &soak.settings.api_key).await?;
    let start = ClientMessage::Start(Start {
        sample_rate: Some(audio.sample_rate.into()),
        channels: Some(audio.channels.into()),
        encoding: Some(ENCODING.into()),
        latency_ms: Some(i64::try_from(soak.settings.latency_ms).unwrap_or(i64::MAX)),
        name: Some(record.name.clone()),
        extract: Some(false),
        ..Start::default()
    });
    let start = serde_json::to_string(&start).map_err(|e| e.to_string())?;
    socket
        .send(Message::text(start))
        .await
        .map_err(|e| format!("sending start: {e}"))?;
    let deadline = Instant::now() + soak.settings.connect_timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, socket.next())
            .await
            .map_err(|_| "no ready: timed out".to_owned())?;
        match next {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(&text) {
                Ok(ServerMessage::Ready { job_id, .. }) => {
                    record.job_id = Some(job_id);
                    return Ok(socket);
                }
                Ok(ServerMessage::Error { code, .. }) => {
                    return Err(format!("refused: {code}"));
                }
                _ => {}
            },
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("closed before ready: {frame:?}"));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("socket error before ready: {e}")),
            None => return Err("socket ended before ready".to_owned()),
        }
    }
}

/// Opens the stream endpoint's socket with `key`; an HTTP refusal is an error.
pub async fn connect(soak: &Soak, key: &str) -> Result<Socket, String> {
    let mut request = soak
        .settings
        .ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let key = HeaderValue::from_str(key).map_err(|e| e.to_string())?;
    request.headers_mut().insert("X-API-Key", key);
    match timeout(
        soak.settings.connect_timeout,
        tokio_tungstenite::connect_async(request),
    )
    .await
    {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(response))) => {
            Err(format!("refused: HTTP {}", response.status().as_u16()))
        }
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err("connect: timed out".to_owned()),
    }
}

/// Audio on a clock and the server's messages at once, in one loop that
/// owns the socket (so a drop can shut the TCP stream itself).
async fn stream(
    soak: &Soak,
    mut socket: Socket,
    fault: WsFault,
    audio: &StreamAudio,
    record: &mut SessionRecord,
) {
    let mut rng = fastrand::Rng::with_seed(soak.settings.seed ^ hash(&record.name));
    let mut frames = audio.frames(FRAME_MS, ENCODING).enumerate();
    let total = (audio.duration_seconds() * 1000.0 / f64::from(FRAME_MS)).ceil() as usize;
    // The fault point of the faults that strike once: 20–80 % into the audio.
    let strike_at = total / 5 + rng.usize(..(total * 3 / 5).max(1));
    let bytes_per_frame = ENCODING.bytes_per_sample() * usize::from(audio.channels);
    let origin = Instant::now();
    let mut bytes_sent = 0usize;
    let mut next_due = Some(origin);
    // After `end` or the fault: how long the server has to finish.
    let mut finish_by: Option<Instant> = None;
    let mut dropped = false;
    let mut end_sent_at: Option<Instant> = None;
    loop {
        let due = next_due.unwrap_or_else(Instant::now);
        let wait_end = finish_by.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            next = socket.next() => match next {
                Some(Ok(Message::Text(text))) => {
                    let had_completed = record.completed_seconds.is_some();
                    match heard(&text, record) {
                        Heard::Ended => {
                            if let (Some(at), false, true) =
                                (end_sent_at, had_completed, record.completed_seconds.is_some())
                            {
                                record.completion_lag_seconds = Some(at.elapsed().as_secs_f64());
                            }
                            // Server-side end: it sends nothing more we need.
                            next_due = None;
                            finish_by
                                .get_or_insert(Instant::now() + soak.settings.completion_timeout);
                        }
                        // As a well-behaved client does: end now, so no audio is in flight.
                        Heard::ShuttingDown if next_due.is_some() => {
                            if socket.send(end_message()).await.is_ok() {
                                record.ending = "end (server shutting down)".to_owned();
                                end_sent_at = Some(Instant::now());
                            }
                            next_due = None;
                            finish_by
                                .get_or_insert(Instant::now() + soak.settings.completion_timeout);
                        }
                        Heard::ShuttingDown | Heard::Nothing => {}
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            () = sleep_until(due), if next_due.is_some() => {
                let Some((index, frame)) = frames.next() else {
                    if let Err(e) = socket.send(end_message()).await {
                        record.ending = format!("sending end: {e}");
                        break;
                    }
                    record.ending = "end".to_owned();
                    end_sent_at = Some(Instant::now());
                    next_due = None;
                    finish_by = Some(Instant::now() + soak.settings.completion_timeout);
                    continue;
                };
                next_due = Some(origin + Duration::from_secs_f64(frame.end_seconds));
                let strike = index == strike_at;
                let sent = if strike && fault == WsFault::Drop {
                    soak.tally.fault(fault.name());
                    shut(&mut socket).await;
                    record.ending = "dropped".to_owned();
                    dropped = true;
                    next_due = None;
                    finish_by = Some(Instant::now() + soak.settings.completion_timeout);
                    Ok(0)
                } else if strike && fault.ends_session() {
                    soak.tally.fault(fault.name());
                    record.ending = format!("injected {}", fault.name());
                    next_due = None;
                    finish_by = Some(Instant::now() + soak.settings.completion_timeout);
                    let message = ending_frame(fault, soak.settings.max_frame_bytes, &mut rng);
                    socket.send(message).await.map(|()| 0)
                } else {
                    send_audio(&mut socket, fault, frame.bytes, &mut rng, soak).await
                };
                match sent {
                    Ok(bytes) => bytes_sent += bytes,
                    Err(e) => {
                        if record.ending.is_empty() {
                            record.ending = format!("send failed: {e}");
                        }
                        // The server may have ended it (shutdown): read on.
                        next_due = None;
                        finish_by.get_or_insert(Instant::now() + soak.settings.completion_timeout);
                    }
                }
            },
            () = sleep_until(wait_end), if finish_by.is_some() => {
                if !dropped && record.completed_seconds.is_none() {
                    record.ending.push_str(" (no completed in time)");
                }
                break;
            }
        }
    }
    let whole_frames = bytes_sent / bytes_per_frame;
    record.audio_sent_seconds = whole_frames as f64 / f64::from(audio.sample_rate);
    if record.ending.is_empty() {
        record.ending = "closed by the server".to_owned();
    }
    if !dropped {
        let _ = timeout(Duration::from_secs(5), socket.close(None)).await;
    }
}

/// Sends one frame's audio with the stream's fault; the bytes given to the server.
async fn send_audio(
    socket: &mut Socket,
    fault: WsFault,
    bytes: Vec<u8>,
    rng: &mut fastrand::Rng,
    soak: &Soak,
) -> Result<usize, tungstenite::Error> {
    match fault {
        WsFault::Loss if rng.f64() < 0.1 => {
            soak.tally.fault(fault.name());
            Ok(0)
        }
        WsFault::OddFrames if bytes.len() > 2 && rng.bool() => {
            soak.tally.fault(fault.name());
            // An odd cut splits a sample: the server carries the half over.
            let cut = 1 + 2 * rng.usize(..bytes.len() / 2 - 1);
            let len = bytes.len();
            socket.send(Message::binary(bytes[..cut].to_vec())).await?;
            socket.send(Message::binary(bytes[cut..].to_vec())).await?;
            Ok(len)
        }
        WsFault::Garbage if rng.f64() < 0.05 => {
            soak.tally.fault(fault.name());
            let len = rng.usize(1..=6400);
            let garbage: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
            let len = garbage.len();
            socket.send(Message::binary(garbage)).await?;
            Ok(len)
        }
        _ => {
            let len = bytes.len();
            socket.send(Message::binary(bytes)).await?;
            Ok(len)
        }
    }
}

/// The one frame of a session-ending fault.
fn ending_frame(fault: WsFault, max_frame_bytes: usize, rng: &mut fastrand::Rng) -> Message {
    match fault {
        WsFault::BadJson => Message::text(r#"{"type":"end""#),
        WsFault::WrongTypes => {
            let choices = [r#"{"type":5}"#, r#"{"type":["end"]}"#, r#"[1,2,3]"#];
            Message::text(choices[rng.usize(..choices.len())])
        }
        WsFault::OversizedFrame => Message::binary(vec![0u8; max_frame_bytes + 2]),
        WsFault::HugeFrame => Message::binary(vec![0u8; max_frame_bytes * 4]),
        WsFault::OversizedText => Message::text(format!(
            r#"{{"type":"keepalive","pad":"{}"}}"#,
            "x".repeat(8192)
        )),
        _ => end_message(),
    }
}

/// Shuts our side of the TCP stream: no close frame, no `end`; the server
/// reads all we sent, then the end of the stream.
async fn shut(socket: &mut Socket) {
    if let MaybeTlsStream::Plain(tcp) = socket.get_mut() {
        let _ = tcp.shutdown().await;
    }
}

/// Records a server message; true when it ends the session (`error` or `completed`).
/// What a server message means for the stream.
enum Heard {
    Nothing,
    /// The server ended the stream (an error or `completed`).
    Ended,
    /// The server asks the client to end.
    ShuttingDown,
}

fn heard(text: &str, record: &mut SessionRecord) -> Heard {
    match serde_json::from_str(text) {
        Ok(ServerMessage::Error { code, .. }) => {
            if record.ending.is_empty() {
                record.ending = format!("server:{code}");
            }
            record.server_errors.push(code);
            Heard::Ended
        }
        Ok(ServerMessage::Completed(done)) => {
            record.completed_seconds = Some(done.duration_seconds);
            Heard::Ended
        }
        Ok(ServerMessage::Warning {
            code: WarningCode::ShuttingDown,
            ..
        }) => Heard::ShuttingDown,
        Ok(ServerMessage::Warning { code, .. }) => {
            record.behind |= code == WarningCode::Behind;
            Heard::Nothing
        }
        _ => Heard::Nothing,
    }
}

fn end_message() -> Message {
    Message::text(serde_json::to_string(&ClientMessage::End).unwrap_or_default())
}

/// A stable per-name seed, so a run replays with the same `--seed`.
pub fn hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
