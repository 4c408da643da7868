//! Webhook secrets and deliveries: every job event to send is a row, claimed
//! with a lease like a job, retried with backoff until a 2xx, a 410 or the
//! last attempt, so a restart or a dead node loses none and a delivered event
//! is never sent again (unless its owner asks for a redelivery).

use serde_json::json;
use sqlx::{AnyConnection, FromRow, Row};

use super::jobs::{Job, JobStatus, Lease};
use super::{Db, DbError, claim_oldest, now, unix_now};

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i64 = 5;
/// The longest wait between two attempts.
const MAX_BACKOFF_SECONDS: i64 = 3600;

/// One event to deliver.
#[derive(Debug, Clone, FromRow)]
pub struct Delivery {
    pub id: i64,
    pub event_id: String,
    pub user_id: String,
    pub job_id: i64,
    pub event_type: String,
    pub url: String,
    /// The event as it happened (JSON).
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

/// How one attempt went.
#[derive(Debug, Clone)]
pub enum Attempt {
    /// A 2xx answer.
    Delivered { status_code: u16 },
    /// 410 Gone: the receiver wants no more.
    Gone,
    /// Anything else: retried later, unless attempts are used up.
    Failed {
        status_code: Option<u16>,
        error: String,
    },
}

impl Db {
    /// The user's webhook secret (hex), made on first use.
    pub async fn webhook_secret(&self, user_id: &str) -> Result<String, DbError> {
        sqlx::query(
            "UPDATE users SET webhook_secret = $1 WHERE id = $2 AND webhook_secret IS NULL",
        )
        .bind(new_secret()?)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT webhook_secret FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| DbError::UnknownUser(user_id.to_owned()))?;
        Ok(row.get("webhook_secret"))
    }

    /// Replaces the user's webhook secret and returns the new one.
    pub async fn rotate_webhook_secret(&self, user_id: &str) -> Result<String, DbError> {
        let secret = new_secret()?;
        let done = sqlx::query("UPDATE users SET webhook_secret = $1 WHERE id = $2")
            .bind(&secret)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::UnknownUser(user_id.to_owned()));
        }
        Ok(secret)
    }

    /// Claims the oldest delivery that is due, under `lease`.
    pub async fn claim_delivery(&self, lease: &Lease) -> Result<Option<Delivery>, DbError> {
        let sql = claim_oldest(
            self.backend,
            "webhook_deliveries",
            "lease_until = $1",
            "status = 'pending' AND next_attempt_at <= $2 AND COALESCE(lease_until, 0) < $2",
        );
        let row = sqlx::query(sql)
            .bind(unix_now() + lease.seconds)
            .bind(unix_now())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(Delivery::from_row).transpose()?)
    }

    /// Records how an attempt of a claimed delivery went; a failed one is
    /// tried again after `first_backoff` seconds, doubling each time.
    pub async fn record_attempt(
        &self,
        delivery: &Delivery,
        attempt: &Attempt,
        first_backoff: i64,
    ) -> Result<(), DbError> {
        let attempts = delivery.attempts + 1;
        let (status, code, error, next) = match attempt {
            Attempt::Delivered { status_code } => (
                "delivered",
                Some(i64::from(*status_code)),
                None,
                delivery.next_attempt_at,
            ),
            Attempt::Gone => ("stopped", Some(410), None, delivery.next_attempt_at),
            Attempt::Failed { status_code, error } => {
                let status = if attempts >= MAX_ATTEMPTS {
                    "failed"
                } else {
                    "pending"
                };
                (
                    status,
                    status_code.map(i64::from),
                    Some(error.as_str()),
                    unix_now() + backoff(first_backoff, attempts),
                )
            }
        };
        let delivered_at = matches!(attempt, Attempt::Delivered { .. }).then(now);
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = $2, last_status_code = $3, \
                last_error = $4, next_attempt_at = $5, lease_until = NULL, \
                delivered_at = COALESCE($6, delivered_at) \
             WHERE id = $7",
        )
        .bind(status)
        .bind(attempts)
        .bind(code)
        .bind(error)
        .bind(next)
        .bind(delivered_at)
        .bind(delivery.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One page of the user's deliveries, newest first, and the total.
    pub async fn list_deliveries(
        &self,
        user_id: &str,
        skip: i64,
        limit: i64,
    ) -> Result<(Vec<Delivery>, i64), DbError> {
        let total: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?
                .get("n");
        let rows = sqlx::query(
            "SELECT * FROM webhook_deliveries WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
        )
        .bind(user_id)
        .bind(limit)
        .bind(skip)
        .fetch_all(&self.pool)
        .await?;
        Ok((
            rows.iter()
                .map(Delivery::from_row)
                .collect::<Result<_, _>>()?,
            total,
        ))
    }

    /// Sends one of the user's deliveries again, now, with fresh attempts.
    pub async fn redeliver(&self, user_id: &str, id: i64) -> Result<Option<Delivery>, DbError> {
        let row = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, \
                lease_until = NULL \
             WHERE id = $2 AND user_id = $3 RETURNING *",
        )
        .bind(unix_now())
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(Delivery::from_row).transpose()?)
    }
}

/// Queues the event of a job's end, inside the transaction that ends it.
pub(super) async fn queue_event(
    tx: &mut AnyConnection,
    job: &Job,
    status: JobStatus,
    error_message: Option<&str>,
) -> Result<(), DbError> {
    let Some(url) = &job.webhook_url else {
        return Ok(());
    };
    let event_type = match status {
        JobStatus::Completed => "job.completed",
        JobStatus::Failed => "job.failed",
        JobStatus::Cancelled => "job.cancelled",
        JobStatus::Pending | JobStatus::Processing => return Ok(()),
    };
    let event_id = format!("evt_{}", uuid::Uuid::new_v4().simple());
    let stamp = now();
    let mut payload = json!({
        "event_type": event_type,
        "event_id": event_id,
        "job_id": job.id,
        "task_id": job.task_id,
        "job_type": job.job_type.as_str(),
        "status": status.as_str(),
        "created_at": stamp,
    });
    if let Some(error) = error_message {
        payload["error_message"] = json!(error);
    }
    sqlx::query(
        "INSERT INTO webhook_deliveries (event_id, user_id, job_id, event_type, url, payload, \
            status, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8)",
    )
    .bind(&event_id)
    .bind(&job.user_id)
    .bind(job.id)
    .bind(event_type)
    .bind(url)
    .bind(payload.to_string())
    .bind(unix_now())
    .bind(&stamp)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Seconds before attempt `attempts + 1`: first, 2×, 4× … at most an hour.
fn backoff(first: i64, attempts: i64) -> i64 {
    let exponent = u32::try_from((attempts - 1).clamp(0, 20)).unwrap_or(20);
    first
        .max(1)
        .saturating_mul(1 << exponent)
        .min(MAX_BACKOFF_SECONDS)
}

fn new_secret() -> Result<String, DbError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    Ok(format!("whsec_{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_minute_up_to_an_hour() {
        let minutes: Vec<i64> = (1..=8).map(|n| backoff(60, n) / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
