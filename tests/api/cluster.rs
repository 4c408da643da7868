//! Scale-out (issue 13): nodes of the real binary on one PostgreSQL database and one S3
//! bucket (moto). Jobs are claimed under leases and run exactly once, also when a worker is
//! killed holding one; downloads and the rate limit hold across nodes; a live session is
//! reached through any node, and finalized from its checkpoints when its node dies.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::sync::oneshot;

use crate::audio::{self, SPEECH_CLIP_SECONDS, credits_for, play_wav};
use crate::checks::{completed_job, download};
use crate::client::{Submission, WithKey, expect_detail, expect_json};
use crate::server::{CHECKPOINT_SECONDS, Cluster, Server, User};
use crate::stream::{self, Auth, WsSession, job_id_of, start_message};
use crate::whip::{self, EVENT_TIMEOUT, WHIP_PATH, check_feed, header, post_offer, sse_messages};

const CREDITS: u64 = 1_000_000;
/// How long a test waits for jobs to reach a state (the cores are shared and slow).
const WAIT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(100);

/// Which node logged the completion of each job: `job completed` lines carry the job id
/// in the worker's span (`job=ID`). Keys are job ids, values indices into `nodes`.
fn completions(nodes: &[&Server]) -> BTreeMap<i64, Vec<usize>> {
    let mut done: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (node, server) in nodes.iter().enumerate() {
        for line in server.log().lines().filter(|l| l.contains("job completed")) {
            let id = line
                .split("job=")
                .nth(1)
                .map(|rest| {
                    rest.chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                })
                .and_then(|digits| digits.parse().ok())
                .unwrap_or_else(|| panic!("a `job completed` line names its job=ID: {line}"));
            done.entry(id).or_default().push(node);
        }
    }
    done
}

/// Checks that each of `ids` was completed by exactly one of the nodes; returns job → node.
fn completed_once(nodes: &[&Server], ids: &[i64]) -> BTreeMap<i64, usize> {
    let done = completions(nodes);
    let mut expected = ids.to_vec();
    expected.sort_unstable();
    assert_eq!(
        done.keys().copied().collect::<Vec<_>>(),
        expected,
        "the nodes' logs complete exactly the submitted jobs"
    );
    done.into_iter()
        .map(|(id, by)| {
            assert_eq!(
                by.len(),
                1,
                "job {id} completed more than once, by nodes {by:?}"
            );
            (id, by[0])
        })
        .collect()
}

/// Waits until every job is COMPLETED and checks the credits: each job charged for its
/// audio, and the user's balance down by exactly the sum, so no job was charged twice.
async fn check_charged_once(node: &Server, user: &User, ids: &[i64], initial: i64) {
    let mut used = 0;
    for &id in ids {
        let job = node.wait_for_status(user, id, "COMPLETED").await;
        let seconds = job["duration_seconds"]
            .as_f64()
            .unwrap_or_else(|| panic!("duration_seconds of job {id}: {job}"));
        let credits = job["credits_used"]
            .as_i64()
            .unwrap_or_else(|| panic!("credits_used of job {id}: {job}"));
        assert_eq!(credits, credits_for(seconds), "job {id} pays for its audio");
        used += credits;
    }
    assert_eq!(
        node.balance(user).await,
        initial - used,
        "the balance is down by what the jobs used, each once"
    );
}

#[tokio::test]
async fn sixty_jobs_of_three_users_run_exactly_once_spread_over_two_workers() {
    const USERS: usize = 3;
    const JOBS_PER_USER: usize = 20;
    let cluster = Cluster::start().await;
    let api = cluster.node("api", &[]);
    let workers = [cluster.node("worker", &[]), cluster.node("worker", &[])];
    let users: Vec<User> = (0..USERS).map(|_| api.create_user(CREDITS)).collect();

    let clip = audio::speech_clip();
    let mut ids: Vec<Vec<i64>> = vec![Vec::new(); USERS];
    for _ in 0..JOBS_PER_USER {
        for (user, ids) in users.iter().zip(&mut ids) {
            let submission = Submission::extract().file("clip.wav", clip.clone());
            ids.push(submission.submit(&api, user).await);
        }
    }
    for (user, ids) in users.iter().zip(&ids) {
        check_charged_once(&api, user, ids, CREDITS as i64).await;
    }

    let all: Vec<i64> = ids.concat();
    let by = completed_once(&[&workers[0], &workers[1], &api], &all);
    let count = |node: usize| by.values().filter(|&&n| n == node).count();
    assert_eq!(count(2), 0, "the api node runs no jobs");
    assert!(
        count(0) > 0 && count(1) > 0,
        "both workers run jobs: {} and {}",
        count(0),
        count(1)
    );
}

/// Polls until one of the jobs is PROCESSING; returns its id.
async fn first_processing(node: &Server, user: &User, ids: &[i64]) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        for &id in ids {
            if node.job(user, id).await["status"] == "PROCESSING" {
                return id;
            }
        }
        assert!(Instant::now() < deadline, "no job of {ids:?} started");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn a_worker_killed_holding_a_job_loses_it_to_another_after_its_lease() {
    let cluster = Cluster::start().await;
    let api = cluster.node("api", &[]);
    let mut doomed = cluster.node("worker", &[]);
    let user = api.create_user(CREDITS);

    // A minute of audio each: the job is still running when its worker dies.
    let long = audio::repeated_sample(2);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let submission = Submission::extract().file("long.wav", long.clone());
        ids.push(submission.submit(&api, &user).await);
    }
    // The only worker holds it.
    let held = first_processing(&api, &user, &ids).await;
    doomed.kill();
    assert_eq!(
        api.job(&user, held).await["status"],
        "PROCESSING",
        "job {held} stays PROCESSING: its lease still names the dead worker"
    );

    let survivor = cluster.node("worker", &[]);
    check_charged_once(&api, &user, &ids, CREDITS as i64).await;
    let by = completed_once(&[&doomed, &survivor], &ids);
    assert_eq!(
        by[&held], 1,
        "the survivor completes job {held} once the dead worker's lease runs out"
    );
}

#[tokio::test]
async fn a_download_link_signed_by_one_node_downloads_from_another() {
    let cluster = Cluster::start().await;
    let signer = cluster.node("api", &[]);
    let other = cluster.node("worker", &[]);
    let user = signer.create_user(CREDITS);
    let id = Submission::extract()
        .file("clip.wav", audio::speech_clip())
        .submit(&signer, &user)
        .await;
    let outputs = completed_job(&signer, &user, id, "extraction", SPEECH_CLIP_SECONDS).await;
    let (label, signed) = outputs
        .tracks
        .first()
        .unwrap_or_else(|| panic!("the speech clip has a speaker: {outputs:?}"));

    let on_signer = signer.url(signed);
    let mut elsewhere = Url::parse(&on_signer).expect("a download URL");
    let node = other.socket_addr();
    elsewhere.set_port(Some(node.port())).expect("an http URL");
    assert_ne!(
        elsewhere.as_str(),
        on_signer,
        "the link goes to another node"
    );

    let what = format!("track {label} of job {id} from another node");
    let (_, bytes) = download(&other, elsewhere.as_str(), &what).await;
    let (_, original) = download(&signer, &on_signer, "the same track from its signer").await;
    assert_eq!(bytes, original, "{what}: the same bytes on every node");
    let track = play_wav(&bytes, &what);
    let seconds = f64::from(track.frames) / f64::from(track.spec.sample_rate);
    assert!(
        (seconds - SPEECH_CLIP_SECONDS).abs() < 0.01,
        "{what}: as long as the clip, {seconds} s"
    );

    // The other node checks the signature against the shared secret, it does not just serve.
    let forged = elsewhere.as_str().replace("signature=", "signature=0");
    let response = other.get(&forged).send().await;
    expect_detail(response, 403, "a forged signature on another node").await;
}

#[tokio::test]
async fn one_key_gets_exactly_its_limit_across_three_nodes() {
    const LIMIT: usize = 100;
    const REQUESTS: usize = 150;
    let cluster = Cluster::start().await;
    let limit = LIMIT.to_string();
    let nodes: Vec<Server> = (0..3)
        .map(|_| cluster.node("api", &["--rate-limit-per-minute", &limit]))
        .collect();
    let user = nodes[0].create_user(CREDITS);

    let mut statuses = Vec::new();
    for (i, node) in nodes.iter().cycle().take(REQUESTS).enumerate() {
        let response = node
            .get("/api/v1/credits")
            .with_key(&user)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} to {}: {e}", node.base));
        let status = response.status().as_u16();
        if status == 429 {
            assert!(
                response.headers().contains_key("retry-after"),
                "a 429 says when to retry: {:?}",
                response.headers()
            );
        }
        statuses.push(status);
    }
    let expected: Vec<u16> = [vec![200; LIMIT], vec![429; REQUESTS - LIMIT]].concat();
    assert_eq!(
        statuses, expected,
        "the first {LIMIT} requests of the minute pass on whichever node, the rest get 429"
    );
}

#[tokio::test]
async fn a_whip_session_is_watched_and_ended_through_another_node() {
    let cluster = Cluster::start().await;
    let owner = cluster.node("api", &[]);
    let other = cluster.node("api", &[]);
    let user = owner.create_user(CREDITS);
    let packets = stream::sample().pcm.opus_packets();

    let mut client = whip::Client::new(true).await;
    let (status, headers, answer) =
        post_offer(&owner, Some(&user.key), "application/sdp", &client.offer).await;
    assert_eq!(status, 201, "WHIP answers 201: {answer}");
    let session_id = header(&headers, "x-session-id").to_owned();
    let job_id: i64 = header(&headers, "x-job-id").parse().expect("a job id");
    // Without --public-url the Location is relative, so it resolves to the node that answered.
    assert_eq!(
        owner.url(header(&headers, "location")),
        format!("{}{WHIP_PATH}/{session_id}", owner.base),
        "Location leads to the node that holds the session"
    );

    let feed = other.url(&format!("/api/v1/speaker/stream/{session_id}/events"));
    let (ready, subscribed) = oneshot::channel();
    let watcher = tokio::spawn(sse_messages(feed, user.key.clone(), ready));
    tokio::time::timeout(EVENT_TIMEOUT, subscribed)
        .await
        .expect("the feed through the other node says ready")
        .expect("the watcher is running");

    client.answer(answer).await;
    client.send(&packets).await;
    let mut seen = Vec::new();
    whip::until(&mut client.channel, &mut seen, |m| {
        m["type"] == "speaker" && m["final"] == true
    })
    .await;

    let response = reqwest::Client::new()
        .delete(format!("{}{WHIP_PATH}/{session_id}", other.base))
        .bearer_auth(&user.key)
        .send()
        .await;
    let completed = expect_json(response, 200, "DELETE through the other node").await;
    assert_eq!(completed["type"], "completed", "{completed}");
    assert_eq!(completed["job_id"], job_id, "{completed}");

    let messages = tokio::time::timeout(EVENT_TIMEOUT, watcher)
        .await
        .expect("the feed closes after completed")
        .expect("the watcher task");
    check_feed(
        "the feed through the other node",
        &messages,
        &session_id,
        &completed,
    );
    let job = other.wait_for_status(&user, job_id, "COMPLETED").await;
    assert_eq!(job["job_type"], "stream", "{job}");
    let _ = client.peer.close().await;
}

#[tokio::test]
async fn a_live_session_whose_node_dies_is_finalized_by_another_from_its_checkpoints() {
    /// Audio goes out this many times faster than real time, in frames of 100 ms.
    const SPEED_UP: u32 = 2;
    const FRAME: Duration = Duration::from_millis(100);
    let cluster = Cluster::start().await;
    let mut holder = cluster.node("api", &[]);
    let other = cluster.node("all", &[]);
    let user = holder.create_user(CREDITS);

    // 20 s: many checkpoint intervals, both speakers.
    let audio = stream::sample().pcm.slice(0.0, 20.0);
    let bytes = audio.s16le();
    let bytes_per_second = bytes.len() as f64 / audio.seconds();
    let mut session = WsSession::connect(&holder, Auth::Header(&user.key)).await;
    let job_id = job_id_of(&session.start(start_message(&audio, "pcm_s16le")).await);

    // (when, seconds of audio sent by then), frame by frame.
    let mut sent: Vec<(Instant, f64)> = Vec::new();
    let mut total = 0;
    let frame_bytes = (bytes_per_second * FRAME.as_secs_f64()) as usize;
    let started = tokio::time::Instant::now();
    for (i, frame) in (0u32..).zip(bytes.chunks(frame_bytes)) {
        tokio::time::sleep_until(started + FRAME * i / SPEED_UP).await;
        session
            .send_binary(frame)
            .await
            .unwrap_or_else(|e| panic!("send frame {i} to the node holding the session: {e}"));
        total += frame.len();
        sent.push((Instant::now(), total as f64 / bytes_per_second));
    }
    holder.kill();
    let sent_seconds = audio.seconds();
    // What was sent a checkpoint interval (and a second for the upload) before the kill is
    // in the bucket.
    let checkpointed_by = Instant::now() - Duration::from_secs(CHECKPOINT_SECONDS + 1);
    let checkpointed = sent
        .iter()
        .take_while(|(when, _)| *when <= checkpointed_by)
        .last()
        .map_or(0.0, |&(_, seconds)| seconds);
    assert!(
        checkpointed >= 2.0 * CHECKPOINT_SECONDS as f64,
        "the stream ran for at least two checkpoint intervals before the kill: {checkpointed} s"
    );
    drop(session);

    let job = other.wait_for_status(&user, job_id, "COMPLETED").await;
    let within = |seconds: f64| checkpointed <= seconds && seconds <= sent_seconds;
    let duration = job["duration_seconds"].as_f64().expect("duration_seconds");
    assert!(
        within(duration),
        "job {job_id} holds the audio up to the last checkpoint ({checkpointed} s) and no more \
         than was sent ({sent_seconds} s): {duration} s"
    );
    let speakers = job["result"]["speakers"].as_array().expect("speakers");
    assert!(
        !speakers.is_empty(),
        "the finalized job has speakers: {job:#}"
    );
    for speaker in speakers {
        let url = speaker["download_url"].as_str().expect("a track URL");
        let what = format!("job {job_id} track {}", speaker["label"]);
        let (_, wav) = download(&other, url, &what).await;
        let track = play_wav(&wav, &what);
        let seconds = f64::from(track.frames) / f64::from(track.spec.sample_rate);
        assert!(
            within(seconds),
            "{what}: {seconds} s, not within {checkpointed}–{sent_seconds} s"
        );
    }
    let used = job["credits_used"].as_i64().expect("credits_used");
    assert_eq!(used, credits_for(duration), "job {job_id}: {job}");
    assert_eq!(
        other.balance(&user).await,
        CREDITS as i64 - used,
        "the finalized stream is charged once, for what it kept"
    );
}
