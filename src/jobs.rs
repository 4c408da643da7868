//! Batch jobs: accept, queue, run and clean up. Nothing here knows HTTP.
//!
//! ```text
//! submit ─▶ probe duration ─▶ store input ─▶ reserve credits + insert PENDING ─┐
//!                                                                               ▼
//! worker: claim ─▶ fetch input (store or URL) ─▶ pipeline::process_file ─▶ store outputs
//!                                                   ─▶ COMPLETED (settle) | FAILED (refund)
//! ```

pub mod fetch;
pub mod files;
pub mod result;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::audio;
use crate::db::{Cancel, Db, DbError, Job, JobType, Lease, NewJob, Retry};
use crate::engine::{SpeakerCount, SpeakerCountError};

pub use fetch::{FetchError, FetchLimits, webhook_target};
pub use files::{Files, FilesError};
pub use result::JobResult;
pub use worker::run_workers;

/// How many speakers a job asks for, as given (validated at construction).
#[derive(Debug, Clone, Copy, Default)]
pub struct SpeakerOptions {
    pub num: Option<i64>,
    pub min: Option<i64>,
    pub max: Option<i64>,
}

impl SpeakerOptions {
    pub fn new(
        num: Option<i64>,
        min: Option<i64>,
        max: Option<i64>,
    ) -> Result<Self, SpeakerCountError> {
        let options = Self { num, min, max };
        options.count()?;
        Ok(options)
    }

    fn count(self) -> Result<SpeakerCount, SpeakerCountError> {
        let size = |n: Option<i64>| n.map(|n| usize::try_from(n).unwrap_or(0));
        SpeakerCount::new(size(self.num), size(self.min), size(self.max))
    }

    fn of(job: &Job) -> Self {
        Self {
            num: job.num_speakers,
            min: job.min_speakers,
            max: job.max_speakers,
        }
    }
}

/// What a job is asked to do besides its input.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    pub speakers: SpeakerOptions,
    /// Where the job's end is POSTed.
    pub webhook_url: Option<String>,
    /// At most one speaker at a time in the outputs.
    pub exclusive: bool,
}

/// Where a job's audio comes from.
pub enum Source {
    /// A file already received into a local temporary path, which `submit` consumes.
    Upload {
        path: PathBuf,
        filename: String,
    },
    Url(url::Url),
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The upload does not decode; `job` is the FAILED record kept of it.
    #[error("{message}")]
    Undecodable { job: Box<Job>, message: String },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("probing the upload: {0}")]
    Probe(String),
}

/// Settings of the job service.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Scratch space for running jobs, wiped at start-up.
    pub work_dir: PathBuf,
    pub fetch: FetchLimits,
    pub concurrent_jobs: usize,
    /// How long a shutdown waits for running jobs before putting them back in the queue.
    pub shutdown_grace: Duration,
    /// This node's claims: batch jobs and live streams.
    pub lease: Lease,
}

/// The job service: the database, the file store and the queue's doorbell.
pub struct Jobs {
    db: Db,
    files: Files,
    config: JobsConfig,
    wake: Notify,
}

impl Jobs {
    pub fn new(db: Db, files: Files, config: JobsConfig) -> Arc<Self> {
        Arc::new(Self {
            db,
            files,
            config,
            wake: Notify::new(),
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn files(&self) -> &Files {
        &self.files
    }

    pub fn lease(&self) -> &Lease {
        &self.config.lease
    }

    pub fn fetch_limits(&self) -> &FetchLimits {
        &self.config.fetch
    }

    /// Accepts a job: uploads are probed and charged now, URL jobs when downloaded.
    pub async fn submit(
        &self,
        user_id: &str,
        job_type: JobType,
        source: Source,
        options: JobOptions,
    ) -> Result<Job, SubmitError> {
        let JobOptions {
            speakers,
            webhook_url,
            exclusive,
        } = options;
        let task_id = uuid::Uuid::new_v4().to_string();
        let mut job = NewJob {
            user_id: user_id.to_owned(),
            job_type,
            task_id: task_id.clone(),
            filename: String::new(),
            source_url: None,
            input_key: None,
            num_speakers: speakers.num,
            min_speakers: speakers.min,
            max_speakers: speakers.max,
            duration_seconds: None,
            credits: 0,
            webhook_url,
            exclusive,
        };
        let inserted = match source {
            Source::Url(url) => {
                job.filename = url_filename(&url);
                job.source_url = Some(url.to_string());
                self.db.insert_job(&job).await?
            }
            Source::Upload { path, filename } => {
                job.filename = safe_filename(&filename);
                let accepted = self.accept_upload(job, &path).await;
                let _ = tokio::fs::remove_file(&path).await;
                accepted?
            }
        };
        tracing::info!(
            job = inserted.id,
            user = user_id,
            kind = job_type.as_str(),
            "job accepted"
        );
        self.wake.notify_waiters();
        Ok(inserted)
    }

    async fn accept_upload(&self, mut job: NewJob, path: &Path) -> Result<Job, SubmitError> {
        let probe_path = path.to_owned();
        let probed = tokio::task::spawn_blocking(move || audio::probe_duration(&probe_path))
            .await
            .map_err(|e| SubmitError::Probe(e.to_string()))?;
        let seconds = match probed {
            Ok(seconds) => seconds,
            Err(e) => {
                let message = user_message(&e.to_string(), path, &job.filename);
                let failed = self.db.insert_failed_job(&job, &message).await?;
                return Err(SubmitError::Undecodable {
                    job: Box::new(failed),
                    message,
                });
            }
        };
        job.duration_seconds = Some(seconds);
        job.credits = crate::db::credits_for(seconds);
        // Refuse before copying the file when the balance clearly cannot pay;
        // the insert below re-checks atomically.
        let available = self.db.balance(&job.user_id).await?;
        if available < job.credits {
            return Err(DbError::InsufficientCredits {
                required: job.credits,
                available,
            }
            .into());
        }
        let key = Files::input_key(&job.task_id, &job.filename);
        self.files.put_file(&key, path).await?;
        job.input_key = Some(key);
        match self.db.insert_job(&job).await {
            Ok(inserted) => Ok(inserted),
            Err(e) => {
                let _ = self
                    .files
                    .delete_prefix(&format!("inputs/{}", job.task_id))
                    .await;
                Err(e.into())
            }
        }
    }

    /// Re-queues a FAILED job under a new task id.
    pub async fn retry(&self, user_id: &str, id: i64) -> Result<Retry, DbError> {
        let task_id = uuid::Uuid::new_v4().to_string();
        let outcome = self.db.retry_job(user_id, id, &task_id).await?;
        if matches!(outcome, Retry::Requeued(_)) {
            self.wake.notify_waiters();
        }
        Ok(outcome)
    }

    /// Cancels a PENDING or PROCESSING job, refunding it; its worker stops
    /// within a check interval and what it stored is removed.
    pub async fn cancel(&self, user_id: &str, id: i64) -> Result<Cancel, SubmitError> {
        let outcome = self.db.cancel_job(user_id, id).await?;
        if let Cancel::Cancelled(job) = &outcome {
            self.files
                .delete_prefix(&format!("jobs/{}", job.id))
                .await?;
            tracing::info!(job = id, "job cancelled");
        }
        Ok(outcome)
    }

    /// Deletes a job and its files; false when it is not the user's.
    pub async fn delete(&self, user_id: &str, id: i64) -> Result<bool, SubmitError> {
        let Some(job) = self.db.delete_job(user_id, id).await? else {
            return Ok(false);
        };
        self.files
            .delete_prefix(&format!("jobs/{}", job.id))
            .await?;
        if let Some((folder, _)) = job
            .input_key
            .as_deref()
            .and_then(|key| key.rsplit_once('/'))
        {
            self.files.delete_prefix(folder).await?;
        }
        tracing::info!(job = id, "job deleted");
        Ok(true)
    }
}

/// A file name safe as an object key and an RTTM file id: `[A-Za-z0-9._-]`, no leading dot.
pub fn safe_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '_') {
        "audio".to_owned()
    } else {
        cleaned.chars().take(120).collect()
    }
}

fn url_filename(url: &url::Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .unwrap_or_default();
    safe_filename(last)
}

/// Error text for the user: server paths replaced by the name they uploaded.
fn user_message(message: &str, local: &Path, filename: &str) -> String {
    message.replace(&*local.to_string_lossy(), filename)
}
