//! The database: accounts, API keys, jobs and credits, job leases, the live
//! session registry and the shared rate limiter, behind one small API.
//!
//! SQLite (a file in the data directory) is the embedded default; Postgres
//! lets many nodes share one set of users, credits and jobs. Both run the
//! same queries through sqlx's `Any` driver: plain SQL with `$n` parameters
//! and `RETURNING`. The few statements that must differ (Postgres row locks
//! for the job queue) branch on [`Backend`].

pub mod accounts;
mod credits;
pub mod jobs;
pub mod rate_limit;
pub mod sessions;
pub mod settings;
pub mod stream_tokens;
pub mod webhooks;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, AssertSqlSafe, Executor};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use accounts::{ApiKey, User};
pub use jobs::{Cancel, Cover, Job, JobFilter, JobStatus, JobType, Lease, NewJob, Retry};
pub use sessions::SessionRoute;

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "whospoke.db";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database URL {0:?}: only sqlite:// and postgres:// URLs are supported")]
    UnsupportedUrl(String),
    #[error("Insufficient credits for processing. Required: {required}, Available: {available}")]
    InsufficientCredits { required: i64, available: i64 },
    #[error("user {0} not found")]
    UnknownUser(String),
}

/// Which engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pool of connections to the migrated database.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// The default database URL: `dir/whospoke.db`.
    pub fn default_url(dir: &Path) -> String {
        format!("sqlite://{}", dir.join(DATABASE_FILE).display())
    }

    /// Connects to `url` (`sqlite://PATH`, created if missing, or
    /// `postgres://…`) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        install_default_drivers();
        let (backend, url) = if url.starts_with("sqlite:") {
            let url = if url.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(DbError::UnsupportedUrl(redact(url)));
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets the admin CLI and readers work while the server
                        // writes; a writer waits for another instead of failing.
                        connection
                            .execute(
                                "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                                 PRAGMA busy_timeout = 10000;",
                            )
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// True when a trivial query succeeds.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// `UPDATE table SET set WHERE id = (the oldest row that is due) RETURNING *`:
/// the one statement every claim (jobs, streams, webhook deliveries) is. On
/// Postgres, concurrent claimers skip each other's candidate rows instead of
/// queueing on them; SQLite has one writer at a time anyway.
fn claim_oldest(backend: Backend, table: &str, set: &str, due: &str) -> AssertSqlSafe<String> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    // Only literals of this module go in: nothing here comes from a user.
    AssertSqlSafe(format!(
        "UPDATE {table} SET {set} WHERE id = (SELECT id FROM {table} WHERE {due} \
         ORDER BY id LIMIT 1{lock}) RETURNING *"
    ))
}

/// A database URL fit for messages: without its password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Now, as stored: RFC 3339 UTC to the second.
pub fn now() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Now in unix seconds (leases).
pub fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Credits per second of audio.
const CREDITS_PER_SECOND: f64 = 27.5;

/// Credits for `seconds` of audio, rounded up.
pub fn credits_for(seconds: f64) -> i64 {
    (seconds.max(0.0) * CREDITS_PER_SECOND).ceil() as i64
}

/// Seconds of audio `credits` pay for.
pub fn seconds_for(credits: i64) -> f64 {
    credits.max(0) as f64 / CREDITS_PER_SECOND
}
