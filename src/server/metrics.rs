//! Prometheus metrics: the recorder, the per-request counter and the gauges
//! refreshed from the database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use super::rate_limit::RateLimits;
use crate::db::{Db, JobStatus};

const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder; call once.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("whospoke_job_processing_seconds".into()),
            &[
                0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full("whospoke_job_rtfx".into()),
            &[1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full("whospoke_live_event_delay_seconds".into()),
            &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full("whospoke_http_request_duration_seconds".into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )?
        .install_recorder()
}

/// Counts every request by route template (never the raw path, whose ids
/// would explode the label set), method and status.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("whospoke_http_requests_total",
        "route" => route.clone(), "method" => method.clone(), "status" => status)
    .increment(1);
    metrics::histogram!("whospoke_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Every few seconds: job gauges from the database, histogram upkeep, and
/// forgetting idle rate-limit buckets.
pub async fn upkeep(
    handle: PrometheusHandle,
    db: Db,
    limits: Arc<RateLimits>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        handle.run_upkeep();
        limits.forget_idle().await;
        match db.count_jobs_by_status().await {
            Ok(counts) => {
                for status in JobStatus::ALL {
                    let n = counts
                        .iter()
                        .find(|(s, _)| *s == status)
                        .map_or(0, |(_, n)| *n);
                    metrics::gauge!("whospoke_jobs", "status" => status.as_str()).set(n as f64);
                    if status == JobStatus::Pending {
                        metrics::gauge!("whospoke_queue_depth").set(n as f64);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "counting jobs for metrics failed"),
        }
    }
}
