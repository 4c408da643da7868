//! Job status, listing, retry and delete.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::view::{self, Links};
use crate::db::{Cancel, JobFilter, JobStatus, JobType, Retry};
use crate::server::AppState;
use crate::server::auth::Caller;
use crate::server::error::ApiError;

/// Listings' page size, unless asked for another (at most `MAX_PAGE`).
pub(super) const DEFAULT_PAGE: i64 = 50;
pub(super) const MAX_PAGE: i64 = 200;

pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let id = job_id(&id)?;
    let job = state
        .jobs
        .db()
        .job(&caller.user_id, id)
        .await?
        .ok_or_else(ApiError::job_not_found)?;
    Ok(Json(view::job(&job, &Links::new(&state, &headers))))
}

#[derive(Deserialize)]
pub struct ListQuery {
    job_type: Option<String>,
    status: Option<String>,
    skip: Option<i64>,
    limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let filter = JobFilter {
        job_type: parse_filter(query.job_type.as_deref(), "job_type", JobType::parse)?,
        status: parse_filter(query.status.as_deref(), "status", JobStatus::parse)?,
        skip: query.skip.unwrap_or(0).max(0),
        limit: query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE),
    };
    let (jobs, total) = state.jobs.db().list_jobs(&caller.user_id, &filter).await?;
    let links = Links::new(&state, &headers);
    let items: Vec<Value> = jobs
        .iter()
        .map(|job| view::list_item(job, &links))
        .collect();
    let has_more = filter.skip + (items.len() as i64) < total;
    Ok(Json(json!({
        "items": items,
        "total": total,
        "skip": filter.skip,
        "limit": filter.limit,
        "hasMore": has_more,
    })))
}

pub async fn retry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let id = job_id(&id)?;
    match state.jobs.retry(&caller.user_id, id).await? {
        Retry::Requeued(job) => Ok(Json(view::job(&job, &Links::new(&state, &headers)))),
        Retry::NotFailed(job) => Err(ApiError::bad_request(format!(
            "Only FAILED jobs can be retried; job {id} is {}",
            job.status.as_str()
        ))),
        Retry::NotFound => Err(ApiError::job_not_found()),
    }
}

/// `POST /api/v1/speaker/jobs/{id}/cancel`: stops a PENDING or PROCESSING
/// job and refunds it; 400 once it has ended.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let id = job_id(&id)?;
    match state.jobs.cancel(&caller.user_id, id).await? {
        Cancel::Cancelled(job) => Ok(Json(view::job(&job, &Links::new(&state, &headers)))),
        Cancel::NotCancellable(job) if job.job_type == JobType::Stream => {
            Err(ApiError::bad_request(format!(
                "Job {id} is a live stream; its client ends it (an `end` message or a WHIP DELETE)"
            )))
        }
        Cancel::NotCancellable(job) => Err(ApiError::bad_request(format!(
            "Only PENDING or PROCESSING jobs can be cancelled; job {id} is {}",
            job.status.as_str()
        ))),
        Cancel::NotFound => Err(ApiError::job_not_found()),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = job_id(&id)?;
    if state.jobs.delete(&caller.user_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::job_not_found())
    }
}

/// Ids are integers; anything else cannot name a job of the caller.
fn job_id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| ApiError::job_not_found())
}

fn parse_filter<T>(
    value: Option<&str>,
    name: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse(v)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("unknown {name}: {v}"))),
    }
}
