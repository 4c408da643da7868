//! The live diarizer on real audio with the real models: the events it sends
//! agree with the diarization it ends with, finals wait for the latency and
//! no longer, flushing makes everything final, and neither block sizes nor
//! concurrent runs (sharing the model sessions) change anything.

use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

use whospoke::audio::read_analysis_audio;
use whospoke::engine::segmentation::FRAME_STEP_SAMPLES;
use whospoke::engine::{ANALYSIS_SAMPLE_RATE, Engine, EngineConfig, LiveEvent, OnlineParams};
use whospoke::output::rttm::parse_rttm;
use whospoke::{Diarization, SpeakerId, Turn};

mod support;
use support::der::der;

const RATE: f64 = ANALYSIS_SAMPLE_RATE as f64;

static ENGINE: LazyLock<Engine> =
    LazyLock::new(|| Engine::load(&EngineConfig::default()).expect("load the engine"));

/// sample.wav at 16 kHz mono: 30 s, speakers `speaker90` and `speaker91`.
static SAMPLE: LazyLock<Vec<f32>> = LazyLock::new(|| {
    let (_, samples) =
        read_analysis_audio(Path::new("tests/data/sample.wav")).expect("decode sample.wav");
    samples
});

/// An event and how much audio had been pushed when it came.
struct Heard {
    event: LiveEvent,
    heard_seconds: f64,
}

struct Stream {
    events: Vec<Heard>,
    diarization: Diarization,
}

/// Streams `samples` in blocks of `block` samples.
fn stream(samples: &[f32], params: OnlineParams, block: usize) -> Stream {
    let mut run = ENGINE.start_online(params);
    let mut events = Vec::new();
    for chunk in samples.chunks(block) {
        let new = run.push(chunk).expect("push");
        let heard_seconds = run.heard_seconds();
        events.extend(new.into_iter().map(|event| Heard {
            event,
            heard_seconds,
        }));
    }
    let heard_seconds = run.heard_seconds();
    let (last, diarization) = run.finish().expect("finish");
    events.extend(last.into_iter().map(|event| Heard {
        event,
        heard_seconds,
    }));
    Stream {
        events,
        diarization,
    }
}

/// Where each speaker label ends up once every relabel is applied.
fn final_labels(events: &[Heard]) -> impl Fn(SpeakerId) -> SpeakerId {
    let mut to: HashMap<SpeakerId, SpeakerId> = HashMap::new();
    for heard in events {
        if let LiveEvent::Relabel { from, to: target } = heard.event {
            // Later relabels apply to whatever earlier ones produced.
            for value in to.values_mut() {
                if *value == from {
                    *value = target;
                }
            }
            to.entry(from).or_insert(target);
        }
    }
    move |s| to.get(&s).copied().unwrap_or(s)
}

/// Final turns as sent, relabelled.
fn final_turns(events: &[Heard]) -> Vec<Turn> {
    let label = final_labels(events);
    events
        .iter()
        .filter_map(|heard| match heard.event {
            LiveEvent::Speaker {
                speaker,
                start_seconds,
                end_seconds: Some(end_seconds),
                is_final: true,
                ..
            } => Some(Turn {
                speaker: label(speaker),
                start_seconds,
                end_seconds,
            }),
            _ => None,
        })
        .collect()
}

/// Each speaker's speech on a 10 ms grid.
fn coverage(turns: &[Turn], seconds: f64) -> HashMap<SpeakerId, Vec<bool>> {
    let frames = (seconds * 100.0).ceil() as usize;
    let mut map: HashMap<SpeakerId, Vec<bool>> = HashMap::new();
    for turn in turns {
        let grid = map
            .entry(turn.speaker)
            .or_insert_with(|| vec![false; frames]);
        let from = (turn.start_seconds * 100.0).round() as usize;
        let to = ((turn.end_seconds * 100.0).round() as usize).min(frames);
        grid[from.min(to)..to].iter_mut().for_each(|f| *f = true);
    }
    map
}

fn reference() -> Diarization {
    let text = std::fs::read_to_string("tests/data/sample.rttm").expect("read sample.rttm");
    parse_rttm(&text).expect("parse sample.rttm")[0].to_diarization()
}

#[test]
fn final_events_are_the_diarization() {
    let params = OnlineParams::default();
    let stream = stream(&SAMPLE, params, 1600);
    let d = &stream.diarization;
    assert!((d.duration_seconds - 30.0).abs() < 1e-6);
    let sent = coverage(&final_turns(&stream.events), d.duration_seconds);
    let kept = coverage(&d.turns, d.duration_seconds);
    let mut labels: Vec<_> = kept.keys().copied().collect();
    labels.sort();
    println!("{} events, speakers {labels:?}", stream.events.len());
    assert_eq!(sent, kept, "final events and the diarization disagree");
    // Labels are numbered from 0 without gaps, as the batch results are.
    assert_eq!(
        labels,
        (0..d.num_speakers).map(SpeakerId).collect::<Vec<_>>()
    );
}

#[test]
fn live_accuracy_on_sample_wav() {
    let stream = stream(&SAMPLE, OnlineParams::default(), 1600);
    let collar = der(&reference(), &stream.diarization, 0.25);
    println!("live, 2 s latency, collar 0.25: {collar}");
    for turn in &stream.diarization.turns {
        println!(
            "  {:>6.2}-{:>6.2} {}",
            turn.start_seconds,
            turn.end_seconds,
            turn.speaker.label()
        );
    }
    assert_eq!(stream.diarization.num_speakers, 2);
    // Measured 9 % (dev-set runs, 2 s latency); the offline engine has 2 % here.
    // The live run hears both speakers' first turns before it knows either
    // voice, which costs most of it. Mislabelling one 3 s turn adds > 12 %.
    assert!(collar.rate() <= 0.15, "collar 0.25 {collar}");
}

#[test]
fn finals_come_a_latency_after_the_turn_ends() {
    let twice: Vec<f32> = SAMPLE.iter().chain(SAMPLE.iter()).copied().collect();
    for latency_seconds in [1.0, 2.0, 4.0] {
        let params = OnlineParams {
            latency_seconds,
            ..OnlineParams::default()
        };
        let stream = stream(&twice, params, 800);
        let heard_at_end = twice.len() as f64 / RATE;
        let mut finals = 0;
        for heard in &stream.events {
            let LiveEvent::Speaker {
                end_seconds: Some(end),
                is_final: true,
                ..
            } = heard.event
            else {
                continue;
            };
            if heard.heard_seconds >= heard_at_end {
                continue; // Closed by the end of the stream.
            }
            finals += 1;
            let wait = heard.heard_seconds - end;
            // Frames are decided at steps, so a final comes within half a
            // step of the latency (plus a 50 ms block).
            let slack = params.step_seconds / 2.0 + 0.06;
            assert!(
                (wait - latency_seconds).abs() <= slack,
                "latency {latency_seconds}: turn ending at {end:.2} final after {:.2} s of audio",
                wait
            );
        }
        println!("latency {latency_seconds}: {finals} finals checked");
        assert!(
            finals >= 4,
            "latency {latency_seconds}: only {finals} finals"
        );
    }
}

#[test]
fn provisional_turns_come_before_their_finals() {
    let stream = stream(&SAMPLE, OnlineParams::default(), 1600);
    let label = final_labels(&stream.events);
    let mut provisional: Vec<(SpeakerId, f64, f64)> = Vec::new();
    let mut early = 0;
    let mut finals = 0;
    for heard in &stream.events {
        let LiveEvent::Speaker {
            speaker,
            start_seconds,
            end_seconds,
            is_final,
            confidence,
        } = heard.event
        else {
            continue;
        };
        assert!((0.0..=1.0).contains(&confidence), "confidence {confidence}");
        if !is_final {
            assert!(end_seconds.is_none_or(|e| e > start_seconds));
            provisional.push((label(speaker), start_seconds, heard.heard_seconds));
            continue;
        }
        finals += 1;
        let end = end_seconds.expect("finals have an end");
        // Some provisional event of the same speaker started inside this turn, earlier.
        if provisional.iter().any(|&(s, start, _)| {
            s == label(speaker) && start_seconds - 0.5 <= start && start < end
        }) {
            early += 1;
        }
    }
    println!("{early} of {finals} finals were announced provisionally first");
    assert!(finals > 0);
    assert!(early * 10 >= finals * 8, "{early} of {finals}");
}

#[test]
fn flush_makes_everything_heard_final() {
    let mut run = ENGINE.start_online(OnlineParams::default());
    let half = &SAMPLE[..(15.0 * RATE) as usize];
    run.push(half).expect("push");
    let flushed = run.flush().expect("flush");
    let finals: Vec<f64> = flushed
        .iter()
        .filter_map(|e| match e {
            LiveEvent::Speaker {
                end_seconds: Some(end),
                is_final: true,
                ..
            } => Some(*end),
            _ => None,
        })
        .collect();
    // Someone speaks at 14.5-15 s in sample.wav: the flush closes that turn at 15 s.
    let last = finals.iter().copied().fold(0.0, f64::max);
    assert!((last - 15.0).abs() < 0.05, "last final ends at {last}");
    // Nothing before the flush point is decided again afterwards.
    let rest = run.push(&SAMPLE[half.len()..]).expect("push");
    for event in rest {
        if let LiveEvent::Speaker {
            start_seconds,
            is_final: true,
            ..
        } = event
        {
            assert!(
                start_seconds >= 15.0 - 0.02,
                "final at {start_seconds} after flush"
            );
        }
    }
}

#[test]
fn block_size_does_not_change_the_finals() {
    let params = OnlineParams::default();
    let small = stream(&SAMPLE, params, 1);
    let odd = stream(&SAMPLE, params, 7_919);
    assert_eq!(small.diarization, odd.diarization);
    assert_eq!(final_turns(&small.events), final_turns(&odd.events));
}

#[test]
fn concurrent_runs_match_runs_alone() {
    // sample.wav from four starting points, wrapping around.
    let inputs: Vec<Vec<f32>> = (0..4)
        .map(|i| {
            let (before, after) = SAMPLE.split_at(i * SAMPLE.len() / 4);
            [after, before].concat()
        })
        .collect();
    let params = OnlineParams::default();
    let together: Vec<Diarization> = std::thread::scope(|scope| {
        let runs: Vec<_> = inputs
            .iter()
            .map(|input| scope.spawn(move || stream(input, params, 1600).diarization))
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("run"))
            .collect()
    });
    let frame = FRAME_STEP_SAMPLES as f64 / RATE;
    for (i, (input, together)) in inputs.iter().zip(&together).enumerate() {
        let alone = stream(input, params, 1600).diarization;
        assert_eq!(together.num_speakers, alone.num_speakers, "run {i}");
        assert_eq!(together.turns.len(), alone.turns.len(), "run {i}");
        for (a, b) in together.turns.iter().zip(&alone.turns) {
            assert!(
                a.speaker == b.speaker
                    && (a.start_seconds - b.start_seconds).abs() <= frame
                    && (a.end_seconds - b.end_seconds).abs() <= frame,
                "run {i}: {a:?} together, {b:?} alone"
            );
        }
    }
}

#[test]
fn max_speakers_is_honoured() {
    let params = OnlineParams {
        max_speakers: 1,
        ..OnlineParams::default()
    };
    let stream = stream(&SAMPLE, params, 1600);
    assert_eq!(stream.diarization.num_speakers, 1);
    let speech: f64 = stream
        .diarization
        .turns
        .iter()
        .map(Turn::duration_seconds)
        .sum();
    // sample.wav has about 21 s of speech.
    assert!(speech > 15.0, "{speech} s of speech");
}

#[test]
fn silence_sends_no_turns() {
    let silence = vec![0.0; (12.0 * RATE) as usize];
    let stream = stream(&silence, OnlineParams::default(), 1600);
    assert!(stream.events.is_empty(), "{} events", stream.events.len());
    assert_eq!(stream.diarization.num_speakers, 0);
}
