//! The caller's webhook secret and deliveries.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::jobs::{DEFAULT_PAGE, MAX_PAGE};
use super::view::Page;
use crate::db::webhooks::{Delivery, MAX_ATTEMPTS};
use crate::server::AppState;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ErrorBody};

/// The key that signs the caller's webhooks.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookSecret {
    /// `X-AudioPod-Signature` is `sha256=` + hex(HMAC-SHA256(secret, "{X-AudioPod-Timestamp}.{raw body}")).
    pub secret: String,
}

/// One event on its way to a webhook URL. Fields in alphabetical order, as
/// the API has always sent them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Delivery)]
pub struct DeliveryView {
    pub attempts: i64,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub event_id: String,
    #[schema(schema_with = event_type_schema)]
    pub event_type: String,
    pub id: i64,
    pub job_id: i64,
    pub last_error: Option<String>,
    pub last_status_code: Option<i64>,
    pub max_attempts: i64,
    /// Unix time of the next attempt, for pending deliveries.
    pub next_attempt_at: i64,
    /// `stopped` after a 410 answer.
    #[schema(schema_with = delivery_status_schema)]
    pub status: String,
    #[schema(format = "uri")]
    pub url: String,
}

impl From<Delivery> for DeliveryView {
    fn from(delivery: Delivery) -> Self {
        Self {
            attempts: delivery.attempts,
            created_at: delivery.created_at,
            delivered_at: delivery.delivered_at,
            event_id: delivery.event_id,
            event_type: delivery.event_type,
            id: delivery.id,
            job_id: delivery.job_id,
            last_error: delivery.last_error,
            last_status_code: delivery.last_status_code,
            max_attempts: MAX_ATTEMPTS,
            next_attempt_at: delivery.next_attempt_at,
            status: delivery.status,
            url: delivery.url,
        }
    }
}

fn event_type_schema() -> utoipa::openapi::Object {
    super::view::string_enum(["job.completed", "job.failed", "job.cancelled"])
}

fn delivery_status_schema() -> utoipa::openapi::Object {
    super::view::string_enum(["pending", "delivered", "failed", "stopped"])
}

/// `GET /api/v1/webhooks/secret`: the key that signs the caller's webhooks.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/secret",
    summary = "The key that signs your webhooks",
    responses((status = 200, description = "The secret", body = WebhookSecret))
)]
pub async fn secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<WebhookSecret>, ApiError> {
    let secret = state.jobs.db().webhook_secret(&caller.user_id).await?;
    Ok(Json(WebhookSecret { secret }))
}

/// `POST /api/v1/webhooks/secret`: a new key; the old one stops signing at once.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/secret",
    summary = "Replace your webhook secret; the old one stops signing at once",
    responses((status = 200, description = "The new secret", body = WebhookSecret))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<WebhookSecret>, ApiError> {
    let secret = state
        .jobs
        .db()
        .rotate_webhook_secret(&caller.user_id)
        .await?;
    Ok(Json(WebhookSecret { secret }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Deliveries to pass over.
    #[param(minimum = 0, default = 0)]
    skip: Option<i64>,
    /// Page size.
    #[param(minimum = 1, maximum = 200, default = 50)]
    limit: Option<i64>,
}

/// `GET /api/v1/webhooks/deliveries?skip=&limit=`: newest first.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/deliveries",
    summary = "Your webhook deliveries, newest first",
    params(PageQuery),
    responses((status = 200, description = "A page of deliveries", body = Page<DeliveryView>))
)]
pub async fn deliveries(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<DeliveryView>>, ApiError> {
    let skip = page.skip.unwrap_or(0).max(0);
    let limit = page.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let (items, total) = state
        .jobs
        .db()
        .list_deliveries(&caller.user_id, skip, limit)
        .await?;
    let items = items.into_iter().map(DeliveryView::from).collect();
    Ok(Json(Page::new(items, total, skip, limit)))
}

/// `POST /api/v1/webhooks/deliveries/{id}/redeliver`: sends it again now.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/deliveries/{id}/redeliver",
    summary = "Send a delivery again now",
    params(("id" = i64, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "The delivery, pending again", body = DeliveryView),
        (status = 404, description = "No such delivery of yours", body = ErrorBody),
    )
)]
pub async fn redeliver(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "Delivery not found");
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let delivery = state
        .jobs
        .db()
        .redeliver(&caller.user_id, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(delivery.into()))
}
