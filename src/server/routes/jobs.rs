//! Job status, listing, retry and delete.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::IntoParams;

use super::view::{JobView, Links, Page};
use super::view::{job_status_schema, job_type_schema};
use crate::db::{Cancel, JobFilter, JobStatus, JobType, Retry};
use crate::server::AppState;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ErrorBody};

/// Listings' page size, unless asked for another (at most `MAX_PAGE`).
pub(super) const DEFAULT_PAGE: i64 = 50;
pub(super) const MAX_PAGE: i64 = 200;

/// `GET /api/v1/speaker/jobs/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/speaker/jobs/{id}",
    operation_id = "get_job",
    summary = "Job status and result",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job of yours", body = ErrorBody),
    )
)]
pub async fn get(
    state: State<AppState>,
    caller: Extension<Caller>,
    id: Path<String>,
    headers: HeaderMap,
) -> Result<Json<JobView>, ApiError> {
    job(state, caller, id, headers).await
}

/// `GET /api/v1/jobs/{id}`: the same, where the SDK polls.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    summary = "Job status and result (the SDK's polling path)",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job of yours", body = ErrorBody),
    )
)]
pub async fn get_by_sdk(
    state: State<AppState>,
    caller: Extension<Caller>,
    id: Path<String>,
    headers: HeaderMap,
) -> Result<Json<JobView>, ApiError> {
    job(state, caller, id, headers).await
}

async fn job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<JobView>, ApiError> {
    let id = job_id(&id)?;
    let job = state
        .jobs
        .db()
        .job(&caller.user_id, id)
        .await?
        .ok_or_else(ApiError::job_not_found)?;
    Ok(Json(JobView::new(&job, &Links::new(&state, &headers))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs of this type.
    #[param(schema_with = job_type_schema)]
    job_type: Option<String>,
    /// Only jobs in this status.
    #[param(schema_with = job_status_schema)]
    status: Option<String>,
    /// Jobs to pass over.
    #[param(minimum = 0, default = 0)]
    skip: Option<i64>,
    /// Page size.
    #[param(minimum = 1, maximum = 200, default = 50)]
    limit: Option<i64>,
}

/// `GET /api/v1/speaker/jobs?job_type=&status=&skip=&limit=`: newest first.
#[utoipa::path(
    get,
    path = "/api/v1/speaker/jobs",
    summary = "List your jobs, newest first",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = Page<JobView>),
        (status = 400, description = "Unknown job_type or status", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Json<Page<JobView>>, ApiError> {
    let filter = JobFilter {
        job_type: parse_filter(query.job_type.as_deref(), "job_type", JobType::parse)?,
        status: parse_filter(query.status.as_deref(), "status", JobStatus::parse)?,
        skip: query.skip.unwrap_or(0).max(0),
        limit: query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE),
    };
    let (jobs, total) = state.jobs.db().list_jobs(&caller.user_id, &filter).await?;
    let links = Links::new(&state, &headers);
    let items = jobs
        .iter()
        .map(|job| JobView::list_item(job, &links))
        .collect();
    Ok(Json(Page::new(items, total, filter.skip, filter.limit)))
}

/// `POST /api/v1/speaker/jobs/{id}/retry`: re-queues a FAILED job.
#[utoipa::path(
    post,
    path = "/api/v1/speaker/jobs/{id}/retry",
    summary = "Re-queue a FAILED job",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, PENDING again", body = JobView),
        (status = 400, description = "The job is not FAILED", body = ErrorBody),
        (status = 402, description = "Not enough credits", body = ErrorBody),
        (status = 404, description = "No such job of yours", body = ErrorBody),
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<JobView>, ApiError> {
    let id = job_id(&id)?;
    match state.jobs.retry(&caller.user_id, id).await? {
        Retry::Requeued(job) => Ok(Json(JobView::new(&job, &Links::new(&state, &headers)))),
        Retry::NotFailed(job) => Err(ApiError::bad_request(format!(
            "Only FAILED jobs can be retried; job {id} is {}",
            job.status.as_str()
        ))),
        Retry::NotFound => Err(ApiError::job_not_found()),
    }
}

/// `POST /api/v1/speaker/jobs/{id}/cancel`: stops a PENDING or PROCESSING
/// job and refunds it; 400 once it has ended.
#[utoipa::path(
    post,
    path = "/api/v1/speaker/jobs/{id}/cancel",
    summary = "Cancel a PENDING or PROCESSING job; its reservation is refunded",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, CANCELLED", body = JobView),
        (status = 400, description = "The job has ended, or is a live stream", body = ErrorBody),
        (status = 404, description = "No such job of yours", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<JobView>, ApiError> {
    let id = job_id(&id)?;
    match state.jobs.cancel(&caller.user_id, id).await? {
        Cancel::Cancelled(job) => Ok(Json(JobView::new(&job, &Links::new(&state, &headers)))),
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

/// `DELETE /api/v1/speaker/jobs/{id}`: the job and its files.
#[utoipa::path(
    delete,
    path = "/api/v1/speaker/jobs/{id}",
    operation_id = "delete_job",
    summary = "Delete a job and its files",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such job of yours", body = ErrorBody),
    )
)]
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
