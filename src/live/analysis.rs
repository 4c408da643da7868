//! The session's analysis thread: spool, resample to 16 kHz mono, online
//! diarization, events out.
//!
//! It is a plain thread, not a blocking task: it lives as long as the stream
//! (hours), and it owns an [`OnlineRun`](crate::engine::OnlineRun), which
//! borrows the engine it holds. Audio reaches it through an unbounded channel
//! whose content is bounded by a semaphore counted in samples: the session
//! takes permits before sending, this thread gives them back once a chunk is
//! analysed. The thread ends when the session drops its sender.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use tokio::sync::{Semaphore, oneshot};

use super::event::Event;
use super::spec::StreamFormat;
use super::spool::SpoolWriter;
use super::watch::EventSink;
use crate::audio::AnalysisResampler;
use crate::diarization::Diarization;
use crate::engine::{Engine, LiveEvent, OnlineParams};

/// A message from the session to its thread.
pub enum Command {
    /// Interleaved samples at the stream's rate, holding `permits` of the buffer.
    Audio {
        samples: Vec<f32>,
        received: Instant,
        permits: u32,
    },
    /// Make everything heard so far final now.
    Finalize,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("spooling the audio: {0}")]
    Spool(#[from] std::io::Error),
    #[error("diarization: {0}")]
    Engine(#[from] crate::engine::RunError),
    #[error("resampler: {0}")]
    Resample(#[from] crate::audio::DecodeError),
    #[error("the analysis thread panicked")]
    Panicked,
}

/// What the thread hands back when the stream has ended.
pub struct Analysed {
    pub diarization: Diarization,
}

/// Everything the thread owns.
pub struct Analysis<M> {
    pub engine: Arc<Engine>,
    pub params: OnlineParams,
    pub format: StreamFormat,
    pub spool: SpoolWriter,
    pub commands: Receiver<Command>,
    pub events: EventSink<M>,
    pub buffer: Arc<Semaphore>,
}

impl<M: From<Event> + Send + 'static> Analysis<M> {
    /// Starts the thread; its outcome arrives on the returned receiver.
    pub fn spawn(
        self,
        name: String,
    ) -> std::io::Result<oneshot::Receiver<Result<Analysed, AnalysisError>>> {
        let (done, outcome) = oneshot::channel();
        std::thread::Builder::new().name(name).spawn(move || {
            let buffer = Arc::clone(&self.buffer);
            let result = catch_unwind(AssertUnwindSafe(|| self.run()))
                .unwrap_or(Err(AnalysisError::Panicked));
            // A session waiting for room must not wait for a thread that is gone.
            buffer.close();
            let _ = done.send(result);
        })?;
        Ok(outcome)
    }

    fn run(self) -> Result<Analysed, AnalysisError> {
        let Self {
            engine,
            params,
            format,
            mut spool,
            commands,
            events,
            buffer,
        } = self;
        let mut run = engine.start_online(params);
        let mut resampler = AnalysisResampler::new(format.sample_rate, format.channels)?;
        let mut mono = Vec::new();
        for command in commands {
            match command {
                Command::Audio {
                    samples,
                    received,
                    permits,
                } => {
                    spool.append(&samples)?;
                    mono.clear();
                    resampler.push(&samples, &mut mono);
                    drop(samples);
                    let found = run.push(&mono)?;
                    buffer.add_permits(permits as usize);
                    if !found.is_empty() {
                        send(&events, found);
                        metrics::histogram!("whospoke_live_event_delay_seconds")
                            .record(received.elapsed().as_secs_f64());
                    }
                }
                Command::Finalize => send(&events, run.flush()?),
            }
        }
        mono.clear();
        resampler.finish(&mut mono);
        send(&events, run.push(&mono)?);
        let (last, diarization) = run.finish()?;
        send(&events, last);
        spool.finish()?;
        Ok(Analysed { diarization })
    }
}

/// Sends events, waiting while the client reads slowly; a client that is
/// gone no longer needs them, but the analysis goes on for the job.
fn send<M: From<Event>>(events: &EventSink<M>, found: Vec<LiveEvent>) {
    for event in found {
        if !events.blocking_send(Event::Diarizer(event)) {
            return;
        }
    }
}
