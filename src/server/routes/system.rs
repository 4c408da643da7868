//! Health, readiness, metrics, the OpenAPI document and the credit balance.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::OpenApi;

use crate::server::AppState;
use crate::server::auth::Caller;
use crate::server::error::ApiError;

/// `/healthz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(schema_with = ok_schema)]
    pub status: &'static str,
}

/// `/readyz`'s answer; `detail` says why when unavailable.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'static str>,
    #[schema(schema_with = readiness_schema)]
    pub status: &'static str,
}

/// The caller's balance; `credits` repeats `balance` under AudioPod's name.
#[derive(Debug, Serialize, ToSchema)]
pub struct Credits {
    pub balance: i64,
    pub credits: i64,
    pub user_id: String,
}

fn ok_schema() -> utoipa::openapi::Object {
    super::view::string_enum(["ok"])
}

fn readiness_schema() -> utoipa::openapi::Object {
    super::view::string_enum(["ready", "unavailable"])
}

#[utoipa::path(
    get,
    path = "/healthz",
    summary = "Liveness",
    security(()),
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Ready when the database answers and the node takes new live sessions
/// (the engine is loaded before serving starts): a load balancer sends new
/// streams elsewhere while a node is full or draining.
#[utoipa::path(
    get,
    path = "/readyz",
    summary = "Readiness: the database answers and the node takes new live sessions",
    security(()),
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Full, draining or without its database", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let unavailable = |detail| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                detail: Some(detail),
                status: "unavailable",
            }),
        )
    };
    if let Some(reason) = state.live.refuses_new_sessions() {
        return unavailable(reason);
    }
    if !state.jobs.db().ping().await {
        return unavailable("database unreachable");
    }
    let ready = Readiness {
        detail: None,
        status: "ready",
    };
    (StatusCode::OK, Json(ready))
}

#[utoipa::path(
    get,
    path = "/metrics",
    summary = "Prometheus metrics (behind --metrics-token's Bearer token when set)",
    security(()),
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    summary = "This document",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub async fn openapi(Extension(document): Extension<Arc<OpenApi>>) -> Json<Arc<OpenApi>> {
    Json(document)
}

#[utoipa::path(
    get,
    path = "/api/v1/credits",
    summary = "Your credit balance",
    responses((status = 200, description = "The balance", body = Credits))
)]
pub async fn credits(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Credits>, ApiError> {
    let balance = state.jobs.db().balance(&caller.user_id).await?;
    Ok(Json(Credits {
        balance,
        credits: balance,
        user_id: caller.user_id,
    }))
}
