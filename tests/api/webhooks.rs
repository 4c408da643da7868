//! Webhooks against a real receiver on loopback: signed the documented way
//! (checked in Python, as a user would), retried with backoff until a 2xx,
//! durable across a restart, stopped by 410, refused for private addresses
//! unless allowed, and resent on request.

use std::collections::VecDeque;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

use crate::audio;
use crate::client::{Submission, WithKey, expect_detail, expect_json};
use crate::server::{Server, User};

/// Retries come after 1 s, 2 s, … in these tests instead of minutes.
const RETRY: [&str; 2] = ["--webhook-retry-seconds", "1"];
const WAIT: Duration = Duration::from_secs(120);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

/// A webhook receiver that answers with the scripted statuses in turn, then 200.
#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Mutex<VecDeque<u16>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> (Receiver, String) {
        let receiver = Receiver {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            ..Receiver::default()
        };
        let app = Router::new()
            .route("/hook", post(record))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `count` requests arrived.
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                started.elapsed() < WAIT,
                "expected {count} webhook requests within {WAIT:?}, got {}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn record(State(receiver): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    receiver
        .received
        .lock()
        .unwrap()
        .push(Received { headers, body });
    let status = receiver.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| panic!("the webhook request has no {name} header"))
}

async fn submit_with_webhook(server: &Server, user: &User, url: &str) -> i64 {
    Submission::diarize()
        .file("hook.wav", audio::speech_clip())
        .field("webhook_url", url)
        .submit(server, user)
        .await
}

async fn secret(server: &Server, user: &User) -> String {
    let body = expect_json(
        server
            .get("/api/v1/webhooks/secret")
            .with_key(user)
            .send()
            .await,
        200,
        "GET /api/v1/webhooks/secret",
    )
    .await;
    body["secret"].as_str().expect("a secret").to_owned()
}

async fn deliveries(server: &Server, user: &User) -> Vec<Value> {
    let body = expect_json(
        server
            .get("/api/v1/webhooks/deliveries")
            .with_key(user)
            .send()
            .await,
        200,
        "GET /api/v1/webhooks/deliveries",
    )
    .await;
    body["items"].as_array().expect("items").clone()
}

/// Verifies the signature as a user's Python receiver would.
fn python_verifies(secret: &str, received: &Received) -> bool {
    let script = "import hmac, hashlib, sys\n\
        secret, timestamp, signature, body = sys.argv[1:5]\n\
        expected = 'sha256=' + hmac.new(secret.encode(), f'{timestamp}.{body}'.encode(), hashlib.sha256).hexdigest()\n\
        sys.exit(0 if hmac.compare_digest(expected, signature) else 1)\n";
    Command::new("python3")
        .args(["-c", script, secret])
        .arg(header(received, "x-audiopod-timestamp"))
        .arg(header(received, "x-audiopod-signature"))
        .arg(&received.body)
        .status()
        .expect("run python3")
        .success()
}

#[tokio::test]
async fn a_completed_job_is_posted_signed_and_retried_until_a_2xx() {
    let (receiver, url) = Receiver::start(&[500, 500]).await;
    let server = Server::start(&RETRY);
    let user = server.create_user(1_000_000);
    let id = submit_with_webhook(&server, &user, &url).await;
    server.wait_for_status(&user, id, "COMPLETED").await;

    let received = receiver.wait_for(3).await;
    // Nothing more comes after the 2xx.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let received_then = receiver.received();
    assert_eq!(
        received_then.len(),
        3,
        "500, 500, then 200: three deliveries"
    );
    let signing = secret(&server, &user).await;
    for attempt in &received {
        assert!(
            python_verifies(&signing, attempt),
            "the signature verifies: {attempt:?}"
        );
        assert!(
            !python_verifies("whsec_wrong", attempt),
            "a wrong secret does not verify"
        );
        assert_eq!(header(attempt, "x-audiopod-event"), "job.completed");
    }
    let event_ids: Vec<&str> = received
        .iter()
        .map(|r| header(r, "x-audiopod-event-id"))
        .collect();
    assert!(
        event_ids.iter().all(|e| *e == event_ids[0]),
        "one event, retried: {event_ids:?}"
    );
    let body: Value = serde_json::from_str(&received[2].body).unwrap();
    assert_eq!(body["event_type"], "job.completed");
    assert_eq!(body["event_id"], event_ids[0]);
    assert_eq!(body["job_id"], id);
    assert_eq!(body["job_type"], "diarization");
    assert_eq!(body["status"], "COMPLETED");
    let rttm_url = body["result"]["rttm_url"]
        .as_str()
        .expect("download links on completion");
    let rttm = server.get(rttm_url).send().await.unwrap();
    assert_eq!(rttm.status(), 200, "the link in the webhook downloads");

    let listed = deliveries(&server, &user).await;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["status"], "delivered");
    assert_eq!(listed[0]["attempts"], 3);
    assert_eq!(listed[0]["last_status_code"], 200);

    // A redelivery sends the same event once more.
    let delivery = listed[0]["id"].as_i64().unwrap();
    let resent = expect_json(
        server
            .post(&format!("/api/v1/webhooks/deliveries/{delivery}/redeliver"))
            .with_key(&user)
            .send()
            .await,
        200,
        "redeliver",
    )
    .await;
    assert_eq!(resent["status"], "pending");
    let received = receiver.wait_for(4).await;
    assert_eq!(header(&received[3], "x-audiopod-event-id"), event_ids[0]);

    // Rotating the secret changes what signs the next delivery.
    let rotated = expect_json(
        server
            .post("/api/v1/webhooks/secret")
            .with_key(&user)
            .send()
            .await,
        200,
        "POST /api/v1/webhooks/secret",
    )
    .await;
    assert_ne!(rotated["secret"], signing.as_str());
    assert_eq!(
        secret(&server, &user).await,
        rotated["secret"].as_str().unwrap()
    );
}

#[tokio::test]
async fn a_failed_job_is_posted_with_its_error_and_410_stops_retries() {
    let (receiver, url) = Receiver::start(&[410]).await;
    let server = Server::start(&RETRY);
    let user = server.create_user(1_000_000);
    let response = Submission::diarize()
        .file("broken.wav", audio::broken_wav())
        .field("webhook_url", &url)
        .send(&server, &user)
        .await;
    expect_detail(response, 422, "an undecodable upload").await;
    let received = receiver.wait_for(1).await;
    let body: Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(body["event_type"], "job.failed");
    assert!(
        body["error_message"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(receiver.received().len(), 1, "410 Gone stops the retries");
    let listed = deliveries(&server, &user).await;
    assert_eq!(listed[0]["status"], "stopped", "{listed:#?}");
}

#[tokio::test]
async fn a_delivery_survives_a_restart_between_attempts() {
    let (receiver, url) = Receiver::start(&[500]).await;
    // Retries come after 8 s: time enough to restart the server in between.
    let mut server = Server::start(&["--webhook-retry-seconds", "8"]);
    let user = server.create_user(1_000_000);
    let id = submit_with_webhook(&server, &user, &url).await;
    server.wait_for_status(&user, id, "COMPLETED").await;
    receiver.wait_for(1).await;
    server.kill();
    server.restart();
    let received = receiver.wait_for(2).await;
    assert_eq!(
        header(&received[0], "x-audiopod-event-id"),
        header(&received[1], "x-audiopod-event-id"),
        "the same event, after the restart"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.received().len(), 2, "delivered once after the 2xx");
}

#[tokio::test]
async fn private_webhook_urls_are_refused_without_the_flag() {
    let server = Server::start_with(false, &[], &[]);
    let user = server.create_user(1_000_000);
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/hook",
        "ftp://example.com/hook",
    ] {
        let response = Submission::diarize()
            .file("hook.wav", audio::speech_clip())
            .field("webhook_url", url)
            .send(&server, &user)
            .await;
        let detail = expect_detail(response, 400, url).await;
        assert!(detail.starts_with("webhook_url"), "{url}: {detail}");
    }
    assert_eq!(
        server.list(&user, "").await["total"],
        0,
        "nothing was queued"
    );
}
