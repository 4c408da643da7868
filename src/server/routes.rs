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

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router, middleware};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use whip::MAX_OFFER_BYTES;

pub use submit::{TempUpload, read_multipart};

use super::AppState;
use super::auth::{require_caller, require_metrics_token};
use super::forward;
use super::ip_limit::limit_by_ip;
use super::openapi::{
    self, HEADERS_TOO_LARGE, INTERNAL, RATE_LIMITED, UNAUTHORIZED, URI_TOO_LONG, refused_with,
};

/// The routes, and `/openapi.json` serving the document generated from them.
/// Every route but the browser page's files ([`undocumented`]) is in it.
pub fn router(state: AppState) -> Router<AppState> {
    let metrics_elsewhere = state.config.metrics_elsewhere;
    // Sessions running on another node are answered by that node.
    let session_routes = OpenApiRouter::new()
        .routes(routes!(events::watch))
        .routes(routes!(whip::trickle, whip::delete).layer(DefaultBodyLimit::max(MAX_OFFER_BYTES)))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            forward::to_session_owner,
        ));
    let authenticated = OpenApiRouter::new()
        .routes(routes!(submit::extract).layer(DefaultBodyLimit::disable()))
        .routes(routes!(submit::diarize).layer(DefaultBodyLimit::disable()))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::get, jobs::delete))
        .routes(routes!(jobs::retry))
        .routes(routes!(jobs::cancel))
        .routes(routes!(webhooks::secret, webhooks::rotate_secret))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(jobs::get_by_sdk))
        .routes(routes!(system::credits))
        .routes(routes!(stream::token))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_caller,
        ));
    let authenticated = refused_with(authenticated, &[UNAUTHORIZED, RATE_LIMITED]);
    let api = OpenApiRouter::new()
        .merge(authenticated)
        // A WebSocket authenticates after the upgrade, so it can say why it refuses.
        .routes(routes!(stream::connect))
        // Live routes authenticate themselves: they also take stream tokens and query keys.
        .merge(session_routes)
        .routes(routes!(whip::offer).layer(DefaultBodyLimit::max(MAX_OFFER_BYTES)))
        // Signed links carry their own authorization.
        .routes(routes!(files::download))
        // Counted per client address before anyone is authenticated.
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_by_ip));
    let api = refused_with(api, &[RATE_LIMITED, INTERNAL]);
    let mut documented = openapi::base()
        .merge(api)
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::openapi));
    if !metrics_elsewhere {
        documented = documented.merge(metrics(state));
    }
    // Every request passes the bounded head first.
    let (router, document) =
        refused_with(documented, &[URI_TOO_LONG, HEADERS_TOO_LARGE]).split_for_parts();
    // The browser page: it asks for a key and calls the API like any client.
    router
        .merge(web::routes())
        .layer(Extension(Arc::new(document)))
}

/// Routes that are not in the document, with why: `(method, path, reason)`.
pub fn undocumented() -> Vec<(&'static str, &'static str, &'static str)> {
    web::paths()
        .map(|path| {
            (
                "GET",
                path,
                "a file of the browser page, not part of the API",
            )
        })
        .collect()
}

/// `/metrics`, behind `--metrics-token` when one is set.
pub fn metrics(state: AppState) -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::new()
        .routes(routes!(system::metrics))
        .route_layer(middleware::from_fn_with_state(state, require_metrics_token));
    refused_with(router, &[UNAUTHORIZED])
}
