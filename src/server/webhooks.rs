//! Webhook deliveries: job events POSTed to their owner's URL, signed the
//! AudioPod way, in the background so a slow receiver never delays a job.
//!
//! ```text
//! X-AudioPod-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{raw body}")>
//! X-AudioPod-Timestamp: <unix seconds>
//! X-AudioPod-Event:     job.completed | job.failed | job.cancelled
//! X-AudioPod-Event-Id:  evt_…
//! ```
//!
//! The body is the event (`event_type`, `event_id`, `job_id`, `job_type`,
//! `status`, `error_message` on failure) with the job as `GET /api/v1/jobs/{id}`
//! shows it, download links included, when the job still exists.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::routes::view::{self, JobView, Links};
use crate::db::webhooks::{Attempt, Delivery};
use crate::db::{DbError, Lease};

/// Deliveries in flight at once per node.
const IN_FLIGHT: usize = 8;
/// How long a receiver may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle sender looks for due deliveries.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// A claimed delivery is another node's to retry after this long.
const CLAIM_SECONDS: i64 = 60;

/// Settings of the sender.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Wait after the first failed attempt, doubling each time (AudioPod: 60 s).
    pub first_backoff_seconds: i64,
}

/// Sends due deliveries until shutdown.
pub async fn deliver(state: AppState, config: WebhookConfig, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let lease = Lease {
        node_id: state.jobs.lease().node_id.clone(),
        seconds: CLAIM_SECONDS,
    };
    while !shutdown.is_cancelled() {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        match state.jobs.db().claim_delivery(&lease).await {
            Ok(Some(delivery)) => {
                let (state, config) = (state.clone(), config.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    let attempt = send(&state, &delivery).await;
                    if let Err(e) = state
                        .jobs
                        .db()
                        .record_attempt(&delivery, &attempt, config.first_backoff_seconds)
                        .await
                    {
                        tracing::error!(delivery = delivery.id, error = %e, "recording a webhook attempt failed");
                    }
                });
            }
            Ok(None) => idle(&shutdown).await,
            Err(e) => {
                tracing::error!(error = %e, "claiming a webhook delivery failed");
                idle(&shutdown).await;
            }
        }
    }
}

async fn idle(shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(IDLE_POLL) => {}
        () = shutdown.cancelled() => {}
    }
}

/// One attempt: build, sign, POST.
async fn send(state: &AppState, delivery: &Delivery) -> Attempt {
    let failed = |error: String| Attempt::Failed {
        status_code: None,
        error,
    };
    let body = match body(state, delivery).await {
        Ok(body) => body,
        Err(e) => return failed(format!("building the event: {e}")),
    };
    let secret = match state.jobs.db().webhook_secret(&delivery.user_id).await {
        Ok(secret) => secret,
        Err(e) => return failed(format!("reading the signing secret: {e}")),
    };
    let Ok(url) = url::Url::parse(&delivery.url) else {
        return failed("the webhook URL does not parse".into());
    };
    // Checked again at each attempt: a name may now resolve elsewhere.
    let client = match crate::jobs::webhook_target(&url, state.jobs.fetch_limits()).await {
        Ok(client) => client,
        Err(e) => return failed(e.to_string()),
    };
    let timestamp = view::unix_now().to_string();
    let answer = client
        .post(url)
        .timeout(TIMEOUT)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("whospoke/", env!("CARGO_PKG_VERSION")),
        )
        .header(
            "x-audiopod-signature",
            signature(&secret, &timestamp, &body),
        )
        .header("x-audiopod-timestamp", &timestamp)
        .header("x-audiopod-event", &delivery.event_type)
        .header("x-audiopod-event-id", &delivery.event_id)
        .body(body)
        .send()
        .await;
    match answer {
        Ok(answer) if answer.status().is_success() => Attempt::Delivered {
            status_code: answer.status().as_u16(),
        },
        Ok(answer) if answer.status().as_u16() == 410 => Attempt::Gone,
        Ok(answer) => Attempt::Failed {
            status_code: Some(answer.status().as_u16()),
            error: format!("the receiver answered {}", answer.status()),
        },
        Err(e) if e.is_timeout() => failed(format!("no answer within {}s", TIMEOUT.as_secs())),
        Err(_) => failed("the receiver could not be reached".into()),
    }
}

/// The event, with the job's current view when the job still exists.
async fn body(state: &AppState, delivery: &Delivery) -> Result<String, DbError> {
    let mut event: Value = serde_json::from_str(&delivery.payload).unwrap_or_default();
    if let Some(job) = state
        .jobs
        .db()
        .job(&delivery.user_id, delivery.job_id)
        .await?
    {
        let base = state
            .config
            .public_url
            .clone()
            .unwrap_or_else(|| state.live.config().node_url.clone());
        let view = JobView::new(&job, &Links::with_base(state, &base));
        if let Some(result) = &view.result {
            event["result"] = json!(result);
        }
        event["job"] = json!(view);
    }
    Ok(event.to_string())
}

/// `sha256=` and the hex HMAC-SHA256 of `"{timestamp}.{body}"` keyed with the secret.
pub fn signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // Python: hmac.new(b"whsec_test", b"1700000000.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            signature("whsec_test", "1700000000", "{}"),
            "sha256=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }
}
