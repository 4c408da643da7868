//! Streams that end without `end`: oversized frames and messages, a dropped connection,
//! running out of credits; and a full node's readiness.

use serde_json::Value;

use super::checks::{DURATION_TOLERANCE_SECONDS, check_job, check_ready, number};
use super::harness::{Auth, ODD_FRAME_BYTES, PLENTY, WsSession, sample, start_message, start_s16};
use crate::audio::credits_for;
use crate::server::Server;

/// The server's default limit on one binary frame.
const MAX_FRAME_BYTES: usize = 1 << 20;

// ----- ends that are not `end` ----------------------------------------------------------------

#[tokio::test]
async fn oversized_frames_close_1009_and_the_audio_before_them_is_finalized() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let pcm = sample().pcm;
    let before = pcm.slice(6.0, 8.0);

    // Just over the limit, and far over it (where a protocol layer may cut the frame off).
    for frame_bytes in [MAX_FRAME_BYTES + 2, 4 * MAX_FRAME_BYTES] {
        let what = format!("a frame of {frame_bytes} bytes");
        let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
        let job_id = check_ready(&session.start(start_message(&pcm, "pcm_s16le")).await, None);
        let sent = session.send_audio(&before.s16le(), ODD_FRAME_BYTES).await;
        assert_eq!(sent, before.s16le().len(), "{what}: {}", session.summary());
        let huge: Vec<u8> = pcm.s16le().into_iter().cycle().take(frame_bytes).collect();
        // The send itself may fail if the server closes while the frame is still going out.
        let _ = session.send_binary(&huge).await;
        session
            .expect_error("frame_too_large", &[1009], &what)
            .await;

        let job = check_job(&server, &user, job_id, (16_000, 1), None).await;
        let duration = number(&job, "duration_seconds");
        assert!(
            (duration - before.seconds()).abs() <= DURATION_TOLERANCE_SECONDS,
            "{what}: job {job_id} holds the {} s sent before the oversized frame, no more and \
             no less; duration_seconds {duration}",
            before.seconds()
        );
    }
}

/// Text messages are capped before they are parsed: an oversize `start` is refused, and
/// an oversize message mid-stream ends the session with what was received finalized.
#[tokio::test]
async fn oversize_text_messages_close_1009() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let pcm = sample().pcm;
    let padding = " ".repeat(5_000);

    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    let mut start = start_message(&pcm, "pcm_s16le").to_string();
    start.push_str(&padding);
    let _ = session.send_text(&start).await;
    let error = session
        .expect_error("message_too_large", &[1009], "a 5 kB start")
        .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("4096 bytes"),
        "the message names the limit: {error}"
    );

    let before = pcm.slice(6.0, 8.0);
    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    let job_id = check_ready(&session.start(start_message(&pcm, "pcm_s16le")).await, None);
    let sent = session.send_audio(&before.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(sent, before.s16le().len(), "{}", session.summary());
    let _ = session
        .send_text(&format!("{{\"type\":\"keepalive\"}}{padding}"))
        .await;
    session
        .expect_error("message_too_large", &[1009], "a 5 kB keepalive")
        .await;
    let job = check_job(&server, &user, job_id, (16_000, 1), None).await;
    let duration = number(&job, "duration_seconds");
    assert!(
        (duration - before.seconds()).abs() <= DURATION_TOLERANCE_SECONDS,
        "the job holds the audio sent before the oversize message: {duration} s"
    );
}

#[tokio::test]
async fn a_dropped_connection_still_finalizes_everything_received() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let balance = server.balance(&user).await;
    let audio = sample().pcm.slice(0.0, 20.0);

    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    let job_id = check_ready(
        &session.start(start_message(&audio, "pcm_s16le")).await,
        None,
    );
    let sent = session.send_audio(&audio.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(sent, audio.s16le().len(), "{}", session.summary());
    session.drop_connection();

    let job = check_job(&server, &user, job_id, (16_000, 1), None).await;
    let duration = number(&job, "duration_seconds");
    assert!(
        (duration - audio.seconds()).abs() <= DURATION_TOLERANCE_SECONDS,
        "job {job_id}: all {} s received before the drop are finalized; duration_seconds {duration}",
        audio.seconds()
    );
    let speakers = job["result"]["speakers"].as_array().map_or(0, Vec::len);
    assert!(
        speakers >= 2,
        "both speakers of the first 20 s are in the job: {job:#}"
    );
    let credits_used = job["credits_used"]
        .as_i64()
        .unwrap_or_else(|| panic!("credits_used should be an integer: {job}"));
    assert_eq!(credits_used, credits_for(duration), "job {job_id}: {job}");
    assert_eq!(
        server.balance(&user).await,
        balance - credits_used,
        "a dropped stream is charged what it used"
    );
}

// ----- credits -------------------------------------------------------------------------------

#[tokio::test]
async fn running_out_of_credits_ends_the_stream_with_4402_and_finalizes_it() {
    let server = Server::start(&[]);
    let allowed_seconds = 10.0;
    let credits = credits_for(allowed_seconds);
    let user = server.create_user(credits as u64);
    let audio = sample().pcm;

    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    let job_id = check_ready(
        &session.start(start_message(&audio, "pcm_s16le")).await,
        None,
    );
    // Sends stop being accepted once the server closes.
    session.send_audio(&audio.s16le(), ODD_FRAME_BYTES).await;
    session
        .expect_error(
            "credits_exhausted",
            &[4402],
            "30 s streamed with credits for 10 s",
        )
        .await;

    let job = server.wait_for_status(&user, job_id, "COMPLETED").await;
    assert_eq!(job["job_type"], "stream", "{job:#}");
    let duration = number(&job, "duration_seconds");
    assert!(
        duration <= allowed_seconds + 1e-6,
        "job {job_id}: the credits paid for {allowed_seconds} s, the job holds {duration} s"
    );
    assert!(
        duration >= allowed_seconds - 1.0,
        "job {job_id}: the stream should get (nearly) all {allowed_seconds} s it can pay for, \
         it holds {duration} s"
    );
    let credits_used = job["credits_used"]
        .as_i64()
        .unwrap_or_else(|| panic!("credits_used should be an integer: {job}"));
    assert!(
        credits_used <= credits,
        "job {job_id}: charged {credits_used} of {credits} credits"
    );
    let balance = server.balance(&user).await;
    assert!(balance >= 0, "the balance never goes negative: {balance}");
    assert_eq!(
        balance,
        credits - credits_used,
        "the balance drops by exactly credits_used"
    );
    check_job(&server, &user, job_id, (16_000, 1), None).await;
}

#[tokio::test]
async fn a_user_without_credits_cannot_start_a_stream() {
    let server = Server::start(&[]);
    let user = server.create_user(0);
    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    session
        .send_json(&start_s16(16_000, 1))
        .await
        .expect("send start");
    session
        .expect_error("insufficient_credits", &[4402], "a start with 0 credits")
        .await;
    assert_eq!(server.balance(&user).await, 0, "nothing is charged");
    let listing = server.list(&user, "").await;
    assert_eq!(
        listing["total"], 0,
        "a refused start makes no job: {listing:#}"
    );
}

// ----- readiness -----------------------------------------------------------------------------

/// A load balancer reads `/readyz`: 503 while the node holds `--live-max-sessions`
/// sessions, ready again once one ends.
#[tokio::test]
async fn readiness_is_503_while_the_node_is_full() {
    let server = Server::start(&["--live-max-sessions", "1"]);
    let user = server.create_user(PLENTY);
    let ready = || async {
        let response = server.get("/readyz").send().await.expect("GET /readyz");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("readyz JSON"))
    };
    assert_eq!(ready().await.0, 200);
    let pcm = sample().pcm;
    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    session.start(start_message(&pcm, "pcm_s16le")).await;
    let (status, body) = ready().await;
    assert_eq!(status, 503, "full: {body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("full")),
        "{body}"
    );
    session.send_audio(&pcm.slice(0.0, 2.0).s16le(), 3200).await;
    session.control("end").await;
    session.until("completed").await;
    // The slot is given back just after `completed` is sent.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, body) = ready().await;
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a session ended, the node takes streams again: {status} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
