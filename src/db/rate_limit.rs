//! A rate limiter shared by every node on the database: requests per bucket
//! in fixed one-minute windows, each starting at the bucket's first request
//! after the previous window ended. One upsert per request.

use sqlx::Row;

use super::{Db, DbError};

/// Where a bucket stands after one more request.
#[derive(Debug, Clone, Copy)]
pub struct WindowCount {
    /// Requests in the current window, this one included.
    pub hits: i64,
    /// When the window ends, in unix milliseconds.
    pub ends_ms: i64,
}

impl Db {
    /// Counts one request against `bucket` at `now_ms` in windows of `window_ms`.
    pub async fn count_request(
        &self,
        bucket: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<WindowCount, DbError> {
        let row = sqlx::query(
            "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1) \
             ON CONFLICT (bucket) DO UPDATE SET \
                hits = CASE WHEN rate_limits.window_start <= $3 THEN 1 \
                    ELSE rate_limits.hits + 1 END, \
                window_start = CASE WHEN rate_limits.window_start <= $3 THEN $2 \
                    ELSE rate_limits.window_start END \
             RETURNING hits, window_start",
        )
        .bind(bucket)
        .bind(now_ms)
        .bind(now_ms - window_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(WindowCount {
            hits: row.get("hits"),
            ends_ms: row.get::<i64, _>("window_start") + window_ms,
        })
    }

    /// Drops windows that ended before `before_ms`, bounding the table.
    pub async fn forget_rate_windows(&self, before_ms: i64) -> Result<u64, DbError> {
        let done = sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
