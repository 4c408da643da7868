//! A scripted stand-in for the live endpoint, so the client, the delay
//! maths and the output can be tested end to end without the real server.
//!
//! The fake "hears" one-second turns alternating between `S0` and `S1`
//! (turn k covers [k, k+1) s). Every 0.5 s of audio received it sends the
//! current turn as a provisional open event, and the final of every turn
//! that ended more than the stream's latency ago; `end` flushes the rest.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use whospoke_protocol::{ClientMessage, Completed, ServerMessage};

use crate::audio::{Clip, Encoding};
use crate::client::StreamConfig;
use crate::report::{RunSettings, RunSummary};
use crate::run::{self, RunPlan, RunResult};

const KEY: &str = "ap_test";
const STEP_SECONDS: f64 = 0.5;

#[derive(Clone, Copy, PartialEq)]
enum Script {
    Diarize,
    /// An error message right after `ready`, then close 1011.
    FailAfterReady,
    /// Garbage text once audio flows, then diarize as usual.
    Garbage,
    /// Never answer `end`.
    Mute,
}

async fn serve(script: Script) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(session(socket, script));
        }
    });
    format!("http://{address}")
}

// The shape of tungstenite's handshake callback, large error and all.
#[allow(clippy::result_large_err)]
fn check_key(request: &Request, response: Response) -> Result<Response, ErrorResponse> {
    let good = request.uri().path() == "/api/v1/speaker/stream"
        && request
            .headers()
            .get("X-API-Key")
            .is_some_and(|k| k.as_bytes() == KEY.as_bytes());
    if good {
        return Ok(response);
    }
    let mut refusal = ErrorResponse::new(Some(r#"{"detail":"Invalid API key"}"#.into()));
    *refusal.status_mut() = StatusCode::UNAUTHORIZED;
    Err(refusal)
}

fn text(message: &ServerMessage) -> Message {
    Message::text(message.to_text())
}

fn speaker(turn: u64, is_final: bool, end: Option<f64>) -> Message {
    text(&ServerMessage::Speaker {
        speaker: format!("S{}", turn % 2),
        start_seconds: turn as f64,
        end_seconds: end,
        is_final,
        confidence: 0.9,
    })
}

async fn session(socket: TcpStream, script: Script) {
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(socket, check_key).await else {
        return;
    };
    let Some(Ok(Message::Text(start))) = ws.next().await else {
        return;
    };
    let Ok(ClientMessage::Start(start)) = ClientMessage::parse(&start) else {
        panic!("not a start: {start}");
    };
    assert_eq!(start.encoding, Some(Encoding::PcmS16le.into()));
    let rate = start.sample_rate.unwrap() as f64;
    let latency_ms = start.latency_ms.unwrap();
    let latency = latency_ms as f64 / 1000.0;
    let ready = ServerMessage::Ready {
        session_id: "s1".into(),
        job_id: 7,
        latency_ms: latency_ms.try_into().unwrap(),
        step_ms: 500,
    };
    ws.send(text(&ready)).await.unwrap();
    if script == Script::FailAfterReady {
        let error = ServerMessage::Error {
            code: "internal".into(),
            message: "boom".into(),
        };
        let _ = ws.send(text(&error)).await;
        let close = CloseFrame {
            code: CloseCode::Error,
            reason: "boom".into(),
        };
        let _ = ws.close(Some(close)).await;
        return;
    }

    let mut heard_samples = 0u64;
    let mut steps = 0u64;
    let mut finals = 0u64; // turns [0, finals) are final
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Binary(bytes) => {
                if script == Script::Garbage && heard_samples == 0 {
                    ws.send(Message::text("garbage")).await.unwrap();
                }
                heard_samples += bytes.len() as u64 / 2;
                let heard = heard_samples as f64 / rate;
                while (steps + 1) as f64 * STEP_SECONDS <= heard + 1e-9 {
                    steps += 1;
                    let now = steps as f64 * STEP_SECONDS;
                    let current = now.floor() as u64;
                    ws.send(speaker(current, false, None)).await.unwrap();
                    while (finals + 1) as f64 + latency <= now + 1e-9 {
                        ws.send(speaker(finals, true, Some(finals as f64 + 1.0)))
                            .await
                            .unwrap();
                        finals += 1;
                    }
                }
            }
            Message::Text(message)
                if matches!(ClientMessage::parse(&message), Ok(ClientMessage::End)) =>
            {
                if script == Script::Mute {
                    continue;
                }
                let heard = heard_samples as f64 / rate;
                let mut rttm = String::new();
                for turn in 0..heard.ceil() as u64 {
                    let end = (turn as f64 + 1.0).min(heard);
                    if turn >= finals {
                        ws.send(speaker(turn, true, Some(end))).await.unwrap();
                    }
                    rttm += &format!(
                        "SPEAKER x 1 {turn}.000 {:.3} <NA> <NA> S{} <NA> <NA>\n",
                        end - turn as f64,
                        turn % 2
                    );
                }
                let usage = ServerMessage::Usage {
                    audio_seconds: heard,
                    credits: 3,
                };
                ws.send(text(&usage)).await.unwrap();
                let done = ServerMessage::Completed(Completed {
                    job_id: 7,
                    rttm,
                    speakers: Vec::new(),
                    duration_seconds: heard,
                    credits_used: 3,
                });
                ws.send(text(&done)).await.unwrap();
                let close = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = ws.close(Some(close)).await;
                return;
            }
            _ => {}
        }
    }
}

fn config(url: &str, key: &str, pace: f64) -> StreamConfig {
    StreamConfig {
        url: crate::cli::stream_url(url).unwrap(),
        api_key: key.into(),
        latency_ms: 1000,
        encoding: Encoding::PcmS16le,
        frame_ms: 100,
        pace,
        num_speakers: None,
        max_speakers: None,
        extract: false,
        connect_timeout: Duration::from_secs(5),
        completion_timeout: Duration::from_secs(2),
    }
}

fn settings(pace: f64) -> RunSettings {
    RunSettings {
        pace,
        latency_ms: 1000,
        frame_ms: 100,
    }
}

/// `streams` streams of 3 s of quiet noise each.
async fn run_against(url: &str, key: &str, pace: f64, streams: usize) -> RunResult {
    let samples = (0..48_000)
        .map(|n| ((n % 7) as f32 - 3.0) / 1000.0)
        .collect();
    let clip = Arc::new(Clip::new("talk".into(), 16_000, 1, samples));
    let plan = RunPlan {
        streams: run::round_robin(&[clip], streams, None).unwrap(),
        config: config(url, key, pace),
        ramp_seconds: 0.2,
        server_pid: Some(std::process::id()),
        marks: vec![1.0],
    };
    run::execute(plan).await.unwrap()
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn paced_streams_are_measured_and_written() {
    let url = serve(Script::Diarize).await;
    // Pace 2: each 3 s stream takes 1.5 s, long enough for a second RSS sample.
    let result = run_against(&url, KEY, 2.0, 2).await;
    let summary = RunSummary::new(&result, settings(2.0), &[1.0]);

    assert_eq!(
        summary.error_total, 0,
        "{:?}",
        summary.per_stream[0].error_notes
    );
    assert_eq!(summary.completed_streams, 2);
    // Per stream: 6 steps of provisional events, 3 one-second turns.
    assert_eq!(summary.events.provisional, 12);
    assert_eq!(summary.events.finals, 6);
    assert_eq!(summary.events.usage, 2);
    let finals = summary.final_delay.unwrap();
    assert_eq!(finals.count, 6);
    // The fake finalises a turn 1 s of audio (0.5 s at pace 2) after it ends.
    assert!(
        finals.p50_seconds > 0.1 && finals.max_seconds < 2.0,
        "{finals:?}"
    );
    let first = summary.first_seen_delay.unwrap();
    assert_eq!(first.count, 6, "three turn starts per stream");
    assert!(first.max_seconds < 1.0, "{first:?}");
    assert!(summary.keeps_up(0.5));
    assert!((summary.audio_seconds_sent - 6.0).abs() < 1e-9);
    let server = summary.server.as_ref().unwrap();
    assert!(server.rss_max_mb.unwrap() > 0.0);
    assert_eq!(
        summary.marks.len(),
        1,
        "RSS read once 1 s of audio was sent"
    );
    for stream in &summary.per_stream {
        assert!(stream.ready_ms.is_some());
        assert_eq!(stream.close_code, Some(1000));
        assert!(stream.completion_lag_seconds.unwrap() >= 0.0);
    }

    let dir = tempfile::tempdir().unwrap();
    crate::output::write_run(dir.path(), &summary, &result).unwrap();
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(saved["events"]["finals"], 6);
    let rttms: Vec<_> = std::fs::read_dir(dir.path().join("rttm"))
        .unwrap()
        .collect();
    assert_eq!(rttms.len(), 1, "one RTTM per file for der.py");
    let stream_dir = dir.path().join("streams/001-talk");
    let events = read_lines(&stream_dir.join("events.jsonl"));
    assert_eq!(events[0]["event"]["type"], "ready");
    assert_eq!(events.last().unwrap()["event"]["type"], "completed");
    assert!(
        events
            .iter()
            .all(|e| e["recv_s"].is_f64() && e["audio_sent_s"].is_f64())
    );
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(stream_dir.join("stream.json")).unwrap())
            .unwrap();
    assert_eq!(meta["sends"].as_array().unwrap().len(), 30);
    assert_eq!(meta["whole_file"], true);
    assert!(
        std::fs::read_to_string(stream_dir.join("talk.rttm"))
            .unwrap()
            .starts_with("SPEAKER x 1 0.000 1.000")
    );
}

#[tokio::test]
async fn unpaced_streams_complete_without_delays() {
    let url = serve(Script::Diarize).await;
    let result = run_against(&url, KEY, 0.0, 1).await;
    let summary = RunSummary::new(&result, settings(0.0), &[]);
    assert_eq!(summary.error_total, 0);
    assert_eq!(summary.completed_streams, 1);
    assert!(summary.final_delay.is_none());
    assert!(summary.per_stream[0].realtime_factor.unwrap() > 1.0);
    assert!(!summary.keeps_up(0.5), "no delays, nothing to judge");
}

#[tokio::test]
async fn a_wrong_key_is_a_connect_failure() {
    let url = serve(Script::Diarize).await;
    let result = run_against(&url, "ap_wrong", 4.0, 2).await;
    let summary = RunSummary::new(&result, settings(4.0), &[]);
    assert_eq!(summary.errors.connect_failures, 2);
    assert_eq!(summary.completed_streams, 0);
    assert!(summary.per_stream[0].error_notes[0].contains("401"));
    assert!(!summary.keeps_up(0.5));
}

#[tokio::test]
async fn server_errors_and_closes_are_counted() {
    let url = serve(Script::FailAfterReady).await;
    let result = run_against(&url, KEY, 4.0, 1).await;
    let summary = RunSummary::new(&result, settings(4.0), &[]);
    let errors = summary.errors;
    assert_eq!(errors.error_messages, 1);
    assert_eq!(errors.unexpected_closes, 1);
    assert_eq!(errors.missing_completed, 1);
    assert_eq!(summary.per_stream[0].close_code, Some(1011));
}

#[tokio::test]
async fn garbage_is_counted_and_the_stream_goes_on() {
    let url = serve(Script::Garbage).await;
    let result = run_against(&url, KEY, 0.0, 1).await;
    let summary = RunSummary::new(&result, settings(0.0), &[]);
    assert_eq!(summary.errors.malformed_messages, 1);
    assert_eq!(summary.error_total, 1);
    assert_eq!(summary.completed_streams, 1);
}

#[tokio::test]
async fn a_missing_completed_times_out() {
    let url = serve(Script::Mute).await;
    let result = run_against(&url, KEY, 0.0, 1).await;
    let summary = RunSummary::new(&result, settings(0.0), &[]);
    assert_eq!(summary.errors.missing_completed, 1);
    assert_eq!(summary.error_total, 1);
}

#[tokio::test]
async fn a_closed_port_is_a_connect_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let result = run_against(&url, KEY, 1.0, 1).await;
    assert_eq!(result.records[0].errors.connect_failures, 1);
}
