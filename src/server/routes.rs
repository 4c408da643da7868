//! The routes, grouped by what they serve.

mod events;
mod files;
mod jobs;
mod stream;
mod submit;
mod system;
pub(crate) mod view;
mod web;
mod webhooks;
pub mod whip;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

use whip::MAX_OFFER_BYTES;

pub use stream::messages::{BadMessage, ClientMessage};
pub use submit::{TempUpload, read_multipart};

use super::AppState;
use super::auth::{require_caller, require_metrics_token};
use super::forward;
use super::ip_limit::limit_by_ip;

pub fn router(state: AppState) -> Router<AppState> {
    let metrics_elsewhere = state.config.metrics_elsewhere;
    // Sessions running on another node are answered by that node.
    let session_routes = Router::new()
        .route(
            "/api/v1/speaker/stream/{session_id}/events",
            get(events::watch),
        )
        .route(
            "/api/v1/speaker/whip/{session_id}",
            axum::routing::patch(whip::trickle)
                .delete(whip::delete)
                .layer(DefaultBodyLimit::max(MAX_OFFER_BYTES)),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            forward::to_session_owner,
        ));
    let authenticated = Router::new()
        .route(
            "/api/v1/speaker/extract",
            post(submit::extract).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/speaker/diarize",
            post(submit::diarize).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/speaker/jobs", get(jobs::list))
        .route(
            "/api/v1/speaker/jobs/{id}",
            get(jobs::get).delete(jobs::delete),
        )
        .route("/api/v1/speaker/jobs/{id}/retry", post(jobs::retry))
        .route("/api/v1/speaker/jobs/{id}/cancel", post(jobs::cancel))
        .route(
            "/api/v1/webhooks/secret",
            get(webhooks::secret).post(webhooks::rotate_secret),
        )
        .route("/api/v1/webhooks/deliveries", get(webhooks::deliveries))
        .route(
            "/api/v1/webhooks/deliveries/{id}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/api/v1/jobs/{id}", get(jobs::get))
        .route("/api/v1/credits", get(system::credits))
        .route("/api/v1/speaker/stream/token", post(stream::token))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_caller,
        ));
    let api = Router::new()
        .merge(authenticated)
        // A WebSocket authenticates after the upgrade, so it can say why it refuses.
        .route("/api/v1/speaker/stream", get(stream::connect))
        // Live routes authenticate themselves: they also take stream tokens and query keys.
        .merge(session_routes)
        .route(
            "/api/v1/speaker/whip",
            post(whip::offer).layer(DefaultBodyLimit::max(MAX_OFFER_BYTES)),
        )
        // Signed links carry their own authorization.
        .route("/api/v1/files/{job_id}/{name}", get(files::download))
        // Counted per client address before anyone is authenticated.
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_by_ip));
    let router = Router::new()
        .merge(api)
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/openapi.json", get(system::openapi))
        // The browser page: it asks for a key and calls the API like any client.
        .merge(web::routes());
    if metrics_elsewhere {
        router
    } else {
        router.merge(metrics(state))
    }
}

/// `/metrics`, behind `--metrics-token` when one is set.
pub fn metrics(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/metrics", get(system::metrics))
        .route_layer(middleware::from_fn_with_state(state, require_metrics_token))
}
