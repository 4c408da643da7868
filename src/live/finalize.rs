//! A finished stream becomes a COMPLETED job, with the outputs of a batch
//! extraction cut from its spool.
//!
//! ```text
//! Diarization ─┬─▶ <file_id>.rttm
//! spool ───────┴─▶ tracks (stream's rate and channels) ─▶ stats ─▶ result.json ─▶ Files ─▶ COMPLETED
//! ```

use std::path::Path;

use super::checkpoint::Checkpoints;
use super::event::Completed;
use super::spool::{SpoolDir, SpoolMeta};
use crate::db::{DbError, Job, credits_for};
use crate::diarization::{Diarization, Overlap};
use crate::jobs::{Files, FilesError, JobResult, Jobs};
use crate::output::{self, OutputError, RESULT_FILE, Report};

#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error("writing the outputs: {0}")]
    Output(#[from] OutputError),
    #[error("spool: {0}")]
    Spool(#[from] std::io::Error),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the job was deleted during the stream")]
    Lost,
    #[error("writing the outputs panicked")]
    Panicked,
}

/// Stores the outputs and completes the job, charging the audio received (at
/// most `reserved`). The spool is removed either way; on failure the job is
/// FAILED and refunded.
pub async fn finalize(
    jobs: &Jobs,
    job: &Job,
    spool: &SpoolDir,
    meta: &SpoolMeta,
    diarization: Diarization,
    reserved: i64,
) -> Result<Completed, FinalizeError> {
    let outcome = store(jobs, job, spool, meta, diarization, reserved).await;
    spool.remove();
    // A job another node took over keeps its checkpoints for that node.
    if !matches!(outcome, Err(FinalizeError::Lost)) {
        forget(jobs, job).await;
    }
    if let Err(e) = &outcome {
        tracing::error!(job = job.id, error = %e, "finalizing a stream failed");
        if let Err(e) = jobs
            .db()
            .fail_job(job, "the stream could not be finalized")
            .await
        {
            tracing::error!(job = job.id, error = %e, "failing the stream job failed");
        }
    }
    outcome
}

/// A stream that ended, either way: its checkpoints and its registry entry go.
pub async fn forget(jobs: &Jobs, job: &Job) {
    Checkpoints::of_job(job.id, &job.task_id)
        .remove(jobs.files())
        .await;
    if let Err(e) = jobs.db().forget_session(job.id).await {
        tracing::warn!(job = job.id, error = %e, "removing the session's registry entry failed");
    }
}

async fn store(
    jobs: &Jobs,
    job: &Job,
    spool: &SpoolDir,
    meta: &SpoolMeta,
    diarization: Diarization,
    reserved: i64,
) -> Result<Completed, FinalizeError> {
    let out_dir = spool.path().join("out");
    let file_id = crate::pipeline::file_id(Path::new(&job.filename));
    let diarization = Overlap::chosen(job.exclusive).apply(diarization);
    let (report, rttm) = {
        let (spool, meta, out_dir, file_id) = (
            spool.clone(),
            meta.clone(),
            out_dir.clone(),
            file_id.clone(),
        );
        tokio::task::spawn_blocking(move || {
            write_outputs(&spool, &meta, &diarization, &file_id, &out_dir)
        })
        .await
        .map_err(|_| FinalizeError::Panicked)??
    };

    let files = jobs.files();
    let mut names = vec![report.rttm.clone(), RESULT_FILE.to_owned()];
    if meta.extract {
        names.extend(report.speakers.iter().map(|speaker| speaker.track.clone()));
    }
    for name in &names {
        files
            .put_file(&Files::output_key(job.id, name), &out_dir.join(name))
            .await?;
    }
    let result =
        JobResult::from_report(report, meta.extract, |name| Files::output_key(job.id, name));
    let seconds = result.duration_seconds;
    let credits_used = credits_for(seconds).min(reserved);
    let json = serde_json::to_string(&result).unwrap_or_default();
    if !jobs
        .db()
        .complete_job(job, &json, seconds, credits_used)
        .await?
    {
        return Err(FinalizeError::Lost);
    }
    metrics::counter!("whospoke_credits_charged_total").increment(credits_used as u64);
    tracing::info!(
        job = job.id,
        seconds,
        speakers = result.num_speakers,
        "stream finalized"
    );
    Ok(Completed {
        job_id: job.id,
        rttm,
        speakers: result.speakers,
        duration_seconds: seconds,
        credits_used,
    })
}

/// The RTTM, the tracks (also measured for the statistics when not kept) and
/// `result.json`, into `out_dir`.
fn write_outputs(
    spool: &SpoolDir,
    meta: &SpoolMeta,
    diarization: &Diarization,
    file_id: &str,
    out_dir: &Path,
) -> Result<(Report, String), FinalizeError> {
    std::fs::create_dir_all(out_dir)?;
    let rttm_path = output::write_rttm(diarization, file_id, out_dir)?;
    let format = meta.format.track_format();
    let mut reader = spool.reader(format.channels)?;
    let tracks = output::write_tracks(&mut reader, format, diarization, out_dir)?;
    let duration_seconds = tracks.frames as f64 / f64::from(format.sample_rate);
    let stats = output::stats::summarize(diarization, &tracks.levels, duration_seconds)?;
    let report = Report::new(file_id, format, diarization, &stats);
    report.write_json(&out_dir.join(RESULT_FILE))?;
    Ok((report, std::fs::read_to_string(rttm_path)?))
}
