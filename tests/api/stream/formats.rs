//! The happy paths, one per encoding, and the control messages of a running stream.

use serde_json::json;

use super::checks::{Events, check_completed, check_job, check_ready, stream_and_check};
use super::harness::{
    Auth, ODD_FRAME_BYTES, PLENTY, WsSession, conversation, sample, start_message, with,
};
use crate::server::Server;

#[tokio::test]
async fn a_stream_of_pcm_s16le_gives_events_a_completed_job_and_the_right_speakers() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    stream_and_check(&server, &user, &conversation(), "pcm_s16le").await;
}

#[tokio::test]
async fn a_48_khz_stereo_float_stream_keeps_its_format_in_the_tracks() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    stream_and_check(&server, &user, &conversation(), "pcm_f32le").await;
}

#[tokio::test]
async fn a_stream_of_raw_opus_packets_is_diarized() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    stream_and_check(&server, &user, &sample(), "opus").await;
}

#[tokio::test]
async fn finalize_flushes_final_events_mid_stream_and_keepalive_is_accepted() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let pcm = sample().pcm;
    // The sample's speech starts at 6.7 s; at 12 s a turn (10.6–14.7 s) is under way.
    let (first, second) = (pcm.slice(0.0, 12.0), pcm.slice(12.0, 4.0));
    let latency_ms = 5000;

    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    session.control("keepalive").await;
    let start = with(
        start_message(&pcm, "pcm_s16le"),
        "latency_ms",
        json!(latency_ms),
    );
    let ready = session.start(start).await;
    let job_id = check_ready(&ready, Some(latency_ms));
    session.control("keepalive").await;
    let sent = session.send_audio(&first.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(
        sent,
        first.s16le().len(),
        "the server closed: {}",
        session.summary()
    );
    session.control("keepalive").await;
    session.control("finalize").await;

    // With 5 s of latency no turn could be final past 7 s yet: a final turn reaching the end
    // of the audio sent can only come from the flush.
    let flushed = loop {
        let message = session.next().await.unwrap_or_else(|| {
            panic!(
                "the connection closed ({:?}) after finalize; received: {}",
                session.closed,
                session.summary()
            )
        });
        assert!(
            !matches!(message["type"].as_str(), Some("error" | "completed")),
            "finalize neither fails nor ends the stream: {message}"
        );
        if message["type"] == "speaker"
            && message["final"] == true
            && message["end"]
                .as_f64()
                .is_some_and(|end| end >= first.seconds() - 1.0)
        {
            break message;
        }
    };

    let sent = session.send_audio(&second.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(
        sent,
        second.s16le().len(),
        "the stream goes on after finalize (got {flushed}): {}",
        session.summary()
    );
    let completed = session.end().await;
    let seconds = first.seconds() + second.seconds();
    let events = Events::check(&session.received, seconds);
    check_completed(&completed, &events, job_id, seconds);
    check_job(&server, &user, job_id, (16_000, 1), None).await;
}

/// `"exclusive": true` at start: the finished job's timeline has one speaker at a time.
#[tokio::test]
async fn an_exclusive_stream_finishes_with_one_speaker_at_a_time() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let pcm = sample().pcm;
    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    session
        .start(with(
            start_message(&pcm, "pcm_s16le"),
            "exclusive",
            json!(true),
        ))
        .await;
    session.send_audio(&pcm.s16le(), 32_000).await;
    session.control("end").await;
    let completed = session.until("completed").await;
    let rttm = completed["rttm"].as_str().expect("the completed RTTM");
    let turns = crate::audio::parse_rttm(rttm, "the exclusive stream's RTTM");
    assert!(!turns.is_empty(), "{completed}");
    for (i, a) in turns.iter().enumerate() {
        for b in &turns[i + 1..] {
            let shared = (a.start + a.duration).min(b.start + b.duration) - a.start.max(b.start);
            assert!(
                a.label == b.label || shared < 1e-3,
                "two speakers at once: {a:?} {b:?}"
            );
        }
    }
}
