//! The API's errors: 400, 402, 413, 422 and 429, each with a `{detail}` body.

use crate::audio::{self, credits_for, sample_seconds};
use crate::client::{Submission, WithKey, expect_detail, expect_json};
use crate::jobs::failed_upload;
use crate::server::Server;

#[tokio::test]
async fn invalid_submissions_get_400_and_create_no_job() {
    let server = Server::start(&[]);
    let user = server.create_user(1_000_000);
    let before = server.balance(&user).await;
    let sample = || audio::sample_bytes();

    for endpoint in [Submission::extract(), Submission::diarize()] {
        let upload = endpoint.clone().file("sample.wav", sample());
        let cases = [
            (
                "no file and no url (multipart)",
                endpoint.clone().multipart().field("num_speakers", "2"),
            ),
            ("no file and no url (empty form)", endpoint.clone()),
            (
                "both a file and a url",
                upload.clone().field("url", "http://127.0.0.1:9/a.wav"),
            ),
            (
                "num_speakers=0 in the query",
                upload.clone().query("num_speakers", "0"),
            ),
            (
                "num_speakers=abc in the query",
                upload.clone().query("num_speakers", "abc"),
            ),
            (
                "num_speakers=0 in the form",
                upload.clone().field("num_speakers", "0"),
            ),
            (
                "num_speakers=abc in the form",
                upload.clone().field("num_speakers", "abc"),
            ),
            (
                "num_speakers=-1",
                upload.clone().query("num_speakers", "-1"),
            ),
            (
                "num_speakers=2.5",
                upload.clone().query("num_speakers", "2.5"),
            ),
            (
                "min_speakers > max_speakers",
                upload
                    .clone()
                    .query("min_speakers", "3")
                    .query("max_speakers", "2"),
            ),
            (
                "an ftp:// url",
                endpoint.clone().url("ftp://127.0.0.1/sample.wav"),
            ),
            ("a file:// url", endpoint.clone().url("file:///etc/passwd")),
            ("a url that is not a URL", endpoint.clone().url("not a url")),
        ];
        for (what, submission) in cases {
            let what = format!("POST {}: {what}", submission.path());
            expect_detail(submission.send(&server, &user).await, 400, &what).await;
        }
    }

    let listing = server.list(&user, "").await;
    assert_eq!(listing["total"], 0, "a 400 creates no job: {listing:#}");
    assert_eq!(server.balance(&user).await, before, "a 400 costs nothing");
}

#[tokio::test]
async fn insufficient_credits_get_402_with_required_and_available() {
    let server = Server::start(&[]);
    let user = server.create_user(10);

    for submission in [Submission::extract(), Submission::diarize()] {
        let response = submission
            .file("sample.wav", audio::sample_bytes())
            .send(&server, &user)
            .await;
        let detail = expect_detail(response, 402, "an upload costing more than the balance").await;
        let required = credits_for(sample_seconds());
        assert_eq!(
            detail,
            format!("Insufficient credits for processing. Required: {required}, Available: 10"),
            "the 402 detail names what the job needs and what the user has"
        );
    }
    assert_eq!(
        server.balance(&user).await,
        10,
        "a refused job reserves nothing"
    );
}

#[tokio::test]
async fn the_rate_limit_is_per_key_and_endpoint_with_headers() {
    let server = Server::start(&["--rate-limit-per-minute", "5"]);
    let alice = server.create_user(1_000);
    let bob = server.create_user(1_000);

    for n in 1..=5 {
        let response = server.get("/api/v1/credits").with_key(&alice).send().await;
        expect_json(
            response,
            200,
            &format!("request {n} of 5 allowed per minute"),
        )
        .await;
    }
    let response = server
        .get("/api/v1/credits")
        .with_key(&alice)
        .send()
        .await
        .expect("GET /api/v1/credits a sixth time");
    let header = |name: &str| -> u64 {
        let value = response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("a 429 carries a {name} header: {:?}", response.headers()));
        value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!("{name} should be a whole number of seconds/requests: {value:?}")
            })
    };
    assert_eq!(
        header("ratelimit-limit"),
        5,
        "RateLimit-Limit is the configured limit"
    );
    assert_eq!(
        header("ratelimit-remaining"),
        0,
        "RateLimit-Remaining when limited"
    );
    header("ratelimit-reset");
    assert!(
        header("retry-after") >= 1,
        "Retry-After should ask to wait at least a second"
    );
    let detail = expect_detail(Ok(response), 429, "the sixth request within a minute").await;
    assert_eq!(detail, "Rate limit exceeded. Try again later.");

    let response = server
        .get("/api/v1/speaker/jobs")
        .with_key(&alice)
        .send()
        .await;
    expect_json(response, 200, "another endpoint, same key: its own budget").await;
    let response = server.get("/api/v1/credits").with_key(&bob).send().await;
    expect_json(
        response,
        200,
        "same endpoint, another user: their own budget",
    )
    .await;
}

#[tokio::test]
async fn an_upload_over_the_maximum_gets_413_and_the_server_carries_on() {
    let server = Server::start(&["--max-upload-bytes", "100000"]);
    let user = server.create_user(1_000_000);
    let before = server.balance(&user).await;
    let sample = audio::sample_bytes();
    assert!(
        sample.len() > 100_000,
        "the sample must exceed the limit for this test"
    );

    let response = Submission::extract()
        .file("sample.wav", sample)
        .send(&server, &user)
        .await;
    expect_detail(response, 413, "an upload over --max-upload-bytes").await;

    let health = server.get("/healthz").send().await;
    expect_json(health, 200, "GET /healthz after a 413").await;
    let listing = server.list(&user, "").await;
    assert_eq!(listing["total"], 0, "a 413 creates no job: {listing:#}");
    assert_eq!(server.balance(&user).await, before, "a 413 costs nothing");

    let small = audio::clip(6.0, 2.0);
    assert!(small.len() < 100_000, "a 2 s clip fits under the limit");
    Submission::extract()
        .file("small.wav", small)
        .submit(&server, &user)
        .await;
}

#[tokio::test]
async fn undecodable_uploads_get_422_and_a_failed_job_with_no_charge() {
    let server = Server::start(&[]);
    let user = server.create_user(1_000_000);
    let before = server.balance(&user).await;

    let files = [
        ("notes.wav", audio::not_audio()),
        ("broken.wav", audio::broken_wav()),
    ];
    for (name, bytes) in files {
        let job = failed_upload(&server, &user, name, bytes).await;
        assert_eq!(job["status"], "FAILED", "{job}");
        assert!(
            job["credits_used"].is_null() || job["credits_used"] == 0,
            "a FAILED job charges nothing: {job}"
        );
    }
    let listing = server.list(&user, "status=FAILED").await;
    assert_eq!(
        listing["total"], 2,
        "both failures are recorded: {listing:#}"
    );
    assert_eq!(server.balance(&user).await, before, "422s cost nothing");
}

/// A `/proc/<pid>/status` figure in kB (`VmRSS`, `VmHWM`).
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// One chunk of a `Transfer-Encoding: chunked` body.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

#[tokio::test]
async fn a_600_mb_url_field_gets_413_before_the_server_buffers_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const FIELD_BYTES: usize = 600 << 20;
    const PIECE_BYTES: usize = 1 << 20;
    let server = Server::start(&[]);
    let user = server.create_user(1_000_000);
    let pid = server.pid();
    // Writing 5 to clear_refs resets the peak (VmHWM) to the current RSS, so the
    // peak read afterwards is the peak of this request alone.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the server's peak RSS");
    let before_kb = proc_status_kb(pid, "VmRSS");

    let socket = tokio::net::TcpStream::connect(server.socket_addr())
        .await
        .expect("connect to the server");
    let (mut reader, mut writer) = socket.into_split();
    let boundary = "whospoke-test-boundary";
    let head = format!(
        "POST /api/v1/speaker/extract HTTP/1.1\r\nHost: {}\r\nX-API-Key: {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        server.socket_addr(),
        user.key
    );
    let part = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"url\"\r\n\r\nhttp://example.com/"
    );
    // The client streams the field until the server stops reading.
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(&chunk(part.as_bytes())).await?;
        let piece = chunk(&vec![b'a'; PIECE_BYTES]);
        for _ in 0..FIELD_BYTES / PIECE_BYTES {
            writer.write_all(&piece).await?;
        }
        std::io::Result::Ok(())
    });

    let mut response = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let body = loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break None,
            Ok(read) => response.extend_from_slice(&buffer[..read]),
        }
        let text = String::from_utf8_lossy(&response);
        if let Some((_, body)) = text.split_once("\r\n\r\n")
            && let Ok(body) = serde_json::from_str::<serde_json::Value>(body)
        {
            break Some(body);
        }
    };
    let peak_kb = proc_status_kb(pid, "VmHWM");
    let _ = sender.await;

    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 413"),
        "a 600 MB url field is refused with 413: {text}"
    );
    let detail = body
        .as_ref()
        .and_then(|b| b["detail"].as_str())
        .unwrap_or_default();
    assert!(
        detail.contains("url") && detail.contains("8192 bytes"),
        "the detail names the field and its limit: {detail:?}"
    );
    let grown_mb = peak_kb.saturating_sub(before_kb) / 1024;
    assert!(
        grown_mb < 50,
        "the server's RSS peaked {grown_mb} MB above its {} MB before the request",
        before_kb / 1024
    );
}

#[tokio::test]
async fn oversize_query_strings_and_headers_are_refused_with_their_limit() {
    let server = Server::start(&[]);
    let user = server.create_user(1_000);

    let long_query = format!("/api/v1/speaker/jobs?status={}", "A".repeat(9_000));
    let response = server.get(&long_query).with_key(&user).send().await;
    let detail = expect_detail(response, 414, "a 9 kB query string").await;
    assert!(detail.contains("8192 bytes"), "{detail}");

    let mut request = server.get("/api/v1/credits").with_key(&user);
    for n in 0..5 {
        request = request.header(format!("x-padding-{n}"), "p".repeat(8_000));
    }
    let detail = expect_detail(request.send().await, 431, "40 kB of headers").await;
    assert!(detail.contains("32768 bytes"), "{detail}");

    let response = server.get("/api/v1/credits").with_key(&user).send().await;
    expect_json(response, 200, "an ordinary request afterwards").await;
}

/// 200 requests with a bad key from one address: 401 while its budget lasts, 429 after,
/// even for a good key; another address still gets its 401.
#[tokio::test]
async fn floods_from_one_address_get_429_before_authentication() {
    const PER_MINUTE: usize = 100;
    let server = Server::start(&["--ip-rate-limit-per-minute", &PER_MINUTE.to_string()]);
    let user = server.create_user(1_000);
    let bad = crate::server::User {
        id: user.id.clone(),
        key: "ap_not-a-key".into(),
    };

    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..200 {
        let response = server.get("/api/v1/credits").with_key(&bad).send().await;
        statuses.push(response.expect("GET /api/v1/credits").status().as_u16());
    }
    // The budget refills one request per 60/PER_MINUTE s while the flood runs.
    let refilled = (started.elapsed().as_secs_f64() * PER_MINUTE as f64 / 60.0).ceil() as usize;
    assert!(
        statuses[..PER_MINUTE].iter().all(|&s| s == 401),
        "the first {PER_MINUTE} bad keys get 401: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 401 || s == 429),
        "{statuses:?}"
    );
    let unauthorized = statuses.iter().filter(|&&s| s == 401).count();
    assert!(
        unauthorized <= PER_MINUTE + refilled,
        "{unauthorized} 401s, more than the budget {PER_MINUTE} plus {refilled} refilled: {statuses:?}"
    );

    // Of two requests in a row one may use a refill, not both.
    let mut limited = None;
    for _ in 0..2 {
        let response = server.get("/api/v1/credits").with_key(&user).send().await;
        let response = response.expect("GET /api/v1/credits with a good key");
        if response.status() == 429 {
            limited = Some(expect_detail(Ok(response), 429, "a good key, flooding address").await);
            break;
        }
    }
    let detail = limited.expect("a good key from the flooding address gets 429 too");
    assert!(detail.contains("from your address"), "{detail}");

    let elsewhere = reqwest::Client::builder()
        .no_proxy()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().expect("an address"))
        .build()
        .expect("a client");
    let response = elsewhere
        .get(server.url("/api/v1/credits"))
        .with_key(&bad)
        .send()
        .await;
    expect_detail(response, 401, "a bad key from another address").await;
}
