//! What a stream's messages, its `completed` message and its finished job must show.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::harness::{Auth, ODD_FRAME_BYTES, Reference, WsSession};
use crate::audio::{RttmTurn, credits_for, parse_rttm, play_wav};
use crate::checks::{download, listed_ids};
use crate::server::{Server, User};

/// How far a stream's duration may be from the audio sent.
pub(super) const DURATION_TOLERANCE_SECONDS: f64 = 0.1;

pub(super) fn number(value: &Value, field: &str) -> f64 {
    value[field]
        .as_f64()
        .filter(|x| x.is_finite())
        .unwrap_or_else(|| panic!("{field} should be a finite number: {value}"))
}

fn is_speaker_label(label: &str) -> bool {
    label
        .strip_prefix("SPEAKER_")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

fn label<'a>(value: &'a Value, field: &str) -> &'a str {
    let text = value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} should be a string: {value}"));
    assert!(
        is_speaker_label(text),
        "{field} should look like SPEAKER_1: {value}"
    );
    text
}

pub fn job_id_of(message: &Value) -> i64 {
    message["job_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("job_id should be an integer: {message}"))
}

/// `ready`: a session id, the job id, and the latency and step in force.
pub(super) fn check_ready(ready: &Value, latency_ms: Option<u64>) -> i64 {
    assert!(
        ready["session_id"].as_str().is_some_and(|s| !s.is_empty()),
        "ready carries a session_id: {ready}"
    );
    let latency = ready["latency_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("ready.latency_ms should be an integer: {ready}"));
    match latency_ms {
        Some(asked) => assert_eq!(latency, asked, "ready.latency_ms is the one asked: {ready}"),
        None => assert!(
            (500..=2000).contains(&latency),
            "the default latency is in 500–2000 ms: {ready}"
        ),
    }
    let step = ready["step_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("ready.step_ms should be an integer: {ready}"));
    assert!(
        step > 0 && step <= latency,
        "0 < step_ms <= latency_ms: {ready}"
    );
    job_id_of(ready)
}

/// A `speaker` event.
#[derive(Debug, Clone)]
struct Turn {
    label: String,
    start: f64,
    end: Option<f64>,
    is_final: bool,
}

/// The events of one finished stream, checked for form and consistency.
pub(super) struct Events {
    turns: Vec<Turn>,
    /// Every label seen → the label it has after all relabels (a relabel moves every past
    /// and future turn of `from` to `to`).
    relabels: BTreeMap<String, String>,
    /// `usage` events: (audio_seconds, credits).
    usage: Vec<(f64, f64)>,
}

impl Events {
    /// Checks every message of a stream that lasted `seconds`.
    pub(super) fn check(messages: &[Value], seconds: f64) -> Events {
        let mut turns = Vec::new();
        let mut relabels = BTreeMap::new();
        let mut retired: BTreeSet<String> = BTreeSet::new();
        let mut usage = Vec::new();
        for message in messages {
            match message["type"].as_str().unwrap_or_default() {
                "speaker" => {
                    let speaker = label(message, "speaker").to_string();
                    assert!(
                        !retired.contains(&speaker),
                        "a relabel moved {speaker} away, yet a later event uses it: {message}"
                    );
                    let start = number(message, "start");
                    let end = match &message["end"] {
                        Value::Null => None,
                        _ => Some(number(message, "end")),
                    };
                    let is_final = message["final"]
                        .as_bool()
                        .unwrap_or_else(|| panic!("final should be a boolean: {message}"));
                    let confidence = number(message, "confidence");
                    assert!(
                        (0.0..=1.0).contains(&confidence),
                        "confidence is within 0–1: {message}"
                    );
                    assert!(
                        start >= 0.0 && start <= seconds + DURATION_TOLERANCE_SECONDS,
                        "a turn starts inside the {seconds} s streamed: {message}"
                    );
                    if is_final {
                        let end =
                            end.unwrap_or_else(|| panic!("a final turn has an end: {message}"));
                        assert!(
                            end >= start && end <= seconds + DURATION_TOLERANCE_SECONDS,
                            "a final turn has start <= end <= {seconds} s: {message}"
                        );
                    } else if let Some(end) = end {
                        assert!(end >= start, "a turn's end is after its start: {message}");
                    }
                    turns.push(Turn {
                        label: speaker,
                        start,
                        end,
                        is_final,
                    });
                }
                "relabel" => {
                    let from = label(message, "from").to_string();
                    let to = label(message, "to").to_string();
                    assert_ne!(from, to, "a relabel changes the label: {message}");
                    retired.insert(from.clone());
                    retired.remove(&to);
                    relabels
                        .values_mut()
                        .filter(|current| **current == from)
                        .for_each(|current| *current = to.clone());
                    relabels.insert(from, to.clone());
                    relabels.entry(to.clone()).or_insert(to);
                }
                "usage" => {
                    usage.push((number(message, "audio_seconds"), number(message, "credits")));
                }
                "warning" => assert!(
                    message["code"].as_str().is_some(),
                    "a warning has a code: {message}"
                ),
                "ready" | "completed" => {}
                other => panic!("an unexpected {other:?} message in a stream: {message}"),
            }
        }
        let events = Events {
            turns,
            relabels,
            usage,
        };
        assert!(
            events.turns.iter().any(|t| t.is_final),
            "the stream had speech, so final turns: {messages:?}"
        );
        events
    }

    /// Follows relabels to the label a speaker has at the end.
    fn resolve(&self, label: &str) -> String {
        self.relabels
            .get(label)
            .cloned()
            .unwrap_or_else(|| label.to_string())
    }

    /// Final turns with their labels after every relabel: (label, start, end).
    fn finals(&self) -> Vec<(String, f64, f64)> {
        self.turns
            .iter()
            .filter(|t| t.is_final)
            .map(|t| (self.resolve(&t.label), t.start, t.end.expect("checked")))
            .collect()
    }

    fn final_labels(&self) -> BTreeSet<String> {
        self.finals()
            .into_iter()
            .map(|(label, _, _)| label)
            .collect()
    }
}

/// Per label, the 10 ms frames of `[0, seconds)` it covers.
fn coverage(turns: &[(String, f64, f64)], seconds: f64) -> BTreeMap<String, Vec<bool>> {
    let frames = (seconds * 100.0).ceil() as usize;
    let mut grid: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for (label, start, end) in turns {
        let row = grid
            .entry(label.clone())
            .or_insert_with(|| vec![false; frames]);
        let first = ((start * 100.0).round() as usize).min(frames);
        let last = ((end * 100.0).round() as usize).min(frames);
        row[first..last].iter_mut().for_each(|f| *f = true);
    }
    grid
}

fn rttm_spans(turns: &[RttmTurn]) -> Vec<(String, f64, f64)> {
    turns
        .iter()
        .map(|t| (t.label.clone(), t.start, t.start + t.duration))
        .collect()
}

/// The share of `reference` speech that `hypothesis` attributes to the right speaker, under
/// the best one-to-one mapping of reference speakers onto hypothesis speakers.
fn attributed_share(
    reference: &[(String, f64, f64)],
    hypothesis: &[(String, f64, f64)],
    seconds: f64,
) -> f64 {
    let reference = coverage(reference, seconds);
    let hypothesis = coverage(hypothesis, seconds);
    let reference: Vec<&Vec<bool>> = reference.values().collect();
    let hypothesis: Vec<&Vec<bool>> = hypothesis.values().collect();
    let overlap: Vec<Vec<usize>> = reference
        .iter()
        .map(|r| {
            hypothesis
                .iter()
                .map(|h| r.iter().zip(h.iter()).filter(|(a, b)| **a && **b).count())
                .collect()
        })
        .collect();
    fn best(overlap: &[Vec<usize>], row: usize, used: &mut [bool]) -> usize {
        if row == overlap.len() {
            return 0;
        }
        let mut best_total = best(overlap, row + 1, used);
        for column in 0..used.len() {
            if !used[column] {
                used[column] = true;
                best_total = best_total.max(overlap[row][column] + best(overlap, row + 1, used));
                used[column] = false;
            }
        }
        best_total
    }
    let correct = best(&overlap, 0, &mut vec![false; hypothesis.len()]);
    let total: usize = reference
        .iter()
        .map(|r| r.iter().filter(|f| **f).count())
        .sum();
    correct as f64 / total.max(1) as f64
}

/// What a `completed` message says, after its checks.
pub(super) struct Completed {
    duration: f64,
    credits_used: i64,
    turns: Vec<RttmTurn>,
    labels: BTreeSet<String>,
}

/// Checks `completed` against the events before it: the RTTM names the final labels (after
/// relabels) and agrees with the final turns; the duration is the audio sent.
pub(super) fn check_completed(
    completed: &Value,
    events: &Events,
    job_id: i64,
    seconds_sent: f64,
) -> Completed {
    assert_eq!(
        job_id_of(completed),
        job_id,
        "completed names the job of ready: {completed}"
    );
    let duration = number(completed, "duration_seconds");
    assert!(
        (duration - seconds_sent).abs() <= DURATION_TOLERANCE_SECONDS,
        "completed.duration_seconds {duration}, but {seconds_sent} s of audio were sent"
    );
    let credits_used = completed["credits_used"]
        .as_i64()
        .unwrap_or_else(|| panic!("completed.credits_used should be an integer: {completed}"));
    assert_eq!(
        credits_used,
        credits_for(duration),
        "credits_used is ceil(27.5 × {duration} s): {completed}"
    );
    let rttm = completed["rttm"]
        .as_str()
        .unwrap_or_else(|| panic!("completed.rttm should be the RTTM text: {completed}"));
    let turns = parse_rttm(rttm, "completed.rttm");
    let labels: BTreeSet<String> = turns.iter().map(|t| t.label.clone()).collect();
    assert_eq!(
        labels,
        events.final_labels(),
        "the RTTM's speakers are the final events' speakers after relabels ({:?}); RTTM:\n{rttm}",
        events.relabels
    );
    let speakers: BTreeSet<String> = completed["speakers"]
        .as_array()
        .unwrap_or_else(|| panic!("completed.speakers should be an array: {completed}"))
        .iter()
        .map(|s| label(s, "label").to_string())
        .collect();
    assert_eq!(
        speakers, labels,
        "completed.speakers lists the RTTM's speakers: {completed}"
    );
    let agreement = attributed_share(&events.finals(), &rttm_spans(&turns), duration);
    assert!(
        agreement >= 0.9,
        "the RTTM should give final-event speech to the same speaker; only {:.1} % agrees",
        agreement * 100.0
    );
    for (audio_seconds, credits) in &events.usage {
        assert!(
            *audio_seconds <= duration + DURATION_TOLERANCE_SECONDS
                && *credits <= credits_used as f64 + 1e-9,
            "usage never exceeds the stream ({duration} s, {credits_used} credits): \
             {:?}",
            events.usage
        );
    }
    assert!(
        events.usage.windows(2).all(|w| w[0].0 <= w[1].0),
        "usage.audio_seconds never decreases: {:?}",
        events.usage
    );
    Completed {
        duration,
        credits_used,
        turns,
        labels,
    }
}

/// The finished job over HTTP: COMPLETED, `job_type` stream, listed, one WAV per speaker at the
/// stream's own format and length, and the RTTM. Returns the job.
pub(super) async fn check_job(
    server: &Server,
    user: &User,
    job_id: i64,
    format: (u32, u16),
    labels: Option<&BTreeSet<String>>,
) -> Value {
    let job = server.wait_for_status(user, job_id, "COMPLETED").await;
    assert_eq!(job["job_type"], "stream", "a stream's job: {job:#}");
    let duration = number(&job, "duration_seconds");
    let result = &job["result"];
    let speakers = result["speakers"]
        .as_array()
        .unwrap_or_else(|| panic!("job {job_id}: result.speakers should be an array: {job:#}"));
    let job_labels: BTreeSet<String> = speakers
        .iter()
        .map(|s| label(s, "label").to_string())
        .collect();
    if let Some(labels) = labels {
        assert_eq!(
            &job_labels, labels,
            "job {job_id}: the job's speakers are the stream's: {job:#}"
        );
    }
    for speaker in speakers {
        let what = format!("job {job_id} track {}", speaker["label"]);
        let url = speaker["download_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: a speaker has a download_url: {speaker}"));
        let (content_type, bytes) = download(server, url, &what).await;
        assert!(
            content_type.starts_with("audio/") && content_type.contains("wav"),
            "{what}: Content-Type should be audio/wav, got {content_type:?}"
        );
        let track = play_wav(&bytes, &what);
        assert_eq!(
            (track.spec.sample_rate, track.spec.channels),
            format,
            "{what}: a track keeps the stream's sample rate and channels"
        );
        let track_seconds = f64::from(track.frames) / f64::from(track.spec.sample_rate);
        assert!(
            (track_seconds - duration).abs() <= DURATION_TOLERANCE_SECONDS,
            "{what}: the track lasts {track_seconds} s, the stream {duration} s"
        );
        assert!(track.has_sound, "{what}: the track is all digital silence");
    }
    let files = result["files"]
        .as_array()
        .unwrap_or_else(|| panic!("job {job_id}: result.files should be an array: {job:#}"));
    let rttm_files: Vec<&Value> = files.iter().filter(|f| f["type"] == "rttm").collect();
    assert_eq!(
        rttm_files.len(),
        1,
        "job {job_id}: one rttm file: {files:#?}"
    );
    let url = rttm_files[0]["download_url"]
        .as_str()
        .unwrap_or_else(|| panic!("job {job_id}: the rttm file has a download_url: {files:#?}"));
    let what = format!("job {job_id} RTTM");
    let (_, bytes) = download(server, url, &what).await;
    let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    let rttm_labels: BTreeSet<String> = parse_rttm(&text, &what)
        .into_iter()
        .map(|t| t.label)
        .collect();
    assert_eq!(
        rttm_labels, job_labels,
        "{what}: the RTTM names the job's speakers"
    );
    let listing = server.list(user, "").await;
    assert!(
        listed_ids(&listing).contains(&job_id),
        "job {job_id} should be in its owner's job list: {listing:#}"
    );
    job
}

/// Streams a clip start to end and checks everything a finished stream shows: events,
/// `completed`, the job and its downloads, the charge, and accuracy against the reference.
pub(super) async fn stream_and_check(
    server: &Server,
    user: &User,
    reference: &Reference,
    encoding: &str,
) -> Completed {
    let before = server.balance(user).await;
    let pcm = &reference.pcm;
    let mut session = WsSession::connect(server, Auth::Header(&user.key)).await;
    // pcm_f32le is the clip made 48 kHz stereo; the others keep the clip's format.
    let format = match encoding {
        "pcm_f32le" => (48_000, 2),
        _ => (pcm.sample_rate, pcm.channels),
    };
    let start = json!({
        "type": "start",
        "sample_rate": format.0,
        "channels": format.1,
        "encoding": encoding,
    });
    let ready = session.start(start).await;
    let job_id = check_ready(&ready, None);

    let seconds = match encoding {
        "pcm_s16le" | "pcm_f32le" => {
            let audio = if encoding == "pcm_s16le" {
                pcm.s16le()
            } else {
                pcm.f32le_48k_stereo()
            };
            let sent = session.send_audio(&audio, ODD_FRAME_BYTES).await;
            assert_eq!(
                sent,
                audio.len(),
                "the server closed mid-stream: {}",
                session.summary()
            );
            pcm.seconds()
        }
        _ => {
            let packets = pcm.opus_packets();
            let sent = session.send_packets(&packets).await;
            assert_eq!(
                sent,
                packets.len(),
                "the server closed mid-stream: {}",
                session.summary()
            );
            packets.len() as f64 * 0.02
        }
    };
    let completed = session.end().await;

    let messages = &session.received;
    let events = Events::check(messages, seconds);
    let first_speaker = events.turns.first().expect("checked: there are turns");
    assert!(
        !first_speaker.is_final,
        "provisional events come before finals; the first speaker event is final: {first_speaker:?}"
    );
    assert!(
        events.turns.iter().any(|t| !t.is_final),
        "a stream shows provisional turns"
    );
    assert!(
        !events.usage.is_empty(),
        "a {seconds} s stream reports usage: {}",
        session.summary()
    );
    assert!(
        events.final_labels().len() >= 2,
        "{}: two people speak, the final events name {:?}",
        reference.name,
        events.final_labels()
    );
    let completed = check_completed(&completed, &events, job_id, seconds);

    let share = attributed_share(
        &rttm_spans(&reference.turns),
        &rttm_spans(&completed.turns),
        completed.duration,
    );
    assert!(
        share >= 0.70,
        "{} ({encoding}): only {:.1} % of the reference speech goes to the matching speaker \
         (one-to-one mapping); RTTM:\n{:#?}",
        reference.name,
        share * 100.0,
        completed.turns
    );

    eprintln!(
        "{} ({encoding}): {} messages, speakers {:?}, relabels {:?}, {:.1} % of the reference \
         speech attributed",
        reference.name,
        session.received.len(),
        completed.labels,
        events.relabels,
        share * 100.0
    );
    check_job(server, user, job_id, format, Some(&completed.labels)).await;
    assert_eq!(
        server.balance(user).await,
        before - completed.credits_used,
        "the balance drops by exactly credits_used"
    );
    completed
}
