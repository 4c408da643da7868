//! One live session as its transport drives it: audio in, events out, and at
//! the end a finalized job.

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, oneshot};

use super::analysis::{Analysed, AnalysisError, Command};
use super::checkpoint::Checkpointing;
use super::credits::CreditMeter;
use super::event::{Completed, Event};
use super::finalize::{finalize, forget};
use super::input::InputDecoder;
use super::spec::StreamFormat;
use super::spool::{SpoolDir, SpoolMeta};
use super::watch::{EventSink, FeedGuard};
use super::{LiveError, Slot};
use crate::db::{Job, credits_for};
use crate::jobs::Jobs;

/// A `usage` event follows every this many seconds of audio.
const USAGE_EVERY_SECONDS: u64 = 5;

/// A running session. Dropping it without [`Session::end`] leaves its job to
/// the next start-up's recovery.
pub struct Session<M> {
    pub(super) jobs: Arc<Jobs>,
    pub(super) job: Job,
    pub(super) spool: SpoolDir,
    pub(super) meta: SpoolMeta,
    pub(super) checkpointing: Checkpointing,
    pub(super) step_ms: u64,
    pub(super) decoder: InputDecoder,
    pub(super) credits: CreditMeter,
    pub(super) commands: std_mpsc::Sender<Command>,
    /// Room in the analysis buffer, in samples.
    pub(super) buffer: Arc<Semaphore>,
    pub(super) buffer_samples: u32,
    pub(super) events: EventSink<M>,
    pub(super) _feed: FeedGuard,
    pub(super) analysed: oneshot::Receiver<Result<Analysed, AnalysisError>>,
    pub(super) received_frames: u64,
    pub(super) counted_seconds: u64,
    pub(super) warned_behind: bool,
    pub(super) _slot: Active,
}

impl<M: From<Event> + Send + 'static> Session<M> {
    /// The session's id: its job's task id.
    pub fn session_id(&self) -> &str {
        &self.job.task_id
    }

    pub fn job_id(&self) -> i64 {
        self.job.id
    }

    fn format(&self) -> StreamFormat {
        self.meta.format
    }

    /// What the client hears first.
    pub fn ready(&self) -> Event {
        ready_event(&self.job, self.meta.latency_ms, self.step_ms)
    }

    /// Decodes one binary frame and queues it for analysis, waiting while the
    /// buffer is full (after one [`Event::Behind`]). Audio past what the
    /// credits pay for is dropped with [`LiveError::CreditsExhausted`].
    pub async fn push(&mut self, frame: &[u8]) -> Result<(), LiveError> {
        let received = Instant::now();
        let mut samples = Vec::new();
        self.decoder.decode(frame, &mut samples)?;
        self.accept(samples, received).await
    }

    /// Stands in for `frames` lost sample frames of an Opus stream with
    /// libopus's packet-loss concealment, so the timeline keeps its length.
    pub async fn conceal(&mut self, frames: usize) -> Result<(), LiveError> {
        let received = Instant::now();
        let mut samples = Vec::new();
        self.decoder.conceal(frames, &mut samples)?;
        self.accept(samples, received).await
    }

    async fn accept(&mut self, mut samples: Vec<f32>, received: Instant) -> Result<(), LiveError> {
        let channels = usize::from(self.format().channels);
        let frames = (samples.len() / channels) as u64;
        if frames == 0 {
            return Ok(());
        }
        let paid = self.credits.admit(self.received_frames, frames).await?;
        samples.truncate(paid as usize * channels);
        if !samples.is_empty() {
            self.queue(samples, received).await?;
            self.count(paid).await;
        }
        if paid < frames {
            return Err(LiveError::CreditsExhausted);
        }
        Ok(())
    }

    /// Makes every turn heard so far final, without ending the stream.
    pub fn finalize(&self) -> Result<(), LiveError> {
        self.commands
            .send(Command::Finalize)
            .map_err(|_| LiveError::AnalysisStopped)
    }

    /// Ends the stream: the last events, then the job is finalized.
    pub async fn end(self) -> Result<Completed, LiveError> {
        let Self {
            jobs,
            job,
            spool,
            meta,
            checkpointing,
            commands,
            analysed,
            credits,
            events,
            _feed,
            ..
        } = self;
        drop(commands);
        checkpointing.stop().await;
        let diarization = match analysed.await {
            Ok(Ok(analysed)) => analysed.diarization,
            outcome => {
                let error = outcome.map_or(AnalysisError::Panicked, |e| {
                    e.err().unwrap_or(AnalysisError::Panicked)
                });
                tracing::error!(job = job.id, %error, "stream analysis failed");
                spool.remove();
                jobs.db()
                    .fail_job(&job, "the stream's analysis failed")
                    .await?;
                forget(&jobs, &job).await;
                return Err(LiveError::AnalysisStopped);
            }
        };
        let completed =
            finalize(&jobs, &job, &spool, &meta, diarization, credits.reserved()).await?;
        events.publish(Event::Completed(Box::new(completed.clone())));
        Ok(completed)
    }

    async fn queue(&mut self, samples: Vec<f32>, received: Instant) -> Result<(), LiveError> {
        // A chunk larger than the whole buffer takes all of it.
        let permits = u32::try_from(samples.len())
            .unwrap_or(u32::MAX)
            .min(self.buffer_samples);
        let permit = match Arc::clone(&self.buffer).try_acquire_many_owned(permits) {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                if !self.warned_behind {
                    self.warned_behind = true;
                    self.events.send(Event::Behind).await;
                }
                Arc::clone(&self.buffer)
                    .acquire_many_owned(permits)
                    .await
                    .map_err(|_| LiveError::AnalysisStopped)?
            }
            Err(TryAcquireError::Closed) => return Err(LiveError::AnalysisStopped),
        };
        // The analysis thread gives the permits back once the chunk is analysed.
        OwnedSemaphorePermit::forget(permit);
        self.commands
            .send(Command::Audio {
                samples,
                received,
                permits,
            })
            .map_err(|_| LiveError::AnalysisStopped)
    }

    /// Counts accepted audio in the metrics and tells the client its usage
    /// every few seconds.
    async fn count(&mut self, frames: u64) {
        let rate = u64::from(self.format().sample_rate);
        let before = self.received_frames / rate;
        self.received_frames += frames;
        let seconds = self.received_frames / rate;
        if seconds > self.counted_seconds {
            metrics::counter!("whospoke_live_audio_seconds_total")
                .increment(seconds - self.counted_seconds);
            self.counted_seconds = seconds;
        }
        if seconds / USAGE_EVERY_SECONDS > before / USAGE_EVERY_SECONDS {
            let audio_seconds = self.received_frames as f64 / rate as f64;
            let usage = Event::Usage {
                audio_seconds,
                credits: credits_for(audio_seconds).min(self.credits.reserved()),
            };
            self.events.send(usage).await;
        }
    }
}

pub(super) fn ready_event(job: &Job, latency_ms: u64, step_ms: u64) -> Event {
    Event::Ready {
        session_id: job.task_id.clone(),
        job_id: job.id,
        latency_ms,
        step_ms,
    }
}

/// Holds a session slot and counts the session as active while it lives.
pub struct Active {
    _slot: Slot,
}

impl Active {
    pub(super) fn new(slot: Slot) -> Self {
        metrics::gauge!("whospoke_live_sessions_active").increment(1.0);
        Self { _slot: slot }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        metrics::gauge!("whospoke_live_sessions_active").decrement(1.0);
    }
}
