//! The whole engine on real audio with the real models: accuracy on `sample.wav`,
//! edge cases (silence, one speaker, very short input), speaker-count options,
//! overlap, streaming determinism, and the live runs' int8 segmentation model.
//!
//! Accuracy is scored with the small frame-based DER in `support/der.rs`.

use std::path::Path;
use std::sync::LazyLock;

use whospoke::audio::read_analysis_audio;
use whospoke::engine::segmentation::{self, POWERSET_CLASSES, Segmenter, frames_for};
use whospoke::engine::{
    ANALYSIS_SAMPLE_RATE, Engine, EngineConfig, ModelError, SpeakerCount, SpeakerCountError,
};
use whospoke::output::rttm::parse_rttm;
use whospoke::runtime::model_path;
use whospoke::{Diarization, SpeakerId};

mod support;
use support::der::{DER_FRAME_SECONDS, der, frame_activity};

const SAMPLE_WAV: &str = "tests/data/sample.wav";
const SAMPLE_RTTM: &str = "tests/data/sample.rttm";
const RATE: f64 = ANALYSIS_SAMPLE_RATE as f64;

/// Loading the models takes about a second: one engine serves every test.
static ENGINE: LazyLock<Engine> =
    LazyLock::new(|| Engine::load(&EngineConfig::default()).expect("load the engine"));

/// sample.wav at 16 kHz mono: 30 s, speakers `speaker90` and `speaker91`.
static SAMPLE: LazyLock<Vec<f32>> = LazyLock::new(|| {
    let (_, samples) = read_analysis_audio(Path::new(SAMPLE_WAV)).expect("decode sample.wav");
    assert_eq!(samples.len(), 30 * ANALYSIS_SAMPLE_RATE as usize);
    samples
});

/// The default diarization of sample.wav, pushed in one block; shared by several tests.
static SAMPLE_DIARIZATION: LazyLock<Diarization> =
    LazyLock::new(|| diarize(&SAMPLE, SpeakerCount::default()));

fn reference() -> Diarization {
    let text = std::fs::read_to_string(SAMPLE_RTTM).expect("read sample.rttm");
    let files = parse_rttm(&text).expect("parse sample.rttm");
    assert_eq!(files.len(), 1);
    files[0].to_diarization()
}

/// Diarizes `samples` in one push and checks the result is well formed.
fn diarize(samples: &[f32], speakers: SpeakerCount) -> Diarization {
    diarize_in_blocks(samples, speakers, &[samples.len()])
}

/// Pushes `samples` in blocks of the given sizes, the last size repeating to the end.
fn diarize_in_blocks(
    samples: &[f32],
    speakers: SpeakerCount,
    block_sizes: &[usize],
) -> Diarization {
    let mut run = ENGINE.start(speakers, Some(samples.len() as f64 / 16_000.0));
    let mut rest = samples;
    let mut sizes = block_sizes
        .iter()
        .chain(std::iter::repeat(block_sizes.last().unwrap_or(&1)));
    while !rest.is_empty() {
        let size = (*sizes.next().expect("endless")).clamp(1, rest.len());
        let (block, tail) = rest.split_at(size);
        run.push(block).expect("push");
        rest = tail;
    }
    let (diarization, _times) = run.finish().expect("finish");
    assert_well_formed(&diarization, samples.len());
    diarization
}

/// Invariants every diarization must hold, whatever the input.
fn assert_well_formed(d: &Diarization, num_samples: usize) {
    let duration = num_samples as f64 / RATE;
    assert!(
        (d.duration_seconds - duration).abs() < 1e-6,
        "duration {} for {duration} s",
        d.duration_seconds
    );
    for pair in d.turns.windows(2) {
        assert!(
            pair[0].start_seconds <= pair[1].start_seconds,
            "turns not sorted: {pair:?}"
        );
    }
    for turn in &d.turns {
        assert!(
            turn.speaker.0 < d.num_speakers,
            "{turn:?} but {} speakers",
            d.num_speakers
        );
        assert!(
            0.0 <= turn.start_seconds
                && turn.start_seconds < turn.end_seconds
                && turn.end_seconds <= duration + 1e-6,
            "{turn:?} outside [0, {duration}] or empty"
        );
    }
}

/// Distinct speakers that actually have turns.
fn speakers_with_turns(d: &Diarization) -> usize {
    let mut ids: Vec<SpeakerId> = d.turns.iter().map(|t| t.speaker).collect();
    ids.sort();
    ids.dedup();
    ids.len()
}

fn seconds(from: f64, to: f64) -> std::ops::Range<usize> {
    (from * RATE).round() as usize..(to * RATE).round() as usize
}

#[test]
fn der_scorer_counts_by_hand() {
    let turn = |speaker, start_seconds, end_seconds| whospoke::Turn {
        speaker: SpeakerId(speaker),
        start_seconds,
        end_seconds,
    };
    let reference = Diarization {
        turns: vec![turn(0, 0.0, 2.0), turn(1, 2.0, 4.0)],
        num_speakers: 2,
        duration_seconds: 4.0,
    };
    // Labels swapped: a perfect answer under the mapping.
    let swapped = Diarization {
        turns: vec![turn(1, 0.0, 2.0), turn(0, 2.0, 4.0)],
        ..reference.clone()
    };
    assert_eq!(der(&reference, &swapped, 0.0).rate(), 0.0);
    // One speaker throughout: 2 s of confusion out of 4 s.
    let one = Diarization {
        turns: vec![turn(0, 0.0, 4.0)],
        num_speakers: 1,
        duration_seconds: 4.0,
    };
    let scored = der(&reference, &one, 0.0);
    assert!(
        (scored.confusion_seconds - 2.0).abs() < 1e-9 && (scored.rate() - 0.5).abs() < 1e-9,
        "{scored}"
    );
    // Speaker 1 ends 0.5 s early (missed) and a third speaker talks over 0–1 s (false alarm).
    let sloppy = Diarization {
        turns: vec![turn(0, 0.0, 2.0), turn(2, 0.0, 1.0), turn(1, 2.0, 3.5)],
        num_speakers: 3,
        duration_seconds: 4.0,
    };
    let scored = der(&reference, &sloppy, 0.0);
    assert!((scored.missed_seconds - 0.5).abs() < 1e-9, "{scored}");
    assert!((scored.false_alarm_seconds - 1.0).abs() < 1e-9, "{scored}");
    assert!(scored.confusion_seconds.abs() < 1e-9, "{scored}");
    // A 0.25 s collar leaves frames within 0.25 s of 0, 2 and 4 s unscored: 3 s of
    // reference speech remain, and of the early end only [3.5, 3.75) still counts as missed.
    let collared = der(&reference, &sloppy, 0.25);
    assert!((collared.missed_seconds - 0.25).abs() < 1e-9, "{collared}");
    assert!(
        (collared.reference_seconds - 3.0).abs() < 1e-9,
        "{collared}"
    );
}

// ---------------------------------------------------------------------------
// Accuracy and overlap on sample.wav.
// ---------------------------------------------------------------------------

#[test]
fn sample_wav_matches_its_reference() {
    let reference = reference();
    let hypothesis = &*SAMPLE_DIARIZATION;
    let no_collar = der(&reference, hypothesis, 0.0);
    let collar = der(&reference, hypothesis, 0.25);
    println!(
        "sample.wav, {} turns, {} speakers",
        hypothesis.turns.len(),
        hypothesis.num_speakers
    );
    println!("  no collar:   {no_collar}");
    println!("  collar 0.25: {collar}");
    for turn in &hypothesis.turns {
        println!(
            "  {:>6.2}-{:>6.2} {}",
            turn.start_seconds,
            turn.end_seconds,
            turn.speaker.label()
        );
    }

    assert_eq!(hypothesis.num_speakers, 2);
    assert_eq!(speakers_with_turns(hypothesis), 2);
    // Measured (ORT 1.31.1, default params): 11.2 % without collar, 2.0 % with a 0.25 s collar.
    // pyannote's own pipeline scores about 6-8 % and 0-2 % on this file. Our no-collar figure is
    // higher mostly because of the 0-10 s window, where the model puts both speakers' short
    // "Hello?" turns on one local speaker (MODELS.md §1), and a missed 0.44 s overlap at 18.2 s:
    // errors at turn edges, which the collar forgives. The file has 24.35 s of reference speech
    // (16.34 s outside the collar), so 1 % is ~0.24 s (~0.16 s with collar). The bounds leave
    // ~0.9 s (no collar) and ~0.65 s (collar) of headroom for boundary drift between ORT builds
    // or small tuning changes, yet catch real regressions: mislabelling one 3 s turn alone
    // costs > 12 %, and losing a speaker costs ~50 %.
    assert!(no_collar.rate() <= 0.15, "no-collar {no_collar}");
    assert!(collar.rate() <= 0.06, "collar 0.25 {collar}");
}

/// Overlapped speech (two or more speakers at once), in seconds on the 10 ms grid.
fn overlap_seconds(d: &Diarization) -> f64 {
    let frames = (d.duration_seconds / DER_FRAME_SECONDS).ceil() as usize;
    let active = frame_activity(d, frames);
    let overlapped = (0..frames)
        .filter(|&i| active.iter().filter(|a| a[i]).count() >= 2)
        .count();
    overlapped as f64 * DER_FRAME_SECONDS
}

#[test]
fn overlapped_speech_is_kept() {
    let reference_overlap = overlap_seconds(&reference());
    let ours = overlap_seconds(&SAMPLE_DIARIZATION);
    println!("overlap: ours {ours:.2} s, reference {reference_overlap:.2} s");
    assert!(
        (reference_overlap - 1.9).abs() < 0.05,
        "reference overlap {reference_overlap}"
    );
    assert!(ours > 0.0, "no overlapped speech in the diarization");
}

/// `d` on the 10 ms grid, only where `scored` is true.
fn masked(d: &Diarization, scored: &[bool]) -> Diarization {
    let mut turns = Vec::new();
    for (speaker, active) in frame_activity(d, scored.len()).iter().enumerate() {
        let mut start = None;
        for i in 0..=scored.len() {
            let on = i < scored.len() && active[i] && scored[i];
            match (on, start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    turns.push(whospoke::Turn {
                        speaker: SpeakerId(speaker),
                        start_seconds: s as f64 * DER_FRAME_SECONDS,
                        end_seconds: i as f64 * DER_FRAME_SECONDS,
                    });
                    start = None;
                }
                _ => {}
            }
        }
    }
    turns.sort_by(|a, b| a.start_seconds.total_cmp(&b.start_seconds));
    Diarization { turns, ..d.clone() }
}

#[test]
fn exclusive_timeline_has_one_speaker_at_a_time() {
    let overlapping = &*SAMPLE_DIARIZATION;
    let exclusive = overlapping.exclusive();
    assert_well_formed(&exclusive, SAMPLE.len());
    assert!(
        overlap_seconds(overlapping) > 0.0,
        "nothing to make exclusive"
    );
    assert_eq!(overlap_seconds(&exclusive), 0.0);
    assert_eq!(exclusive.num_speakers, overlapping.num_speakers);

    // Not a second of speech is lost: only who holds the floor changes.
    let frames = (SAMPLE_DIARIZATION.duration_seconds / DER_FRAME_SECONDS).ceil() as usize;
    let speech = |d: &Diarization| -> Vec<bool> {
        let active = frame_activity(d, frames);
        (0..frames).map(|i| active.iter().any(|a| a[i])).collect()
    };
    assert_eq!(speech(&exclusive), speech(overlapping));

    // Where the reference has exactly one speaker, exclusive output scores no
    // worse than 1 point below the overlap-aware one (it drops the false
    // alarms of spurious overlap, and may give a frame to the wrong voice).
    let reference = reference();
    let reference_active = frame_activity(&reference, frames);
    let single: Vec<bool> = (0..frames)
        .map(|i| reference_active.iter().filter(|a| a[i]).count() == 1)
        .collect();
    let scored_reference = masked(&reference, &single);
    let before = der(&scored_reference, &masked(overlapping, &single), 0.0);
    let after = der(&scored_reference, &masked(&exclusive, &single), 0.0);
    println!("non-overlapped frames: overlap-aware {before}\n  exclusive {after}");
    assert!(
        after.rate() <= before.rate() + 0.01,
        "exclusive {after} vs overlap-aware {before}"
    );
}

// ---------------------------------------------------------------------------
// Edge cases.
// ---------------------------------------------------------------------------

#[test]
fn silence_has_no_turns() {
    let seconds = 20;
    let zeros = vec![0.0f32; seconds * ANALYSIS_SAMPLE_RATE as usize];
    let d = diarize(&zeros, SpeakerCount::default());
    println!(
        "zeros: {} turns, {} speakers",
        d.turns.len(),
        d.num_speakers
    );
    assert!(d.turns.is_empty(), "{:?}", d.turns);

    // White noise at -70 dBFS RMS: uniform in [-a, a] has RMS a/√3. A fixed LCG keeps it reproducible.
    let amplitude = 10f32.powf(-70.0 / 20.0) * 3f32.sqrt();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<f32> = (0..zeros.len())
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
            (2.0 * unit - 1.0) * amplitude
        })
        .collect();
    let d = diarize(&noise, SpeakerCount::default());
    println!(
        "noise: {} turns, {} speakers",
        d.turns.len(),
        d.num_speakers
    );
    assert!(d.turns.is_empty(), "{:?}", d.turns);
}

#[test]
fn one_speaker_is_one_speaker() {
    // Single-speaker stretches of sample.rttm with overlaps cut (MODELS.md §2), concatenated.
    let stretches: [(&str, &[(f64, f64)]); 2] = [
        ("speaker91", &[(14.75, 17.85), (21.85, 27.80)]),
        ("speaker90", &[(11.10, 14.40), (18.65, 21.40)]),
    ];
    for (name, parts) in stretches {
        let audio: Vec<f32> = parts
            .iter()
            .flat_map(|&(from, to)| SAMPLE[seconds(from, to)].iter().copied())
            .collect();
        let d = diarize(&audio, SpeakerCount::default());
        let speech: f64 = d.turns.iter().map(|t| t.duration_seconds()).sum();
        println!(
            "{name} alone ({:.2} s): {} speakers, {} turns, {speech:.2} s of speech",
            d.duration_seconds,
            d.num_speakers,
            d.turns.len()
        );
        assert_eq!(d.num_speakers, 1, "{name}: {:?}", d.turns);
        assert_eq!(speakers_with_turns(&d), 1, "{name}");
    }
}

#[test]
fn very_short_input_does_not_fail() {
    // 0.5 s of speaker91 alone; `diarize` checks every turn lies inside [0, 0.5 s].
    let half_second = &SAMPLE[seconds(15.0, 15.5)];
    let d = diarize(half_second, SpeakerCount::default());
    println!("0.5 s: {} speakers, turns {:?}", d.num_speakers, d.turns);
    assert!(d.num_speakers <= 1, "{d:?}");
    assert!(speakers_with_turns(&d) <= 1, "{d:?}");

    // Shorter than one segmentation frame (991 samples), and nothing at all.
    for samples in [&SAMPLE[seconds(15.0, 15.05)], &[][..]] {
        let d = diarize(samples, SpeakerCount::default());
        println!(
            "{} samples: {} speakers, turns {:?}",
            samples.len(),
            d.num_speakers,
            d.turns
        );
        assert!(d.num_speakers <= 1, "{d:?}");
    }
    let d = diarize(&[], SpeakerCount::Exact(2));
    assert!(d.turns.is_empty(), "{d:?}");
}

// ---------------------------------------------------------------------------
// Speaker-count options.
// ---------------------------------------------------------------------------

#[test]
fn exact_speaker_count_is_honoured() {
    for wanted in [1, 3] {
        let d = diarize(&SAMPLE, SpeakerCount::Exact(wanted));
        println!(
            "Exact({wanted}): {} speakers, {} with turns",
            d.num_speakers,
            speakers_with_turns(&d)
        );
        assert_eq!(d.num_speakers, wanted);
        assert_eq!(speakers_with_turns(&d), wanted);
    }
}

#[test]
fn speaker_count_bounds_are_honoured() {
    let at_least_three = diarize(
        &SAMPLE,
        SpeakerCount::Auto {
            min: Some(3),
            max: None,
        },
    );
    println!("min 3: {} speakers", at_least_three.num_speakers);
    assert!(at_least_three.num_speakers >= 3);
    assert!(speakers_with_turns(&at_least_three) >= 3);

    let at_most_one = diarize(
        &SAMPLE,
        SpeakerCount::Auto {
            min: None,
            max: Some(1),
        },
    );
    println!("max 1: {} speakers", at_most_one.num_speakers);
    assert_eq!(at_most_one.num_speakers, 1);
    assert_eq!(speakers_with_turns(&at_most_one), 1);
}

#[test]
fn speaker_count_rejects_bad_options() {
    assert_eq!(
        SpeakerCount::new(Some(0), None, None),
        Err(SpeakerCountError::ZeroSpeakers)
    );
    assert_eq!(
        SpeakerCount::new(None, None, Some(0)),
        Err(SpeakerCountError::ZeroSpeakers)
    );
    assert_eq!(
        SpeakerCount::new(Some(2), Some(1), None),
        Err(SpeakerCountError::Conflicting)
    );
    assert_eq!(
        SpeakerCount::new(Some(2), None, Some(3)),
        Err(SpeakerCountError::Conflicting)
    );
    assert_eq!(
        SpeakerCount::new(None, Some(3), Some(2)),
        Err(SpeakerCountError::MinAboveMax { min: 3, max: 2 })
    );

    assert_eq!(
        SpeakerCount::new(Some(2), None, None),
        Ok(SpeakerCount::Exact(2))
    );
    assert_eq!(
        SpeakerCount::new(None, None, None),
        Ok(SpeakerCount::default())
    );
    assert_eq!(
        SpeakerCount::new(None, Some(2), Some(2)),
        Ok(SpeakerCount::Auto {
            min: Some(2),
            max: Some(2)
        })
    );
}

// ---------------------------------------------------------------------------
// Streaming.
// ---------------------------------------------------------------------------

#[test]
fn block_size_does_not_change_the_result() {
    // sample.wav twice (60 s): long enough that a full batch of windows is analysed
    // while samples are still arriving and the buffer is drained, not only at finish.
    let audio: Vec<f32> = SAMPLE.iter().chain(SAMPLE.iter()).copied().collect();
    let whole = diarize(&audio, SpeakerCount::default());
    let mut sizes = vec![1; 5000];
    sizes.push(12_345);
    let blocks = diarize_in_blocks(&audio, SpeakerCount::default(), &sizes);
    println!(
        "60 s: {} turns, {} speakers",
        whole.turns.len(),
        whole.num_speakers
    );
    assert_eq!(blocks, whole);
}

// ---------------------------------------------------------------------------
// The live runs' segmentation model (int8 LSTM weights).
// ---------------------------------------------------------------------------

fn load_segmenter(file: &'static str) -> Segmenter {
    let path = model_path(None, file).expect("segmentation model file");
    Segmenter::load(&path, file, 1).expect("load segmentation")
}

#[test]
fn live_model_decides_like_the_full_precision_one() {
    let mut full = load_segmenter(segmentation::MODEL_FILE);
    let mut live = load_segmenter(segmentation::LIVE_MODEL_FILE);
    // The live runs' 5 s windows, every 2.5 s of sample.wav.
    let window = 5 * ANALYSIS_SAMPLE_RATE as usize;
    let (mut same, mut frames) = (0, 0);
    for start in (0..=SAMPLE.len() - window).step_by(window / 2) {
        let audio = &SAMPLE[start..start + window];
        let a = full.run(audio, window).expect("fp32 model").remove(0);
        let b = live.run(audio, window).expect("live model").remove(0);
        assert_eq!(a.len(), frames_for(window) * POWERSET_CLASSES);
        assert_eq!(b.len(), a.len());
        for (x, y) in a
            .chunks_exact(POWERSET_CLASSES)
            .zip(b.chunks_exact(POWERSET_CLASSES))
        {
            frames += 1;
            same += usize::from(argmax(x) == argmax(y));
        }
    }
    let agreement = same as f64 / frames as f64;
    println!("live model: same powerset class in {same} of {frames} frames");
    assert!(agreement >= 0.97, "only {agreement:.3} of frames agree");

    // Its errors name the file that failed, not the fp32 one.
    let short = live.run(&SAMPLE[..100], 100).err();
    assert!(
        matches!(short, Some(ModelError::Shape { model, .. }) if model == segmentation::LIVE_MODEL_FILE),
        "{short:?}"
    );
}

fn argmax(log_probs: &[f32]) -> usize {
    (0..log_probs.len())
        .max_by(|&a, &b| log_probs[a].total_cmp(&log_probs[b]))
        .unwrap_or(0)
}
