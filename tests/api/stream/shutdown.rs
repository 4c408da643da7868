//! A SIGTERM mid-stream: the client is asked to end, and the audio it sent meanwhile is in
//! the job.

use std::time::Duration;

use super::checks::{DURATION_TOLERANCE_SECONDS, job_id_of};
use super::harness::{Auth, ODD_FRAME_BYTES, PLENTY, WsSession, sample, start_message};
use crate::server::Server;

#[tokio::test]
async fn at_sigterm_the_client_is_asked_to_end_and_keeps_what_it_sent() {
    let grace = Duration::from_secs(5);
    let mut server = Server::start(&["--shutdown-grace-seconds", "5"]);
    let user = server.create_user(PLENTY);
    let pcm = sample().pcm;
    let (before, after) = (pcm.slice(0.0, 6.0), pcm.slice(6.0, 2.0));

    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    let ready = session.start(start_message(&pcm, "pcm_s16le")).await;
    let job_id = job_id_of(&ready);
    let sent = session.send_audio(&before.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(sent, before.s16le().len(), "the first 6 s go out");

    let terminating = tokio::task::spawn_blocking(move || {
        let status = server.terminate(grace);
        (server, status)
    });
    loop {
        let warning = session.until("warning").await;
        if warning["code"] == "shutting_down" {
            break;
        }
    }
    // What the client sends before its `end` (audio already on its way) still counts.
    let sent = session.send_audio(&after.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(sent, after.s16le().len(), "the stream is still read");
    let completed = session.end().await;
    let seconds = before.seconds() + after.seconds();
    let duration = completed["duration_seconds"].as_f64().expect("a duration");
    assert!(
        (duration - seconds).abs() < DURATION_TOLERANCE_SECONDS,
        "the job holds all {seconds} s sent, before and after the warning: {completed}"
    );

    let (mut server, status) = terminating.await.expect("the terminating thread");
    assert_eq!(
        status.code(),
        Some(0),
        "a clean exit after SIGTERM: {status}"
    );
    server.restart();
    let job = server.wait_for_status(&user, job_id, "COMPLETED").await;
    assert_eq!(job["job_type"], "stream", "{job}");
}
