//! Jobs as the AudioPod API shows them, with fresh signed download links.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::db::Job;
use crate::jobs::JobResult;
use crate::server::AppState;
use crate::server::proxy_headers::forwarded_origin;

/// Makes absolute, signed, expiring links to job files.
pub struct Links<'a> {
    base: String,
    state: &'a AppState,
    expires: u64,
}

impl<'a> Links<'a> {
    /// Links rooted at the configured public URL, else at the scheme and host
    /// the client used: a trusted proxy's `Forwarded` / `X-Forwarded-*`
    /// (untrusted ones are gone by now), else plain http and `Host`.
    pub fn new(state: &'a AppState, headers: &HeaderMap) -> Self {
        let base = state.config.public_url.clone().unwrap_or_else(|| {
            let (scheme, host) = forwarded_origin(headers);
            let host = host.unwrap_or_else(|| {
                headers
                    .get(header::HOST)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("localhost")
                    .to_owned()
            });
            format!("{}://{host}", scheme.as_deref().unwrap_or("http"))
        });
        let expires = unix_now() + state.config.download_ttl.as_secs();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            state,
            expires,
        }
    }

    /// Links rooted at `base` (`http://host:port`), for messages sent outside a request.
    pub fn with_base(state: &'a AppState, base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            state,
            expires: unix_now() + state.config.download_ttl.as_secs(),
        }
    }

    /// The signed download URL of object `key` of job `job_id`.
    pub fn download(&self, job_id: i64, key: &str) -> String {
        let path = download_path(job_id, file_name(key));
        let query = self.state.signer.sign(&path, self.expires);
        format!("{}{path}?{query}", self.base)
    }
}

pub fn download_path(job_id: i64, name: &str) -> String {
    format!("/api/v1/files/{job_id}/{name}")
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The job as `GET /api/v1/jobs/{id}` returns it.
pub fn job(job: &Job, links: &Links) -> Value {
    let result = job
        .result
        .as_deref()
        .and_then(|text| serde_json::from_str::<JobResult>(text).ok());
    json!({
        "id": job.id,
        "job_type": job.job_type.as_str(),
        "status": job.status.as_str(),
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "completed_at": job.completed_at,
        "user_id": job.user_id,
        "task_id": job.task_id,
        "filename": job.filename,
        "display_name": job.display_name,
        "source_url": job.source_url,
        "error_message": job.error_message,
        "duration_seconds": job.duration_seconds,
        "num_speakers": result.as_ref().map_or(job.num_speakers.map(|n| n as usize), |r| Some(r.num_speakers)),
        "min_speakers": job.min_speakers,
        "max_speakers": job.max_speakers,
        "credits_used": job.credits_used,
        "attempts": job.attempts,
        "result": result.map(|r| result_json(job, &r, links)),
    })
}

/// A listing entry: the job plus its `outputFiles`.
pub fn list_item(job_row: &Job, links: &Links) -> Value {
    let mut value = job(job_row, links);
    let outputs: Vec<Value> = value["result"]["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|file| json!({ "type": file["type"], "speaker": file["speaker"], "path": file["path"] }))
                .collect()
        })
        .unwrap_or_default();
    value["outputFiles"] = Value::Array(outputs);
    value
}

fn result_json(job: &Job, result: &JobResult, links: &Links) -> Value {
    let mut files = Vec::new();
    let speakers: Vec<Value> = result
        .speakers
        .iter()
        .map(|speaker| {
            let mut entry = json!({
                "id": speaker.id,
                "label": speaker.label,
                "audio_stats": { "rms_db": speaker.stats.rms_db, "peak": speaker.stats.peak },
                "stats": speaker.stats,
            });
            if let Some(key) = &speaker.audio {
                let url = links.download(job.id, key);
                entry["audio_path"] = json!(key);
                entry["download_url"] = json!(url);
                files.push(json!({
                    "type": "audio", "speaker": speaker.label, "path": key, "download_url": url,
                }));
            }
            entry
        })
        .collect();
    let rttm_url = links.download(job.id, &result.rttm);
    files.push(
        json!({ "type": "rttm", "speaker": null, "path": result.rttm, "download_url": rttm_url }),
    );
    json!({
        "speakers": speakers,
        "files": files,
        "rttm_path": result.rttm,
        "rttm_url": rttm_url,
        "segments": result.segments,
        "num_speakers": result.num_speakers,
        "duration_seconds": result.duration_seconds,
        "sample_rate": result.sample_rate,
        "channels": result.channels,
        "total_speech_seconds": result.total_speech_seconds,
        "overlap_seconds": result.overlap_seconds,
        "credits_used": job.credits_used,
    })
}
