//! Credit moves, each inside the transaction of the job transition it goes
//! with, each recorded in `credit_ledger`: a reservation when a job is
//! accepted (or a stream extends), a settlement (refund of reserved − used)
//! when it completes, a refund when it fails or is cancelled.

use sqlx::{AnyConnection, Row};

use super::jobs::Job;
use super::{DbError, now};

/// Takes `credits` from the balance, or fails with the balance untouched.
pub(super) async fn reserve(
    tx: &mut AnyConnection,
    user_id: &str,
    credits: i64,
) -> Result<(), DbError> {
    if credits <= 0 {
        return Ok(());
    }
    let taken =
        sqlx::query("UPDATE users SET credits = credits - $1 WHERE id = $2 AND credits >= $1")
            .bind(credits)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
    if taken.rows_affected() == 1 {
        return Ok(());
    }
    let available = sqlx::query("SELECT credits FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| DbError::UnknownUser(user_id.to_owned()))?
        .get("credits");
    Err(DbError::InsufficientCredits {
        required: credits,
        available,
    })
}

/// Moves up to `credits` of the owner's balance into the job's reservation
/// and returns how many moved.
pub(super) async fn take_up_to(
    tx: &mut AnyConnection,
    job: &Job,
    credits: i64,
) -> Result<i64, DbError> {
    // A write that changes nothing locks the balance (Postgres: the row;
    // SQLite: the database) until the transaction ends, so it cannot move
    // between this read and the charge below.
    let balance: i64 =
        sqlx::query("UPDATE users SET credits = credits WHERE id = $1 RETURNING credits")
            .bind(&job.user_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| DbError::UnknownUser(job.user_id.clone()))?
            .get("credits");
    let taken = credits.min(balance);
    if taken <= 0 {
        return Ok(0);
    }
    sqlx::query("UPDATE users SET credits = credits - $1 WHERE id = $2")
        .bind(taken)
        .bind(&job.user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE jobs SET credits_reserved = credits_reserved + $1 WHERE id = $2")
        .bind(taken)
        .bind(job.id)
        .execute(&mut *tx)
        .await?;
    ledger(tx, &job.user_id, Some(job.id), -taken, "reserve").await?;
    Ok(taken)
}

/// Gives `credits` back to the job's owner.
pub(super) async fn release(
    tx: &mut AnyConnection,
    job: &Job,
    credits: i64,
    reason: &str,
) -> Result<(), DbError> {
    if credits <= 0 {
        return Ok(());
    }
    sqlx::query("UPDATE users SET credits = credits + $1 WHERE id = $2")
        .bind(credits)
        .bind(&job.user_id)
        .execute(&mut *tx)
        .await?;
    ledger(tx, &job.user_id, Some(job.id), credits, reason).await
}

/// Records one balance change inside the caller's transaction.
pub(super) async fn ledger(
    tx: &mut sqlx::AnyConnection,
    user_id: &str,
    job_id: Option<i64>,
    delta: i64,
    reason: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO credit_ledger (user_id, job_id, delta, reason, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user_id)
    .bind(job_id)
    .bind(delta)
    .bind(reason)
    .bind(now())
    .execute(tx)
    .await?;
    Ok(())
}
