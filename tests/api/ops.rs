//! Operations endpoints, no auth: health, readiness, Prometheus metrics, OpenAPI.

use std::time::{Duration, Instant};

use crate::audio;
use crate::client::{Submission, expect_json, status_and_text};
use crate::server::Server;

/// Sum of every sample of a metric (all label sets) in Prometheus text, if it is there.
fn metric(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .map(|line| {
            let value = line.rsplit(' ').next().unwrap_or_default();
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("metric line without a number: {line:?}"))
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

async fn metrics_text(server: &Server) -> String {
    let (status, text) = status_and_text(server.get("/metrics").send().await, "GET /metrics").await;
    assert_eq!(status, 200, "GET /metrics: {text}");
    text
}

#[tokio::test]
async fn health_and_readiness_need_no_auth() {
    let server = Server::start(&[]);
    let health = expect_json(server.get("/healthz").send().await, 200, "GET /healthz").await;
    assert_eq!(health["status"], "ok", "GET /healthz: {health}");

    // Ready once the database and the engine are: 503 until then, never anything else.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) =
            status_and_text(server.get("/readyz").send().await, "GET /readyz").await;
        if status == 200 {
            break;
        }
        assert_eq!(
            status, 503,
            "GET /readyz is 200 or 503, got {status}: {body}"
        );
        assert!(
            Instant::now() < deadline,
            "GET /readyz still 503 after 120 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn metrics_count_requests_jobs_and_audio() {
    let server = Server::start(&[]);
    let user = server.create_user(1_000_000);
    let id = Submission::extract()
        .file("clip.wav", audio::speech_clip())
        .submit(&server, &user)
        .await;
    server.wait_for_status(&user, id, "COMPLETED").await;

    let text = metrics_text(&server).await;
    let requests = metric(&text, "whospoke_http_requests_total");
    assert!(
        requests.is_some_and(|n| n >= 2.0),
        "whospoke_http_requests_total should count the requests made so far:\n{text}"
    );
    let audio_seconds = metric(&text, "whospoke_audio_seconds_processed_total");
    assert!(
        audio_seconds.is_some_and(|s| (s - audio::SPEECH_CLIP_SECONDS).abs() < 0.1),
        "whospoke_audio_seconds_processed_total should be the clip's {} s:\n{text}",
        audio::SPEECH_CLIP_SECONDS
    );
    let credits = metric(&text, "whospoke_credits_charged_total");
    assert!(
        credits.is_some_and(|c| c == audio::credits_for(audio::SPEECH_CLIP_SECONDS) as f64),
        "whospoke_credits_charged_total should be the job's credits:\n{text}"
    );
    assert!(
        metric(&text, "whospoke_jobs").is_some(),
        "jobs by state (whospoke_jobs):\n{text}"
    );
    assert!(
        metric(&text, "whospoke_queue_depth").is_some(),
        "queue depth:\n{text}"
    );
    assert!(
        metric(&text, "whospoke_job_processing_seconds_count").is_some_and(|n| n >= 1.0),
        "a processing-seconds histogram with the job in it:\n{text}"
    );
}

/// A port nothing listens on right now, for a flag that needs a fixed address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free port")
        .port()
}

#[tokio::test]
async fn metrics_can_move_to_their_own_address() {
    let metrics_address = format!("127.0.0.1:{}", free_port());
    let server = Server::start(&["--metrics-listen", &metrics_address]);

    let (status, _) = status_and_text(server.get("/metrics").send().await, "GET /metrics").await;
    assert_eq!(status, 404, "no /metrics on the API's address");
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
        .get(format!("http://{metrics_address}/metrics"))
        .send()
        .await;
    let (status, text) = status_and_text(response, "GET /metrics on --metrics-listen").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        metric(&text, "whospoke_http_requests_total").is_some() || text.contains("whospoke_"),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_can_ask_for_a_token() {
    let server = Server::start(&["--metrics-token", "scrape-secret"]);
    for (what, request) in [
        ("no token", server.get("/metrics")),
        (
            "a wrong token",
            server.get("/metrics").bearer_auth("scrape-secre"),
        ),
    ] {
        let (status, text) = status_and_text(request.send().await, what).await;
        assert_eq!(status, 401, "{what}: {text}");
    }
    let request = server.get("/metrics").bearer_auth("scrape-secret");
    let (status, text) = status_and_text(request.send().await, "the token").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("whospoke_"), "{text}");
}
