//! `POST /api/v1/speaker/extract` and `/diarize`: a multipart upload (`file`)
//! or a form with a `url`, plus the speaker-count options.
//!
//! Uploads stream to a temporary file, counted against the size limit as
//! they arrive, and are never held whole in memory; every other part of the
//! body is read chunk by chunk against a small cap.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::Extension;
use axum::Json;
use axum::extract::multipart::Field;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{StatusCode, header};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

mod overhead;

use overhead::{MAX_OVERHEAD_BYTES, Overhead};

use super::view::{JobView, Links};
use crate::db::JobType;
use crate::jobs::{JobOptions, Source, SpeakerOptions, fetch};
use crate::server::AppState;
use crate::server::auth::Caller;
use crate::server::drain::{discard, discard_body};
use crate::server::error::{ApiError, ErrorBody};

/// Form bodies hold a URL and a few numbers; anything bigger is not one.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// One text field of a multipart body: a URL or a number.
const MAX_FIELD_BYTES: usize = 8 * 1024;
/// Text fields of a multipart body; the API knows four.
const MAX_FIELDS: usize = 16;
const SPEAKER_FIELDS: [&str; 3] = ["num_speakers", "min_speakers", "max_speakers"];

/// The options of a submission, in the query or the body. Read one by one as
/// the body streams past, so this type only describes them.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SubmitOptions {
    /// Exactly this many speakers.
    #[param(minimum = 1)]
    num_speakers: Option<u32>,
    #[param(minimum = 1)]
    min_speakers: Option<u32>,
    #[param(minimum = 1)]
    max_speakers: Option<u32>,
    /// Receives job.completed, job.failed and job.cancelled events (see /api/v1/webhooks/secret).
    #[param(format = "uri")]
    webhook_url: Option<String>,
    /// At most one speaker at a time in the timeline and tracks.
    exclusive: Option<bool>,
}

/// A submission's body: a `file`, or the `url` of one, and the options (a
/// body's value wins over the query's). Describes the body, which is read
/// field by field as it streams past.
#[derive(ToSchema)]
#[schema(as = Submission)]
#[allow(dead_code)]
pub struct SubmitForm {
    /// The audio or video file (multipart only); give this or `url`.
    #[schema(value_type = Option<String>, format = Binary)]
    file: Option<Vec<u8>>,
    /// Where to fetch the file (http or https, or a page yt-dlp knows); give this or `file`.
    #[schema(format = "uri")]
    url: Option<String>,
    #[schema(minimum = 1)]
    num_speakers: Option<u32>,
    #[schema(minimum = 1)]
    min_speakers: Option<u32>,
    #[schema(minimum = 1)]
    max_speakers: Option<u32>,
    /// Receives job.completed, job.failed and job.cancelled events.
    #[schema(format = "uri")]
    webhook_url: Option<String>,
    /// At most one speaker at a time in the timeline and tracks.
    #[schema(default = false)]
    exclusive: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/api/v1/speaker/extract",
    summary = "Start a speaker extraction (a track per speaker, RTTM, statistics)",
    params(SubmitOptions),
    request_body(content(
        (SubmitForm = "multipart/form-data"),
        (SubmitForm = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "The job, PENDING", body = JobView),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 402, description = "Not enough credits", body = ErrorBody),
        (status = 413, description = "The upload or a form field is too large", body = ErrorBody),
        (status = 422, description = "The file cannot be decoded (the job is FAILED)", body = ErrorBody),
    )
)]
pub async fn extract(
    state: State<AppState>,
    caller: Extension<Caller>,
    query: Query<HashMap<String, String>>,
    request: Request,
) -> Result<Json<JobView>, ApiError> {
    submit(state, caller, query, JobType::Extraction, request).await
}

#[utoipa::path(
    post,
    path = "/api/v1/speaker/diarize",
    summary = "Start a diarization (RTTM and statistics, no tracks)",
    params(SubmitOptions),
    request_body(content(
        (SubmitForm = "multipart/form-data"),
        (SubmitForm = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "The job, PENDING", body = JobView),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 402, description = "Not enough credits", body = ErrorBody),
        (status = 413, description = "The upload or a form field is too large", body = ErrorBody),
        (status = 422, description = "The file cannot be decoded (the job is FAILED)", body = ErrorBody),
    )
)]
pub async fn diarize(
    state: State<AppState>,
    caller: Extension<Caller>,
    query: Query<HashMap<String, String>>,
    request: Request,
) -> Result<Json<JobView>, ApiError> {
    submit(state, caller, query, JobType::Diarization, request).await
}

async fn submit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(mut fields): Query<HashMap<String, String>>,
    job_type: JobType,
    request: Request,
) -> Result<Json<JobView>, ApiError> {
    let headers = request.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let upload = if content_type.starts_with("multipart/form-data") {
        let config = &state.config;
        read_multipart(
            request,
            config.max_upload_bytes,
            &config.upload_dir,
            &mut fields,
        )
        .await?
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        read_form(request, &mut fields).await?;
        None
    } else {
        discard_body(request.into_body()).await;
        return Err(ApiError::bad_request(
            "Send multipart/form-data with a `file`, or a form with a `url`",
        ));
    };
    let speakers = speaker_options(&fields)?;
    let webhook_url = webhook_url(&state, &fields).await?;
    let url = fields
        .get("url")
        .map(|url| url.trim())
        .filter(|url| !url.is_empty());
    let source = match (upload, url) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Provide either a file or a url, not both",
            ));
        }
        (None, None) => return Err(ApiError::bad_request("Provide a file or a url")),
        (None, Some(url)) => Source::Url(parse_url(url)?),
        (Some(upload), None) => {
            let Received { path, filename } = upload.keep();
            Source::Upload { path, filename }
        }
    };
    let job = state
        .jobs
        .submit(
            &caller.user_id,
            job_type,
            source,
            JobOptions {
                speakers,
                webhook_url,
                exclusive: flag(&fields, "exclusive")?,
            },
        )
        .await?;
    Ok(Json(JobView::new(&job, &Links::new(&state, &headers))))
}

/// A received file: its temporary path and the name the client gave it.
struct Received {
    path: PathBuf,
    filename: String,
}

/// Deletes the temporary file on every exit, unless handed on with `keep`.
pub struct TempUpload(Received);

impl TempUpload {
    fn keep(mut self) -> Received {
        Received {
            path: std::mem::take(&mut self.0.path),
            filename: std::mem::take(&mut self.0.filename),
        }
    }
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        if !self.0.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0.path);
        }
    }
}

/// Reads a multipart body: the `file` part streamed into `upload_dir` (at
/// most `limit` bytes), every other part into `fields`.
pub async fn read_multipart(
    request: Request,
    limit: u64,
    upload_dir: &Path,
    fields: &mut HashMap<String, String>,
) -> Result<Option<TempUpload>, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit + MAX_FORM_BYTES as u64) {
        discard_body(request.into_body()).await;
        return Err(too_large(limit));
    }
    let overhead = Overhead::default();
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, overhead.count(body));
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    let bad_multipart = |error| multipart_error(&overhead, error);
    let mut received = None;
    let mut text_fields = 0;
    while let Some(field) = multipart.next_field().await.map_err(bad_multipart)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            if received.is_some() {
                return Err(ApiError::bad_request("Send one `file` per request"));
            }
            let filename = field.file_name().unwrap_or("audio").to_owned();
            let path = upload_dir.join(uuid::Uuid::new_v4().to_string());
            let file = TempUpload(Received { path, filename });
            save_field(field, &file.0.path, limit, &overhead).await?;
            received = Some(file);
        } else {
            text_fields += 1;
            if text_fields > MAX_FIELDS {
                overhead.drain();
                discard(field).await;
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Too many form fields: at most {MAX_FIELDS} besides the file"),
                ));
            }
            let value = read_text_field(field, &name, &overhead).await?;
            fields.insert(name, value);
        }
    }
    Ok(received)
}

/// Streams one multipart field to `path`, failing with 413 past `limit` bytes.
async fn save_field(
    mut field: Field<'_>,
    path: &Path,
    limit: u64,
    overhead: &Overhead,
) -> Result<(), ApiError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(ApiError::internal)?;
    let mut written = 0u64;
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| multipart_error(overhead, e))?
    {
        overhead.file_bytes(chunk.len());
        written += chunk.len() as u64;
        if written > limit {
            overhead.drain();
            discard(field).await;
            return Err(too_large(limit));
        }
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    file.flush().await.map_err(ApiError::internal)?;
    if written == 0 {
        return Err(ApiError::bad_request("The uploaded file is empty"));
    }
    Ok(())
}

/// Reads a text field chunk by chunk, refusing it (413) as soon as it passes
/// [`MAX_FIELD_BYTES`], before more of it is held.
async fn read_text_field(
    mut field: Field<'_>,
    name: &str,
    overhead: &Overhead,
) -> Result<String, ApiError> {
    let mut value = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| multipart_error(overhead, e))?
    {
        if value.len() + chunk.len() > MAX_FIELD_BYTES {
            overhead.drain();
            discard(field).await;
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Field `{name}` is too long: at most {MAX_FIELD_BYTES} bytes"),
            ));
        }
        value.extend_from_slice(&chunk);
    }
    String::from_utf8(value)
        .map_err(|_| ApiError::bad_request(format!("Field `{name}` is not UTF-8 text")))
}

async fn read_form(request: Request, fields: &mut HashMap<String, String>) -> Result<(), ApiError> {
    // `to_bytes` stops reading at the limit, so nothing past it is held.
    let body = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("The form body is too large: at most {MAX_FORM_BYTES} bytes"),
            )
        })?;
    fields.extend(url::form_urlencoded::parse(&body).into_owned());
    Ok(())
}

fn speaker_options(fields: &HashMap<String, String>) -> Result<SpeakerOptions, ApiError> {
    let [num, min, max] = SPEAKER_FIELDS.map(|name| {
        match fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{name} must be a positive integer, got {text:?}"
                    ))
                }),
        }
    });
    SpeakerOptions::new(num?, min?, max?).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A true/false field (absent: false).
fn flag(fields: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match fields
        .get(name)
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name} must be true or false, got {other:?}"
        ))),
    }
}

/// The `webhook_url` field, checked now as it will be at each delivery.
async fn webhook_url(
    state: &AppState,
    fields: &HashMap<String, String>,
) -> Result<Option<String>, ApiError> {
    let Some(text) = fields
        .get("webhook_url")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    let url = url::Url::parse(text)
        .map_err(|e| ApiError::bad_request(format!("Invalid webhook_url {text:?}: {e}")))?;
    crate::jobs::webhook_target(&url, state.jobs.fetch_limits())
        .await
        .map_err(|e| ApiError::bad_request(format!("webhook_url: {e}")))?;
    Ok(Some(url.to_string()))
}

fn parse_url(text: &str) -> Result<url::Url, ApiError> {
    let url = url::Url::parse(text)
        .map_err(|e| ApiError::bad_request(format!("Invalid url {text:?}: {e}")))?;
    fetch::check_scheme(&url).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(url)
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("File too large: the maximum upload is {limit} bytes"),
    )
}

fn multipart_error(
    overhead: &Overhead,
    error: axum::extract::multipart::MultipartError,
) -> ApiError {
    if overhead.exceeded() {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Multipart body too large: its parts other than the file may hold at most \
                 {MAX_OVERHEAD_BYTES} bytes"
            ),
        );
    }
    ApiError::bad_request(format!("Malformed multipart body: {}", error.body_text()))
}
