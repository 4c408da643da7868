//! Live diarization: a stream of audio in, speaker events out, and at the end
//! the same job a batch extraction makes. Nothing here knows WebSockets or
//! WebRTC.
//!
//! ```text
//! transport ─frames─▶ Session ─▶ decode (pcm/opus) ─▶ credits ─▶ buffer (bounded, seconds)
//!                                                                      │
//!   analysis thread ◀─────────────────────────────────────────────────┘
//!     ├─▶ spool (disk, stream's rate and channels)
//!     └─▶ downmix + resample 16 kHz ─▶ OnlineRun ─▶ events ─▶ transport
//!                                                          └─▶ watchers (any feed of the owner's)
//! end / disconnect / timeout / shutdown ─▶ finish ─▶ finalize (tracks from the spool,
//!                                          RTTM, result.json) ─▶ job COMPLETED
//! ```
//!
//! Each session owns one analysis thread (see [`analysis`]) and one spool
//! folder; its memory does not grow with the stream's length. Sessions hold a
//! slot of [`Live`] until they are finalized, so a shutdown can wait for them.
//!
//! In a cluster a session is pinned to its node: the registry
//! (`db::sessions`) tells other nodes where it runs, its job is held under
//! the node's lease, and its spool is copied to the file store every few
//! seconds ([`checkpoint`]). When the node dies, another node takes the job
//! over once the lease runs out and finalizes it from the checkpoints.

mod analysis;
mod checkpoint;
mod credits;
pub mod event;
mod finalize;
mod input;
mod recover;
mod session;
pub mod spec;
mod spool;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::db::{DbError, JobType, NewJob, SessionRoute, credits_for};
use crate::engine::{Engine, OnlineParams, SpeakerCount};
use crate::jobs::Jobs;
use analysis::Analysis;
use checkpoint::Checkpoints;
use credits::CreditMeter;
use session::{Active, ready_event};
use spool::{SpoolDir, SpoolMeta};
use watch::EventSink;

pub use event::{Completed, Event};
pub use input::{InputDecoder, InputError};
pub use session::Session;
pub use spec::{Encoding, SpecError, StreamFormat, StreamSpec};
pub use watch::Watchers;

/// Credits are reserved ahead of the audio in blocks of this many seconds.
const RESERVE_BLOCK_SECONDS: f64 = 60.0;

/// Settings of the live service.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Where sessions spool their audio (`<data-dir>/live`).
    pub spool_dir: PathBuf,
    /// Sessions at once; more are refused. Default 64.
    pub max_sessions: usize,
    /// Largest binary frame, in bytes. Default 1 MiB.
    pub max_frame_bytes: usize,
    /// A session without audio or keepalive this long ends. Default 30 s.
    pub idle_timeout: Duration,
    /// A session ends this long after it started. Default 4 h.
    pub max_session: Duration,
    /// Audio waiting for analysis, in seconds; beyond it the transport stops reading. Default 30.
    pub buffer_seconds: f64,
    /// How often a session's audio is copied to the file store. Default 10 s.
    pub checkpoint_every: Duration,
    /// Where other nodes reach this one's sessions (`http://host:port`).
    pub node_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("Insufficient credits to start a stream")]
    InsufficientCredits,
    #[error("webhook_url: {0}")]
    Webhook(crate::jobs::FetchError),
    #[error("Credits exhausted; the stream was finalized with the audio received")]
    CreditsExhausted,
    #[error("an audio frame does not decode: {0}")]
    BadAudio(#[from] InputError),
    #[error("the stream's analysis stopped")]
    AnalysisStopped,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("finalizing: {0}")]
    Finalize(#[from] finalize::FinalizeError),
    #[error("starting the session: {0}")]
    Start(#[from] std::io::Error),
}

/// A place among the running sessions, taken before a session starts and
/// given back when the session is finalized.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// The live service: sessions, their limits, and recovery after a crash.
pub struct Live {
    jobs: Arc<Jobs>,
    engine: Arc<Engine>,
    config: LiveConfig,
    slots: Arc<Semaphore>,
    watchers: Arc<Watchers>,
    shutdown: CancellationToken,
    /// Connections whose client has not heard the end yet; shutdown waits for them too.
    farewells: TaskTracker,
}

impl Live {
    pub fn new(
        jobs: Arc<Jobs>,
        engine: Arc<Engine>,
        config: LiveConfig,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            jobs,
            engine,
            slots: Arc::new(Semaphore::new(config.max_sessions)),
            watchers: Arc::default(),
            farewells: TaskTracker::new(),
            config,
            shutdown,
        })
    }

    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    /// The running sessions' event feeds.
    pub fn watchers(&self) -> &Watchers {
        &self.watchers
    }

    /// Cancelled when the server shuts down: every session ends and finalizes.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Why this node takes no new session now (draining or full), if it does not.
    pub fn refuses_new_sessions(&self) -> Option<&'static str> {
        if self.shutdown.is_cancelled() {
            Some("draining")
        } else if self.slots.available_permits() == 0 {
            Some("live sessions full")
        } else {
            None
        }
    }

    /// A slot for a new session, or `None` when the server is full.
    pub fn admit(&self) -> Option<Slot> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .ok()
            .map(|permit| Slot { _permit: permit })
    }

    /// Held by a transport until its client has heard how the session ended: a session
    /// gives its slot back when it is finalized, before its last message is sent.
    pub fn farewell(&self) -> TaskTrackerToken {
        self.farewells.token()
    }

    /// Waits until every session and recovery has been finalized and every client told.
    pub async fn wait_idle(&self) {
        let all = u32::try_from(self.config.max_sessions).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(all).await;
        self.farewells.close();
        self.farewells.wait().await;
    }

    /// Starts a session for `user_id`: a PROCESSING stream job holding the
    /// first block of credits, its spool and its analysis thread. Events go
    /// to `events`.
    pub async fn start<M: From<Event> + Send + 'static>(
        &self,
        slot: Slot,
        user_id: &str,
        spec: StreamSpec,
        events: mpsc::Sender<M>,
    ) -> Result<Session<M>, LiveError> {
        let decoder = input::InputDecoder::new(spec.format)?;
        if let Some(url) = &spec.webhook_url {
            crate::jobs::webhook_target(url, self.jobs.fetch_limits())
                .await
                .map_err(LiveError::Webhook)?;
        }
        let new = NewJob {
            user_id: user_id.to_owned(),
            job_type: JobType::Stream,
            task_id: uuid::Uuid::new_v4().to_string(),
            filename: spec.filename.clone(),
            source_url: None,
            input_key: None,
            num_speakers: spec.num_speakers,
            min_speakers: None,
            max_speakers: spec.max_speakers,
            duration_seconds: None,
            credits: 0,
            webhook_url: spec.webhook_url.as_ref().map(ToString::to_string),
            exclusive: spec.exclusive,
        };
        let db = self.jobs.db();
        let job = match db
            .insert_stream_job(&new, credits_for(RESERVE_BLOCK_SECONDS), self.jobs.lease())
            .await
        {
            Ok(job) => job,
            Err(DbError::InsufficientCredits { .. }) => return Err(LiveError::InsufficientCredits),
            Err(e) => return Err(e.into()),
        };
        let route = SessionRoute {
            job_id: job.id,
            user_id: user_id.to_owned(),
            node_id: self.jobs.lease().node_id.clone(),
            node_url: self.config.node_url.clone(),
        };
        if let Err(e) = db.register_session(&job.task_id, &route).await {
            db.fail_job(&job, "the session could not start").await?;
            return Err(e.into());
        }
        let format = spec.format;
        let meta = SpoolMeta {
            format,
            latency_ms: spec.latency.as_millis() as u64,
            extract: spec.extract,
        };
        let spool = SpoolDir::of_job(&self.config.spool_dir, job.id, &job.task_id);
        let params = online_params(spec.latency, spec.speakers);
        let step_ms = (params.step_seconds * 1000.0).round() as u64;
        let (feed, watchers) = self.watchers.open(
            &job.task_id,
            user_id,
            ready_event(&job, meta.latency_ms, step_ms),
        );
        let events = EventSink::new(events, watchers);
        let buffer_samples =
            u32::try_from(format.samples_in(self.config.buffer_seconds)).unwrap_or(u32::MAX);
        let buffer = Arc::new(Semaphore::new(buffer_samples as usize));
        let (commands, received) = std_mpsc::channel();
        let started = spool.create(&meta).and_then(|writer| {
            Analysis {
                engine: Arc::clone(&self.engine),
                params,
                format,
                spool: writer,
                commands: received,
                events: events.clone(),
                buffer: Arc::clone(&buffer),
            }
            .spawn(format!("live-{}", job.id))
        });
        let analysed = match started {
            Ok(analysed) => analysed,
            Err(e) => {
                spool.remove();
                db.fail_job(&job, "the session could not start").await?;
                let _ = db.forget_session(job.id).await;
                return Err(e.into());
            }
        };
        let checkpointing = Checkpoints::of_job(job.id, &job.task_id).start(
            self.jobs.files().clone(),
            spool.clone(),
            &meta,
            self.config.checkpoint_every,
        );
        tracing::info!(job = job.id, user = user_id, ?format, "stream started");
        Ok(Session {
            jobs: Arc::clone(&self.jobs),
            credits: CreditMeter::new(
                db.clone(),
                job.clone(),
                format.sample_rate,
                credits_for(RESERVE_BLOCK_SECONDS),
            ),
            job,
            spool,
            meta,
            checkpointing,
            step_ms,
            decoder,
            commands,
            buffer,
            buffer_samples,
            events,
            _feed: feed,
            analysed,
            received_frames: 0,
            counted_seconds: 0,
            warned_behind: false,
            _slot: Active::new(slot),
        })
    }
}

/// The online diarizer's settings for a stream.
fn online_params(latency: Duration, speakers: SpeakerCount) -> OnlineParams {
    let defaults = OnlineParams::default();
    // The online clusterer has no exact count; an exact count caps it.
    let max_speakers = match speakers {
        SpeakerCount::Exact(n) | SpeakerCount::Auto { max: Some(n), .. } => n,
        SpeakerCount::Auto { max: None, .. } => defaults.max_speakers,
    };
    OnlineParams {
        latency_seconds: latency.as_secs_f64(),
        max_speakers,
        ..defaults
    }
}
