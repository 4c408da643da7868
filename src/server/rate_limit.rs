//! Requests per minute per caller and endpoint, with the `RateLimit-*`
//! headers of draft-ietf-httpapi-ratelimit-headers.
//!
//! One node (SQLite) counts in memory: GCRA through `governor`, no I/O per
//! request. A cluster (Postgres) counts in the database, so N per minute is N
//! across all nodes: one upsert per request, in fixed windows of a minute
//! that start at a bucket's first request (`db::rate_limit`).

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use crate::db::{Backend, Db};

type Limiter = DefaultKeyedRateLimiter<String, StateInformationMiddleware>;

const WINDOW: Duration = Duration::from_secs(60);

pub struct RateLimits {
    counter: Counter,
    per_minute: u32,
}

enum Counter {
    Local {
        limiter: Limiter,
        clock: DefaultClock,
    },
    Shared(Db),
}

/// Where a caller stands after an allowed request.
pub struct Allowed {
    limit: u32,
    remaining: u32,
    reset: Duration,
}

/// A refused request.
pub struct Limited {
    limit: u32,
    retry_after: Duration,
}

impl RateLimits {
    /// In memory on SQLite, in the database on Postgres.
    pub fn new(db: &Db, per_minute: NonZeroU32) -> Self {
        let counter = match db.backend() {
            Backend::Sqlite => Counter::Local {
                limiter: RateLimiter::keyed(Quota::per_minute(per_minute))
                    .with_middleware::<StateInformationMiddleware>(),
                clock: DefaultClock::default(),
            },
            Backend::Postgres => Counter::Shared(db.clone()),
        };
        Self {
            counter,
            per_minute: per_minute.get(),
        }
    }

    pub async fn check(&self, bucket: &str) -> Result<Allowed, Limited> {
        let limit = self.per_minute;
        match &self.counter {
            Counter::Local { limiter, clock } => match limiter.check_key(&bucket.to_owned()) {
                Ok(state) => {
                    let remaining = state.remaining_burst_capacity();
                    let quota = state.quota();
                    let used = quota.burst_size().get() - remaining;
                    Ok(Allowed {
                        limit,
                        remaining,
                        reset: quota.replenish_interval() * used,
                    })
                }
                Err(not_until) => Err(Limited {
                    limit,
                    retry_after: not_until.wait_time_from(clock.now()),
                }),
            },
            Counter::Shared(db) => {
                let now = unix_millis();
                let window = WINDOW.as_millis() as i64;
                let count = match db.count_request(bucket, now, window).await {
                    Ok(count) => count,
                    Err(e) => {
                        // An unreachable database fails the request anyway; do
                        // not turn a counting hiccup into a refusal.
                        tracing::warn!(error = %e, "counting a request failed; let through");
                        return Ok(Allowed {
                            limit,
                            remaining: limit,
                            reset: WINDOW,
                        });
                    }
                };
                let reset = Duration::from_millis(u64::try_from(count.ends_ms - now).unwrap_or(0));
                if count.hits > i64::from(limit) {
                    Err(Limited {
                        limit,
                        retry_after: reset,
                    })
                } else {
                    Ok(Allowed {
                        limit,
                        remaining: limit - u32::try_from(count.hits).unwrap_or(limit),
                        reset,
                    })
                }
            }
        }
    }

    /// Forgets callers whose buckets are full again, bounding memory (or the table).
    pub async fn forget_idle(&self) {
        match &self.counter {
            Counter::Local { limiter, .. } => {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
            Counter::Shared(db) => {
                let before = unix_millis() - WINDOW.as_millis() as i64;
                if let Err(e) = db.forget_rate_windows(before).await {
                    tracing::warn!(error = %e, "forgetting old rate-limit windows failed");
                }
            }
        }
    }
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

impl Allowed {
    pub fn stamp(&self, headers: &mut HeaderMap) {
        set_headers(headers, self.limit, self.remaining, self.reset);
    }
}

impl IntoResponse for Limited {
    fn into_response(self) -> Response {
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit exceeded. Try again later.",
        )
        .into_response();
        let headers = response.headers_mut();
        set_headers(headers, self.limit, 0, self.retry_after);
        headers.insert("retry-after", seconds(self.retry_after));
        response
    }
}

fn set_headers(headers: &mut HeaderMap, limit: u32, remaining: u32, reset: Duration) {
    headers.insert("ratelimit-limit", HeaderValue::from(limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("ratelimit-reset", seconds(reset));
}

/// Whole seconds, rounded up so a client that waits that long is let in.
fn seconds(duration: Duration) -> HeaderValue {
    HeaderValue::from(duration.as_secs() + u64::from(duration.subsec_nanos() > 0))
}
