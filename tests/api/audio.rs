//! Test audio — the bundled sample (30 s, two speakers), clips and repeats of it, files that
//! are not audio — and checks on the WAV and RTTM files the server returns.

use std::io::Cursor;
use std::path::PathBuf;

use hound::{WavReader, WavSpec, WavWriter};

use crate::server::project_dir;

/// AudioPod's price: 27.5 credits per second of audio, rounded up.
pub fn credits_for(seconds: f64) -> i64 {
    (27.5 * seconds).ceil() as i64
}

pub fn sample_path() -> PathBuf {
    project_dir().join("tests/data/sample.wav")
}

pub fn sample_bytes() -> Vec<u8> {
    std::fs::read(sample_path()).expect("read tests/data/sample.wav")
}

/// The sample's format and its samples (interleaved).
fn sample_audio() -> (WavSpec, Vec<i16>) {
    let mut reader = WavReader::open(sample_path()).expect("tests/data/sample.wav is a WAV");
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_format, spec.bits_per_sample),
        (hound::SampleFormat::Int, 16),
        "the fixtures below assume tests/data/sample.wav is 16-bit PCM"
    );
    let samples = reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("decode tests/data/sample.wav");
    (spec, samples)
}

pub fn sample_spec() -> WavSpec {
    sample_audio().0
}

/// Frames (samples per channel) in the sample.
pub fn sample_frames() -> u32 {
    let (spec, samples) = sample_audio();
    (samples.len() / usize::from(spec.channels)) as u32
}

pub fn sample_seconds() -> f64 {
    f64::from(sample_frames()) / f64::from(sample_spec().sample_rate)
}

fn encode(spec: WavSpec, samples: &[i16]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = WavWriter::new(Cursor::new(&mut bytes), spec).expect("start a WAV");
    for &sample in samples {
        writer.write_sample(sample).expect("write a sample");
    }
    writer.finalize().expect("finish a WAV");
    bytes
}

/// `seconds` of the sample from `start` on, as a WAV in the sample's format.
pub fn clip(start: f64, seconds: f64) -> Vec<u8> {
    let (spec, samples) = sample_audio();
    let channels = usize::from(spec.channels);
    let frame = |t: f64| (t * f64::from(spec.sample_rate)) as usize * channels;
    let end = frame(start + seconds).min(samples.len());
    encode(spec, &samples[frame(start)..end])
}

/// Six seconds of speech (the sample is silent until 6.7 s).
pub fn speech_clip() -> Vec<u8> {
    clip(6.0, 6.0)
}

pub const SPEECH_CLIP_SECONDS: f64 = 6.0;

/// The sample played `times` times in a row, as one WAV.
pub fn repeated_sample(times: usize) -> Vec<u8> {
    let (spec, samples) = sample_audio();
    encode(spec, &samples.repeat(times))
}

/// A text file: nothing can decode it.
pub fn not_audio() -> Vec<u8> {
    "These are meeting notes, not a recording.\n"
        .repeat(100)
        .into_bytes()
}

/// A RIFF/WAVE header with no `fmt ` chunk, followed by text: a corrupt WAV.
pub fn broken_wav() -> Vec<u8> {
    let body = not_audio();
    let mut bytes = b"RIFF".to_vec();
    bytes.extend_from_slice(&(4 + body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(b"WAVE");
    bytes.extend_from_slice(&body);
    bytes
}

/// What a downloaded track is: its format, length and whether it holds any sound.
#[derive(Debug)]
pub struct Track {
    pub spec: WavSpec,
    pub frames: u32,
    pub has_sound: bool,
}

/// Parses a WAV file completely (every sample), as a player would.
pub fn play_wav(bytes: &[u8], what: &str) -> Track {
    assert!(
        bytes.len() > 44 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{what}: not a RIFF/WAVE file ({} bytes, starts {:?})",
        bytes.len(),
        &bytes[..bytes.len().min(12)]
    );
    let mut reader = WavReader::new(Cursor::new(bytes))
        .unwrap_or_else(|e| panic!("{what}: hound cannot read the WAV: {e}"));
    let spec = reader.spec();
    let frames = reader.duration();
    let has_sound = match spec.sample_format {
        hound::SampleFormat::Int => reader
            .samples::<i32>()
            .map(|s| s.unwrap_or_else(|e| panic!("{what}: a corrupt sample: {e}")))
            .any(|s| s != 0),
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .map(|s| s.unwrap_or_else(|e| panic!("{what}: a corrupt sample: {e}")))
            .any(|s| s != 0.0),
    };
    Track {
        spec,
        frames,
        has_sound,
    }
}

/// One `SPEAKER` line of an RTTM file.
#[derive(Debug)]
pub struct RttmTurn {
    pub label: String,
    pub start: f64,
    pub duration: f64,
}

/// Parses RTTM text: every non-blank line must be
/// `SPEAKER <file> 1 <start> <duration> <NA> <NA> <label> <NA> <NA>`.
pub fn parse_rttm(text: &str, what: &str) -> Vec<RttmTurn> {
    let turns: Vec<RttmTurn> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(
                fields.len() >= 9 && fields[0] == "SPEAKER",
                "{what}: not an RTTM SPEAKER line: {line:?}"
            );
            let number = |i: usize| -> f64 {
                fields[i]
                    .parse()
                    .unwrap_or_else(|_| panic!("{what}: field {i} is not a number: {line:?}"))
            };
            let turn = RttmTurn {
                label: fields[7].to_string(),
                start: number(3),
                duration: number(4),
            };
            assert!(
                turn.start >= 0.0 && turn.duration > 0.0,
                "{what}: a turn needs start >= 0 and duration > 0: {line:?}"
            );
            turn
        })
        .collect();
    assert!(!turns.is_empty(), "{what}: the RTTM has no turns: {text:?}");
    turns
}
