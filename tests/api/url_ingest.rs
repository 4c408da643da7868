//! URL sources: direct media URLs, the private-address guard, platform pages without yt-dlp.

use crate::audio::{self, sample_frames, sample_seconds};
use crate::checks::{check_created, check_downloads, completed_job};
use crate::client::{Submission, expect_json, job_id};
use crate::media::MediaServer;
use crate::server::{Server, User};

/// POSTs the url form and returns either the 400 detail or the FAILED job's error_message:
/// a refused URL may be refused up front or fail as a job.
async fn refusal(server: &Server, user: &User, url: &str) -> String {
    let response = Submission::extract().url(url).send(server, user).await;
    let response = response.unwrap_or_else(|e| panic!("POST url={url}: the request failed: {e}"));
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    match status {
        400 => body["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("a 400 body is {{detail}}: {body}"))
            .to_string(),
        200 => {
            let job = server.wait_for_status(user, job_id(&body), "FAILED").await;
            job["error_message"]
                .as_str()
                .unwrap_or_else(|| panic!("a FAILED job has an error_message: {job}"))
                .to_string()
        }
        other => {
            panic!("url={url} should be refused with 400 or a FAILED job, got {other}: {body}")
        }
    }
}

#[tokio::test]
async fn a_direct_media_url_is_downloaded_and_processed() {
    let media = MediaServer::serve("sample.wav", audio::sample_bytes()).await;
    let server = Server::start(&[]);
    let user = server.create_user(1_000_000);
    let before = server.balance(&user).await;

    let response = Submission::extract()
        .url(&media.url)
        .send(&server, &user)
        .await;
    let created = expect_json(response, 200, &format!("POST extract url={}", media.url)).await;
    check_created(&created, "extraction", &user);
    let extraction = completed_job(
        &server,
        &user,
        job_id(&created),
        "extraction",
        sample_seconds(),
    )
    .await;
    assert_eq!(
        extraction.labels.len(),
        2,
        "the sample has two speakers: {extraction:?}"
    );
    check_downloads(&server, &extraction, sample_frames()).await;

    let id = Submission::diarize()
        .url(&media.url)
        .field("num_speakers", "2")
        .submit(&server, &user)
        .await;
    let diarization = completed_job(&server, &user, id, "diarization", sample_seconds()).await;
    assert_eq!(
        diarization.labels.len(),
        2,
        "num_speakers=2 in the url form: {diarization:?}"
    );

    assert!(
        media.requests() >= 2,
        "the server fetched the URL for each job"
    );
    assert_eq!(
        server.balance(&user).await,
        before - extraction.credits_used - diarization.credits_used,
        "URL jobs are charged like uploads"
    );
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let media = MediaServer::serve("sample.wav", audio::sample_bytes()).await;
    let server = Server::start_with(false, &[], &[]);
    let user = server.create_user(1_000_000);
    let before = server.balance(&user).await;

    let message = refusal(&server, &user, &media.url).await.to_lowercase();
    assert!(
        ["private", "loopback", "local"]
            .iter()
            .any(|word| message.contains(word)),
        "refusing {} should say the address is private/loopback, got {message:?}",
        media.url
    );
    assert_eq!(
        media.requests(),
        0,
        "the guard must refuse before connecting"
    );
    assert_eq!(
        server.balance(&user).await,
        before,
        "a refused URL costs nothing"
    );
}

#[tokio::test]
async fn platform_pages_need_yt_dlp() {
    // An empty PATH: whatever is installed here, the server cannot find yt-dlp.
    let empty = tempfile::tempdir().expect("an empty directory");
    let path = empty.path().to_str().expect("a UTF-8 path");
    let server = Server::start_with(true, &[], &[("PATH", path)]);
    let user = server.create_user(1_000_000);
    let before = server.balance(&user).await;

    let message = refusal(
        &server,
        &user,
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
    )
    .await;
    assert!(
        message.contains("yt-dlp"),
        "a YouTube URL without yt-dlp should fail naming yt-dlp, got {message:?}"
    );
    assert_eq!(
        server.balance(&user).await,
        before,
        "a failed URL job costs nothing"
    );
}

/// An HLS playlist naming a media file on the server's own disk, by URL and by upload:
/// refused as a playlist, and the message shows no path.
#[tokio::test]
async fn hls_playlists_are_refused_by_format_without_paths() {
    let on_server = crate::server::project_dir().join("tests/data/sample.wav");
    let playlist = format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:30\n#EXTINF:30,\nfile:{}\n#EXT-X-ENDLIST\n",
        on_server.display()
    );
    let media = MediaServer::serve("list.m3u8", playlist.clone().into_bytes()).await;
    let server = Server::start(&[]);
    let user = server.create_user(1_000_000);
    let before = server.balance(&user).await;

    let by_url = refusal(&server, &user, &media.url).await;
    let job = crate::jobs::failed_upload(&server, &user, "list.m3u8", playlist.into_bytes()).await;
    let by_upload = job["error_message"].as_str().unwrap_or_default().to_owned();
    for (how, message) in [("url", by_url), ("upload", by_upload)] {
        assert!(
            message.contains("HLS playlists (m3u8) are not supported"),
            "a playlist by {how} is refused naming the format: {message:?}"
        );
        assert!(
            !message.contains('/'),
            "a playlist by {how} is refused without a path: {message:?}"
        );
    }
    assert_eq!(server.balance(&user).await, before, "refusals cost nothing");
}

/// A server in the default (strict) mode that trusts one private address, 127.0.0.2,
/// where a page redirects to the media on 127.0.0.1: the redirect is refused before
/// anything connects to 127.0.0.1.
#[tokio::test]
async fn a_redirect_to_loopback_is_refused_in_strict_mode() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let media = MediaServer::serve("sample.wav", audio::sample_bytes()).await;
    let redirector = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let first_hop = format!(
        "http://{}/talk.wav",
        redirector.local_addr().expect("the redirector's address")
    );
    let location = media.url.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = redirector.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let answer = format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    let server = Server::start_with(false, &["--allow-url-address", "127.0.0.2"], &[]);
    let user = server.create_user(1_000_000);

    let message = refusal(&server, &user, &first_hop).await;
    assert_eq!(
        message,
        "address 127.0.0.1 is private; URL ingestion from private networks is disabled"
    );
    assert_eq!(media.requests(), 0, "nothing connected to 127.0.0.1");
}
