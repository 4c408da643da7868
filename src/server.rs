//! The HTTP transport: an axum router over the job service and the live
//! sessions. It knows requests, WebSockets, auth and links; the work itself is
//! [`crate::jobs`]'s and [`crate::live`]'s.
//!
//! ```text
//! request ─▶ client address ─▶ track metrics ─▶ {detail} errors ─▶ bounded head ─▶ route
//!         ─▶ per-IP limit ─▶ auth + rate limit ─▶ handler ─▶ Jobs
//! ```

pub mod auth;
mod drain;
pub mod error;
pub mod forward;
mod head_limits;
pub mod ip_limit;
pub mod live_message;
pub mod metrics;
pub mod openapi;
pub mod proxy_headers;
pub mod range;
pub mod rate_limit;
pub mod routes;
pub mod signing;
pub mod stream_tokens;
pub mod webhooks;
pub mod webrtc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware;
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::jobs::Jobs;
use crate::live::Live;
use auth::Authenticator;
use ip_limit::IpLimits;
use rate_limit::RateLimits;
use routes::whip::Whip;
use signing::UrlSigner;
use stream_tokens::StreamTokens;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Base of absolute links; `None` uses the request's `Host`.
    pub public_url: Option<String>,
    pub max_upload_bytes: u64,
    pub download_ttl: Duration,
    /// Where uploads are streamed before the job service takes them.
    pub upload_dir: PathBuf,
    /// Peers whose `Forwarded` / `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Bearer token `/metrics` asks for, if any.
    pub metrics_token: Option<String>,
    /// `/metrics` has its own listener and is not on the API's.
    pub metrics_elsewhere: bool,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub jobs: Arc<Jobs>,
    pub whip: Arc<Whip>,
    pub live: Arc<Live>,
    pub stream_tokens: Arc<StreamTokens>,
    pub auth: Arc<Authenticator>,
    pub limits: Arc<RateLimits>,
    pub ip_limits: Arc<IpLimits>,
    pub signer: Arc<UrlSigner>,
    pub metrics: PrometheusHandle,
    pub config: Arc<HttpConfig>,
    /// Reaches the nodes that run other sessions.
    pub forwarder: Arc<forward::Forwarder>,
}

pub fn router(state: AppState) -> Router {
    routes::router(state.clone())
        .layer(middleware::from_fn(head_limits::bounded_head))
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn(metrics::track_requests))
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            proxy_headers::resolve_client,
        ))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled, then stops accepting and lets
/// requests in flight finish. Upgraded WebSockets are not requests: their
/// sessions watch [`Live::shutdown`] and are waited for with [`Live::wait_idle`].
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Serves only `/metrics` (`--metrics-listen`), until `shutdown` is cancelled.
pub async fn serve_metrics(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let (metrics, _document) = routes::metrics(state.clone()).split_for_parts();
    let app = metrics
        .layer(middleware::from_fn(error::json_errors))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
