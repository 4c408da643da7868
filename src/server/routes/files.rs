//! Signed downloads of job files, with HTTP Range support.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::view::{download_path, unix_now};
use crate::jobs::Files;
use crate::server::AppState;
use crate::server::error::{ApiError, ErrorBody};
use crate::server::range::parse_range;
use crate::server::signing::SignatureError;

/// A download link's signature, as job views give it.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Signature {
    /// Unix time the link expires.
    expires: Option<u64>,
    signature: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/files/{job_id}/{name}",
    summary = "Download a job's file through a signed, expiring link (supports Range)",
    security(()),
    params(
        ("job_id" = i64, Path, description = "The job's id"),
        ("name" = String, Path, description = "The file's name"),
        Signature,
        ("Range" = Option<String>, Header, description = "One byte range, e.g. bytes=0-1023"),
    ),
    responses(
        (status = 200, description = "The file: a speaker's track (WAV) or the RTTM", content(
            (Vec<u8> = "audio/wav"), (String = "text/plain"), (Vec<u8> = "application/octet-stream"),
        )),
        (status = 206, description = "The asked part of the file", content(
            (Vec<u8> = "audio/wav"), (String = "text/plain"), (Vec<u8> = "application/octet-stream"),
        )),
        (status = 400, description = "The job id is not a number", body = ErrorBody),
        (status = 403, description = "The link is not signed, or its signature is wrong", body = ErrorBody),
        (status = 404, description = "No such file", body = ErrorBody),
        (status = 410, description = "The link has expired", body = ErrorBody),
        (status = 416, description = "Range not satisfiable", body = ErrorBody),
    )
)]
pub async fn download(
    State(state): State<AppState>,
    Path((job_id, name)): Path<(i64, String)>,
    Query(signature): Query<Signature>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let (Some(expires), Some(signature)) = (signature.expires, signature.signature) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "This link is not signed",
        ));
    };
    state
        .signer
        .verify(
            &download_path(job_id, &name),
            expires,
            &signature,
            unix_now(),
        )
        .map_err(|e| match e {
            SignatureError::Expired => ApiError::new(StatusCode::GONE, e.to_string()),
            SignatureError::Invalid => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
        })?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "File not found");
    if !state.jobs.db().job_exists(job_id).await? {
        return Err(not_found());
    }
    let key = Files::output_key(job_id, &name);
    let files = state.jobs.files();
    let size = files.size(&key).await?.ok_or_else(not_found)?;
    let range_header = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok());
    let range = match parse_range(range_header, size) {
        Ok(range) => range,
        Err(_) => {
            let mut response =
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "Range not satisfiable")
                    .into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}")),
            );
            return Ok(response);
        }
    };
    let stream = files.read(&key, range.clone()).await?;
    let mut response = Response::new(Body::from_stream(stream));
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&name)),
    );
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(
        header::CONTENT_DISPOSITION,
        header_value(&format!("attachment; filename=\"{name}\"")),
    );
    let length = match &range {
        Some(range) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {}-{}/{size}", range.start, range.end - 1)),
            );
            range.end - range.start
        }
        None => size,
    };
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    Ok(response)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("wav") => "audio/wav",
        Some("rttm") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Names come from our own sanitised file names, so they are valid header text.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
