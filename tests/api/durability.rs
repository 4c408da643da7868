//! Jobs survive kill -9 and SIGTERM, and many concurrent uploads are neither lost nor
//! duplicated.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::future::join_all;

use crate::audio::{self, SPEECH_CLIP_SECONDS, sample_frames, sample_seconds};
use crate::checks::{Outputs, check_downloads, completed_job, listed_ids};
use crate::client::Submission;
use crate::server::{Server, User};

/// The sample ten times over: five minutes, long enough to catch it PROCESSING.
const REPEATS: usize = 10;

async fn submit_long(server: &Server, user: &User) -> i64 {
    Submission::extract()
        .file("long.wav", audio::repeated_sample(REPEATS))
        .submit(server, user)
        .await
}

fn long_seconds() -> f64 {
    sample_seconds() * REPEATS as f64
}

/// Every job COMPLETED once: listed once, balance = initial − the sum of credits_used.
async fn check_charged_once(server: &Server, user: &User, initial: i64, jobs: &[Outputs]) {
    let listing = server.list(user, "limit=200").await;
    let listed = listed_ids(&listing);
    let expected: BTreeSet<i64> = jobs.iter().map(|o| o.id).collect();
    assert_eq!(
        listing["total"],
        jobs.len(),
        "total counts this user's jobs: {listing:#}"
    );
    assert_eq!(
        listed.len(),
        jobs.len(),
        "each job listed once: {listing:#}"
    );
    assert_eq!(
        listed.into_iter().collect::<BTreeSet<_>>(),
        expected,
        "{listing:#}"
    );
    let charged: i64 = jobs.iter().map(|o| o.credits_used).sum();
    assert_eq!(
        server.balance(user).await,
        initial - charged,
        "credits are charged exactly once per job ({charged} in all)"
    );
}

#[tokio::test]
async fn jobs_interrupted_by_kill_9_complete_once_after_restart() {
    let mut server = Server::start(&["--concurrent-jobs", "1"]);
    let user = server.create_user(1_000_000);
    let initial = server.balance(&user).await;

    let long = submit_long(&server, &user).await;
    let mut queued = Vec::new();
    for name in ["second.wav", "third.wav"] {
        queued.push(
            Submission::extract()
                .file(name, audio::sample_bytes())
                .submit(&server, &user)
                .await,
        );
    }
    server.wait_for_status(&user, long, "PROCESSING").await;
    for &id in &queued {
        let job = server.job(&user, id).await;
        assert_eq!(
            job["status"], "PENDING",
            "with one worker busy, job {id} waits: {job}"
        );
    }

    server.kill();
    server.restart();

    let mut jobs = vec![completed_job(&server, &user, long, "extraction", long_seconds()).await];
    for &id in &queued {
        jobs.push(completed_job(&server, &user, id, "extraction", sample_seconds()).await);
    }
    check_downloads(&server, &jobs[0], sample_frames() * REPEATS as u32).await;
    check_charged_once(&server, &user, initial, &jobs).await;
}

#[tokio::test]
async fn sigterm_stops_the_server_and_the_running_job_completes_after_restart() {
    let grace = Duration::from_secs(2);
    let mut server = Server::start(&["--shutdown-grace-seconds", "2"]);
    let user = server.create_user(1_000_000);
    let initial = server.balance(&user).await;

    let long = submit_long(&server, &user).await;
    server.wait_for_status(&user, long, "PROCESSING").await;
    let status = server.terminate(grace);
    assert_eq!(
        status.code(),
        Some(0),
        "after SIGTERM the server shuts down cleanly (exit 0, not killed by the signal): {status}"
    );

    server.restart();
    let job = completed_job(&server, &user, long, "extraction", long_seconds()).await;
    check_downloads(&server, &job, sample_frames() * REPEATS as u32).await;
    check_charged_once(&server, &user, initial, &[job]).await;
}

#[tokio::test]
async fn fifty_concurrent_uploads_from_three_users_all_complete_once() {
    const UPLOADS: usize = 50;
    let server = Server::start(&["--concurrent-jobs", "2"]);
    let users: Vec<User> = (0..3).map(|_| server.create_user(1_000_000)).collect();
    let mut initial = Vec::new();
    for user in &users {
        initial.push(server.balance(user).await);
    }

    let clip = audio::speech_clip();
    let uploads = (0..UPLOADS).map(|n| {
        let owner = n % users.len();
        let submission = Submission::extract().file(&format!("clip-{n}.wav"), clip.clone());
        let server = &server;
        let user = &users[owner];
        async move { (owner, submission.submit(server, user).await) }
    });
    let created: Vec<(usize, i64)> = join_all(uploads).await;

    let ids: BTreeSet<i64> = created.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        ids.len(),
        UPLOADS,
        "every upload got its own job id: {created:?}"
    );

    let mut per_user: BTreeMap<usize, Vec<Outputs>> = BTreeMap::new();
    for &(owner, id) in &created {
        let job = completed_job(
            &server,
            &users[owner],
            id,
            "extraction",
            SPEECH_CLIP_SECONDS,
        )
        .await;
        per_user.entry(owner).or_default().push(job);
    }
    for (owner, jobs) in &per_user {
        check_charged_once(&server, &users[*owner], initial[*owner], jobs).await;
    }
}
