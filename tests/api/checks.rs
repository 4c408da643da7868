//! Checks on job objects and on the files a COMPLETED job offers for download.

use std::collections::BTreeSet;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audio::{self, credits_for, parse_rttm, play_wav};
use crate::client::{expect_json, job_id};
use crate::server::{Server, User};

pub fn rfc3339(job: &Value, field: &str) -> OffsetDateTime {
    let text = job[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} should be an RFC 3339 string: {job}"));
    OffsetDateTime::parse(text, &Rfc3339)
        .unwrap_or_else(|e| panic!("{field} = {text:?} is not RFC 3339 ({e}): {job}"))
}

pub fn uuid(job: &Value, field: &str) -> uuid::Uuid {
    let text = job[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} should be a UUID string: {job}"));
    uuid::Uuid::parse_str(text).unwrap_or_else(|e| panic!("{field} = {text:?} is not a UUID ({e})"))
}

fn string<'a>(value: &'a Value, field: &str, context: &Value) -> &'a str {
    value[field]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("{field} should be a non-empty string in {context}"))
}

fn number(value: &Value, field: &str, context: &Value) -> f64 {
    value[field]
        .as_f64()
        .filter(|x| x.is_finite())
        .unwrap_or_else(|| panic!("{field} should be a finite number in {context}"))
}

fn array<'a>(value: &'a Value, field: &str, context: &Value) -> &'a Vec<Value> {
    value[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} should be an array in {context}"))
}

/// The body of a 200 from POST extract/diarize: AudioPod's job shape, PENDING.
pub fn check_created(job: &Value, job_type: &str, user: &User) {
    job_id(job);
    assert_eq!(job["job_type"], job_type, "job_type of a new job: {job}");
    assert_eq!(job["status"], "PENDING", "status of a new job: {job}");
    rfc3339(job, "created_at");
    uuid(job, "user_id");
    assert_eq!(
        job["user_id"],
        user.id.as_str(),
        "user_id of a new job: {job}"
    );
    uuid(job, "task_id");
}

/// What a COMPLETED job offers, once its shape has been checked.
#[derive(Debug)]
pub struct Outputs {
    pub id: i64,
    pub labels: BTreeSet<String>,
    /// (speaker label, download_url) per per-speaker track.
    pub tracks: Vec<(String, String)>,
    pub rttm_url: String,
    pub credits_used: i64,
}

/// Checks a COMPLETED job of `job_type` made from `seconds` of audio: the AudioPod result
/// fields, our additions (segments, stats, duration, speaker count, credits) and that they
/// agree with each other.
pub fn check_completed(server: &Server, job: &Value, job_type: &str, seconds: f64) -> Outputs {
    let id = job_id(job);
    assert_eq!(job["status"], "COMPLETED", "job {id}: {job:#}");
    assert_eq!(job["job_type"], job_type, "job {id}: {job:#}");
    let created = rfc3339(job, "created_at");
    let completed = rfc3339(job, "completed_at");
    assert!(
        completed >= created,
        "job {id} completed before it was created: {job}"
    );
    assert!(
        job["error_message"].is_null(),
        "a COMPLETED job has no error_message: {job}"
    );

    let duration = number(job, "duration_seconds", job);
    assert!(
        (duration - seconds).abs() < 0.05,
        "job {id}: duration_seconds {duration}, but the audio lasts {seconds} s"
    );
    let credits_used = job["credits_used"]
        .as_i64()
        .unwrap_or_else(|| panic!("job {id}: credits_used should be an integer: {job}"));
    assert_eq!(
        credits_used,
        credits_for(duration),
        "job {id}: credits_used should be ceil(27.5 × {duration} s)"
    );
    let num_speakers = job["num_speakers"]
        .as_u64()
        .unwrap_or_else(|| panic!("job {id}: num_speakers should be an integer: {job}"));

    let result = &job["result"];
    assert!(
        result.is_object(),
        "job {id}: a COMPLETED job has a result object: {job}"
    );
    let result_duration = number(result, "duration_seconds", result);
    assert!(
        (result_duration - duration).abs() < 1e-6,
        "job {id}: result.duration_seconds {result_duration} != duration_seconds {duration}"
    );
    assert_eq!(
        result["num_speakers"], job["num_speakers"],
        "job {id}: {result}"
    );
    assert_eq!(
        result["credits_used"], job["credits_used"],
        "job {id}: {result}"
    );

    let with_tracks = job_type == "extraction";
    let speakers = array(result, "speakers", result);
    assert_eq!(
        speakers.len() as u64,
        num_speakers,
        "job {id}: result.speakers should list num_speakers speakers: {result:#}"
    );
    let mut labels = BTreeSet::new();
    let mut tracks = Vec::new();
    for speaker in speakers {
        assert!(
            !speaker["id"].is_null(),
            "job {id}: a speaker needs an id: {speaker}"
        );
        let label = string(speaker, "label", speaker);
        let digits = label.strip_prefix("SPEAKER_").unwrap_or_default();
        assert!(
            !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()),
            "job {id}: speaker labels look like SPEAKER_0, got {label:?}"
        );
        assert!(
            labels.insert(label.to_string()),
            "job {id}: label {label} twice"
        );

        let stats = &speaker["audio_stats"];
        assert!(
            number(stats, "rms_db", speaker) <= 0.0,
            "rms_db is dBFS: {speaker}"
        );
        let peak = number(stats, "peak", speaker);
        assert!((0.0..=1.0).contains(&peak), "peak is linear 0–1: {speaker}");
        assert!(
            number(&speaker["stats"], "speaking_seconds", speaker) > 0.0,
            "job {id}: every listed speaker speaks: {speaker}"
        );

        if with_tracks {
            string(speaker, "audio_path", speaker);
            let url = string(speaker, "download_url", speaker);
            assert!(
                url.starts_with(&server.base),
                "job {id}: download_url should be an absolute URL on this server ({}): {url}",
                server.base
            );
            tracks.push((label.to_string(), url.to_string()));
        } else {
            assert!(
                speaker["audio_path"].is_null() && speaker["download_url"].is_null(),
                "job {id}: a diarization job has no per-speaker audio: {speaker}"
            );
        }
    }

    let files = array(result, "files", result);
    let audio_speakers: BTreeSet<String> = files
        .iter()
        .filter(|f| f["type"] == "audio")
        .map(|f| {
            string(f, "path", f);
            string(f, "download_url", f);
            string(f, "speaker", f).to_string()
        })
        .collect();
    let expected_audio = if with_tracks {
        labels.clone()
    } else {
        BTreeSet::new()
    };
    assert_eq!(
        audio_speakers, expected_audio,
        "job {id}: result.files should hold one audio file per speaker for {job_type}: {files:#?}"
    );
    let rttm_files: Vec<&Value> = files.iter().filter(|f| f["type"] == "rttm").collect();
    assert_eq!(
        rttm_files.len(),
        1,
        "job {id}: exactly one rttm file: {files:#?}"
    );
    assert_eq!(
        files.len(),
        audio_speakers.len() + 1,
        "job {id}: files holds only audio and rttm entries: {files:#?}"
    );
    let rttm_path = string(rttm_files[0], "path", rttm_files[0]);
    assert_eq!(
        result["rttm_path"], rttm_path,
        "job {id}: rttm_path should be the rttm file's path"
    );
    let rttm_url = string(rttm_files[0], "download_url", rttm_files[0]).to_string();

    let segments = array(result, "segments", result);
    assert!(
        !segments.is_empty(),
        "job {id}: the sample has speech, so segments: {result}"
    );
    for segment in segments {
        let speaker = string(segment, "speaker", segment);
        assert!(
            labels.contains(speaker),
            "job {id}: segment of an unlisted speaker: {segment}"
        );
        let (start, end) = (
            number(segment, "start", segment),
            number(segment, "end", segment),
        );
        assert!(
            0.0 <= start && start < end && end <= duration + 0.01,
            "job {id}: a segment must lie inside the audio: {segment}"
        );
    }

    Outputs {
        id,
        labels,
        tracks,
        rttm_url,
        credits_used,
    }
}

/// GET a download_url with no credentials; expects 200. Returns (Content-Type, body).
pub async fn download(server: &Server, url: &str, what: &str) -> (String, Vec<u8>) {
    let response = server
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: GET {url} failed: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.bytes().await.expect("read a download").to_vec();
    assert_eq!(
        status,
        200,
        "{what}: GET {url} should be 200, got {status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    (content_type, body)
}

/// Downloads every track and the RTTM of a COMPLETED job and checks that they play: WAVs in
/// the input's format, `frames` long (as long as the input), with sound; an RTTM naming
/// exactly the job's speakers.
pub async fn check_downloads(server: &Server, outputs: &Outputs, frames: u32) {
    let input = audio::sample_spec();
    for (label, url) in &outputs.tracks {
        let what = format!("job {} track {label}", outputs.id);
        let (content_type, bytes) = download(server, url, &what).await;
        assert!(
            content_type.starts_with("audio/") && content_type.contains("wav"),
            "{what}: Content-Type should be audio/wav, got {content_type:?}"
        );
        let track = play_wav(&bytes, &what);
        assert_eq!(
            (track.spec.sample_rate, track.spec.channels),
            (input.sample_rate, input.channels),
            "{what}: a track keeps the input's sample rate and channels"
        );
        assert_eq!(
            track.frames, frames,
            "{what}: a track is as long as the input"
        );
        assert!(track.has_sound, "{what}: the track is all digital silence");
    }

    let what = format!("job {} RTTM", outputs.id);
    let (content_type, bytes) = download(server, &outputs.rttm_url, &what).await;
    assert!(
        content_type.starts_with("text/plain"),
        "{what}: Content-Type should be text/plain, got {content_type:?}"
    );
    let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    let rttm_labels: BTreeSet<String> = parse_rttm(&text, &what)
        .into_iter()
        .map(|turn| turn.label)
        .collect();
    assert_eq!(
        rttm_labels, outputs.labels,
        "{what}: the RTTM names the job's speakers"
    );
}

/// Waits for COMPLETED, then checks the job and its downloads.
pub async fn completed_job(
    server: &Server,
    user: &User,
    id: i64,
    job_type: &str,
    seconds: f64,
) -> Outputs {
    let job = server.wait_for_status(user, id, "COMPLETED").await;
    check_completed(server, &job, job_type, seconds)
}

/// The job without its signed URLs (a signature may be minted per response) and
/// `updated_at`: what two reads of an unchanged job must agree on.
pub fn stable_fields(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| {
                    !matches!(key.as_str(), "download_url" | "rttm_url" | "updated_at")
                })
                .map(|(key, value)| (key.clone(), stable_fields(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(stable_fields).collect()),
        other => other.clone(),
    }
}

/// The ids of a listing's items, in order.
pub fn listed_ids(listing: &Value) -> Vec<i64> {
    listing["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a listing has items: {listing}"))
        .iter()
        .map(job_id)
        .collect()
}

/// `GET /api/v1/speaker/jobs/{id}` and `/api/v1/jobs/{id}` as another user: both 404 with
/// AudioPod's exact detail.
pub async fn expect_not_found(server: &Server, user: &User, id: i64) {
    use crate::client::WithKey;
    for path in [
        format!("/api/v1/speaker/jobs/{id}"),
        format!("/api/v1/jobs/{id}"),
    ] {
        let response = server.get(&path).with_key(user).send().await;
        let body = expect_json(response, 404, &format!("GET {path}")).await;
        assert_eq!(
            body,
            serde_json::json!({"detail": "Job not found or access denied"}),
            "GET {path}: the 404 body"
        );
    }
}
