//! Health, readiness, metrics, the OpenAPI document and the credit balance.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::server::AppState;
use crate::server::auth::Caller;
use crate::server::error::ApiError;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers and the node takes new live sessions
/// (the engine is loaded before serving starts): a load balancer sends new
/// streams elsewhere while a node is full or draining.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let unavailable = |detail: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "detail": detail })),
        )
    };
    if let Some(reason) = state.live.refuses_new_sessions() {
        return unavailable(reason);
    }
    if !state.jobs.db().ping().await {
        return unavailable("database unreachable");
    }
    (StatusCode::OK, Json(json!({ "status": "ready" })))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

pub async fn openapi() -> Json<Value> {
    Json(crate::server::openapi::document())
}

pub async fn credits(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let balance = state.jobs.db().balance(&caller.user_id).await?;
    Ok(Json(json!({
        "user_id": caller.user_id,
        "balance": balance,
        "credits": balance,
    })))
}
