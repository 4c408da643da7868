//! The job lifecycle: extract and diarize, read, list, retry, delete.

use serde_json::Value;

use crate::audio::{self, SPEECH_CLIP_SECONDS, sample_frames, sample_seconds};
use crate::checks::{
    check_completed, check_created, check_downloads, completed_job, download, expect_not_found,
    listed_ids, stable_fields,
};
use crate::client::{Submission, WithKey, expect_detail, expect_json, job_id};
use crate::server::{Server, User};

const PLENTY: u64 = 1_000_000;

/// Uploads a file that cannot be decoded (422) and returns the FAILED job it leaves behind.
pub async fn failed_upload(server: &Server, user: &User, name: &str, bytes: Vec<u8>) -> Value {
    let before = server.list(user, "status=FAILED").await;
    let response = Submission::extract()
        .file(name, bytes)
        .send(server, user)
        .await;
    expect_detail(response, 422, &format!("upload of undecodable {name}")).await;
    let after = server.list(user, "status=FAILED").await;
    let new: Vec<&Value> = after["items"]
        .as_array()
        .expect("a listing has items")
        .iter()
        .filter(|job| !listed_ids(&before).contains(&job_id(job)))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "a 422 upload records one FAILED job; new FAILED jobs: {new:#?}"
    );
    let job = new[0].clone();
    assert_eq!(
        job["filename"], name,
        "the FAILED job keeps the upload's name: {job}"
    );
    let message = job["error_message"].as_str().unwrap_or_default();
    assert!(
        !message.trim().is_empty(),
        "a FAILED job explains itself in error_message: {job}"
    );
    job
}

#[tokio::test]
async fn extraction_upload_completes_with_tracks_rttm_stats_and_charges_credits() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let before = server.balance(&user).await;

    let response = Submission::extract()
        .file("sample.wav", audio::sample_bytes())
        .send(&server, &user)
        .await;
    let created = expect_json(response, 200, "POST /api/v1/speaker/extract (upload)").await;
    check_created(&created, "extraction", &user);

    let outputs = completed_job(
        &server,
        &user,
        job_id(&created),
        "extraction",
        sample_seconds(),
    )
    .await;
    assert_eq!(
        outputs.labels.len(),
        2,
        "the sample has two speakers: {outputs:?}"
    );
    check_downloads(&server, &outputs, sample_frames()).await;

    let after = server.balance(&user).await;
    assert_eq!(
        after,
        before - outputs.credits_used,
        "the balance should drop by exactly credits_used ({})",
        outputs.credits_used
    );
}

#[tokio::test]
async fn diarization_with_num_speakers_has_rttm_but_no_tracks() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);

    let response = Submission::diarize()
        .query("num_speakers", "2")
        .file("sample.wav", audio::sample_bytes())
        .send(&server, &user)
        .await;
    let created = expect_json(response, 200, "POST /api/v1/speaker/diarize?num_speakers=2").await;
    check_created(&created, "diarization", &user);

    let outputs = completed_job(
        &server,
        &user,
        job_id(&created),
        "diarization",
        sample_seconds(),
    )
    .await;
    assert_eq!(
        outputs.labels.len(),
        2,
        "num_speakers=2 gives two speakers: {outputs:?}"
    );
    assert!(
        outputs.tracks.is_empty(),
        "diarization makes no tracks: {outputs:?}"
    );
    check_downloads(&server, &outputs, sample_frames()).await;
}

#[tokio::test]
async fn a_job_reads_the_same_at_both_paths() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let id = Submission::extract()
        .file("clip.wav", audio::speech_clip())
        .submit(&server, &user)
        .await;
    server.wait_for_status(&user, id, "COMPLETED").await;

    let mut bodies = Vec::new();
    for path in [
        format!("/api/v1/speaker/jobs/{id}"),
        format!("/api/v1/jobs/{id}"),
    ] {
        let response = server.get(&path).with_key(&user).send().await;
        bodies.push(expect_json(response, 200, &format!("GET {path}")).await);
    }
    assert_eq!(
        stable_fields(&bodies[0]),
        stable_fields(&bodies[1]),
        "GET /api/v1/speaker/jobs/{id} and /api/v1/jobs/{id} should return the same job"
    );
    check_completed(&server, &bodies[0], "extraction", SPEECH_CLIP_SECONDS);
}

#[tokio::test]
async fn listing_filters_pages_newest_first_and_shows_only_own_jobs() {
    let server = Server::start(&[]);
    let alice = server.create_user(PLENTY);
    let bob = server.create_user(PLENTY);

    let extraction = Submission::extract()
        .file("first.wav", audio::speech_clip())
        .submit(&server, &alice)
        .await;
    let diarization = Submission::diarize()
        .file("second.wav", audio::speech_clip())
        .submit(&server, &alice)
        .await;
    let failed = job_id(&failed_upload(&server, &alice, "third.wav", audio::not_audio()).await);
    let bobs = Submission::extract()
        .file("bob.wav", audio::speech_clip())
        .submit(&server, &bob)
        .await;
    for id in [extraction, diarization] {
        server.wait_for_status(&alice, id, "COMPLETED").await;
    }
    server.wait_for_status(&bob, bobs, "COMPLETED").await;

    let all = server.list(&alice, "").await;
    assert_eq!(
        listed_ids(&all),
        vec![failed, diarization, extraction],
        "alice's jobs, newest first: {all:#}"
    );
    assert_eq!(all["total"], 3, "total counts alice's jobs only: {all:#}");
    assert_eq!(all["hasMore"], false, "{all:#}");
    check_list_items(
        &all,
        &[
            (extraction, "first.wav"),
            (diarization, "second.wav"),
            (failed, "third.wav"),
        ],
    );

    let filters: [(&str, Vec<i64>); 5] = [
        ("job_type=extraction", vec![failed, extraction]),
        ("job_type=diarization", vec![diarization]),
        ("status=COMPLETED", vec![diarization, extraction]),
        ("status=FAILED", vec![failed]),
        ("job_type=extraction&status=COMPLETED", vec![extraction]),
    ];
    for (query, expected) in filters {
        let listing = server.list(&alice, query).await;
        assert_eq!(listed_ids(&listing), expected, "?{query}: {listing:#}");
        assert_eq!(
            listing["total"],
            expected.len(),
            "?{query}: total: {listing:#}"
        );
    }

    let pages: [(&str, Vec<i64>, bool); 3] = [
        ("skip=0&limit=2", vec![failed, diarization], true),
        ("skip=2&limit=2", vec![extraction], false),
        ("skip=3&limit=2", vec![], false),
    ];
    for (query, expected, has_more) in pages {
        let page = server.list(&alice, query).await;
        assert_eq!(listed_ids(&page), expected, "?{query}: {page:#}");
        assert_eq!(page["total"], 3, "?{query}: total ignores paging: {page:#}");
        assert_eq!(page["hasMore"], has_more, "?{query}: hasMore: {page:#}");
    }

    let bobs_listing = server.list(&bob, "").await;
    assert_eq!(
        listed_ids(&bobs_listing),
        vec![bobs],
        "bob sees only his job: {bobs_listing:#}"
    );
    assert_eq!(bobs_listing["total"], 1, "{bobs_listing:#}");
}

/// Every item is a job plus filename, display_name and outputFiles matching its outputs.
fn check_list_items(listing: &Value, names: &[(i64, &str)]) {
    for item in listing["items"].as_array().expect("a listing has items") {
        let id = job_id(item);
        let name = names.iter().find(|(i, _)| *i == id).map(|(_, n)| *n);
        assert_eq!(
            item["filename"].as_str(),
            name,
            "job {id}: filename in the listing: {item}"
        );
        assert!(
            item["display_name"].is_string(),
            "job {id}: display_name: {item}"
        );
        let files = item["outputFiles"]
            .as_array()
            .unwrap_or_else(|| panic!("job {id}: outputFiles should be an array: {item}"));
        for file in files {
            assert!(
                file["path"].is_string(),
                "job {id}: an output file has a path: {file}"
            );
        }
        let kinds = |kind: &str| files.iter().filter(|f| f["type"] == kind).count();
        let speakers = item["num_speakers"].as_u64().unwrap_or(0) as usize;
        let (audio, rttm) = match (item["status"].as_str(), item["job_type"].as_str()) {
            (Some("COMPLETED"), Some("extraction")) => (speakers, 1),
            (Some("COMPLETED"), _) => (0, 1),
            _ => (0, 0),
        };
        assert_eq!(
            (kinds("audio"), kinds("rttm"), files.len()),
            (audio, rttm, audio + rttm),
            "job {id}: outputFiles should list (audio, rttm, all) files: {item:#}"
        );
    }
}

#[tokio::test]
async fn retry_requeues_a_failed_job_and_refuses_others() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let before = server.balance(&user).await;

    let failed = failed_upload(&server, &user, "broken.wav", audio::broken_wav()).await;
    let id = job_id(&failed);
    let path = format!("/api/v1/speaker/jobs/{id}/retry");
    let response = server.post(&path).with_key(&user).send().await;
    let retried = expect_json(response, 200, &format!("POST {path} (a FAILED job)")).await;
    assert_eq!(
        job_id(&retried),
        id,
        "retry returns the same job: {retried}"
    );
    assert_eq!(
        retried["status"], "PENDING",
        "a retried job is queued again: {retried}"
    );
    let new_task = crate::checks::uuid(&retried, "task_id");
    assert_ne!(
        Some(new_task.to_string().as_str()),
        failed["task_id"].as_str(),
        "a retry gets a new task_id"
    );

    let again = server.wait_for_status(&user, id, "FAILED").await;
    assert_eq!(
        again["task_id"].as_str(),
        Some(new_task.to_string().as_str()),
        "the job failed again under its new task_id: {again}"
    );
    assert!(
        again["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{again}"
    );
    assert_eq!(
        server.balance(&user).await,
        before,
        "failed jobs cost nothing"
    );

    let completed = Submission::extract()
        .file("clip.wav", audio::speech_clip())
        .submit(&server, &user)
        .await;
    server.wait_for_status(&user, completed, "COMPLETED").await;
    let path = format!("/api/v1/speaker/jobs/{completed}/retry");
    let response = server.post(&path).with_key(&user).send().await;
    expect_detail(response, 400, &format!("POST {path} (a COMPLETED job)")).await;
    let job = server.job(&user, completed).await;
    assert_eq!(
        job["status"], "COMPLETED",
        "a refused retry leaves the job alone: {job}"
    );
}

#[tokio::test]
async fn delete_removes_the_job_and_its_files() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let id = Submission::extract()
        .file("clip.wav", audio::speech_clip())
        .submit(&server, &user)
        .await;
    let outputs = completed_job(&server, &user, id, "extraction", SPEECH_CLIP_SECONDS).await;
    let mut urls: Vec<String> = outputs.tracks.iter().map(|(_, url)| url.clone()).collect();
    urls.push(outputs.rttm_url.clone());
    for url in &urls {
        download(&server, url, "before the delete").await;
    }

    let path = format!("/api/v1/speaker/jobs/{id}");
    let response = server.delete(&path).with_key(&user).send().await;
    let body = expect_json(response, 204, &format!("DELETE {path}")).await;
    assert!(body.is_null(), "204 has no body, got {body}");

    expect_not_found(&server, &user, id).await;
    for url in &urls {
        let response = server
            .get(url)
            .send()
            .await
            .expect("GET a deleted job's file");
        let status = response.status().as_u16();
        assert!(
            status == 404 || status == 410,
            "a deleted job's file should be gone (404/410), got {status} for {url}"
        );
    }
    let listing = server.list(&user, "").await;
    assert_eq!(
        listing["total"], 0,
        "a deleted job is not listed: {listing}"
    );
    let response = server.delete(&path).with_key(&user).send().await;
    expect_detail(response, 404, &format!("DELETE {path} twice")).await;
}

/// The largest time two turns of different speakers share, in seconds.
fn most_overlap(turns: &[audio::RttmTurn]) -> f64 {
    let mut most: f64 = 0.0;
    for (i, a) in turns.iter().enumerate() {
        for b in &turns[i + 1..] {
            if a.label != b.label {
                let shared =
                    (a.start + a.duration).min(b.start + b.duration) - a.start.max(b.start);
                most = most.max(shared);
            }
        }
    }
    most
}

/// `exclusive=true` gives a timeline with one speaker at a time; by default the
/// sample's overlapped speech is kept.
#[tokio::test]
async fn exclusive_jobs_have_one_speaker_at_a_time() {
    let server = Server::start(&[]);
    let user = server.create_user(1_000_000);
    let mut rttms = Vec::new();
    for exclusive in [None, Some("true")] {
        let mut submission = Submission::diarize().file("sample.wav", audio::sample_bytes());
        if let Some(value) = exclusive {
            submission = submission.field("exclusive", value);
        }
        let id = submission.submit(&server, &user).await;
        let job = server.wait_for_status(&user, id, "COMPLETED").await;
        let url = job["result"]["rttm_url"].as_str().expect("an RTTM link");
        let (_, bytes) = crate::checks::download(&server, url, "the RTTM").await;
        let text = String::from_utf8(bytes).expect("RTTM text");
        rttms.push(audio::parse_rttm(&text, "the RTTM"));
    }
    let (kept, exclusive) = (&rttms[0], &rttms[1]);
    assert!(
        most_overlap(kept) > 0.1,
        "the sample has overlapped speech: {kept:?}"
    );
    assert!(
        most_overlap(exclusive) < 1e-3,
        "one speaker at a time: {exclusive:?}"
    );
    let speech = |turns: &[audio::RttmTurn]| turns.iter().map(|t| t.duration).sum::<f64>();
    assert!(
        speech(exclusive) > 0.5 * speech(kept),
        "no speech is dropped wholesale"
    );

    let response = Submission::diarize()
        .file("sample.wav", audio::sample_bytes())
        .field("exclusive", "maybe")
        .send(&server, &user)
        .await;
    let detail = expect_detail(response, 400, "exclusive=maybe").await;
    assert!(detail.contains("exclusive"), "{detail}");
}
