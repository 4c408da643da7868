//! Several sessions at once, and watching a session from outside it.

use serde_json::Value;

use super::checks::{Events, check_completed, check_job, check_ready};
use super::harness::{
    Auth, MESSAGE_TIMEOUT, ODD_FRAME_BYTES, PLENTY, WsSession, sample, start_message, whole_stream,
};
use crate::checks::{expect_not_found, listed_ids};
use crate::client::WithKey;
use crate::server::Server;
use crate::whip::{check_feed, watch_both};

#[tokio::test]
async fn concurrent_sessions_of_two_users_stay_isolated() {
    let server = Server::start(&[]);
    let (alice, bob) = (server.create_user(PLENTY), server.create_user(PLENTY));
    let pcm = sample().pcm;
    let (alice_audio, bob_audio) = (pcm.slice(0.0, 12.0), pcm.slice(12.0, 18.0));

    let ((alice_ready, alice_done, alice_messages), (bob_ready, bob_done, bob_messages)) = tokio::join!(
        whole_stream(&server, &alice, &alice_audio),
        whole_stream(&server, &bob, &bob_audio)
    );
    let alice_job = check_ready(&alice_ready, None);
    let bob_job = check_ready(&bob_ready, None);
    assert_ne!(alice_job, bob_job, "two sessions, two jobs");
    assert_ne!(
        alice_ready["session_id"], bob_ready["session_id"],
        "two sessions, two session ids"
    );
    for (who, audio, ready, done, messages, job) in [
        (
            "alice",
            &alice_audio,
            &alice_ready,
            &alice_done,
            &alice_messages,
            alice_job,
        ),
        (
            "bob",
            &bob_audio,
            &bob_ready,
            &bob_done,
            &bob_messages,
            bob_job,
        ),
    ] {
        let events = Events::check(messages, audio.seconds());
        check_completed(done, &events, job, audio.seconds());
        assert!(
            messages
                .iter()
                .filter(|m| m["session_id"].is_string())
                .all(|m| m["session_id"] == ready["session_id"]),
            "{who} only gets messages of its own session"
        );
    }

    check_job(&server, &alice, alice_job, (16_000, 1), None).await;
    check_job(&server, &bob, bob_job, (16_000, 1), None).await;
    expect_not_found(&server, &alice, bob_job).await;
    expect_not_found(&server, &bob, alice_job).await;
    assert_eq!(
        listed_ids(&server.list(&alice, "").await),
        vec![alice_job],
        "alice lists only her job"
    );
    assert_eq!(
        listed_ids(&server.list(&bob, "").await),
        vec![bob_job],
        "bob lists only his job"
    );
}

#[tokio::test]
async fn the_owner_can_watch_a_websocket_session_over_sse_and_websocket() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let stranger = server.create_user(PLENTY);
    let audio = sample().pcm;
    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    let ready = session.start(start_message(&audio, "pcm_s16le")).await;
    let session_id = ready["session_id"]
        .as_str()
        .expect("a session id")
        .to_owned();
    let feed = format!("/api/v1/speaker/stream/{session_id}/events");

    let http = reqwest::Client::new();
    let status = |response: reqwest::Result<reqwest::Response>| {
        response.expect("the events endpoint answers").status()
    };
    assert_eq!(status(http.get(server.url(&feed)).send().await), 401);
    let as_stranger = http.get(server.url(&feed)).with_key(&stranger).send().await;
    assert_eq!(status(as_stranger), 404, "another user's session");
    let unknown = "/api/v1/speaker/stream/no-such-session/events";
    assert_eq!(
        status(http.get(server.url(unknown)).with_key(&user).send().await),
        404
    );

    let (sse, ws) = watch_both(&server, &feed, &user.key).await;
    let sent = session.send_audio(&audio.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(sent, audio.s16le().len(), "{}", session.summary());
    let completed = session.end().await;
    for (what, watcher) in [("SSE", sse), ("WebSocket feed", ws)] {
        let messages = tokio::time::timeout(MESSAGE_TIMEOUT, watcher)
            .await
            .unwrap_or_else(|_| panic!("the {what} closes after completed"))
            .expect("the watcher task");
        check_feed(what, &messages, &session_id, &completed);
        let spoken = |messages: &[Value]| {
            messages
                .iter()
                .filter(|m| m["type"] == "speaker" && m["final"] == true)
                .count()
        };
        assert_eq!(
            spoken(&messages),
            spoken(&session.received),
            "{what} sees every final event the client saw"
        );
    }
}
