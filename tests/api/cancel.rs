//! `POST /api/v1/speaker/jobs/{id}/cancel`: a PENDING job is cancelled at once,
//! a PROCESSING one stops on its worker; both are refunded and keep no files.
//! Finished jobs answer 400, other users' jobs 404.

use crate::audio;
use crate::client::{Submission, WithKey, expect_detail, expect_json};
use crate::server::{Server, User};

async fn cancel(server: &Server, user: &User, id: i64, status: u16) -> serde_json::Value {
    let response = server
        .post(&format!("/api/v1/speaker/jobs/{id}/cancel"))
        .with_key(user)
        .send()
        .await;
    expect_json(response, status, &format!("POST cancel {id}")).await
}

#[tokio::test]
async fn a_pending_job_is_cancelled_and_refunded_and_others_cannot_cancel() {
    // An api node runs no workers: the job stays PENDING.
    let server = Server::start(&["--role", "api"]);
    let owner = server.create_user(1_000_000);
    let stranger = server.create_user(1_000_000);
    let initial = server.balance(&owner).await;
    let id = Submission::extract()
        .file("pending.wav", audio::speech_clip())
        .submit(&server, &owner)
        .await;
    assert!(
        server.balance(&owner).await < initial,
        "credits are reserved"
    );

    let refused = server
        .post(&format!("/api/v1/speaker/jobs/{id}/cancel"))
        .with_key(&stranger)
        .send()
        .await;
    expect_detail(refused, 404, "another user's job").await;

    let job = cancel(&server, &owner, id, 200).await;
    assert_eq!(job["status"], "CANCELLED", "{job:#}");
    assert_eq!(
        server.balance(&owner).await,
        initial,
        "everything reserved is refunded"
    );
    let again = server
        .post(&format!("/api/v1/speaker/jobs/{id}/cancel"))
        .with_key(&owner)
        .send()
        .await;
    let detail = expect_detail(again, 400, "cancelling a cancelled job").await;
    assert!(detail.contains("CANCELLED"), "{detail}");
    let listed = server.list(&owner, "status=CANCELLED").await;
    assert_eq!(listed["total"], 1, "{listed:#}");
}

#[tokio::test]
async fn a_processing_job_stops_on_its_worker_and_the_worker_goes_on() {
    let server = Server::start(&["--concurrent-jobs", "1"]);
    let user = server.create_user(10_000_000);
    let initial = server.balance(&user).await;
    // Half an hour of audio: long enough to be caught, and stopped, PROCESSING.
    let long = Submission::extract()
        .file("long.wav", audio::repeated_sample(60))
        .submit(&server, &user)
        .await;
    server.wait_for_status(&user, long, "PROCESSING").await;
    let job = cancel(&server, &user, long, 200).await;
    assert_eq!(job["status"], "CANCELLED");
    assert_eq!(server.balance(&user).await, initial, "refunded at once");

    // The worker lets go of it and takes the next job.
    let next = Submission::diarize()
        .file("next.wav", audio::speech_clip())
        .submit(&server, &user)
        .await;
    let done = server.wait_for_status(&user, next, "COMPLETED").await;
    let stopped = format!("job={long}");
    assert!(
        server.log().lines().any(|line| line
            .contains("cancelled, deleted or taken over while running")
            && line.contains(&stopped)),
        "the worker stopped the cancelled job while it ran:\n{}",
        server.log()
    );
    let job = server.job(&user, long).await;
    assert_eq!(job["status"], "CANCELLED", "a cancel is final: {job:#}");
    assert!(job["result"].is_null(), "no result is kept: {job:#}");
    assert_eq!(
        server.balance(&user).await,
        initial - done["credits_used"].as_i64().unwrap(),
        "only the job that ran is charged"
    );
    let files = server
        .get(&format!("/api/v1/files/{long}/speaker_0.wav"))
        .send()
        .await
        .unwrap();
    assert_ne!(files.status(), 200);
}

#[tokio::test]
async fn a_finished_job_cannot_be_cancelled() {
    let server = Server::start(&[]);
    let user = server.create_user(1_000_000);
    let id = Submission::diarize()
        .file("done.wav", audio::speech_clip())
        .submit(&server, &user)
        .await;
    server.wait_for_status(&user, id, "COMPLETED").await;
    let balance = server.balance(&user).await;
    let response = server
        .post(&format!("/api/v1/speaker/jobs/{id}/cancel"))
        .with_key(&user)
        .send()
        .await;
    let detail = expect_detail(response, 400, "cancelling a finished job").await;
    assert!(detail.contains("COMPLETED"), "{detail}");
    assert_eq!(server.balance(&user).await, balance, "nothing refunded");
    assert_eq!(server.job(&user, id).await["status"], "COMPLETED");
}
