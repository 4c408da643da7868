//! Streams whose session ended without finalizing: at start-up, the ones
//! this node held when it crashed; later, the ones of nodes that died (their
//! leases ran out). Each is finalized from its spool (or, on another node,
//! from its checkpoints) by replaying it through the online diarizer (same
//! settings, so the same labels the client saw), or FAILED and refunded when
//! nothing was kept.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::checkpoint::Checkpoints;
use super::finalize::{finalize, forget};
use super::spool::{SpoolDir, SpoolMeta};
use super::{Live, Slot, online_params};
use crate::audio::AnalysisResampler;
use crate::db::{DbError, Job};
use crate::diarization::Diarization;
use crate::engine::{Engine, SpeakerCount};
use crate::output::BlockSource;

#[derive(Debug, thiserror::Error)]
enum ReplayError {
    #[error("{0}")]
    Output(#[from] crate::output::OutputError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] crate::audio::DecodeError),
    #[error("{0}")]
    Engine(#[from] crate::engine::RunError),
}

impl Live {
    /// Settles the stream jobs this node held when it stopped; replays run in
    /// the background, each holding a session slot. Returns how many jobs
    /// were found.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, DbError> {
        let interrupted = self
            .jobs
            .db()
            .own_stream_jobs(&self.jobs.lease().node_id)
            .await?;
        let mut kept = HashSet::new();
        for job in &interrupted {
            kept.insert(
                SpoolDir::of_job(&self.config.spool_dir, job.id, &job.task_id)
                    .path()
                    .to_owned(),
            );
            tokio::spawn(Arc::clone(self).settle(job.clone()));
        }
        // Spools of jobs that were deleted, settled or taken over meanwhile.
        if let Ok(entries) = std::fs::read_dir(&self.config.spool_dir) {
            for entry in entries.flatten() {
                if !kept.contains(&entry.path()) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(interrupted.len())
    }

    /// Until shutdown, takes over the streams of nodes that stopped renewing
    /// their leases (they died) and finalizes them from their checkpoints.
    pub async fn take_over_orphans(self: Arc<Self>, shutdown: CancellationToken) {
        let every = Duration::from_secs(
            u64::try_from(self.jobs.lease().seconds / 3)
                .unwrap_or(1)
                .max(1),
        );
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
            loop {
                match self
                    .jobs
                    .db()
                    .claim_orphaned_stream(self.jobs.lease())
                    .await
                {
                    Ok(Some(job)) => {
                        tracing::warn!(
                            job = job.id,
                            from = job.locked_by,
                            "taking over a stream whose node stopped"
                        );
                        tokio::spawn(Arc::clone(&self).settle(job));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "looking for orphaned streams failed");
                        break;
                    }
                }
            }
        }
    }

    /// Finalizes an interrupted stream from its spool on this node, else from
    /// its checkpoints, else fails and refunds it.
    async fn settle(self: Arc<Self>, job: Job) {
        let spool = SpoolDir::of_job(&self.config.spool_dir, job.id, &job.task_id);
        let meta = match spool.meta() {
            Ok(meta) => Some(meta),
            Err(_) => match Checkpoints::of_job(job.id, &job.task_id)
                .restore(self.jobs.files(), &spool)
                .await
            {
                Ok(meta) => meta,
                Err(e) => {
                    tracing::error!(job = job.id, error = %e, "restoring a stream's checkpoints failed");
                    None
                }
            },
        };
        let Some(meta) = meta else {
            spool.remove();
            if let Err(e) = self
                .jobs
                .db()
                .fail_job(
                    &job,
                    "the server stopped before the stream's audio was kept",
                )
                .await
            {
                tracing::error!(job = job.id, error = %e, "failing the stream job failed");
            }
            forget(&self.jobs, &job).await;
            return;
        };
        self.replay(job, spool, meta).await;
    }

    async fn replay(self: Arc<Self>, job: Job, spool: SpoolDir, meta: SpoolMeta) {
        let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
            return;
        };
        let _slot = Slot { _permit: slot };
        let engine = Arc::clone(&self.engine);
        let (replay_spool, replay_meta, replay_job) = (spool.clone(), meta.clone(), job.clone());
        let replayed = tokio::task::spawn_blocking(move || {
            diarize_spool(&engine, &replay_spool, &replay_meta, &replay_job)
        })
        .await;
        match replayed {
            Ok(Ok(diarization)) => {
                let reserved = job.credits_reserved;
                if finalize(&self.jobs, &job, &spool, &meta, diarization, reserved)
                    .await
                    .is_ok()
                {
                    tracing::warn!(
                        job = job.id,
                        "interrupted stream finalized from what was kept"
                    );
                }
            }
            outcome => {
                let error = outcome.map_or_else(
                    |e| e.to_string(),
                    |r| r.err().map(|e| e.to_string()).unwrap_or_default(),
                );
                tracing::error!(job = job.id, %error, "replaying an interrupted stream failed");
                spool.remove();
                if let Err(e) = self
                    .jobs
                    .db()
                    .fail_job(&job, "the stream could not be finalized")
                    .await
                {
                    tracing::error!(job = job.id, error = %e, "failing the stream job failed");
                }
                forget(&self.jobs, &job).await;
            }
        }
    }
}

/// The spooled audio through a fresh online run.
fn diarize_spool(
    engine: &Engine,
    spool: &SpoolDir,
    meta: &SpoolMeta,
    job: &Job,
) -> Result<Diarization, ReplayError> {
    let size = |n: Option<i64>| n.and_then(|n| usize::try_from(n).ok());
    let speakers =
        SpeakerCount::new(size(job.num_speakers), None, size(job.max_speakers)).unwrap_or_default();
    let latency = std::time::Duration::from_millis(meta.latency_ms);
    let mut run = engine.start_online(online_params(latency, speakers));
    let format = meta.format;
    let mut resampler = AnalysisResampler::new(format.sample_rate, format.channels)?;
    let mut reader = spool.reader(format.channels)?;
    let mut mono = Vec::new();
    while let Some(block) = reader.next_block()? {
        mono.clear();
        resampler.push(block, &mut mono);
        run.push(&mono)?;
    }
    mono.clear();
    resampler.finish(&mut mono);
    run.push(&mono)?;
    Ok(run.finish()?.1)
}
