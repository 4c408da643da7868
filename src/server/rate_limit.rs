//! Requests per minute per caller and endpoint (GCRA through `governor`), with
//! the `RateLimit-*` headers of draft-ietf-httpapi-ratelimit-headers.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;

type Limiter = DefaultKeyedRateLimiter<String, StateInformationMiddleware>;

pub struct RateLimits {
    limiter: Limiter,
    clock: DefaultClock,
    per_minute: u32,
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
    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute))
                .with_middleware::<StateInformationMiddleware>(),
            clock: DefaultClock::default(),
            per_minute: per_minute.get(),
        }
    }

    pub fn check(&self, bucket: &str) -> Result<Allowed, Limited> {
        match self.limiter.check_key(&bucket.to_owned()) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let quota = state.quota();
                let used = quota.burst_size().get() - remaining;
                Ok(Allowed {
                    limit: self.per_minute,
                    remaining,
                    reset: quota.replenish_interval() * used,
                })
            }
            Err(not_until) => Err(Limited {
                limit: self.per_minute,
                retry_after: not_until.wait_time_from(self.clock.now()),
            }),
        }
    }

    /// Forgets callers whose buckets are full again, bounding memory.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
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
