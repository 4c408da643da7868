//! Live sessions are pinned to the node that holds their audio and model
//! state. A request for a session that runs on another node (WHIP `PATCH` and
//! `DELETE`, the events feed) is forwarded there, found through the session
//! registry, and the owner's answer is streamed back as it comes: the client
//! never needs to know which node it reached.
//!
//! ```text
//! client ─▶ node B ─(registry: session → node A)─▶ node A ─▶ answer ─▶ B ─▶ client
//! ```
//!
//! An events feed asked for over a WebSocket is bridged message by message.
//! A forwarded request is marked, so two nodes never bounce it between them.

use axum::body::Body;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use super::AppState;
use super::error::ApiError;
use super::proxy_headers::ClientIp;

/// Marks a request one node sent another; its value is the sender's node id.
const FORWARDED_BY: &str = "x-whospoke-forwarded-by";
/// The largest body forwarded: a WHIP trickle fragment or DELETE (none).
const MAX_BODY_BYTES: usize = 64 << 10;

/// How this node reaches the others.
pub struct Forwarder {
    http: reqwest::Client,
    node_id: String,
}

impl Forwarder {
    pub fn new(node_id: String) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http, node_id })
    }
}

/// Route layer of the session routes: forwards the request when the session
/// in its path runs on another node, else lets this node answer.
pub async fn to_session_owner(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
    next: Next,
) -> Response {
    let session_id = params
        .iter()
        .find(|(name, _)| name == "session_id")
        .map(|(_, value)| value.as_str())
        .unwrap_or_default();
    match owner(&state, session_id, request.headers()).await {
        Ok(Some(node_url)) => forward(&state, &node_url, request)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Ok(None) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The owning node's URL when the session runs elsewhere.
async fn owner(
    state: &AppState,
    session_id: &str,
    headers: &HeaderMap,
) -> Result<Option<String>, ApiError> {
    if headers.contains_key(FORWARDED_BY) || state.live.watchers().runs(session_id) {
        return Ok(None);
    }
    let route = state.jobs.db().session_route(session_id).await?;
    Ok(route
        .filter(|route| route.node_id != state.forwarder.node_id)
        .map(|route| route.node_url))
}

async fn forward(state: &AppState, node_url: &str, request: Request) -> Result<Response, ApiError> {
    let target = format!(
        "{node_url}{}",
        request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str())
    );
    let (mut parts, body) = request.into_parts();
    // The owner counts the client, not this node, against its per-address
    // limit when this node is among its --trusted-proxies.
    if let Some(ClientIp(client)) = parts.extensions.get::<ClientIp>().copied()
        && let Ok(value) = HeaderValue::from_str(&client.to_string())
    {
        parts.headers.insert("x-forwarded-for", value);
    }
    if let Ok(upgrade) = WebSocketUpgrade::from_request_parts(&mut parts, state).await {
        let mut remote = target
            .replacen("http", "ws", 1)
            .into_client_request()
            .map_err(|_| bad_gateway())?;
        copy_request_headers(
            &parts.headers,
            remote.headers_mut(),
            &state.forwarder.node_id,
        );
        return Ok(upgrade.on_upgrade(move |socket| bridge(socket, remote)));
    }
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"))?;
    let mut headers = reqwest::header::HeaderMap::new();
    copy_request_headers(&parts.headers, &mut headers, &state.forwarder.node_id);
    let answer = state
        .forwarder
        .http
        .request(parts.method, &target)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(target, error = %e, "forwarding to a session's node failed");
            bad_gateway()
        })?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .map_err(ApiError::internal)
}

/// Relays a watcher's WebSocket to the owning node's feed, both ways.
async fn bridge(socket: WebSocket, remote: tungstenite::handshake::client::Request) {
    let Ok((upstream, _)) = tokio_tungstenite::connect_async(remote).await else {
        let mut socket = socket;
        let _ = socket.send(ws::Message::Close(None)).await;
        return;
    };
    let (mut to_client, mut from_client) = socket.split();
    let (mut to_owner, mut from_owner) = upstream.split();
    let down = async {
        while let Some(Ok(message)) = from_owner.next().await {
            let relayed = match message {
                tungstenite::Message::Text(text) => ws::Message::Text(text.as_str().into()),
                tungstenite::Message::Binary(bytes) => ws::Message::Binary(bytes),
                tungstenite::Message::Close(_) => break,
                _ => continue,
            };
            if to_client.send(relayed).await.is_err() {
                return;
            }
        }
        let _ = to_client.send(ws::Message::Close(None)).await;
    };
    let up = async {
        while let Some(Ok(message)) = from_client.next().await {
            let relayed = match message {
                ws::Message::Text(text) => tungstenite::Message::Text(text.as_str().into()),
                ws::Message::Binary(bytes) => tungstenite::Message::Binary(bytes),
                ws::Message::Close(_) => break,
                _ => continue,
            };
            if to_owner.send(relayed).await.is_err() {
                return;
            }
        }
        let _ = to_owner.send(tungstenite::Message::Close(None)).await;
    };
    tokio::select! {
        () = down => {}
        () = up => {}
    }
}

/// End-to-end headers (credentials included), marked as forwarded.
fn copy_request_headers(from: &HeaderMap, to: &mut HeaderMap, node_id: &str) {
    for (name, value) in from {
        if !hop_by_hop(name) && !name.as_str().starts_with("sec-websocket") {
            to.append(name, value.clone());
        }
    }
    if let Ok(value) = HeaderValue::from_str(node_id) {
        to.insert(HeaderName::from_static(FORWARDED_BY), value);
    }
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        *name,
        header::CONNECTION
            | header::HOST
            | header::CONTENT_LENGTH
            | header::TRANSFER_ENCODING
            | header::UPGRADE
            | header::TE
            | header::TRAILER
            | header::PROXY_AUTHORIZATION
            | header::PROXY_AUTHENTICATE
    ) || name.as_str() == "keep-alive"
}

fn bad_gateway() -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "The node running this session could not be reached; try again",
    )
}
