//! Signed download URLs: byte ranges, tampering and expiry.

use reqwest::Url;

use crate::audio;
use crate::checks::{Outputs, completed_job, download};
use crate::client::{Submission, expect_detail};
use crate::server::Server;

/// A COMPLETED extraction of a short speech clip (it has one track).
async fn finished_clip(server: &Server) -> Outputs {
    let user = server.create_user(1_000_000);
    let id = Submission::extract()
        .file("clip.wav", audio::speech_clip())
        .submit(server, &user)
        .await;
    let outputs = completed_job(server, &user, id, "extraction", audio::SPEECH_CLIP_SECONDS).await;
    assert!(
        !outputs.tracks.is_empty(),
        "the speech clip has a speaker: {outputs:?}"
    );
    outputs
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("the response should carry {name}: {:?}", response.headers()))
        .to_string()
}

#[tokio::test]
async fn downloads_serve_byte_ranges() {
    let server = Server::start(&[]);
    let outputs = finished_clip(&server).await;
    let url = &outputs.tracks[0].1;
    let (_, full) = download(&server, url, "the whole track").await;
    let len = full.len();
    assert!(len > 1000, "a 6 s track is more than 1000 bytes, got {len}");

    let ranges = [
        ("bytes=100-199".to_string(), 100, 200),
        ("bytes=0-0".to_string(), 0, 1),
        (format!("bytes={}-", len - 10), len - 10, len),
        ("bytes=-16".to_string(), len - 16, len),
    ];
    for (range, start, end) in ranges {
        let response = server
            .get(url)
            .header("Range", &range)
            .send()
            .await
            .expect("GET a range");
        assert_eq!(
            response.status().as_u16(),
            206,
            "Range: {range} should get 206"
        );
        assert_eq!(
            header(&response, "content-range"),
            format!("bytes {start}-{}/{len}", end - 1),
            "Content-Range for Range: {range}"
        );
        assert_eq!(
            header(&response, "accept-ranges"),
            "bytes",
            "Accept-Ranges on a 206"
        );
        let body = response.bytes().await.expect("read a range");
        assert_eq!(&body[..], &full[start..end], "the bytes of Range: {range}");
    }

    let past_end = format!("bytes={}-{}", len + 100, len + 200);
    let response = server
        .get(url)
        .header("Range", &past_end)
        .send()
        .await
        .expect("GET a range");
    assert_eq!(
        response.status().as_u16(),
        416,
        "Range: {past_end} is past the end ({len} bytes)"
    );
}

/// The URL with one query parameter changed by `edit`.
fn with_param(url: &str, name: &str, edit: impl Fn(&str) -> Option<String>) -> String {
    let mut url = Url::parse(url).expect("download_url is a URL");
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| {
            if k == name {
                edit(&v).map(|v| (k.into_owned(), v))
            } else {
                Some((k.into_owned(), v.into_owned()))
            }
        })
        .collect();
    assert!(
        url.query_pairs().any(|(k, _)| k == name),
        "download_url should have a {name} parameter: {url}"
    );
    url.query_pairs_mut().clear().extend_pairs(&pairs);
    url.to_string()
}

/// Flips one hex digit.
fn flip_first_char(hex: &str) -> String {
    let mut chars: Vec<char> = hex.chars().collect();
    chars[0] = if chars[0] == '0' { '1' } else { '0' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn tampered_download_signatures_get_403() {
    let server = Server::start(&[]);
    let outputs = finished_clip(&server).await;
    for url in [&outputs.tracks[0].1, &outputs.rttm_url] {
        let tampered = [
            (
                "a flipped signature digit",
                with_param(url, "signature", |s| Some(flip_first_char(s))),
            ),
            ("no signature", with_param(url, "signature", |_| None)),
            (
                "a later expiry under the old signature",
                with_param(url, "expires", |e| {
                    Some((e.parse::<u64>().expect("expires is unix time") + 3600).to_string())
                }),
            ),
        ];
        for (what, bad) in tampered {
            let response = server.get(&bad).send().await;
            expect_detail(response, 403, &format!("download with {what}: {bad}")).await;
        }
        let this_job = format!("/api/v1/files/{}/", outputs.id);
        assert!(
            url.contains(&this_job),
            "download_url should contain {this_job}: {url}"
        );
        let other_file = url.replacen(&this_job, &format!("/api/v1/files/{}/", outputs.id + 1), 1);
        let response = server
            .get(&other_file)
            .send()
            .await
            .expect("GET another job's file");
        let status = response.status().as_u16();
        assert!(
            status == 403 || status == 404,
            "a signature is for one file only; {other_file} got {status}"
        );
        download(&server, url, "the untouched URL still works").await;
    }
}

#[tokio::test]
async fn an_expired_download_url_gets_410() {
    let server = Server::start(&["--download-ttl-seconds", "1"]);
    let outputs = finished_clip(&server).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for url in [&outputs.tracks[0].1, &outputs.rttm_url] {
        let response = server.get(url).send().await;
        expect_detail(
            response,
            410,
            &format!("a download_url 3 s after its 1 s TTL: {url}"),
        )
        .await;
    }
}

/// The job as a client at `from` sees it, with extra request headers.
async fn job_seen_from(
    server: &Server,
    key: &str,
    id: i64,
    from: &str,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let client = reqwest::Client::builder()
        .no_proxy()
        .local_address(from.parse::<std::net::IpAddr>().expect("an address"))
        .build()
        .expect("a client");
    let mut request = client
        .get(server.url(&format!("/api/v1/jobs/{id}")))
        .header("X-API-Key", key);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    crate::client::expect_json(request.send().await, 200, "GET the job").await
}

/// Links follow `X-Forwarded-Proto` / `Forwarded` only from a `--trusted-proxies` peer
/// (here 127.0.0.2); from anyone else (127.0.0.1) they are ignored.
#[tokio::test]
async fn links_follow_forwarded_headers_from_trusted_proxies_only() {
    let server = Server::start(&["--trusted-proxies", "127.0.0.2/32"]);
    let user = server.create_user(1_000_000);
    let id = Submission::extract()
        .file("clip.wav", audio::speech_clip())
        .submit(&server, &user)
        .await;
    server.wait_for_status(&user, id, "COMPLETED").await;
    let rttm_url = |job: &serde_json::Value| {
        job["result"]["rttm_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let x_forwarded = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "api.example"),
    ];
    let forwarded = [("Forwarded", "for=203.0.113.9;proto=https;host=edge.example")];

    let job = job_seen_from(&server, &user.key, id, "127.0.0.2", &x_forwarded).await;
    assert!(
        rttm_url(&job).starts_with("https://api.example/api/v1/files/"),
        "{job}"
    );
    let job = job_seen_from(&server, &user.key, id, "127.0.0.2", &forwarded).await;
    assert!(
        rttm_url(&job).starts_with("https://edge.example/api/v1/files/"),
        "{job}"
    );

    let own = format!("{}/api/v1/files/", server.base);
    for headers in [&x_forwarded[..], &forwarded[..]] {
        let job = job_seen_from(&server, &user.key, id, "127.0.0.1", headers).await;
        assert!(
            rttm_url(&job).starts_with(&own),
            "an untrusted peer's {headers:?}: {job}"
        );
    }
}

#[tokio::test]
async fn links_use_the_public_url_whatever_the_request_says() {
    let server = Server::start(&[
        "--public-url",
        "https://diarize.example/",
        "--trusted-proxies",
        "127.0.0.0/8",
    ]);
    let user = server.create_user(1_000_000);
    let id = Submission::extract()
        .file("clip.wav", audio::speech_clip())
        .submit(&server, &user)
        .await;
    server.wait_for_status(&user, id, "COMPLETED").await;
    let job = job_seen_from(
        &server,
        &user.key,
        id,
        "127.0.0.1",
        &[
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "other.example"),
        ],
    )
    .await;
    let url = job["result"]["rttm_url"].as_str().unwrap_or_default();
    assert!(
        url.starts_with("https://diarize.example/api/v1/files/"),
        "{job}"
    );
}
