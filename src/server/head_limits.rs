//! Bounds on a request's head: its query string and its headers.
//!
//! hyper refuses a head larger than its read buffer (about 400 KiB) before any
//! of it reaches us; these tighter bounds keep what handlers parse to the few
//! kilobytes the API ever needs.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::drain::discard_body;
use super::error::ApiError;

/// Longest query string: a few options, a key or a signed link's signature.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
/// Most bytes of header names and values together.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

pub async fn bounded_head(request: Request, next: Next) -> Response {
    let query = request.uri().query().map_or(0, str::len);
    if query > MAX_QUERY_BYTES {
        discard_body(request.into_body()).await;
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("The query string is too long: at most {MAX_QUERY_BYTES} bytes"),
        )
        .into_response();
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        discard_body(request.into_body()).await;
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("The request headers are too large: at most {MAX_HEADER_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}
