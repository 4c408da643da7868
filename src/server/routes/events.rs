//! `GET /api/v1/speaker/stream/{session_id}/events`: follow one of your own
//! running sessions, whatever carries its audio, as a WebSocket or as
//! Server-Sent Events.
//!
//! The feed starts with the session's `ready`, carries every event after it,
//! ends with `completed`, then closes. SSE events are unnamed, so
//! `EventSource.onmessage` sees them all. A watcher too slow to keep up skips
//! events and is told how many with a `lagged` warning.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt, stream};
use tokio::sync::broadcast::{self, error::RecvError};
use whospoke_protocol::{ServerMessage, WarningCode};

use crate::live::Event;
use crate::server::AppState;
use crate::server::auth::{QueryCredentials, live_caller};
use crate::server::error::{ApiError, ErrorBody};
use crate::server::live_message::live_message;

const ROUTE: &str = "GET /api/v1/speaker/stream/{session_id}/events";
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

#[utoipa::path(
    get,
    path = "/api/v1/speaker/stream/{session_id}/events",
    summary = "Follow one of your running sessions: a WebSocket on upgrade, else Server-Sent Events",
    description = "ready, then every event of the session (speaker, relabel, usage, warning), then completed; then the feed closes. Accepts ?api_key= and ?token= for EventSource. A session on another node is answered by that node.",
    params(("session_id" = String, Path, description = "The session's id, from its ready message"), QueryCredentials),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol (when asked to upgrade)"),
        (status = 200, description = "The feed as Server-Sent Events, one JSON message per event", content_type = "text/event-stream", body = String),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such running session of yours", body = ErrorBody),
        (status = 502, description = "The node running the session did not answer", body = ErrorBody),
    )
)]
pub async fn watch(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    Query(query): Query<QueryCredentials>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let caller = live_caller(&state, &headers, &query).await?;
    if let Err(limited) = state
        .limits
        .check(&format!("{} {ROUTE}", caller.identity))
        .await
    {
        return Ok(limited.into_response());
    }
    let (ready, events) = state
        .live
        .watchers()
        .watch(&session_id, &caller.user_id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "Session not found, not running, or access denied",
            )
        })?;
    let feed = feed(ready, events);
    Ok(match upgrade.ok() {
        Some(upgrade) => upgrade
            .on_upgrade(|socket| send_over_socket(socket, feed))
            .into_response(),
        None => {
            let messages = feed.map(|message| Ok::<_, Infallible>(sse_event(&message)));
            Sse::new(messages)
                .keep_alive(KeepAlive::new().interval(SSE_KEEPALIVE))
                .into_response()
        }
    })
}

/// The session's messages from `ready` on, until its feed closes.
fn feed(
    ready: Event,
    events: broadcast::Receiver<Event>,
) -> impl Stream<Item = ServerMessage> + Send {
    let rest = stream::unfold(events, |mut events| async move {
        let message = match events.recv().await {
            Ok(event) => live_message(&event),
            Err(RecvError::Lagged(skipped)) => ServerMessage::Warning {
                code: WarningCode::Lagged,
                message: format!("{skipped} events were skipped: this watcher reads too slowly"),
            },
            Err(RecvError::Closed) => return None,
        };
        Some((message, events))
    });
    stream::once(async move { live_message(&ready) }).chain(rest)
}

fn sse_event(message: &ServerMessage) -> sse::Event {
    sse::Event::default().data(message.to_text())
}

async fn send_over_socket(mut socket: WebSocket, feed: impl Stream<Item = ServerMessage> + Send) {
    let mut feed = std::pin::pin!(feed);
    loop {
        tokio::select! {
            message = feed.next() => {
                let Some(message) = message else { break };
                if socket.send(Message::Text(message.to_text().into())).await.is_err() {
                    return;
                }
            }
            // A watcher has nothing to say; anything but a close is ignored.
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
