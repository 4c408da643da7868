//! Who may stream: every way to authenticate, bad credentials, stream tokens, and
//! the start messages refused before any audio.

use std::time::Duration;

use serde_json::{Value, json};

use super::checks::{check_ready, job_id_of};
use super::harness::{
    Auth, ODD_FRAME_BYTES, PLENTY, Pcm, TOKEN_PATH, WsSession, hs256, now, sample, start_message,
    start_s16, stream_token, with,
};
use crate::client::expect_json;
use crate::server::{Server, User};

/// Stream tokens live this long in the auth test: long enough to use one at once, short
/// enough to wait for one to expire.
const STREAM_TOKEN_TTL: Duration = Duration::from_secs(5);
const HS256_SECRET: &str = "whospoke-test-secret-that-is-long-enough-for-hs256";

/// Authenticates with `auth`, streams a second of speech, and checks the job is `user`'s.
async fn expect_accepted(server: &Server, user: &User, auth: Auth<'_>, speech: &Pcm) {
    let mut session = WsSession::connect(server, auth).await;
    let ready = session.start(start_message(speech, "pcm_s16le")).await;
    let job_id = check_ready(&ready, None);
    let sent = session.send_audio(&speech.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(
        sent,
        speech.s16le().len(),
        "{auth:?}: {}",
        session.summary()
    );
    let completed = session.end().await;
    assert_eq!(job_id_of(&completed), job_id, "{auth:?}: {completed}");
    let job = server.wait_for_status(user, job_id, "COMPLETED").await;
    assert_eq!(job["job_type"], "stream", "{auth:?}: {job}");
}

/// The contract for bad credentials: the upgrade succeeds, then an `unauthorized` error frame
/// and a 1008 close, also for a client that sends its start message at once (as browsers do).
/// `Err` says what happened instead.
async fn refusal(server: &Server, auth: Auth<'_>) -> Result<(), String> {
    let mut session = WsSession::try_connect(server, auth)
        .await
        .map_err(|e| format!("the upgrade was refused: {e}"))?;
    let _ = session.send_json(&start_s16(16_000, 1)).await;
    let closed = session.closing().await;
    let errors: Vec<&Value> = session
        .received
        .iter()
        .filter(|m| m["type"] == "error")
        .collect();
    let ready = session.received.iter().any(|m| m["type"] == "ready");
    let refused = !ready
        && errors.len() == 1
        && errors[0]["code"] == "unauthorized"
        && errors[0]["message"].as_str().is_some_and(|m| !m.is_empty());
    if refused && closed.code == Some(1008) {
        Ok(())
    } else {
        Err(format!("received {:?}, then {closed:?}", session.received))
    }
}

#[tokio::test]
async fn every_auth_path_works_and_bad_credentials_get_1008() {
    let server = Server::start(&[
        "--jwt-hs256-secret",
        HS256_SECRET,
        "--stream-token-ttl-seconds",
        &STREAM_TOKEN_TTL.as_secs().to_string(),
    ]);
    let user = server.create_user(PLENTY);
    let speech = sample().pcm.slice(10.0, 1.5);

    expect_accepted(&server, &user, Auth::Header(&user.key), &speech).await;
    expect_accepted(&server, &user, Auth::Bearer(&user.key), &speech).await;
    expect_accepted(&server, &user, Auth::KeyQuery(&user.key), &speech).await;
    let jwt = hs256(HS256_SECRET, &user.id, now() + 600);
    expect_accepted(&server, &user, Auth::Bearer(&jwt), &speech).await;
    let token = stream_token(&server, &user).await;
    expect_accepted(&server, &user, Auth::TokenQuery(&token), &speech).await;
    let mut failures = Vec::new();
    let mut refuse = async |auth: Auth<'_>, what: &str| {
        if let Err(e) = refusal(&server, auth).await {
            failures.push(format!("{what}: {e}"));
        }
    };
    refuse(Auth::TokenQuery(&token), "a stream token used twice").await;

    let response = server.post(TOKEN_PATH).send().await;
    expect_json(response, 401, "POST stream/token without credentials").await;

    let stale = stream_token(&server, &user).await;
    tokio::time::sleep(STREAM_TOKEN_TTL + Duration::from_secs(2)).await;
    refuse(Auth::TokenQuery(&stale), "an expired stream token").await;

    let wrong_key = format!("{}x", user.key);
    let expired_jwt = hs256(HS256_SECRET, &user.id, now() - 3600);
    let foreign_jwt = hs256(
        "another-secret-that-is-also-long-enough-for-hs256",
        &user.id,
        now() + 600,
    );
    let refused = [
        (Auth::None, "no credentials"),
        (Auth::Header(&wrong_key), "a wrong X-API-Key"),
        (Auth::Bearer(&wrong_key), "a wrong Bearer key"),
        (Auth::KeyQuery(&wrong_key), "a wrong ?api_key="),
        (Auth::TokenQuery("not-a-stream-token"), "an invalid ?token="),
        (Auth::TokenQuery(&user.key), "an API key passed as ?token="),
        (Auth::Bearer(&expired_jwt), "an expired JWT"),
        (
            Auth::Bearer(&foreign_jwt),
            "a JWT signed with another secret",
        ),
    ];
    for (auth, what) in refused {
        refuse(auth, what).await;
    }
    assert!(
        failures.is_empty(),
        "bad credentials should get an `unauthorized` error frame and a 1008 close:\n{}",
        failures.join("\n")
    );

    let listing = server.list(&user, "").await;
    assert_eq!(
        listing["total"], 5,
        "five accepted sessions, five jobs; refused ones make none: {listing:#}"
    );
}

// ----- refusals before audio ------------------------------------------------------------------

#[tokio::test]
async fn bad_start_messages_wrong_encodings_and_audio_before_start_are_refused() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let good = start_s16(16_000, 1);
    let mut missing_rate = good.clone();
    missing_rate
        .as_object_mut()
        .expect("an object")
        .remove("sample_rate");

    let bad_starts: Vec<(String, &str)> = vec![
        (
            r#"{"type":"start","sample_rate":16000,"#.to_string(),
            "a start that is not JSON",
        ),
        (missing_rate.to_string(), "a start without sample_rate"),
        (
            with(good.clone(), "channels", json!(3)).to_string(),
            "3 channels",
        ),
        (
            with(good.clone(), "sample_rate", json!(4000)).to_string(),
            "4 kHz",
        ),
        (
            with(good.clone(), "sample_rate", json!(96_000)).to_string(),
            "96 kHz",
        ),
        (
            with(good.clone(), "latency_ms", json!(100)).to_string(),
            "latency 100 ms",
        ),
        (
            with(good.clone(), "latency_ms", json!(6000)).to_string(),
            "latency 6000 ms",
        ),
    ];
    for (text, what) in &bad_starts {
        let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
        session
            .send_text(text)
            .await
            .unwrap_or_else(|e| panic!("{what}: sending the start failed: {e}"));
        let error = loop {
            let Some(message) = session.next().await else {
                panic!("{what}: closed ({:?}) without an error", session.closed);
            };
            assert!(
                message["type"] != "ready",
                "{what}: refused, not ready: {message}"
            );
            if message["type"] == "error" {
                break message;
            }
        };
        assert!(
            error["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{what}: the error has a code: {error}"
        );
        let closed = session.closing().await;
        assert!(
            matches!(closed.code, Some(1008 | 4400)),
            "{what}: a bad start closes with 1008 or 4400, got {closed:?}"
        );
    }

    for encoding in ["mp3", "pcm_u8"] {
        let what = format!("encoding {encoding:?}");
        let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
        session
            .send_json(&with(good.clone(), "encoding", json!(encoding)))
            .await
            .unwrap_or_else(|e| panic!("{what}: sending the start failed: {e}"));
        session
            .expect_error("unsupported_encoding", &[1008, 4400], &what)
            .await;
    }

    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    session
        .send_binary(&sample().pcm.slice(10.0, 0.5).s16le())
        .await
        .expect("send audio before start");
    session
        .expect_error("audio_before_start", &[1008], "audio before start")
        .await;

    let listing = server.list(&user, "").await;
    assert_eq!(
        listing["total"], 0,
        "refused sessions make no job: {listing:#}"
    );
    assert_eq!(
        server.balance(&user).await,
        PLENTY as i64,
        "refused sessions cost nothing"
    );
}
