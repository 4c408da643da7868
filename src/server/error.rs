//! Every error leaves as `{"detail": "..."}` with the right status, as FastAPI does.

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::DbError;
use crate::jobs::{FilesError, SubmitError};

/// The detail of a job that does not exist or belongs to someone else: the
/// two are indistinguishable on purpose.
pub const JOB_NOT_FOUND: &str = "Job not found or access denied";

/// Bodies of plain-text errors (extractor rejections) read to turn them into JSON.
const MAX_PLAIN_ERROR_BYTES: usize = 16 * 1024;

/// The body of every error: AudioPod's (and FastAPI's) shape.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong, in the caller's terms.
    pub detail: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    pub fn job_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, JOB_NOT_FOUND)
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            detail: self.detail,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::InsufficientCredits { .. } => {
                Self::new(StatusCode::PAYMENT_REQUIRED, error.to_string())
            }
            other => Self::internal(other),
        }
    }
}

impl From<FilesError> for ApiError {
    fn from(error: FilesError) -> Self {
        Self::internal(error)
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::Undecodable { job, message } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "Job {} failed: the file cannot be decoded: {message}",
                    job.id
                ),
            ),
            SubmitError::Db(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

/// Rewrites error responses that are not JSON (axum's extractor rejections,
/// unknown routes) into the `{detail}` shape.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_owned()
    } else {
        text
    };
    let body = serde_json::to_string(&ErrorBody { detail }).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
