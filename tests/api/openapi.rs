//! The generated OpenAPI document against the real router and a real run:
//! every route is documented with its methods, the document passes the
//! external `openapi-spec-validator`, and every response of a run through
//! the main routes (a real file to COMPLETED, listings, downloads, errors,
//! webhooks, cancel, credits) has a documented status and a body that
//! validates against the documented schema (tests/api/openapi_check.py).

use std::path::Path;
use std::process::Command;

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::audio::{not_audio, sample_bytes};
use crate::client::{Submission, WithKey, expect_json, job_id};
use crate::server::{Server, User, free_port, project_dir};

/// The methods a route can have; the router must answer 405 to the others.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

async fn served_document(server: &Server) -> Value {
    let response = server.get("/openapi.json").send().await;
    expect_json(response, 200, "GET /openapi.json").await
}

/// `path` with its `{parameters}` filled with `value`.
fn concrete(template: &str, value: &str) -> String {
    template
        .split('/')
        .map(|part| if part.starts_with('{') { value } else { part })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether the router has a route for `method` `path`: it does unless it
/// answers 405, or 404 with the fallback's detail. With a key, as
/// authentication comes before the 405.
async fn routed(
    http: &reqwest::Client,
    server: &Server,
    user: &User,
    method: &str,
    path: &str,
) -> bool {
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    let response = http
        .request(method, server.url(path))
        .with_key(user)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    !(status == 405 || (status == 404 && body["detail"] == "Not Found"))
}

#[tokio::test]
async fn every_route_is_documented_with_its_methods() {
    let server = Server::start(&[]);
    let user = server.create_user(0);
    let document = served_document(&server).await;
    let paths = document["paths"]
        .as_object()
        .expect("the document has paths");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut operations = 0;
    for (template, item) in paths {
        let path = concrete(template, "1");
        for method in METHODS {
            let documented = item.get(method.to_lowercase()).is_some();
            operations += usize::from(documented);
            assert_eq!(
                routed(&http, &server, &user, method, &path).await,
                documented,
                "{method} {template}: routed and documented must agree (documented: {documented})"
            );
        }
    }
    assert!(
        operations >= 20,
        "the API has 20-odd operations, the document {operations}"
    );
    for (method, path, reason) in whospoke::server::routes::undocumented() {
        assert!(
            !paths.contains_key(path),
            "{path} is listed as undocumented ({reason}) but is in the document"
        );
        assert!(
            routed(&http, &server, &user, method, path).await,
            "{method} {path} is listed as an undocumented route but is not routed"
        );
    }
}

#[test]
fn the_served_document_passes_openapi_spec_validator() {
    let validator = project_dir().join(".venv/bin/openapi-spec-validator");
    assert!(
        validator.exists(),
        "{} is missing: run scripts/setup.sh (it installs openapi-spec-validator)",
        validator.display()
    );
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let server = Server::start(&[]);
    let document = runtime.block_on(served_document(&server));
    assert_eq!(document["openapi"], "3.1.0", "an OpenAPI 3.1 document");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, document.to_string()).expect("write the document");
    let output = Command::new(&validator)
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "openapi-spec-validator: {text}");
    assert!(
        text.contains("OK"),
        "openapi-spec-validator says OK: {text}"
    );
}

/// The responses of a run, with the documented route each answered.
#[derive(Default)]
struct Exchanges(Vec<Value>);

impl Exchanges {
    /// Records `response` to `method template`; returns its status and JSON body (or null).
    async fn record(
        &mut self,
        method: &str,
        template: &str,
        response: reqwest::Result<Response>,
    ) -> (u16, Value) {
        let response = response.unwrap_or_else(|e| panic!("{method} {template}: {e}"));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if status == 429 {
            assert!(
                response.headers().contains_key("retry-after"),
                "{method} {template}: a 429 says when to come back: {:?}",
                response.headers()
            );
        }
        let bytes = response.bytes().await.expect("read the body");
        let body = if content_type.starts_with("application/json") {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{method} {template}: a JSON body ({e}): {bytes:?}"))
        } else {
            Value::Null
        };
        self.0.push(json!({
            "method": method, "path": template, "status": status,
            "content_type": content_type, "body": body,
        }));
        (status, body)
    }

    fn statuses(&self, method: &str, template: &str) -> Vec<u64> {
        self.0
            .iter()
            .filter(|e| e["method"] == method && e["path"] == template)
            .filter_map(|e| e["status"].as_u64())
            .collect()
    }
}

const JOB: &str = "/api/v1/speaker/jobs/{id}";
const SDK_JOB: &str = "/api/v1/jobs/{id}";
const FILE: &str = "/api/v1/files/{job_id}/{name}";

#[tokio::test]
async fn every_response_of_a_real_run_validates_against_the_document() {
    let server = Server::start(&[]);
    let user = server.create_user(10_000_000);
    let broke = server.create_user(0);
    let mut run = Exchanges::default();

    for path in ["/healthz", "/readyz", "/openapi.json", "/metrics"] {
        run.record("GET", path, server.get(path).send().await).await;
    }
    run.record(
        "GET",
        "/api/v1/credits",
        server.get("/api/v1/credits").with_key(&user).send().await,
    )
    .await;
    run.record(
        "GET",
        "/api/v1/credits",
        server.get("/api/v1/credits").send().await,
    )
    .await;
    let token = "/api/v1/speaker/stream/token";
    run.record(
        "POST",
        token,
        server.post(token).with_key(&user).send().await,
    )
    .await;

    // A real file to COMPLETED, with a webhook to a port nothing listens on.
    let hook = format!("http://127.0.0.1:{}/hook", free_port());
    let extract = Submission::extract()
        .file("sample.wav", sample_bytes())
        .field("webhook_url", &hook);
    let (status, job) = run
        .record(
            "POST",
            "/api/v1/speaker/extract",
            extract.send(&server, &user).await,
        )
        .await;
    assert_eq!(status, 200, "the extraction is accepted: {job}");
    let id = job_id(&job);
    let job = poll_until_completed(&server, &user, &mut run, id).await;

    run.record(
        "GET",
        JOB,
        server
            .get(&format!("/api/v1/speaker/jobs/{id}"))
            .with_key(&user)
            .send()
            .await,
    )
    .await;
    let jobs = "/api/v1/speaker/jobs";
    run.record("GET", jobs, server.get(jobs).with_key(&user).send().await)
        .await;
    let filtered = server.get("/api/v1/speaker/jobs?status=COMPLETED&job_type=extraction&limit=1");
    run.record("GET", jobs, filtered.with_key(&user).send().await)
        .await;
    let bad_filter = server
        .get("/api/v1/speaker/jobs?status=DONE")
        .with_key(&user);
    run.record("GET", jobs, bad_filter.send().await).await;

    // Downloads: whole, a range, a tampered signature, an unsatisfiable range.
    let rttm_url = job["result"]["rttm_url"]
        .as_str()
        .expect("an rttm_url")
        .to_owned();
    let track_url = job["result"]["speakers"][0]["download_url"]
        .as_str()
        .expect("a speaker's download_url")
        .to_owned();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    run.record("GET", FILE, http.get(&rttm_url).send().await)
        .await;
    run.record(
        "GET",
        FILE,
        http.get(&track_url)
            .header("Range", "bytes=0-99")
            .send()
            .await,
    )
    .await;
    run.record(
        "GET",
        FILE,
        http.get(&track_url)
            .header("Range", "bytes=999999999-")
            .send()
            .await,
    )
    .await;
    let tampered = rttm_url.replace("signature=", "signature=00");
    run.record("GET", FILE, http.get(&tampered).send().await)
        .await;
    run.record(
        "GET",
        FILE,
        server
            .get(&format!("/api/v1/files/{id}/x.rttm"))
            .send()
            .await,
    )
    .await;

    // Errors: 400, 401, 402, 404, 413, 414, 422, 431.
    let extract_path = "/api/v1/speaker/extract";
    let diarize_path = "/api/v1/speaker/diarize";
    let empty = Submission::diarize().multipart();
    run.record("POST", diarize_path, empty.send(&server, &user).await)
        .await;
    let huge_field = Submission::diarize()
        .multipart()
        .field("url", &"u".repeat(9_000));
    run.record("POST", diarize_path, huge_field.send(&server, &user).await)
        .await;
    let undecodable = Submission::diarize().file("noise.wav", not_audio());
    run.record("POST", diarize_path, undecodable.send(&server, &user).await)
        .await;
    let unfunded = Submission::extract().file("sample.wav", sample_bytes());
    run.record("POST", extract_path, unfunded.send(&server, &broke).await)
        .await;
    run.record(
        "POST",
        extract_path,
        Submission::extract().request(&server).send().await,
    )
    .await;
    run.record(
        "GET",
        SDK_JOB,
        server
            .get("/api/v1/jobs/999999")
            .with_key(&user)
            .send()
            .await,
    )
    .await;
    run.record(
        "GET",
        SDK_JOB,
        server.get(&format!("/api/v1/jobs/{id}")).send().await,
    )
    .await;
    let long_query = format!("/healthz?q={}", "q".repeat(9_000));
    run.record("GET", "/healthz", server.get(&long_query).send().await)
        .await;
    let mut padded = server.get("/api/v1/credits").with_key(&user);
    for n in 0..5 {
        padded = padded.header(format!("x-padding-{n}"), "p".repeat(8_000));
    }
    run.record("GET", "/api/v1/credits", padded.send().await)
        .await;

    // Retry, cancel and delete.
    let retry = |id: i64| format!("/api/v1/speaker/jobs/{id}/retry");
    let cancel = |id: i64| format!("/api/v1/speaker/jobs/{id}/cancel");
    let retry_path = "/api/v1/speaker/jobs/{id}/retry";
    let cancel_path = "/api/v1/speaker/jobs/{id}/cancel";
    run.record(
        "POST",
        retry_path,
        server.post(&retry(id)).with_key(&user).send().await,
    )
    .await;
    run.record(
        "POST",
        retry_path,
        server.post(&retry(999_999)).with_key(&user).send().await,
    )
    .await;
    run.record(
        "POST",
        cancel_path,
        server.post(&cancel(id)).with_key(&user).send().await,
    )
    .await;
    let second = Submission::diarize()
        .file("sample.wav", sample_bytes())
        .submit(&server, &user)
        .await;
    run.record(
        "POST",
        cancel_path,
        server.post(&cancel(second)).with_key(&user).send().await,
    )
    .await;
    run.record(
        "POST",
        cancel_path,
        server.post(&cancel(999_999)).with_key(&user).send().await,
    )
    .await;
    let failed = server.list(&user, "status=FAILED").await;
    let failed_id = job_id(&failed["items"][0]);
    run.record(
        "POST",
        retry_path,
        server.post(&retry(failed_id)).with_key(&user).send().await,
    )
    .await;
    let cancelled = format!("/api/v1/speaker/jobs/{second}");
    run.record(
        "DELETE",
        JOB,
        server.delete(&cancelled).with_key(&user).send().await,
    )
    .await;
    run.record(
        "DELETE",
        JOB,
        server.delete(&cancelled).with_key(&user).send().await,
    )
    .await;
    run.record(
        "GET",
        JOB,
        server.get(&cancelled).with_key(&user).send().await,
    )
    .await;

    // Webhooks: the secret, its rotation, the deliveries of the job above, a redelivery.
    let secret = "/api/v1/webhooks/secret";
    run.record(
        "GET",
        secret,
        server.get(secret).with_key(&user).send().await,
    )
    .await;
    run.record(
        "POST",
        secret,
        server.post(secret).with_key(&user).send().await,
    )
    .await;
    let deliveries = "/api/v1/webhooks/deliveries";
    let (_, listing) = run
        .record(
            "GET",
            deliveries,
            server.get(deliveries).with_key(&user).send().await,
        )
        .await;
    let delivery = listing["items"][0]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("the completed job's webhook is a delivery: {listing}"));
    let redeliver = "/api/v1/webhooks/deliveries/{id}/redeliver";
    let again = format!("/api/v1/webhooks/deliveries/{delivery}/redeliver");
    run.record(
        "POST",
        redeliver,
        server.post(&again).with_key(&user).send().await,
    )
    .await;
    let unknown = "/api/v1/webhooks/deliveries/999999/redeliver";
    run.record(
        "POST",
        redeliver,
        server.post(unknown).with_key(&user).send().await,
    )
    .await;

    // The live routes' HTTP refusals.
    let stream = "/api/v1/speaker/stream";
    run.record("GET", stream, server.get(stream).send().await)
        .await;
    let events_path = "/api/v1/speaker/stream/{session_id}/events";
    let no_session = "/api/v1/speaker/stream/nope/events";
    run.record("GET", events_path, server.get(no_session).send().await)
        .await;
    run.record(
        "GET",
        events_path,
        server.get(no_session).with_key(&user).send().await,
    )
    .await;
    let whip = "/api/v1/speaker/whip";
    run.record("POST", whip, server.post(whip).send().await)
        .await;
    let not_sdp = server
        .post(whip)
        .with_key(&user)
        .header("content-type", "text/plain");
    run.record("POST", whip, not_sdp.body("v=0").send().await)
        .await;
    let whip_session = "/api/v1/speaker/whip/{session_id}";
    let unknown_session = server.url("/api/v1/speaker/whip/nope");
    let patch = http.patch(&unknown_session).with_key(&user);
    run.record("PATCH", whip_session, patch.send().await).await;
    let delete = http.delete(&unknown_session).with_key(&user);
    run.record("DELETE", whip_session, delete.send().await)
        .await;

    // 429 with Retry-After, from a server that allows one request a minute.
    let limited = Server::start(&["--rate-limit-per-minute", "1"]);
    let limited_user = limited.create_user(1_000);
    for _ in 0..2 {
        let response = limited
            .get("/api/v1/credits")
            .with_key(&limited_user)
            .send()
            .await;
        run.record("GET", "/api/v1/credits", response).await;
        let events = limited.get(no_session).with_key(&limited_user);
        run.record("GET", events_path, events.send().await).await;
        let offer = limited
            .post(whip)
            .with_key(&limited_user)
            .header("content-type", "application/sdp");
        run.record("POST", whip, offer.body("v=0").send().await)
            .await;
    }

    for (method, path, status) in [
        ("POST", extract_path, 200),
        ("POST", extract_path, 401),
        ("POST", extract_path, 402),
        ("POST", diarize_path, 400),
        ("POST", diarize_path, 413),
        ("POST", diarize_path, 422),
        ("GET", SDK_JOB, 200),
        ("GET", SDK_JOB, 404),
        ("GET", FILE, 200),
        ("GET", FILE, 206),
        ("GET", FILE, 403),
        ("GET", FILE, 416),
        ("GET", "/healthz", 414),
        ("GET", "/api/v1/credits", 429),
        ("GET", events_path, 429),
        ("POST", whip, 429),
        ("GET", "/api/v1/credits", 431),
        ("DELETE", JOB, 204),
        ("DELETE", JOB, 404),
        ("POST", retry_path, 400),
        ("POST", cancel_path, 400),
        ("POST", cancel_path, 404),
        ("POST", redeliver, 200),
        ("POST", redeliver, 404),
    ] {
        assert!(
            run.statuses(method, path).contains(&status),
            "the run meant to see {method} {path} -> {status}, saw {:?}",
            run.statuses(method, path)
        );
    }
    check_against_document(&served_document(&server).await, &run);
}

async fn poll_until_completed(server: &Server, user: &User, run: &mut Exchanges, id: i64) -> Value {
    let path = format!("/api/v1/jobs/{id}");
    for _ in 0..1_200 {
        let (status, job) = run
            .record(
                "GET",
                SDK_JOB,
                server.get(&path).with_key(user).send().await,
            )
            .await;
        assert_eq!(status, 200, "polling job {id}: {job}");
        match job["status"].as_str() {
            Some("COMPLETED") => return job,
            Some("PENDING" | "PROCESSING") => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await
            }
            _ => panic!("job {id} should complete: {job:#}"),
        }
    }
    panic!("job {id} did not complete in 5 minutes");
}

/// Runs tests/api/openapi_check.py over the recorded exchanges.
fn check_against_document(document: &Value, run: &Exchanges) {
    let python = project_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs openapi-spec-validator)",
        python.display()
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |name: &str, value: &Value| {
        let file = dir.path().join(name);
        std::fs::write(&file, value.to_string()).expect("write a file for the checker");
        file
    };
    let document = write("openapi.json", document);
    let exchanges = write("exchanges.json", &Value::from(run.0.clone()));
    let checker: &Path = Path::new("tests/api/openapi_check.py");
    let output = Command::new(&python)
        .arg(checker)
        .args([&document, &exchanges])
        .current_dir(project_dir())
        .output()
        .expect("run openapi_check.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{text}");
    assert!(
        output.status.success(),
        "responses that do not match the document:\n{text}"
    );
}
