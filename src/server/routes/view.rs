//! Jobs as the AudioPod API shows them, with fresh signed download links.
//!
//! The views list their fields in alphabetical order: that is the order the
//! API has always sent them in, so the bytes on the wire stay the same.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::db::{Job, JobStatus, JobType};
use crate::jobs::JobResult;
use crate::output::{Segment, SpeakerStats};
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

/// A job: `GET /api/v1/jobs/{id}`, and the answer of submit, retry and cancel.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Job)]
pub struct JobView {
    pub attempts: i64,
    pub completed_at: Option<String>,
    pub created_at: String,
    pub credits_used: Option<i64>,
    pub display_name: String,
    pub duration_seconds: Option<f64>,
    pub error_message: Option<String>,
    pub filename: String,
    pub id: i64,
    #[schema(schema_with = job_type_schema)]
    pub job_type: &'static str,
    pub max_speakers: Option<i64>,
    pub min_speakers: Option<i64>,
    /// The speakers found once COMPLETED, else the number asked for.
    pub num_speakers: Option<usize>,
    /// The job's files without links; in listings only.
    #[serde(rename = "outputFiles", skip_serializing_if = "Option::is_none")]
    pub output_files: Option<Vec<OutputFile>>,
    /// Set once COMPLETED.
    pub result: Option<ResultView>,
    pub source_url: Option<String>,
    #[schema(schema_with = job_status_schema)]
    pub status: &'static str,
    #[schema(format = "uuid")]
    pub task_id: String,
    pub updated_at: String,
    pub user_id: String,
}

/// What a COMPLETED job produced, with signed download links.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Result)]
pub struct ResultView {
    pub channels: u16,
    pub credits_used: Option<i64>,
    pub duration_seconds: f64,
    pub files: Vec<FileView>,
    pub num_speakers: usize,
    pub overlap_seconds: f64,
    pub rttm_path: String,
    #[schema(format = "uri")]
    pub rttm_url: String,
    pub sample_rate: u32,
    pub segments: Vec<Segment>,
    pub speakers: Vec<SpeakerView>,
    pub total_speech_seconds: f64,
}

/// One speaker of a result; `audio_path` and `download_url` when it has a track.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Speaker)]
pub struct SpeakerView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_path: Option<String>,
    pub audio_stats: AudioStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri")]
    pub download_url: Option<String>,
    pub id: usize,
    pub label: String,
    pub stats: SpeakerStats,
}

/// The level of a speaker's track (AudioPod's field).
#[derive(Debug, Serialize, ToSchema)]
pub struct AudioStats {
    pub peak: f64,
    pub rms_db: f64,
}

/// A file of a result: a speaker's track or the RTTM.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = File)]
pub struct FileView {
    #[schema(format = "uri")]
    pub download_url: String,
    pub path: String,
    /// The speaker's label for audio, null for the RTTM.
    pub speaker: Option<String>,
    #[serde(rename = "type")]
    pub kind: FileKind,
}

/// A listing's view of a file: no link (links are for one job's view).
#[derive(Debug, Serialize, ToSchema)]
pub struct OutputFile {
    pub path: String,
    pub speaker: Option<String>,
    #[serde(rename = "type")]
    pub kind: FileKind,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Audio,
    Rttm,
}

/// A page of a listing, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    #[serde(rename = "hasMore")]
    pub has_more: bool,
    pub items: Vec<T>,
    pub limit: i64,
    pub skip: i64,
    pub total: i64,
}

impl<T: ToSchema> Page<T> {
    /// The page of `items` found at `skip` of `total`.
    pub fn new(items: Vec<T>, total: i64, skip: i64, limit: i64) -> Self {
        Self {
            has_more: skip + (items.len() as i64) < total,
            items,
            limit,
            skip,
            total,
        }
    }
}

impl JobView {
    pub fn new(job: &Job, links: &Links) -> Self {
        let result = job
            .result
            .as_deref()
            .and_then(|text| serde_json::from_str::<JobResult>(text).ok());
        Self {
            attempts: job.attempts,
            completed_at: job.completed_at.clone(),
            created_at: job.created_at.clone(),
            credits_used: job.credits_used,
            display_name: job.display_name.clone(),
            duration_seconds: job.duration_seconds,
            error_message: job.error_message.clone(),
            filename: job.filename.clone(),
            id: job.id,
            job_type: job.job_type.as_str(),
            max_speakers: job.max_speakers,
            min_speakers: job.min_speakers,
            num_speakers: result
                .as_ref()
                .map_or(job.num_speakers.map(|n| n as usize), |r| {
                    Some(r.num_speakers)
                }),
            output_files: None,
            result: result.map(|r| ResultView::new(job, r, links)),
            source_url: job.source_url.clone(),
            status: job.status.as_str(),
            task_id: job.task_id.clone(),
            updated_at: job.updated_at.clone(),
            user_id: job.user_id.clone(),
        }
    }

    /// A listing entry: the job plus its `outputFiles`.
    pub fn list_item(job: &Job, links: &Links) -> Self {
        let mut view = Self::new(job, links);
        let files = view.result.as_ref().map_or(&[][..], |r| &r.files);
        view.output_files = Some(
            files
                .iter()
                .map(|file| OutputFile {
                    path: file.path.clone(),
                    speaker: file.speaker.clone(),
                    kind: file.kind,
                })
                .collect(),
        );
        view
    }
}

impl ResultView {
    fn new(job: &Job, result: JobResult, links: &Links) -> Self {
        let mut files = Vec::new();
        let speakers = result
            .speakers
            .into_iter()
            .map(|speaker| {
                let download_url = speaker.audio.as_ref().map(|key| {
                    let url = links.download(job.id, key);
                    files.push(FileView {
                        download_url: url.clone(),
                        path: key.clone(),
                        speaker: Some(speaker.label.clone()),
                        kind: FileKind::Audio,
                    });
                    url
                });
                SpeakerView {
                    audio_path: speaker.audio,
                    audio_stats: AudioStats {
                        peak: speaker.stats.peak,
                        rms_db: speaker.stats.rms_db,
                    },
                    download_url,
                    id: speaker.id,
                    label: speaker.label,
                    stats: speaker.stats,
                }
            })
            .collect();
        let rttm_url = links.download(job.id, &result.rttm);
        files.push(FileView {
            download_url: rttm_url.clone(),
            path: result.rttm.clone(),
            speaker: None,
            kind: FileKind::Rttm,
        });
        Self {
            channels: result.channels,
            credits_used: job.credits_used,
            duration_seconds: result.duration_seconds,
            files,
            num_speakers: result.num_speakers,
            overlap_seconds: result.overlap_seconds,
            rttm_path: result.rttm,
            rttm_url,
            sample_rate: result.sample_rate,
            segments: result.segments,
            speakers,
            total_speech_seconds: result.total_speech_seconds,
        }
    }
}

/// A string schema that takes one of `values`.
pub fn string_enum<'a>(values: impl IntoIterator<Item = &'a str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
}

pub fn job_type_schema() -> Object {
    string_enum([JobType::Extraction, JobType::Diarization, JobType::Stream].map(JobType::as_str))
}

pub fn job_status_schema() -> Object {
    string_enum(JobStatus::ALL.map(JobStatus::as_str))
}
