//! Requests per minute per client address, counted before the caller is
//! authenticated: a flood of bad keys or tokens costs a hash-map lookup, never
//! a database query, and its 401s are limited like everything else.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::drain::discard_body;
use super::error::ApiError;
use super::proxy_headers::ClientIp;

/// How often addresses whose budget is full again are forgotten.
const FORGET_INTERVAL: Duration = Duration::from_secs(60);

pub struct IpLimits {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl IpLimits {
    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            clock: DefaultClock::default(),
        }
    }

    /// Until `shutdown`, forgets idle addresses now and then, bounding memory.
    pub async fn upkeep(self: Arc<Self>, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(FORGET_INTERVAL);
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    self.limiter.retain_recent();
                    self.limiter.shrink_to_fit();
                }
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// Middleware: 429 with `Retry-After` once an address spends its budget.
pub async fn limit_by_ip(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    request: Request,
    next: Next,
) -> Response {
    let limits = &state.ip_limits;
    match limits.limiter.check_key(&ip) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            discard_body(request.into_body()).await;
            let wait = not_until.wait_time_from(limits.clock.now());
            // Whole seconds, rounded up, so a client that waits that long is let in.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many requests from your address; try again in {seconds} s"),
            )
            .into_response();
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
            response
        }
    }
}
