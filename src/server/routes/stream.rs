//! `GET /api/v1/speaker/stream`: live diarization over a WebSocket, and the
//! stream tokens browsers use to open one.
//!
//! ```text
//! upgrade ─▶ auth ─▶ rate limit ─▶ slot ─▶ start ─▶ ready ─▶ audio / keepalive / finalize … ─▶ end
//!                                                     └─ events ◀─ live::Session          └▶ completed, 1000
//! ```
//!
//! Authentication happens after the upgrade, so a refusal is an `error` frame
//! and a close code a browser can read. One writer task owns the socket's
//! sending half; the reader, the session and its analysis thread all send
//! through it, so messages keep their order. The reader stops reading while
//! the session's analysis buffer is full, which turns into TCP backpressure.

pub(super) mod messages;

use std::error::Error as _;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use utoipa::ToSchema;
use whospoke_protocol::{ClientMessage, MAX_TEXT_BYTES, ParseError, close};

use crate::live::{Event, LiveError, Session, SpecError, StreamSpec};
use crate::server::AppState;
use crate::server::auth::{Caller, QueryCredentials, live_caller};
use crate::server::error::{ApiError, ErrorBody};
use messages::{Failure, Outgoing};

/// Messages waiting for the writer; beyond this the senders wait for the client.
const OUTGOING_CAPACITY: usize = 256;

/// How long the client has to answer our close before the socket is dropped.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(5);

/// The route template, as rate-limit buckets name it.
const ROUTE: &str = "GET /api/v1/speaker/stream";
/// How long a stream is still read after the client was told the server shuts down: time
/// for it to send `end`, so the audio already on its way is not lost.
const SHUTDOWN_READ_THROUGH: Duration = Duration::from_secs(3);

/// A single-use token that opens one stream (`?token=`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamToken {
    /// Seconds the token stays valid.
    pub expires_in: u64,
    pub token: String,
}

/// `POST /api/v1/speaker/stream/token`: a single-use token for `?token=`.
#[utoipa::path(
    post,
    path = "/api/v1/speaker/stream/token",
    summary = "A single-use token for opening a stream with ?token= (browsers cannot set headers)",
    responses((status = 200, description = "The token", body = StreamToken))
)]
pub async fn token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<StreamToken>, ApiError> {
    let token = state.stream_tokens.issue(&caller).await?;
    Ok(Json(StreamToken {
        expires_in: state.stream_tokens.ttl().as_secs(),
        token,
    }))
}

/// `GET /api/v1/speaker/stream`: upgrades, then speaks the stream protocol.
#[utoipa::path(
    get,
    path = "/api/v1/speaker/stream",
    summary = "Live diarization over a WebSocket (upgrade)",
    description = "Upgrade to a WebSocket. Authenticate with X-API-Key or Bearer, or ?api_key=, or ?token= from /api/v1/speaker/stream/token; a refused caller hears why in an error message before the close. Send {\"type\":\"start\",\"sample_rate\",\"channels\",\"encoding\":\"pcm_s16le\"|\"pcm_f32le\"|\"opus\",\"num_speakers\"?,\"max_speakers\"?,\"latency_ms\"?,\"extract\"?,\"name\"?,\"webhook_url\"?,\"exclusive\"?}, then binary audio; {\"type\":\"keepalive\"|\"finalize\"|\"end\"} control it. The server sends ready, speaker, relabel, usage, warning, error and completed messages as JSON text. The session becomes a job of type stream.",
    params(QueryCredentials),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a valid WebSocket upgrade request", body = ErrorBody),
        (status = 426, description = "The connection cannot be upgraded", body = ErrorBody),
    )
)]
pub async fn connect(
    State(state): State<AppState>,
    Query(query): Query<QueryCredentials>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Frames a little over the limit still arrive, so the client hears why
    // it is refused; far larger ones are cut off by the protocol layer.
    let ceiling = state
        .live
        .config()
        .max_frame_bytes
        .saturating_mul(2)
        .max(1 << 16);
    upgrade
        .max_message_size(ceiling)
        .max_frame_size(ceiling)
        .on_upgrade(move |socket| run(socket, state, headers, query))
}

async fn run(socket: WebSocket, state: AppState, headers: HeaderMap, query: QueryCredentials) {
    let _farewell = state.live.farewell();
    let (sink, mut incoming) = socket.split();
    let (out, outgoing) = mpsc::channel(OUTGOING_CAPACITY);
    let writer = tokio::spawn(write(sink, outgoing));
    converse(&state, &headers, &query, &mut incoming, out).await;
    let _ = writer.await;
    // Read until the client's close: dropping the socket with its frames
    // unread would reset the connection and lose our last messages.
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Some(Ok(_)) = incoming.next().await {}
    })
    .await;
}

/// Sends what arrives in order; once the client is gone or closed, keeps
/// draining, so no sender ever waits on a dead socket.
async fn write(mut sink: SplitSink<WebSocket, Message>, mut outgoing: mpsc::Receiver<Outgoing>) {
    let mut open = true;
    while let Some(message) = outgoing.recv().await {
        if !open {
            continue;
        }
        let (frame, close) = message.into_frames();
        open = sink.send(frame).await.is_ok();
        if let (true, Some(close)) = (open, close) {
            let _ = sink.send(close).await;
            open = false;
        }
    }
}

/// How a started session ended.
enum Ending {
    /// The client sent `end`.
    End,
    /// The socket closed or broke.
    Disconnected,
    /// The server ends it with an error frame first.
    Failure(Failure),
}

async fn converse(
    state: &AppState,
    headers: &HeaderMap,
    query: &QueryCredentials,
    incoming: &mut SplitStream<WebSocket>,
    out: mpsc::Sender<Outgoing>,
) {
    let session = match open(state, headers, query, incoming, &out).await {
        Ok(Some(session)) => session,
        Ok(None) => return,
        Err(failure) => {
            metrics::counter!("whospoke_live_sessions_refused_total", "reason" => failure.code)
                .increment(1);
            let _ = out.send(Outgoing::Failure(failure)).await;
            return;
        }
    };
    let job = session.job_id();
    let _ = out.send(Outgoing::Event(session.ready())).await;
    let (ending, session) = stream(state, incoming, &out, session).await;
    let reason = match &ending {
        Ending::End => "completed",
        Ending::Disconnected => "disconnected",
        Ending::Failure(failure) => failure.code,
    };
    metrics::counter!("whospoke_live_sessions_ended_total", "reason" => reason).increment(1);
    tracing::info!(job, reason, "stream ended");
    if let Ending::Failure(failure) = ending {
        // The client hears why at once; finalizing may take a while.
        let _ = out.send(Outgoing::Failure(failure)).await;
    }
    match session.end().await {
        Ok(completed) => {
            let _ = out
                .send(Outgoing::from(Event::Completed(Box::new(completed))))
                .await;
        }
        Err(e) => {
            tracing::error!(job, error = %e, "finalizing the stream failed");
            let _ = out
                .send(Outgoing::Failure(Failure::new(
                    "internal",
                    "The stream could not be finalized",
                    close::INTERNAL,
                )))
                .await;
        }
    }
}

/// Authenticates, admits and waits for a valid `start`; `None` when the
/// client left first.
async fn open(
    state: &AppState,
    headers: &HeaderMap,
    query: &QueryCredentials,
    incoming: &mut SplitStream<WebSocket>,
    out: &mpsc::Sender<Outgoing>,
) -> Result<Option<Session<Outgoing>>, Failure> {
    let caller = live_caller(state, headers, query)
        .await
        .map_err(|e| Failure::new("unauthorized", e.detail, close::POLICY))?;
    if state
        .limits
        .check(&format!("{} {ROUTE}", caller.identity))
        .await
        .is_err()
    {
        return Err(Failure::new(
            "rate_limited",
            "Rate limit exceeded. Try again later.",
            close::POLICY,
        ));
    }
    let live = &state.live;
    let slot = live.admit().ok_or_else(|| {
        Failure::new(
            "server_busy",
            "Too many live sessions; try again later",
            close::TRY_AGAIN_LATER,
        )
    })?;
    let idle = live.config().idle_timeout;
    let spec = loop {
        let message = tokio::select! {
            message = incoming.next() => message,
            () = tokio::time::sleep(idle) => return Err(idle_failure()),
            () = live.shutdown().cancelled() => return Err(shutdown_failure()),
        };
        match message {
            Some(Ok(Message::Text(text))) => match ClientMessage::parse(&text) {
                Ok(ClientMessage::Start(fields)) => {
                    break StreamSpec::try_from(fields).map_err(|e| bad_start(&e))?;
                }
                Ok(ClientMessage::Keepalive) => {}
                Ok(_) => {
                    return Err(Failure::new(
                        "bad_start",
                        "The first message must be {\"type\":\"start\", ...}",
                        close::BAD_REQUEST,
                    ));
                }
                Err(ParseError::TooLarge) => return Err(text_too_large()),
                Err(ParseError::Invalid(e)) => {
                    return Err(Failure::new(
                        "bad_start",
                        format!("Invalid start message: {e}"),
                        close::BAD_REQUEST,
                    ));
                }
            },
            Some(Ok(Message::Binary(_))) => {
                return Err(Failure::new(
                    "audio_before_start",
                    "Send {\"type\":\"start\", ...} before any audio",
                    close::POLICY,
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Ok(None),
        }
    };
    match live.start(slot, &caller.user_id, spec, out.clone()).await {
        Ok(session) => Ok(Some(session)),
        Err(LiveError::InsufficientCredits) => Err(Failure::new(
            "insufficient_credits",
            "Insufficient credits to start a stream",
            close::PAYMENT_REQUIRED,
        )),
        Err(e @ LiveError::Webhook(_)) => {
            Err(Failure::new("bad_start", e.to_string(), close::BAD_REQUEST))
        }
        Err(e) => {
            tracing::error!(error = %e, "starting a stream failed");
            Err(internal_failure())
        }
    }
}

/// Runs a started session until it ends; the session comes back for finalizing.
async fn stream(
    state: &AppState,
    incoming: &mut SplitStream<WebSocket>,
    out: &mpsc::Sender<Outgoing>,
    mut session: Session<Outgoing>,
) -> (Ending, Session<Outgoing>) {
    let config = state.live.config();
    let shutdown = state.live.shutdown();
    let deadline = Instant::now() + config.max_session;
    let mut idle_deadline = Instant::now() + config.idle_timeout;
    // Set once the client was told the server shuts down.
    let mut read_through: Option<Instant> = None;
    let ending = loop {
        let message = tokio::select! {
            message = incoming.next() => message,
            () = sleep_until(idle_deadline) => break Ending::Failure(idle_failure()),
            () = sleep_until(deadline) => break Ending::Failure(Failure::new(
                "max_duration",
                format!("Sessions last at most {} s", config.max_session.as_secs()),
                close::TIMEOUT,
            )),
            () = shutdown.cancelled(), if read_through.is_none() => {
                let _ = out.send(Outgoing::Event(Event::ShuttingDown)).await;
                read_through = Some(Instant::now() + SHUTDOWN_READ_THROUGH);
                continue;
            }
            () = sleep_until(read_through.unwrap_or(deadline)), if read_through.is_some() => {
                break Ending::Failure(shutdown_failure());
            }
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(e)) if too_large(&e) => {
                break Ending::Failure(frame_too_large(config.max_frame_bytes));
            }
            Some(Err(_)) | None => break Ending::Disconnected,
        };
        idle_deadline = Instant::now() + config.idle_timeout;
        match message {
            Message::Binary(frame) if frame.len() > config.max_frame_bytes => {
                break Ending::Failure(frame_too_large(config.max_frame_bytes));
            }
            Message::Binary(frame) => {
                if let Err(e) = session.push(&frame).await {
                    break Ending::Failure(push_failure(&e));
                }
            }
            Message::Text(text) => match ClientMessage::parse(&text) {
                Ok(ClientMessage::Keepalive) => {}
                Ok(ClientMessage::Finalize) => {
                    if session.finalize().is_err() {
                        break Ending::Failure(internal_failure());
                    }
                }
                Ok(ClientMessage::End) => break Ending::End,
                Ok(ClientMessage::Start(_)) => {
                    break Ending::Failure(Failure::new(
                        "bad_message",
                        "The stream has already started",
                        close::POLICY,
                    ));
                }
                Err(ParseError::TooLarge) => break Ending::Failure(text_too_large()),
                Err(ParseError::Invalid(e)) => {
                    break Ending::Failure(Failure::new(
                        "bad_message",
                        format!("Invalid message: {e}"),
                        close::POLICY,
                    ));
                }
            },
            Message::Close(_) => break Ending::Disconnected,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    };
    (ending, session)
}

fn bad_start(error: &SpecError) -> Failure {
    let code = if error.is_unsupported_encoding() {
        "unsupported_encoding"
    } else {
        "bad_start"
    };
    Failure::new(code, error.to_string(), close::BAD_REQUEST)
}

fn push_failure(error: &LiveError) -> Failure {
    match error {
        LiveError::CreditsExhausted => Failure::new(
            "credits_exhausted",
            error.to_string(),
            close::PAYMENT_REQUIRED,
        ),
        LiveError::BadAudio(_) => Failure::new("bad_audio", error.to_string(), close::BAD_REQUEST),
        other => {
            tracing::error!(error = %other, "stream audio failed");
            internal_failure()
        }
    }
}

/// Whether the socket failed on a message over the protocol layer's ceiling.
fn too_large(error: &axum::Error) -> bool {
    matches!(
        error
            .source()
            .and_then(|e| e.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(_))
    )
}

fn frame_too_large(max_frame_bytes: usize) -> Failure {
    Failure::new(
        "frame_too_large",
        format!("Binary frames are at most {max_frame_bytes} bytes"),
        close::TOO_BIG,
    )
}

fn text_too_large() -> Failure {
    Failure::new(
        "message_too_large",
        format!("Text messages are at most {MAX_TEXT_BYTES} bytes"),
        close::TOO_BIG,
    )
}

fn idle_failure() -> Failure {
    Failure::new(
        "idle_timeout",
        "No audio or keepalive for too long",
        close::TIMEOUT,
    )
}

fn shutdown_failure() -> Failure {
    Failure::new(
        "server_shutdown",
        "The server is shutting down; the stream was finalized",
        close::GOING_AWAY,
    )
}

fn internal_failure() -> Failure {
    Failure::new("internal", "Internal server error", close::INTERNAL)
}
