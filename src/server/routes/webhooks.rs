//! The caller's webhook secret and deliveries.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::jobs::{DEFAULT_PAGE, MAX_PAGE};
use crate::db::webhooks::{Delivery, MAX_ATTEMPTS};
use crate::server::AppState;
use crate::server::auth::Caller;
use crate::server::error::ApiError;

/// `GET /api/v1/webhooks/secret`: the key that signs the caller's webhooks.
pub async fn secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let secret = state.jobs.db().webhook_secret(&caller.user_id).await?;
    Ok(Json(json!({ "secret": secret })))
}

/// `POST /api/v1/webhooks/secret`: a new key; the old one stops signing at once.
pub async fn rotate_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let secret = state
        .jobs
        .db()
        .rotate_webhook_secret(&caller.user_id)
        .await?;
    Ok(Json(json!({ "secret": secret })))
}

#[derive(Deserialize)]
pub struct Page {
    skip: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/v1/webhooks/deliveries?skip=&limit=`: newest first.
pub async fn deliveries(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let skip = page.skip.unwrap_or(0).max(0);
    let limit = page.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let (items, total) = state
        .jobs
        .db()
        .list_deliveries(&caller.user_id, skip, limit)
        .await?;
    let has_more = skip + (items.len() as i64) < total;
    Ok(Json(json!({
        "items": items.iter().map(delivery_json).collect::<Vec<_>>(),
        "total": total,
        "skip": skip,
        "limit": limit,
        "hasMore": has_more,
    })))
}

/// `POST /api/v1/webhooks/deliveries/{id}/redeliver`: sends it again now.
pub async fn redeliver(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::new(axum::http::StatusCode::NOT_FOUND, "Delivery not found");
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let delivery = state
        .jobs
        .db()
        .redeliver(&caller.user_id, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(delivery_json(&delivery)))
}

fn delivery_json(delivery: &Delivery) -> Value {
    json!({
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "job_id": delivery.job_id,
        "url": delivery.url,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "max_attempts": MAX_ATTEMPTS,
        "next_attempt_at": delivery.next_attempt_at,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at,
        "delivered_at": delivery.delivered_at,
    })
}
