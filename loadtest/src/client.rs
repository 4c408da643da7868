//! One live stream: connect, `start`, wait for `ready`, then send paced
//! audio and read events at the same time, `end`, and wait for `completed`.
//!
//! Sending and reading run concurrently in one task: a client that stops
//! reading while its writes block could deadlock with a server doing the
//! same. Whatever the server does (error frames, garbage, closing early,
//! stalling) is recorded in the [`StreamRecord`]; nothing here panics or
//! gives up the run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;
use whospoke_protocol::{ClientMessage, ServerMessage, Start, WarningCode};

use crate::audio::{Encoding, StreamAudio};
use crate::clock::Epoch;
use crate::delay::SendLog;
use crate::record::{ErrorKind, Received, RunProgress, StreamRecord};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Settings shared by every stream of a run.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Full `ws://…/api/v1/speaker/stream` address.
    pub url: Url,
    pub api_key: String,
    pub latency_ms: u64,
    pub encoding: Encoding,
    pub frame_ms: u32,
    /// Audio seconds per wall second; 0 sends as fast as the socket takes.
    pub pace: f64,
    pub num_speakers: Option<u32>,
    pub max_speakers: Option<u32>,
    pub extract: bool,
    pub connect_timeout: Duration,
    /// How long to wait for `completed` after `end`, and for one blocked send.
    pub completion_timeout: Duration,
}

/// State the sending and reading halves share.
#[derive(Default)]
struct Shared {
    /// Audio seconds sent, as `f64` bits.
    audio_sent: AtomicU64,
    end_sent_at: OnceLock<f64>,
    /// Set by the reader when the stream is over; the sender stops.
    stop: AtomicBool,
}

impl Shared {
    fn audio_sent_seconds(&self) -> f64 {
        f64::from_bits(self.audio_sent.load(Ordering::Relaxed))
    }
}

/// How often the reader wakes to check its deadline while nothing arrives.
const READ_POLL: Duration = Duration::from_millis(500);
/// After `completed`, how long the server has to close the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Runs one stream to the end, starting `start_at_seconds` into the run.
pub async fn run_stream(
    index: usize,
    audio: StreamAudio,
    config: Arc<StreamConfig>,
    epoch: Epoch,
    start_at_seconds: f64,
    progress: Arc<RunProgress>,
) -> StreamRecord {
    let mut record = StreamRecord::new(index, &audio);
    sleep_until(epoch.instant(start_at_seconds).into()).await;
    record.connect_at_seconds = epoch.seconds();
    if let Some(socket) = open(&audio, &config, epoch, &mut record, &progress).await {
        let (sink, stream) = socket.split();
        let shared = Shared::default();
        let ((sink, sent), stream) = tokio::join!(
            send_audio(sink, &audio, &config, epoch, &shared, &progress),
            read_events(stream, &config, epoch, &shared, &mut record, &progress),
        );
        record.sends = sent.log;
        record.max_send_lag_seconds = sent.max_lag_seconds;
        record.end_sent_at_seconds = shared.end_sent_at.get().copied();
        if let Some(failure) = sent.failure {
            record.note(&progress, ErrorKind::SendFailure, failure);
        }
        // Close our side if the server has not; a failure here changes nothing.
        if let Ok(mut socket) = sink.reunite(stream) {
            let _ = timeout(CLOSE_GRACE, socket.close(None)).await;
        }
    }
    progress.count_stream_done();
    record
}

/// Connects, sends `start` and waits for `ready`. `None` when the stream
/// cannot go on (the reason is in `record`).
async fn open(
    audio: &StreamAudio,
    config: &StreamConfig,
    epoch: Epoch,
    record: &mut StreamRecord,
    progress: &RunProgress,
) -> Option<Socket> {
    let connect_failure = ErrorKind::Connect;
    let request = match client_request(config) {
        Ok(request) => request,
        Err(e) => {
            record.note(progress, connect_failure, e);
            return None;
        }
    };
    let mut socket = match timeout(
        config.connect_timeout,
        tokio_tungstenite::connect_async(request),
    )
    .await
    {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(tungstenite::Error::Http(response))) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let note = format!("refused: HTTP {} {}", response.status(), clip_text(&body));
            record.note(progress, connect_failure, note);
            return None;
        }
        Ok(Err(e)) => {
            record.note(progress, connect_failure, format!("connect: {e}"));
            return None;
        }
        Err(_) => {
            record.note(progress, connect_failure, "connect: timed out".into());
            return None;
        }
    };

    let start = ClientMessage::Start(Start {
        sample_rate: Some(audio.sample_rate.into()),
        channels: Some(audio.channels.into()),
        encoding: Some(config.encoding.into()),
        latency_ms: Some(i64::try_from(config.latency_ms).unwrap_or(i64::MAX)),
        name: Some(audio.name().to_owned()),
        num_speakers: config.num_speakers.map(i64::from),
        max_speakers: config.max_speakers.map(i64::from),
        // Always sent: unset, the server would cut tracks.
        extract: Some(config.extract),
        ..Start::default()
    });
    let start = serde_json::to_string(&start).unwrap_or_default();
    if let Err(e) = socket.send(Message::text(start)).await {
        record.note(progress, connect_failure, format!("sending start: {e}"));
        return None;
    }

    let deadline = tokio::time::Instant::now() + config.connect_timeout;
    loop {
        let next = match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(next) => next,
            Err(_) => {
                record.note(progress, connect_failure, "no ready: timed out".into());
                return None;
            }
        };
        match next {
            Some(Ok(Message::Text(text))) => {
                let at_seconds = epoch.seconds();
                if let Some(ServerMessage::Ready { .. }) =
                    handle_text(text.as_str(), at_seconds, 0.0, record, progress)
                {
                    record.ready_at_seconds = Some(at_seconds);
                    record.ready = record.events.last().map(|r| r.raw.clone());
                    return Some(socket);
                }
            }
            Some(Ok(Message::Close(frame))) => {
                record.close_code = frame.as_ref().map(|f| u16::from(f.code));
                let note = format!("closed before ready: {}", describe_close(frame.as_ref()));
                record.note(progress, ErrorKind::UnexpectedClose, note);
                return None;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                let note = format!("socket error before ready: {e}");
                record.note(progress, ErrorKind::UnexpectedClose, note);
                return None;
            }
            None => {
                let note = "socket ended before ready".to_owned();
                record.note(progress, ErrorKind::UnexpectedClose, note);
                return None;
            }
        }
    }
}

fn client_request(
    config: &StreamConfig,
) -> Result<tungstenite::handshake::client::Request, String> {
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad URL {}: {e}", config.url))?;
    let key = HeaderValue::from_str(&config.api_key).map_err(|_| "bad API key".to_owned())?;
    request.headers_mut().insert("X-API-Key", key);
    Ok(request)
}

/// What the sender reports.
struct SendOutcome {
    log: SendLog,
    max_lag_seconds: f64,
    failure: Option<String>,
}

async fn send_audio(
    mut sink: SplitSink<Socket, Message>,
    audio: &StreamAudio,
    config: &StreamConfig,
    epoch: Epoch,
    shared: &Shared,
    progress: &RunProgress,
) -> (SplitSink<Socket, Message>, SendOutcome) {
    let mut outcome = SendOutcome {
        log: SendLog::default(),
        max_lag_seconds: 0.0,
        failure: None,
    };
    let origin = epoch.seconds();
    let mut credited_ms = 0;
    for frame in audio.frames(config.frame_ms, config.encoding) {
        if shared.stop.load(Ordering::Relaxed) {
            return (sink, outcome);
        }
        // A microphone hands over a frame once its last sample is recorded.
        let due = (config.pace > 0.0).then(|| origin + frame.end_seconds / config.pace);
        if let Some(due) = due {
            sleep_until(epoch.instant(due).into()).await;
        }
        let message = Message::binary(frame.bytes);
        if let Err(reason) = send_bounded(&mut sink, message, config.completion_timeout).await {
            // A reader that already saw the close owns that error.
            if !shared.stop.load(Ordering::Relaxed) {
                outcome.failure = Some(format!("sending audio: {reason}"));
            }
            return (sink, outcome);
        }
        let sent_at = epoch.seconds();
        if let Some(due) = due {
            outcome.max_lag_seconds = outcome.max_lag_seconds.max(sent_at - due);
        }
        outcome.log.push(frame.end_seconds, sent_at);
        shared
            .audio_sent
            .store(frame.end_seconds.to_bits(), Ordering::Relaxed);
        let total_ms = (frame.end_seconds * 1000.0).round() as u64;
        progress.add_audio_ms(total_ms - credited_ms);
        credited_ms = total_ms;
    }
    if let Err(reason) = send_bounded(
        &mut sink,
        Message::text(serde_json::to_string(&ClientMessage::End).unwrap_or_default()),
        config.completion_timeout,
    )
    .await
    {
        if !shared.stop.load(Ordering::Relaxed) {
            outcome.failure = Some(format!("sending end: {reason}"));
        }
        return (sink, outcome);
    }
    let _ = shared.end_sent_at.set(epoch.seconds());
    (sink, outcome)
}

async fn send_bounded(
    sink: &mut SplitSink<Socket, Message>,
    message: Message,
    limit: Duration,
) -> Result<(), String> {
    match timeout(limit, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("blocked for {} s", limit.as_secs())),
    }
}

async fn read_events(
    mut stream: SplitStream<Socket>,
    config: &StreamConfig,
    epoch: Epoch,
    shared: &Shared,
    record: &mut StreamRecord,
    progress: &RunProgress,
) -> SplitStream<Socket> {
    let unexpected_close = ErrorKind::UnexpectedClose;
    loop {
        let next = match timeout(READ_POLL, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                let now = epoch.seconds();
                if let Some(done) = record.completed_at_seconds {
                    if now - done > CLOSE_GRACE.as_secs_f64() {
                        break; // completed but not closed: we close it
                    }
                } else if let Some(&end) = shared.end_sent_at.get()
                    && now - end > config.completion_timeout.as_secs_f64()
                {
                    let note = format!(
                        "no completed {} s after end",
                        config.completion_timeout.as_secs()
                    );
                    record.note(progress, ErrorKind::MissingCompleted, note);
                    break;
                }
                continue;
            }
        };
        let completed = record.completed_at_seconds.is_some();
        match next {
            Some(Ok(Message::Text(text))) => {
                let audio_sent = shared.audio_sent_seconds();
                handle_text(text.as_str(), epoch.seconds(), audio_sent, record, progress);
            }
            Some(Ok(Message::Binary(bytes))) => {
                let note = format!("unexpected binary message of {} bytes", bytes.len());
                record.note(progress, ErrorKind::Malformed, note);
            }
            Some(Ok(Message::Close(frame))) => {
                record.close_code = frame.as_ref().map(|f| u16::from(f.code));
                // After `completed`, only a non-normal close code is a fault.
                let normal = matches!(record.close_code, None | Some(1000));
                if !completed || !normal {
                    let note = format!("closed: {}", describe_close(frame.as_ref()));
                    record.note(progress, unexpected_close, note);
                }
                break;
            }
            Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
            Some(Err(e)) => {
                if !completed {
                    record.note(progress, unexpected_close, format!("socket error: {e}"));
                }
                break;
            }
            None => {
                if !completed {
                    record.note(
                        progress,
                        unexpected_close,
                        "socket ended without close".into(),
                    );
                }
                break;
            }
        }
    }
    if record.completed_at_seconds.is_none() && record.errors.missing_completed == 0 {
        let note = "stream ended without completed".to_owned();
        record.note(progress, ErrorKind::MissingCompleted, note);
    }
    shared.stop.store(true, Ordering::Relaxed);
    stream
}

/// Records one text message and returns it when it parsed.
fn handle_text(
    text: &str,
    at_seconds: f64,
    audio_sent_seconds: f64,
    record: &mut StreamRecord,
    progress: &RunProgress,
) -> Option<ServerMessage> {
    let (message, raw) = match parse(text) {
        Ok(parsed) => parsed,
        Err(reason) => {
            let note = format!("{reason}: {}", clip_text(text));
            record.note(progress, ErrorKind::Malformed, note);
            return None;
        }
    };
    progress.count_event();
    match &message {
        ServerMessage::Error { code, message } => {
            let note = format!("error {code}: {message}");
            record.note(progress, ErrorKind::ErrorMessage, note);
        }
        ServerMessage::Warning {
            code: WarningCode::Behind,
            ..
        } => record.overloaded += 1,
        ServerMessage::Completed(done) => {
            record.completed_at_seconds = Some(at_seconds);
            record.rttm = Some(done.rttm.clone());
        }
        _ => {}
    }
    record.events.push(Received {
        at_seconds,
        audio_sent_seconds,
        message: message.clone(),
        raw,
    });
    Some(message)
}

/// Parses one text frame, keeping its JSON for the event log; the error is a
/// short reason for the report.
fn parse(text: &str) -> Result<(ServerMessage, serde_json::Value), String> {
    let raw: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let message = serde_json::from_value(raw.clone()).map_err(|e| format!("bad message: {e}"))?;
    Ok((message, raw))
}

fn describe_close(frame: Option<&tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) => format!("code {} {}", u16::from(f.code), clip_text(&f.reason)),
        None => "no close code".into(),
    }
}

/// Long server texts are cut so one bad message cannot flood the report.
fn clip_text(text: &str) -> String {
    const LIMIT: usize = 200;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
