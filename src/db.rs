//! The database: accounts, API keys, jobs and credits, behind one small API.
//!
//! SQLite (a file in the data directory) is the embedded default. Every query
//! lives in this module and uses plain SQL with `RETURNING`, so a Postgres
//! backend is a second connection type here, not a change elsewhere.

pub mod accounts;
pub mod jobs;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use accounts::{ApiKey, User};
pub use jobs::{Job, JobFilter, JobStatus, JobType, NewJob, Retry};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "whospoke.db";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("Insufficient credits for processing. Required: {required}, Available: {available}")]
    InsufficientCredits { required: i64, available: i64 },
    #[error("user {0} not found")]
    UnknownUser(String),
}

/// A pool of connections to the migrated database.
#[derive(Clone)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens (creating if needed) `dir/whospoke.db` and applies pending migrations.
    pub async fn open(dir: &Path) -> Result<Self, DbError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(dir.join(DATABASE_FILE))
            .create_if_missing(true)
            // WAL lets the admin CLI and readers work while the server writes.
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// True when a trivial query succeeds.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
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

/// Credits for `seconds` of audio: 27.5 per second, rounded up.
pub fn credits_for(seconds: f64) -> i64 {
    (seconds.max(0.0) * 27.5).ceil() as i64
}
