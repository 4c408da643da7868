//! Workers: claim the oldest PENDING job, run it, record how it ended.

use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::{Files, FilesError, JobResult, Jobs, SpeakerOptions, fetch};
use crate::audio;
use crate::db::{Cover, DbError, Job, JobStatus, JobType, credits_for, seconds_for};
use crate::diarization::Overlap;
use crate::engine::Engine;
use crate::pipeline;

/// How a run ended when its job was no longer this worker's to record.
const LOST: &str = "lost";

/// How often an idle worker looks at the queue without being woken.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often a running job's claim is checked, so a cancel stops it quickly.
const HOLD_CHECK: Duration = Duration::from_millis(500);
/// How often a download looks at the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// Why a job failed, in words for its owner.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("{0}")]
    Fetch(#[from] fetch::FetchError),
    #[error("{0}")]
    Pipeline(String),
    #[error("{0}")]
    Db(#[from] DbError),
    #[error("{0}")]
    Files(#[from] FilesError),
    #[error(
        "the audio is {seconds:.1} s long but your balance covers {affordable_seconds:.1} s; \
         the file's header said {stated_seconds:.1} s. Add credits and retry the job"
    )]
    Unpaid {
        seconds: f64,
        affordable_seconds: f64,
        stated_seconds: f64,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// A restart or a delete took the job away; nothing is recorded.
    #[error("the job was taken away from this worker")]
    Lost,
}

/// Runs the configured number of workers until `shutdown`. Jobs this node
/// left PROCESSING when it stopped are queued again first (other nodes' jobs
/// come back when their leases run out). On shutdown a running job gets
/// `grace` to finish, then goes back to the queue.
pub async fn run_workers(
    jobs: Arc<Jobs>,
    engine: Arc<Engine>,
    shutdown: CancellationToken,
) -> Result<(), DbError> {
    let requeued = jobs.db.requeue_own_jobs(&jobs.config.lease.node_id).await?;
    if requeued > 0 {
        tracing::warn!(requeued, "jobs interrupted by a restart are queued again");
    }
    let _ = tokio::fs::remove_dir_all(&jobs.config.work_dir).await;
    let workers: Vec<_> = (0..jobs.config.concurrent_jobs.max(1))
        .map(|_| {
            let worker = Worker {
                jobs: Arc::clone(&jobs),
                engine: Arc::clone(&engine),
            };
            tokio::spawn(worker.run(shutdown.clone()))
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    Ok(())
}

struct Worker {
    jobs: Arc<Jobs>,
    engine: Arc<Engine>,
}

impl Worker {
    async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let job = match self.jobs.db.claim_next_job(&self.jobs.config.lease).await {
                Ok(Some(job)) => job,
                Ok(None) => {
                    tokio::select! {
                        () = self.jobs.wake.notified() => {}
                        () = tokio::time::sleep(IDLE_POLL) => {}
                        () = shutdown.cancelled() => {}
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "claiming a job failed");
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            };
            let cancel = Arc::new(AtomicBool::new(false));
            let work = self.process(&job, Arc::clone(&cancel));
            tokio::pin!(work);
            tokio::select! {
                () = &mut work => {}
                () = shutdown.cancelled() => {
                    let grace = self.jobs.config.shutdown_grace;
                    if tokio::time::timeout(grace, &mut work).await.is_err() {
                        tracing::warn!(job = job.id, "shutting down: job goes back to the queue");
                        if let Err(e) = self.jobs.db.requeue_job(&job).await {
                            tracing::error!(job = job.id, error = %e, "requeue failed; a restart requeues it");
                        }
                        // The model threads must stop before the process exits under them.
                        cancel.store(true, Ordering::Relaxed);
                        work.await;
                    }
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(job = job.id, attempt = job.attempts))]
    async fn process(&self, job: &Job, cancel: Arc<AtomicBool>) {
        let started = Instant::now();
        let dir = self
            .jobs
            .config
            .work_dir
            .join(format!("job-{}-{}", job.id, job.task_id));
        // A bug must fail the job, not strand it in PROCESSING until a restart.
        let run = AssertUnwindSafe(self.run_job(job, &dir, Arc::clone(&cancel))).catch_unwind();
        // Cancelled, deleted or taken over: the run stops at its next window
        // (or drops its download) and stores nothing. It is still awaited, so
        // no model thread outlives the job.
        let watch = async {
            self.until_lost(job).await;
            tracing::info!("the job was cancelled, deleted or taken over while running: stopping");
            cancel.store(true, Ordering::Relaxed);
            std::future::pending::<()>().await;
        };
        let outcome = tokio::select! {
            outcome = run => outcome
                .unwrap_or_else(|_| Err(JobError::Internal("the job panicked".into()))),
            () = watch => unreachable!("the watch never ends"),
        };
        let _ = tokio::fs::remove_dir_all(&dir).await;
        let db = &self.jobs.db;
        let recorded = match outcome {
            Ok(result) => {
                let seconds = result.duration_seconds;
                let credits = credits_for(seconds);
                let json = serde_json::to_string(&result).unwrap_or_default();
                let done = db.complete_job(job, &json, seconds, credits).await;
                if matches!(done, Ok(true)) {
                    let elapsed = started.elapsed().as_secs_f64();
                    metrics::histogram!("whospoke_job_processing_seconds").record(elapsed);
                    metrics::counter!("whospoke_audio_seconds_processed_total")
                        .increment(seconds.round() as u64);
                    metrics::histogram!("whospoke_job_rtfx").record(seconds / elapsed.max(1e-3));
                    metrics::counter!("whospoke_credits_charged_total").increment(credits as u64);
                    tracing::info!(seconds, elapsed, "job completed");
                }
                done.map(|ours| if ours { "COMPLETED" } else { LOST })
            }
            Err(JobError::Lost) => Ok(LOST),
            Err(e) => {
                let failed = db.fail_job(job, &e.to_string()).await;
                if matches!(failed, Ok(true)) {
                    tracing::warn!(error = %e, "job failed");
                }
                failed.map(|ours| if ours { "FAILED" } else { LOST })
            }
        };
        match recorded {
            Ok(LOST) => {
                tracing::info!("the job was cancelled, deleted or taken over; nothing recorded");
                self.remove_outputs_if_cancelled(job).await;
            }
            Ok(status) => {
                metrics::counter!("whospoke_jobs_finished_total", "status" => status).increment(1);
            }
            Err(e) => {
                tracing::error!(error = %e, "recording the job's end failed; a restart retries it")
            }
        }
    }

    /// Returns once this claim of `job` no longer holds (polled: claims are rows).
    async fn until_lost(&self, job: &Job) {
        loop {
            tokio::time::sleep(HOLD_CHECK).await;
            if matches!(self.jobs.db.holds(job).await, Ok(false)) {
                return;
            }
        }
    }

    /// A job cancelled while its outputs were being stored keeps none of them.
    async fn remove_outputs_if_cancelled(&self, job: &Job) {
        let cancelled = self
            .jobs
            .db
            .job(&job.user_id, job.id)
            .await
            .ok()
            .flatten()
            .is_some_and(|now| now.status == JobStatus::Cancelled);
        if cancelled
            && let Err(e) = self
                .jobs
                .files
                .delete_prefix(&format!("jobs/{}", job.id))
                .await
        {
            tracing::warn!(error = %e, "removing a cancelled job's outputs failed");
        }
    }

    async fn run_job(
        &self,
        job: &Job,
        dir: &Path,
        cancel: Arc<AtomicBool>,
    ) -> Result<JobResult, JobError> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| JobError::Internal(format!("{}: {e}", dir.display())))?;
        let input = tokio::select! {
            input = self.input(job, dir) => input?,
            () = stopped(&cancel) => return Err(JobError::Lost),
        };
        let out_dir = dir.join("out");
        let speakers = SpeakerOptions::of(job)
            .count()
            .map_err(|e| JobError::Internal(e.to_string()))?;
        let engine = Arc::clone(&self.engine);
        let run_input = input.clone();
        let run_out = out_dir.clone();
        let overlap = Overlap::chosen(job.exclusive);
        let report = tokio::task::spawn_blocking(move || {
            pipeline::process_file(&engine, &run_input, &run_out, speakers, overlap, |_, _| {
                if cancel.load(Ordering::Relaxed) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
        })
        .await
        .map_err(|e| JobError::Internal(format!("the diarization task failed: {e}")))?
        .map_err(|e| {
            JobError::Pipeline(super::user_message(&e.to_string(), &input, &job.filename))
        })?;

        // The audio decoded is what is charged, whatever the file said of its
        // length. The check also keeps a node whose lease ran out from
        // overwriting the outputs of the node that took the job over.
        let files = &self.jobs.files;
        let cover = self
            .jobs
            .db
            .cover(job, credits_for(report.duration_seconds))
            .await?;
        // A retry replaces what an earlier attempt stored; an unpaid one keeps nothing.
        match cover {
            Cover::Lost => return Err(JobError::Lost),
            Cover::Covered => files.delete_prefix(&format!("jobs/{}", job.id)).await?,
            Cover::Short {
                affordable,
                stated_seconds,
            } => {
                files.delete_prefix(&format!("jobs/{}", job.id)).await?;
                return Err(JobError::Unpaid {
                    seconds: report.duration_seconds,
                    affordable_seconds: seconds_for(affordable),
                    stated_seconds: stated_seconds.unwrap_or(0.0),
                });
            }
        }
        let with_tracks = job.job_type == JobType::Extraction;
        let mut names = vec![report.rttm.clone(), crate::output::RESULT_FILE.to_owned()];
        if with_tracks {
            names.extend(report.speakers.iter().map(|speaker| speaker.track.clone()));
        }
        for name in &names {
            files
                .put_file(&Files::output_key(job.id, name), &out_dir.join(name))
                .await?;
        }
        Ok(JobResult::from_report(report, with_tracks, |name| {
            Files::output_key(job.id, name)
        }))
    }

    /// The job's audio as a local file: downloaded (and charged) for URL jobs,
    /// copied from the store for uploads.
    async fn input(&self, job: &Job, dir: &Path) -> Result<PathBuf, JobError> {
        if let Some(url) = &job.source_url {
            let url = url::Url::parse(url).map_err(|e| JobError::Internal(e.to_string()))?;
            let path = fetch::fetch(&url, dir, &self.jobs.config.fetch).await?;
            if job.credits_reserved == 0 {
                let probe_path = path.clone();
                let seconds =
                    tokio::task::spawn_blocking(move || audio::probe_duration(&probe_path))
                        .await
                        .map_err(|e| JobError::Internal(e.to_string()))?
                        .map_err(|e| {
                            JobError::Pipeline(super::user_message(
                                &e.to_string(),
                                &path,
                                &job.filename,
                            ))
                        })?;
                if !self
                    .jobs
                    .db
                    .reserve_for_job(job, seconds, credits_for(seconds))
                    .await?
                {
                    return Err(JobError::Lost);
                }
            }
            return Ok(path);
        }
        let key = job
            .input_key
            .as_deref()
            .ok_or_else(|| JobError::Internal("the job has no input".into()))?;
        let local = dir.join(&job.filename);
        self.jobs.files.get_to_file(key, &local).await?;
        Ok(local)
    }
}

/// Returns once `cancel` is set.
async fn stopped(cancel: &AtomicBool) {
    while !cancel.load(Ordering::Relaxed) {
        tokio::time::sleep(CANCEL_POLL).await;
    }
}
