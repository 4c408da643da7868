//! Jobs and their life cycle, with the credit moves that go with each step.
//!
//! ```text
//! PENDING ──claim──▶ PROCESSING ──complete──▶ COMPLETED   (settle: refund reserved − used)
//!    ▲  │                │ └──────fail──────▶ FAILED      (refund all reserved)
//!    │  └──cancel──┬─────┘──cancel──▶ CANCELLED            (refund all reserved)
//!    └──requeue/restart──┘                      │
//!    ▲                                          │
//!    └────────────────retry (reserve again)─────┘
//! ```
//!
//! Every end (COMPLETED, FAILED, CANCELLED) of a job with a `webhook_url`
//! queues its webhook event in the same transaction (`db::webhooks`).
//!
//! A claim is a **lease**: the job is `locked_by` a node until `lease_until`,
//! which the node renews while it runs the job ([`Db::renew_leases`]). A node
//! that dies stops renewing, and once the lease has run out another worker
//! claims the job again. Every claim adds one to `attempts`, and every
//! transition names the claim's `task_id`, `attempts` and status, so a node
//! that lost its job (its lease ran out, a restart requeued it, a user deleted
//! it) changes nothing: each job completes once and is charged once.
//!
//! Stream jobs skip the queue: a live session inserts its job PROCESSING under
//! its node's lease, reserves credits block by block as audio arrives, and
//! completes or fails it itself. Workers never claim them; when their node
//! dies, another node's live service takes them over to finalize them.

use sqlx::{FromRow, Row};

use super::credits::{ledger, release, reserve, take_up_to};
use super::webhooks::queue_event;
use super::{Db, DbError, claim_oldest, now, unix_now};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Processing,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Processing => "PROCESSING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(text))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobType {
    /// Per-speaker tracks, RTTM and statistics.
    Extraction,
    /// RTTM and statistics only.
    Diarization,
    /// A live WebSocket session: PROCESSING while it streams, never queued.
    Stream,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Extraction => "extraction",
            Self::Diarization => "diarization",
            Self::Stream => "stream",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Extraction, Self::Diarization, Self::Stream]
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(text))
    }
}

/// One row of `jobs`.
#[derive(Debug, Clone, FromRow)]
pub struct Job {
    pub id: i64,
    pub user_id: String,
    #[sqlx(try_from = "String")]
    pub job_type: JobType,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub task_id: String,
    pub filename: String,
    pub display_name: String,
    pub source_url: Option<String>,
    pub input_key: Option<String>,
    pub num_speakers: Option<i64>,
    pub min_speakers: Option<i64>,
    pub max_speakers: Option<i64>,
    pub duration_seconds: Option<f64>,
    pub credits_reserved: i64,
    pub credits_used: Option<i64>,
    /// JSON text of the result, for COMPLETED jobs.
    pub result: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i64,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
    /// The node holding a PROCESSING job.
    pub locked_by: Option<String>,
    /// Where the job's events are POSTed.
    pub webhook_url: Option<String>,
    /// At most one speaker at a time in the outputs.
    #[sqlx(try_from = "Flag")]
    pub exclusive: bool,
}

/// A 0/1 INTEGER column: SQLite has no boolean type, so neither schema uses one.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
struct Flag(i64);

impl From<Flag> for bool {
    fn from(flag: Flag) -> Self {
        flag.0 != 0
    }
}

/// A TEXT column holding a name this build does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownName {
    kind: &'static str,
    value: String,
}

impl TryFrom<String> for JobStatus {
    type Error = UnknownName;

    fn try_from(value: String) -> Result<Self, UnknownName> {
        Self::parse(&value).ok_or(UnknownName {
            kind: "job status",
            value,
        })
    }
}

impl TryFrom<String> for JobType {
    type Error = UnknownName;

    fn try_from(value: String) -> Result<Self, UnknownName> {
        Self::parse(&value).ok_or(UnknownName {
            kind: "job type",
            value,
        })
    }
}

/// Who claims jobs, and for how long a claim holds without renewal.
#[derive(Debug, Clone)]
pub struct Lease {
    pub node_id: String,
    pub seconds: i64,
}

impl Lease {
    fn until(&self) -> i64 {
        unix_now() + self.seconds
    }
}

/// What a new job is made of.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub user_id: String,
    pub job_type: JobType,
    pub task_id: String,
    pub filename: String,
    pub source_url: Option<String>,
    pub input_key: Option<String>,
    pub num_speakers: Option<i64>,
    pub min_speakers: Option<i64>,
    pub max_speakers: Option<i64>,
    /// Known for uploads (probed); URL jobs learn it after the download.
    pub duration_seconds: Option<f64>,
    /// Reserved from the balance in the same transaction that inserts the job.
    pub credits: i64,
    pub webhook_url: Option<String>,
    pub exclusive: bool,
}

/// What a cancel did.
#[derive(Debug)]
pub enum Cancel {
    Cancelled(Job),
    /// Finished already, or a live stream (which its client ends).
    NotCancellable(Job),
    /// Not the user's job, or no such job.
    NotFound,
}

/// What a retry did.
#[derive(Debug)]
pub enum Retry {
    Requeued(Job),
    NotFailed(Job),
    /// Not the user's job, or no such job.
    NotFound,
}

/// Whether a job's reservation pays for the audio its run decoded ([`Db::cover`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Cover {
    Covered,
    /// The owner's balance cannot make up the difference; nothing was taken.
    Short {
        /// Credits the reservation and the balance hold together.
        affordable: i64,
        /// The length the reservation was priced from (what the file said).
        stated_seconds: Option<f64>,
    },
    /// The job is no longer this worker's.
    Lost,
}

/// Filters of the job listing.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub job_type: Option<JobType>,
    pub status: Option<JobStatus>,
    pub skip: i64,
    pub limit: i64,
}

/// The listing's condition, shared by its count and its page (literal SQL, binds $1..$3).
macro_rules! job_filter {
    () => {
        "user_id = $1 AND ($2 IS NULL OR job_type = $2) AND ($3 IS NULL OR status = $3)"
    };
}

impl Db {
    /// Inserts a PENDING job, reserving its credits, or fails with
    /// `InsufficientCredits` and changes nothing.
    pub async fn insert_job(&self, job: &NewJob) -> Result<Job, DbError> {
        let mut tx = self.pool.begin().await?;
        reserve(&mut tx, &job.user_id, job.credits).await?;
        let stamp = now();
        let row = sqlx::query(
            "INSERT INTO jobs (user_id, job_type, status, task_id, filename, display_name, \
                source_url, input_key, num_speakers, min_speakers, max_speakers, \
                duration_seconds, credits_reserved, webhook_url, exclusive, created_at, \
                updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                $17) \
             RETURNING *",
        )
        .bind(&job.user_id)
        .bind(job.job_type.as_str())
        .bind(JobStatus::Pending.as_str())
        .bind(&job.task_id)
        .bind(&job.filename)
        .bind(display_name(&job.filename))
        .bind(&job.source_url)
        .bind(&job.input_key)
        .bind(job.num_speakers)
        .bind(job.min_speakers)
        .bind(job.max_speakers)
        .bind(job.duration_seconds)
        .bind(job.credits)
        .bind(&job.webhook_url)
        .bind(i64::from(job.exclusive))
        .bind(&stamp)
        .bind(&stamp)
        .fetch_one(&mut *tx)
        .await?;
        let inserted = Job::from_row(&row)?;
        if job.credits > 0 {
            ledger(
                &mut tx,
                &job.user_id,
                Some(inserted.id),
                -job.credits,
                "reserve",
            )
            .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Records a job that failed before it could be queued (an undecodable upload).
    pub async fn insert_failed_job(&self, job: &NewJob, error: &str) -> Result<Job, DbError> {
        let mut tx = self.pool.begin().await?;
        let stamp = now();
        let row = sqlx::query(
            "INSERT INTO jobs (user_id, job_type, status, task_id, filename, display_name, \
                source_url, error_message, attempts, webhook_url, created_at, updated_at, \
                completed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11, $12) RETURNING *",
        )
        .bind(&job.user_id)
        .bind(job.job_type.as_str())
        .bind(JobStatus::Failed.as_str())
        .bind(&job.task_id)
        .bind(&job.filename)
        .bind(display_name(&job.filename))
        .bind(&job.source_url)
        .bind(error)
        .bind(&job.webhook_url)
        .bind(&stamp)
        .bind(&stamp)
        .bind(&stamp)
        .fetch_one(&mut *tx)
        .await?;
        let failed = Job::from_row(&row)?;
        queue_event(&mut tx, &failed, JobStatus::Failed, Some(error)).await?;
        tx.commit().await?;
        Ok(failed)
    }

    /// The user's job, or `None` when it does not exist or is someone else's.
    pub async fn job(&self, user_id: &str, id: i64) -> Result<Option<Job>, DbError> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(Job::from_row).transpose()?)
    }

    /// Whether job `id` exists at all (for downloads, whose signature names the job).
    pub async fn job_exists(&self, id: i64) -> Result<bool, DbError> {
        let row = sqlx::query("SELECT 1 FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// One page of the user's jobs, newest first, and the total matching.
    pub async fn list_jobs(
        &self,
        user_id: &str,
        filter: &JobFilter,
    ) -> Result<(Vec<Job>, i64), DbError> {
        let job_type = filter.job_type.map(JobType::as_str);
        let status = filter.status.map(JobStatus::as_str);
        let total: i64 = sqlx::query(concat!(
            "SELECT COUNT(*) AS n FROM jobs WHERE ",
            job_filter!()
        ))
        .bind(user_id)
        .bind(job_type)
        .bind(status)
        .fetch_one(&self.pool)
        .await?
        .get("n");
        let rows = sqlx::query(concat!(
            "SELECT * FROM jobs WHERE ",
            job_filter!(),
            " ORDER BY id DESC LIMIT $4 OFFSET $5"
        ))
        .bind(user_id)
        .bind(job_type)
        .bind(status)
        .bind(filter.limit)
        .bind(filter.skip)
        .fetch_all(&self.pool)
        .await?;
        Ok((
            rows.iter().map(Job::from_row).collect::<Result<_, _>>()?,
            total,
        ))
    }

    /// Claims the oldest batch job that is PENDING, or PROCESSING under a
    /// lease that ran out (its node died), and marks it PROCESSING under `lease`.
    pub async fn claim_next_job(&self, lease: &Lease) -> Result<Option<Job>, DbError> {
        let sql = claim_oldest(
            self.backend,
            "jobs",
            "status = 'PROCESSING', attempts = attempts + 1, locked_by = $1, \
                lease_until = $2, updated_at = $3",
            "job_type != 'stream' AND (status = 'PENDING' \
                OR (status = 'PROCESSING' AND COALESCE(lease_until, 0) < $4))",
        );
        let row = sqlx::query(sql)
            .bind(&lease.node_id)
            .bind(lease.until())
            .bind(now())
            .bind(unix_now())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(Job::from_row).transpose()?)
    }

    /// Renews the leases of every job `node_id` holds; returns how many.
    pub async fn renew_leases(&self, lease: &Lease) -> Result<u64, DbError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = $1 WHERE locked_by = $2 AND status = 'PROCESSING'",
        )
        .bind(lease.until())
        .bind(&lease.node_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Whether this claim of `job` still holds (nobody took it over or deleted it).
    pub async fn holds(&self, job: &Job) -> Result<bool, DbError> {
        let row = sqlx::query(
            "SELECT 1 FROM jobs WHERE id = $1 AND task_id = $2 AND attempts = $3 \
                AND status = 'PROCESSING'",
        )
        .bind(job.id)
        .bind(&job.task_id)
        .bind(job.attempts)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// After a restart, the batch jobs this node held go back to the queue at
    /// once (instead of when their leases run out); returns how many.
    pub async fn requeue_own_jobs(&self, node_id: &str) -> Result<u64, DbError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'PENDING', locked_by = NULL, lease_until = NULL, \
                updated_at = $1 \
             WHERE status = 'PROCESSING' AND job_type != 'stream' AND locked_by = $2",
        )
        .bind(now())
        .bind(node_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Puts one running job back in the queue (graceful shutdown).
    pub async fn requeue_job(&self, job: &Job) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE jobs SET status = 'PENDING', locked_by = NULL, lease_until = NULL, \
                updated_at = $1 \
             WHERE id = $2 AND task_id = $3 AND attempts = $4 AND status = 'PROCESSING'",
        )
        .bind(now())
        .bind(job.id)
        .bind(&job.task_id)
        .bind(job.attempts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reserves the credits of a URL job once its duration is known.
    /// Returns false when the job is no longer this worker's.
    pub async fn reserve_for_job(
        &self,
        job: &Job,
        duration_seconds: f64,
        credits: i64,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        reserve(&mut tx, &job.user_id, credits).await?;
        let updated = sqlx::query(
            "UPDATE jobs SET credits_reserved = credits_reserved + $1, duration_seconds = $2, \
                updated_at = $3 \
             WHERE id = $4 AND task_id = $5 AND attempts = $6 AND status = 'PROCESSING'",
        )
        .bind(credits)
        .bind(duration_seconds)
        .bind(now())
        .bind(job.id)
        .bind(&job.task_id)
        .bind(job.attempts)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false); // dropping the transaction rolls the reservation back
        }
        ledger(&mut tx, &job.user_id, Some(job.id), -credits, "reserve").await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Raises the job's reservation to `credits`, the price of the audio its
    /// run decoded, taking what the reservation lacks from the owner's
    /// balance, all or nothing. The reservation was priced from what the
    /// file said of its length; a file that understated it is charged for
    /// what was decoded. Raising to a total (not by a difference) keeps a
    /// retried or taken-over run from charging twice.
    pub async fn cover(&self, job: &Job, credits: i64) -> Result<Cover, DbError> {
        let mut tx = self.pool.begin().await?;
        // A write that changes nothing locks the job's row until the end.
        let row = sqlx::query(
            "UPDATE jobs SET credits_reserved = credits_reserved \
             WHERE id = $1 AND task_id = $2 AND attempts = $3 AND status = 'PROCESSING' \
             RETURNING credits_reserved, duration_seconds",
        )
        .bind(job.id)
        .bind(&job.task_id)
        .bind(job.attempts)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Cover::Lost);
        };
        let reserved: i64 = row.get("credits_reserved");
        let missing = credits - reserved;
        if missing <= 0 {
            return Ok(Cover::Covered);
        }
        match reserve(&mut tx, &job.user_id, missing).await {
            Ok(()) => {}
            Err(DbError::InsufficientCredits { available, .. }) => {
                return Ok(Cover::Short {
                    affordable: reserved + available,
                    stated_seconds: row.get("duration_seconds"),
                });
            }
            Err(e) => return Err(e),
        }
        sqlx::query("UPDATE jobs SET credits_reserved = $1, updated_at = $2 WHERE id = $3")
            .bind(credits)
            .bind(now())
            .bind(job.id)
            .execute(&mut *tx)
            .await?;
        ledger(&mut tx, &job.user_id, Some(job.id), -missing, "reserve").await?;
        tx.commit().await?;
        Ok(Cover::Covered)
    }

    /// COMPLETED with its result; charges `credits_used` (at most what was
    /// reserved: see [`Db::cover`]) and refunds the rest. False when the job is no longer this worker's.
    pub async fn complete_job(
        &self,
        job: &Job,
        result: &str,
        duration_seconds: f64,
        credits_used: i64,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let stamp = now();
        let row = sqlx::query(
            "UPDATE jobs SET status = 'COMPLETED', result = $1, duration_seconds = $2, \
                credits_used = CASE WHEN $3 < credits_reserved THEN $3 ELSE credits_reserved END, \
                error_message = NULL, locked_by = NULL, lease_until = NULL, \
                updated_at = $4, completed_at = $5 \
             WHERE id = $6 AND task_id = $7 AND attempts = $8 AND status = 'PROCESSING' \
             RETURNING credits_reserved, credits_used",
        )
        .bind(result)
        .bind(duration_seconds)
        .bind(credits_used)
        .bind(&stamp)
        .bind(&stamp)
        .bind(job.id)
        .bind(&job.task_id)
        .bind(job.attempts)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let refund = row.get::<i64, _>("credits_reserved") - row.get::<i64, _>("credits_used");
        release(&mut tx, job, refund, "settle").await?;
        queue_event(&mut tx, job, JobStatus::Completed, None).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// FAILED with a message; refunds everything reserved. False when the job
    /// is no longer this worker's.
    pub async fn fail_job(&self, job: &Job, error: &str) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let stamp = now();
        let row = sqlx::query(
            "UPDATE jobs SET status = 'FAILED', error_message = $1, credits_used = 0, \
                locked_by = NULL, lease_until = NULL, updated_at = $2, completed_at = $3 \
             WHERE id = $4 AND task_id = $5 AND attempts = $6 AND status = 'PROCESSING' \
             RETURNING credits_reserved",
        )
        .bind(error)
        .bind(&stamp)
        .bind(&stamp)
        .bind(job.id)
        .bind(&job.task_id)
        .bind(job.attempts)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        release(&mut tx, job, row.get("credits_reserved"), "refund").await?;
        queue_event(&mut tx, job, JobStatus::Failed, Some(error)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Cancels one of the user's PENDING or PROCESSING batch jobs and refunds
    /// what it holds; a worker running it notices ([`Db::holds`]) and stops.
    pub async fn cancel_job(&self, user_id: &str, id: i64) -> Result<Cancel, DbError> {
        let mut tx = self.pool.begin().await?;
        let stamp = now();
        let row = sqlx::query(
            "UPDATE jobs SET status = 'CANCELLED', error_message = 'Cancelled by the user', \
                credits_used = 0, locked_by = NULL, lease_until = NULL, updated_at = $1, \
                completed_at = $2 \
             WHERE id = $3 AND user_id = $4 AND status IN ('PENDING', 'PROCESSING') \
                AND job_type != 'stream' \
             RETURNING *",
        )
        .bind(&stamp)
        .bind(&stamp)
        .bind(id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(job) = row.as_ref().map(Job::from_row).transpose()? else {
            drop(tx);
            return Ok(match self.job(user_id, id).await? {
                Some(job) => Cancel::NotCancellable(job),
                None => Cancel::NotFound,
            });
        };
        release(&mut tx, &job, job.credits_reserved, "refund").await?;
        queue_event(
            &mut tx,
            &job,
            JobStatus::Cancelled,
            job.error_message.as_deref(),
        )
        .await?;
        tx.commit().await?;
        Ok(Cancel::Cancelled(job))
    }

    /// Re-queues one of the user's FAILED jobs under a new task id, reserving
    /// its credits again.
    pub async fn retry_job(&self, user_id: &str, id: i64, task_id: &str) -> Result<Retry, DbError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(job) = row.as_ref().map(Job::from_row).transpose()? else {
            return Ok(Retry::NotFound);
        };
        // A stream cannot be replayed: its audio came once, over a socket.
        if job.status != JobStatus::Failed || job.job_type == JobType::Stream {
            return Ok(Retry::NotFailed(job));
        }
        // Uploads were probed, so their cost is known; URL jobs reserve after the download.
        let credits = match (&job.source_url, job.duration_seconds) {
            (None, Some(seconds)) => super::credits_for(seconds),
            _ => 0,
        };
        reserve(&mut tx, user_id, credits).await?;
        let row = sqlx::query(
            "UPDATE jobs SET status = 'PENDING', task_id = $1, credits_reserved = $2, \
                credits_used = NULL, error_message = NULL, result = NULL, completed_at = NULL, \
                updated_at = $3 \
             WHERE id = $4 AND status = 'FAILED' RETURNING *",
        )
        .bind(task_id)
        .bind(credits)
        .bind(now())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        // Another node retried it first: its reservation stands, this one rolls back.
        let Some(row) = row else {
            return Ok(Retry::NotFailed(job));
        };
        if credits > 0 {
            ledger(&mut tx, user_id, Some(id), -credits, "reserve").await?;
        }
        tx.commit().await?;
        Ok(Retry::Requeued(Job::from_row(&row)?))
    }

    /// Deletes one of the user's jobs, refunding what an unfinished job still
    /// holds, and returns it (so its files can go too).
    pub async fn delete_job(&self, user_id: &str, id: i64) -> Result<Option<Job>, DbError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("DELETE FROM jobs WHERE id = $1 AND user_id = $2 RETURNING *")
            .bind(id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(job) = row.as_ref().map(Job::from_row).transpose()? else {
            return Ok(None);
        };
        if matches!(job.status, JobStatus::Pending | JobStatus::Processing) {
            release(&mut tx, &job, job.credits_reserved, "refund").await?;
        }
        tx.commit().await?;
        Ok(Some(job))
    }

    /// Inserts a PROCESSING stream job under `lease` holding up to `credits`
    /// of the balance (all of it when less is left); fails with
    /// `InsufficientCredits` when the balance is empty.
    pub async fn insert_stream_job(
        &self,
        job: &NewJob,
        credits: i64,
        lease: &Lease,
    ) -> Result<Job, DbError> {
        let mut tx = self.pool.begin().await?;
        let stamp = now();
        let row = sqlx::query(
            "INSERT INTO jobs (user_id, job_type, status, task_id, filename, display_name, \
                num_speakers, min_speakers, max_speakers, attempts, locked_by, lease_until, \
                webhook_url, exclusive, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11, $12, $13, $14, $15) \
             RETURNING *",
        )
        .bind(&job.user_id)
        .bind(JobType::Stream.as_str())
        .bind(JobStatus::Processing.as_str())
        .bind(&job.task_id)
        .bind(&job.filename)
        .bind(display_name(&job.filename))
        .bind(job.num_speakers)
        .bind(job.min_speakers)
        .bind(job.max_speakers)
        .bind(&lease.node_id)
        .bind(lease.until())
        .bind(&job.webhook_url)
        .bind(i64::from(job.exclusive))
        .bind(&stamp)
        .bind(&stamp)
        .fetch_one(&mut *tx)
        .await?;
        let mut inserted = Job::from_row(&row)?;
        let taken = take_up_to(&mut tx, &inserted, credits).await?;
        if taken == 0 {
            return Err(DbError::InsufficientCredits {
                required: credits,
                available: 0,
            });
        }
        inserted.credits_reserved = taken;
        tx.commit().await?;
        Ok(inserted)
    }

    /// Adds up to `credits` more of the balance to a running stream job's
    /// reservation; returns how many it got (0 when the balance is empty or
    /// the job is no longer this session's).
    pub async fn extend_stream_reservation(&self, job: &Job, credits: i64) -> Result<i64, DbError> {
        let mut tx = self.pool.begin().await?;
        let running = sqlx::query(
            "UPDATE jobs SET updated_at = $1 \
             WHERE id = $2 AND task_id = $3 AND attempts = $4 AND status = 'PROCESSING' \
             RETURNING id",
        )
        .bind(now())
        .bind(job.id)
        .bind(&job.task_id)
        .bind(job.attempts)
        .fetch_optional(&mut *tx)
        .await?;
        if running.is_none() {
            return Ok(0);
        }
        let taken = take_up_to(&mut tx, job, credits).await?;
        tx.commit().await?;
        Ok(taken)
    }

    /// Stream jobs this node held when it stopped (a crash or kill).
    pub async fn own_stream_jobs(&self, node_id: &str) -> Result<Vec<Job>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE status = 'PROCESSING' AND job_type = 'stream' \
                AND locked_by = $1 ORDER BY id",
        )
        .bind(node_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(Job::from_row).collect::<Result<_, _>>()?)
    }

    /// Takes over one stream job whose node stopped renewing its lease, to
    /// finalize it from its checkpoints.
    pub async fn claim_orphaned_stream(&self, lease: &Lease) -> Result<Option<Job>, DbError> {
        let sql = claim_oldest(
            self.backend,
            "jobs",
            "attempts = attempts + 1, locked_by = $1, lease_until = $2, updated_at = $3",
            "job_type = 'stream' AND status = 'PROCESSING' AND COALESCE(lease_until, 0) < $4",
        );
        let row = sqlx::query(sql)
            .bind(&lease.node_id)
            .bind(lease.until())
            .bind(now())
            .bind(unix_now())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(Job::from_row).transpose()?)
    }

    /// Jobs per status, for the metrics.
    pub async fn count_jobs_by_status(&self) -> Result<Vec<(JobStatus, i64)>, DbError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| Some((JobStatus::parse(row.get("status"))?, row.get("n"))))
            .collect())
    }
}

/// The listing's name of a file: its name without the extension.
fn display_name(filename: &str) -> String {
    std::path::Path::new(filename).file_stem().map_or_else(
        || filename.to_owned(),
        |stem| stem.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::webhooks::Attempt;

    async fn db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&Db::default_url(dir.path())).await.unwrap();
        (db, dir)
    }

    fn new_job(user_id: &str, credits: i64, webhook_url: Option<&str>) -> NewJob {
        NewJob {
            user_id: user_id.to_owned(),
            job_type: JobType::Diarization,
            task_id: uuid::Uuid::new_v4().to_string(),
            filename: "a.wav".into(),
            source_url: None,
            input_key: Some("inputs/a.wav".into()),
            num_speakers: None,
            min_speakers: None,
            max_speakers: None,
            duration_seconds: Some(1.0),
            credits,
            webhook_url: webhook_url.map(str::to_owned),
            exclusive: false,
        }
    }

    fn lease(node: &str, seconds: i64) -> Lease {
        Lease {
            node_id: node.into(),
            seconds,
        }
    }

    /// The ledger must always explain the balance.
    async fn check_ledger(db: &Db, user: &str, granted: i64) {
        let moved: i64 = sqlx::query("SELECT COALESCE(SUM(delta), 0) AS n FROM credit_ledger WHERE user_id = $1 AND reason != 'grant'")
            .bind(user)
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .get("n");
        assert_eq!(db.balance(user).await.unwrap(), granted + moved);
    }

    #[tokio::test]
    async fn a_claim_holds_until_it_completes_once_and_settles_once() {
        let (db, _dir) = db().await;
        let user = db.create_user(1000).await.unwrap();
        let job = db.insert_job(&new_job(&user, 100, None)).await.unwrap();
        assert_eq!(db.balance(&user).await.unwrap(), 900, "reserved on insert");

        let claimed = db.claim_next_job(&lease("a", 60)).await.unwrap().unwrap();
        assert_eq!((claimed.id, claimed.attempts), (job.id, 1));
        assert_eq!(claimed.locked_by.as_deref(), Some("a"));
        assert!(
            db.claim_next_job(&lease("b", 60)).await.unwrap().is_none(),
            "a live lease is not taken"
        );
        assert!(db.holds(&claimed).await.unwrap());

        assert!(db.complete_job(&claimed, "{}", 1.0, 60).await.unwrap());
        assert!(
            !db.complete_job(&claimed, "{}", 1.0, 60).await.unwrap(),
            "completes once"
        );
        assert!(
            !db.fail_job(&claimed, "late").await.unwrap(),
            "a completed job does not fail"
        );
        assert_eq!(
            db.balance(&user).await.unwrap(),
            940,
            "charged 60, the rest refunded"
        );
        check_ledger(&db, &user, 1000).await;
    }

    #[tokio::test]
    async fn audio_longer_than_stated_is_charged_from_the_balance_once_or_not_at_all() {
        let (db, _dir) = db().await;
        let user = db.create_user(1000).await.unwrap();
        db.insert_job(&new_job(&user, 100, None)).await.unwrap();
        // The first run's lease ran out; the second run decodes 300 credits of audio.
        let dead = db
            .claim_next_job(&lease("dead", -10))
            .await
            .unwrap()
            .unwrap();
        let alive = db
            .claim_next_job(&lease("alive", 60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(db.cover(&dead, 300).await.unwrap(), Cover::Lost);
        assert_eq!(
            db.balance(&user).await.unwrap(),
            900,
            "a void claim takes nothing"
        );
        assert_eq!(db.cover(&alive, 300).await.unwrap(), Cover::Covered);
        assert_eq!(
            db.balance(&user).await.unwrap(),
            700,
            "200 more than reserved"
        );
        assert_eq!(
            db.cover(&alive, 300).await.unwrap(),
            Cover::Covered,
            "covered already"
        );
        assert_eq!(db.balance(&user).await.unwrap(), 700, "taken once");
        assert!(db.complete_job(&alive, "{}", 10.9, 300).await.unwrap());
        let done = db.job(&user, alive.id).await.unwrap().unwrap();
        assert_eq!((done.credits_used, done.credits_reserved), (Some(300), 300));
        assert_eq!(db.balance(&user).await.unwrap(), 700);
        check_ledger(&db, &user, 1000).await;

        // 700 left: a job reserved at 100 whose audio costs 801 cannot be paid.
        db.insert_job(&new_job(&user, 100, None)).await.unwrap();
        let short = db.claim_next_job(&lease("a", 60)).await.unwrap().unwrap();
        assert_eq!(
            db.cover(&short, 801).await.unwrap(),
            Cover::Short {
                affordable: 700,
                stated_seconds: Some(1.0)
            }
        );
        assert_eq!(db.balance(&user).await.unwrap(), 600, "nothing taken");
        assert!(db.fail_job(&short, "unpaid").await.unwrap());
        assert_eq!(
            db.balance(&user).await.unwrap(),
            700,
            "the reservation refunded"
        );
        let failed = db.job(&user, short.id).await.unwrap().unwrap();
        assert_eq!(failed.credits_used, Some(0));
        check_ledger(&db, &user, 1000).await;
        // Exactly what the balance holds can be paid.
        db.insert_job(&new_job(&user, 100, None)).await.unwrap();
        let exact = db.claim_next_job(&lease("a", 60)).await.unwrap().unwrap();
        assert_eq!(db.cover(&exact, 700).await.unwrap(), Cover::Covered);
        assert!(db.complete_job(&exact, "{}", 25.4, 700).await.unwrap());
        assert_eq!(db.balance(&user).await.unwrap(), 0);
        check_ledger(&db, &user, 1000).await;
    }

    #[tokio::test]
    async fn an_expired_lease_passes_the_job_on_and_the_old_claim_changes_nothing() {
        let (db, _dir) = db().await;
        let user = db.create_user(1000).await.unwrap();
        db.insert_job(&new_job(&user, 100, None)).await.unwrap();
        // A lease that ran out the moment it was taken: its node died.
        let dead = db
            .claim_next_job(&lease("dead", -10))
            .await
            .unwrap()
            .unwrap();
        let alive = db
            .claim_next_job(&lease("alive", 60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((alive.id, alive.attempts), (dead.id, 2));
        assert!(!db.holds(&dead).await.unwrap());
        assert!(
            !db.complete_job(&dead, "{}", 1.0, 100).await.unwrap(),
            "the old claim is void"
        );
        assert!(db.complete_job(&alive, "{}", 1.0, 100).await.unwrap());
        assert_eq!(db.balance(&user).await.unwrap(), 900, "charged once");
        check_ledger(&db, &user, 1000).await;
    }

    #[tokio::test]
    async fn renewing_keeps_a_claim_and_a_restart_requeues_only_its_own() {
        let (db, _dir) = db().await;
        let user = db.create_user(1000).await.unwrap();
        db.insert_job(&new_job(&user, 10, None)).await.unwrap();
        db.insert_job(&new_job(&user, 10, None)).await.unwrap();
        // A one-second lease, renewed for a minute: still held two seconds on.
        let mine = db.claim_next_job(&lease("me", 1)).await.unwrap().unwrap();
        let theirs = db
            .claim_next_job(&lease("them", 60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(db.renew_leases(&lease("me", 60)).await.unwrap(), 1);
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        assert!(
            db.claim_next_job(&lease("other", 60))
                .await
                .unwrap()
                .is_none(),
            "renewed"
        );
        assert_eq!(db.requeue_own_jobs("me").await.unwrap(), 1);
        assert!(!db.holds(&mine).await.unwrap());
        assert!(
            db.holds(&theirs).await.unwrap(),
            "another node's job stays its own"
        );
        let again = db.claim_next_job(&lease("me", 60)).await.unwrap().unwrap();
        assert_eq!((again.id, again.attempts), (mine.id, 2));
    }

    #[tokio::test]
    async fn failing_and_cancelling_refund_everything_and_end_the_claim() {
        let (db, _dir) = db().await;
        let owner = db.create_user(1000).await.unwrap();
        let stranger = db.create_user(0).await.unwrap();
        db.insert_job(&new_job(&owner, 100, None)).await.unwrap();
        let pending = db.insert_job(&new_job(&owner, 200, None)).await.unwrap();
        assert_eq!(db.balance(&owner).await.unwrap(), 700);

        let running = db.claim_next_job(&lease("a", 60)).await.unwrap().unwrap();
        assert!(db.fail_job(&running, "broken").await.unwrap());
        assert_eq!(
            db.balance(&owner).await.unwrap(),
            800,
            "a failure refunds all"
        );

        assert!(matches!(
            db.cancel_job(&stranger, pending.id).await.unwrap(),
            Cancel::NotFound
        ));
        let Cancel::Cancelled(cancelled) = db.cancel_job(&owner, pending.id).await.unwrap() else {
            panic!("a pending job is cancelled");
        };
        assert_eq!(cancelled.status, JobStatus::Cancelled);
        assert_eq!(
            db.balance(&owner).await.unwrap(),
            1000,
            "a cancel refunds all"
        );
        assert!(matches!(
            db.cancel_job(&owner, pending.id).await.unwrap(),
            Cancel::NotCancellable(_)
        ));
        assert!(matches!(
            db.cancel_job(&owner, running.id).await.unwrap(),
            Cancel::NotCancellable(_)
        ));
        assert!(
            db.claim_next_job(&lease("a", 60)).await.unwrap().is_none(),
            "nothing left to run"
        );
        check_ledger(&db, &owner, 1000).await;
    }

    #[tokio::test]
    async fn a_cancel_voids_the_running_claim() {
        let (db, _dir) = db().await;
        let user = db.create_user(1000).await.unwrap();
        db.insert_job(&new_job(&user, 100, None)).await.unwrap();
        let running = db.claim_next_job(&lease("a", 60)).await.unwrap().unwrap();
        assert!(matches!(
            db.cancel_job(&user, running.id).await.unwrap(),
            Cancel::Cancelled(_)
        ));
        assert!(
            !db.holds(&running).await.unwrap(),
            "the worker sees it is no longer its job"
        );
        assert!(!db.complete_job(&running, "{}", 1.0, 100).await.unwrap());
        assert_eq!(db.balance(&user).await.unwrap(), 1000);
        check_ledger(&db, &user, 1000).await;
    }

    #[tokio::test]
    async fn an_ending_queues_one_webhook_delivery_retried_until_its_attempts_run_out() {
        let (db, _dir) = db().await;
        let user = db.create_user(1000).await.unwrap();
        db.insert_job(&new_job(&user, 10, Some("http://hooks.example/x")))
            .await
            .unwrap();
        db.insert_job(&new_job(&user, 10, None)).await.unwrap();
        while let Some(job) = db.claim_next_job(&lease("a", 60)).await.unwrap() {
            assert!(db.complete_job(&job, "{}", 1.0, 10).await.unwrap());
        }
        let sender = lease("a", 60);
        let delivery = db.claim_delivery(&sender).await.unwrap().unwrap();
        assert_eq!(delivery.event_type, "job.completed");
        assert!(
            db.claim_delivery(&sender).await.unwrap().is_none(),
            "one event, claimed once"
        );
        let failed = Attempt::Failed {
            status_code: Some(500),
            error: "500".into(),
        };
        db.record_attempt(&delivery, &failed, 60).await.unwrap();
        assert!(
            db.claim_delivery(&sender).await.unwrap().is_none(),
            "not due before its backoff"
        );
        let mut last = delivery.clone();
        last.attempts = crate::db::webhooks::MAX_ATTEMPTS - 1;
        db.record_attempt(&last, &failed, 60).await.unwrap();
        let (listed, total) = db.list_deliveries(&user, 0, 10).await.unwrap();
        assert_eq!((total, listed[0].status.as_str()), (1, "failed"));
        let again = db.redeliver(&user, delivery.id).await.unwrap().unwrap();
        assert_eq!((again.status.as_str(), again.attempts), ("pending", 0));
        let delivery = db.claim_delivery(&sender).await.unwrap().unwrap();
        db.record_attempt(&delivery, &Attempt::Delivered { status_code: 204 }, 60)
            .await
            .unwrap();
        let (listed, _) = db.list_deliveries(&user, 0, 10).await.unwrap();
        assert_eq!(listed[0].status, "delivered");
        assert!(
            db.claim_delivery(&sender).await.unwrap().is_none(),
            "never sent again"
        );
    }
}
