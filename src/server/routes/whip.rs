//! WHIP ingest (RFC 9725): a WebRTC peer sends Opus audio; the live session,
//! its events and its finalization are the WebSocket stream's.
//!
//! ```text
//! POST offer ─▶ auth ─▶ check offer ─▶ slot ─▶ peer answers ─▶ session starts ─▶ 201 answer + Location
//! PATCH Location (trickle ICE) ─▶ candidates to the peer
//! DELETE Location ─▶ the session ends ─▶ 200 with the `completed` message
//! ```

mod ingest;
mod signals;

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use utoipa::IntoParams;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit};
use whospoke_protocol::{Encoding, ServerMessage, Start};

use crate::live::{Event, LiveError, StreamSpec};
use crate::server::AppState;
use crate::server::auth::{QueryCredentials, bearer, live_caller};
use crate::server::error::{ApiError, ErrorBody};
use crate::server::live_message::live_message;
use crate::server::webrtc::{PeerError, Peers};
use ingest::{EndRequest, Ingest};

const ROUTE: &str = "POST /api/v1/speaker/whip";
/// Largest SDP offer or trickle fragment; real ones are a few kilobytes.
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
/// Messages waiting for the data channel's forwarder.
const OUTGOING_CAPACITY: usize = 256;
const SDP: &str = "application/sdp";
const TRICKLE_ICE: &str = "application/trickle-ice-sdpfrag";

/// The WHIP sessions that are running, by session id.
pub struct Whip {
    pub peers: Peers,
    sessions: DashMap<String, Handle>,
}

impl Whip {
    pub fn new(peers: Peers) -> Self {
        Self {
            peers,
            sessions: DashMap::new(),
        }
    }
}

/// How requests on a session's resource reach it.
struct Handle {
    user_id: String,
    /// SHA-256 of the Bearer value that created it: a single-use stream
    /// token cannot authenticate twice, so holding it still counts.
    bearer: Option<[u8; 32]>,
    /// The remote ICE ufrag; a trickle with another one asks for an ICE restart.
    ufrag: Option<String>,
    peer: Arc<dyn PeerConnection>,
    ends: mpsc::Sender<EndRequest>,
}

/// What the data channel carries.
#[derive(Debug)]
pub enum Outgoing {
    Event(Event),
    Error { code: &'static str, message: String },
}

impl From<Event> for Outgoing {
    fn from(event: Event) -> Self {
        Self::Event(event)
    }
}

impl Outgoing {
    fn message(&self) -> ServerMessage {
        match self {
            Self::Event(event) => live_message(event),
            Self::Error { code, message } => ServerMessage::Error {
                code: (*code).to_owned(),
                message: message.clone(),
            },
        }
    }
}

/// The session's options, as a WebSocket's `start` message has them.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WhipQuery {
    #[param(minimum = 1)]
    num_speakers: Option<i64>,
    #[param(minimum = 1)]
    max_speakers: Option<i64>,
    /// How long after the audio a speaker is decided.
    #[param(minimum = 500, maximum = 5000)]
    latency_ms: Option<i64>,
    /// Also write a track per speaker.
    extract: Option<bool>,
    /// The job's display name.
    name: Option<String>,
    /// Receives job.completed, job.failed and job.cancelled events.
    #[param(format = "uri")]
    webhook_url: Option<String>,
    /// At most one speaker at a time.
    exclusive: Option<bool>,
}

/// `POST /api/v1/speaker/whip`: an SDP offer in, an SDP answer out.
#[utoipa::path(
    post,
    path = "/api/v1/speaker/whip",
    summary = "WebRTC ingest (WHIP, RFC 9725): an SDP offer with one Opus audio track",
    description = "Authenticate with X-API-Key or Bearer. The answer's Location is the session (PATCH trickles ICE, DELETE ends it); its events follow at /api/v1/speaker/stream/{session_id}/events.",
    params(WhipQuery),
    request_body(content = String, content_type = "application/sdp", description = "The SDP offer"),
    responses(
        (status = 201, description = "The SDP answer", content_type = "application/sdp", body = String,
            headers(("Location" = String, description = "The session's URL"))),
        (status = 400, description = "Invalid offer or options", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 402, description = "Not enough credits", body = ErrorBody),
        (status = 413, description = "The offer is too large", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/sdp", body = ErrorBody),
        (status = 503, description = "Too many live sessions on this node", body = ErrorBody),
    )
)]
pub async fn offer(
    State(state): State<AppState>,
    Query(query): Query<WhipQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = live_caller(&state, &headers, &QueryCredentials::default()).await?;
    if let Err(limited) = state
        .limits
        .check(&format!("{} {ROUTE}", caller.identity))
        .await
    {
        refused("rate_limited");
        return Ok(limited.into_response());
    }
    require_content_type(&headers, SDP)?;
    let sdp = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("Invalid SDP offer: not UTF-8"))?;
    let offer = Peers::parse_offer(sdp).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let ufrag = attribute(&offer.sdp, "a=ice-ufrag:");
    let spec = StreamSpec::try_from(Start {
        sample_rate: Some(48_000),
        channels: Some(1),
        encoding: Some(Encoding::Opus),
        num_speakers: query.num_speakers,
        max_speakers: query.max_speakers,
        latency_ms: query.latency_ms,
        extract: query.extract,
        name: query.name,
        webhook_url: query.webhook_url,
        exclusive: query.exclusive,
    })
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let slot = state.live.admit().ok_or_else(|| {
        refused("server_busy");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many live sessions; try again later",
        )
    })?;

    // The peer first: if the session cannot start, only the peer is undone.
    let (peer_events, signals) = signals::signals();
    let (peer, answer) = state
        .whip
        .peers
        .answer(offer, peer_events, signals.gathered())
        .await
        .map_err(|e| peer_failure(&e))?;
    let (out, events) = mpsc::channel(OUTGOING_CAPACITY);
    let session = match state
        .live
        .start(slot, &caller.user_id, spec, out.clone())
        .await
    {
        Ok(session) => session,
        Err(e) => {
            let _ = peer.close().await;
            return Err(match e {
                LiveError::InsufficientCredits => {
                    refused("insufficient_credits");
                    ApiError::new(StatusCode::PAYMENT_REQUIRED, e.to_string())
                }
                LiveError::Webhook(_) => ApiError::bad_request(e.to_string()),
                other => ApiError::internal(other),
            });
        }
    };
    let session_id = session.session_id().to_owned();
    let job_id = session.job_id();
    let (ends_in, ends) = mpsc::channel(1);
    state.whip.sessions.insert(
        session_id.clone(),
        Handle {
            user_id: caller.user_id.clone(),
            bearer: bearer(&headers).map(digest),
            ufrag,
            peer: Arc::clone(&peer),
            ends: ends_in,
        },
    );
    tokio::spawn(
        Ingest {
            state: state.clone(),
            session,
            peer,
            signals,
            events,
            out,
            ends,
        }
        .run(),
    );
    tracing::info!(job = job_id, user = caller.user_id, "WHIP session started");

    let mut response = (StatusCode::CREATED, answer).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    // With a public URL, the Location names this node (its session lives here);
    // without one it is relative, and another node would forward to this one.
    let node = state
        .config
        .public_url
        .as_deref()
        .map_or("", |url| url.trim_end_matches('/'));
    let location = format!("{node}/api/v1/speaker/whip/{session_id}");
    for (name, value) in [
        (header::LOCATION, location),
        (header::ETAG, format!("\"{session_id}\"")),
        (header::HeaderName::from_static("x-session-id"), session_id),
        (
            header::HeaderName::from_static("x-job-id"),
            job_id.to_string(),
        ),
    ] {
        headers.insert(
            name,
            HeaderValue::from_str(&value).map_err(ApiError::internal)?,
        );
    }
    for server in &state.whip.peers.config().ice_servers {
        headers.append(
            header::LINK,
            HeaderValue::from_str(&server.link()).map_err(ApiError::internal)?,
        );
    }
    Ok(response)
}

/// `PATCH /api/v1/speaker/whip/{session_id}`: trickled ICE candidates.
#[utoipa::path(
    patch,
    path = "/api/v1/speaker/whip/{session_id}",
    operation_id = "trickle_ice",
    summary = "Trickle ICE candidates",
    params(("session_id" = String, Path, description = "The session, from the offer's Location")),
    request_body(content = String, content_type = "application/trickle-ice-sdpfrag"),
    responses(
        (status = 204, description = "Candidates added"),
        (status = 400, description = "Invalid fragment or candidate", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such running session of yours", body = ErrorBody),
        (status = 413, description = "The fragment is too large", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/trickle-ice-sdpfrag", body = ErrorBody),
        (status = 422, description = "An ICE restart (not supported)", body = ErrorBody),
        (status = 502, description = "The node running the session did not answer", body = ErrorBody),
    )
)]
pub async fn trickle(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (peer, ufrag) = {
        let handle = owned_session(&state, &session_id, &headers).await?;
        (Arc::clone(&handle.peer), handle.ufrag.clone())
    };
    require_content_type(&headers, TRICKLE_ICE)?;
    let fragment = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("Invalid SDP fragment: not UTF-8"))?;
    if let Some(asked) = attribute(&fragment, "a=ice-ufrag:")
        && ufrag.is_some_and(|ufrag| ufrag != asked)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ICE restarts are not supported; start a new session",
        ));
    }
    let mid = attribute(&fragment, "a=mid:");
    for candidate in fragment
        .lines()
        .filter_map(|line| line.trim().strip_prefix("a="))
        .filter(|line| line.starts_with("candidate:"))
    {
        peer.add_ice_candidate(RTCIceCandidateInit {
            candidate: candidate.to_owned(),
            sdp_mid: mid.clone(),
            ..Default::default()
        })
        .await
        .map_err(|e| ApiError::bad_request(format!("Invalid ICE candidate: {e}")))?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/speaker/whip/{session_id}`: ends the session like a
/// WebSocket `end` and answers with its `completed` message.
#[utoipa::path(
    delete,
    path = "/api/v1/speaker/whip/{session_id}",
    operation_id = "end_whip_session",
    summary = "End the session; the answer is its completed message",
    params(("session_id" = String, Path, description = "The session, from the offer's Location")),
    responses(
        (status = 200, description = "The session's completed message (see the README's live protocol)", body = Object),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such running session of yours", body = ErrorBody),
        (status = 502, description = "The node running the session did not answer", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ServerMessage>, ApiError> {
    let ends = owned_session(&state, &session_id, &headers)
        .await?
        .ends
        .clone();
    let (request, completed) = oneshot::channel();
    ends.send(request).await.map_err(|_| gone())?;
    match completed.await.map_err(|_| gone())? {
        Ok(done) => Ok(Json(live_message(&Event::Completed(Box::new(done))))),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// The caller's running session, or 404 whoever else's it is.
async fn owned_session<'a>(
    state: &'a AppState,
    session_id: &str,
    headers: &HeaderMap,
) -> Result<dashmap::mapref::one::Ref<'a, String, Handle>, ApiError> {
    let presented = bearer(headers).map(digest);
    let held = state
        .whip
        .sessions
        .get(session_id)
        .is_some_and(|handle| presented.is_some() && handle.bearer == presented);
    let user_id = if held {
        None
    } else {
        Some(
            live_caller(state, headers, &QueryCredentials::default())
                .await?
                .user_id,
        )
    };
    state
        .whip
        .sessions
        .get(session_id)
        .filter(|handle| user_id.as_ref().is_none_or(|user| *user == handle.user_id))
        .ok_or_else(gone)
}

fn gone() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "Session not found, already ended, or access denied",
    )
}

fn require_content_type(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    if given.is_some_and(|given| given.eq_ignore_ascii_case(expected)) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be {expected}"),
        ))
    }
}

fn peer_failure(error: &PeerError) -> ApiError {
    if error.is_bad_offer() {
        ApiError::bad_request(error.to_string())
    } else {
        refused("internal");
        ApiError::internal(error)
    }
}

fn refused(reason: &'static str) {
    metrics::counter!("whospoke_live_sessions_refused_total", "reason" => reason).increment(1);
}

/// The value of the first `prefix` line of an SDP text.
fn attribute(sdp: &str, prefix: &str) -> Option<String> {
    sdp.lines()
        .find_map(|line| line.trim().strip_prefix(prefix))
        .map(str::to_owned)
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_attributes_are_found_by_prefix() {
        let fragment = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\na=mid:0\r\n\
                        a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host\r\n";
        assert_eq!(attribute(fragment, "a=ice-ufrag:").as_deref(), Some("EsAw"));
        assert_eq!(attribute(fragment, "a=mid:").as_deref(), Some("0"));
        assert_eq!(attribute(fragment, "a=setup:"), None);
    }
}
