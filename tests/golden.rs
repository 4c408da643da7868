//! Golden vectors: our WAV reader, fbank and model wrappers against the Python reference.
//!
//! `tests/data/golden_segmentation.json` and `golden_campplus.json` were made by
//! `models/export_reference.py` with ONNX Runtime 1.31.1 (formats and tolerances in
//! MODELS.md §6). Each test feeds the same samples through our code and compares:
//!
//! ```text
//! sample.wav ──read_analysis_audio──▶ exact int16 values, sha256 of the file
//!     │
//!     ├── 0–10 s, 0–2 s ──Segmenter──▶ powerset log-probs      (2e-4 / 1e-3 abs, argmax)
//!     └── 11–12 s, 22–25 s ──Fbank──▶ [frames, 80] (2e-3 abs) ──Embedder──▶ [192] (cos ≥ 0.9999)
//! ```

use std::path::Path;
use std::sync::{LazyLock, Mutex};

use serde_json::Value;
use whospoke::audio::read_analysis_audio;
use whospoke::engine::embedding::{self, EMBEDDING_DIM, Embedder};
use whospoke::engine::fbank::{Fbank, NUM_MEL_BINS, num_frames};
use whospoke::engine::segmentation::{self, Segmenter, TRAINED_WINDOW_SAMPLES, frames_for};
use whospoke::runtime::model_path;

const SAMPLE_WAV: &str = "tests/data/sample.wav";
const GOLDEN_SEGMENTATION: &str = "tests/data/golden_segmentation.json";
const GOLDEN_CAMPPLUS: &str = "tests/data/golden_campplus.json";
const POWERSET_CLASSES: usize = 7;

/// Tolerances from MODELS.md §6 (also stored in the JSON files).
const FBANK_ABS: f32 = 2e-3;
const EMBEDDING_COSINE_MIN: f64 = 0.9999;
const EMBEDDING_ABS: f32 = 1e-3;
/// Log-probs of likely classes: ORT vs PyTorch differed by at most 2.55e-4 on sample.wav
/// windows, and this is ORT vs the same ORT version, so 2e-4 is a fair bound.
const LOG_PROB_ABS: f32 = 2e-4;
/// Classes with golden log-prob below this are unlikely (p < 3.4e-4); their
/// log-probs move more between ORT builds and thread counts.
const UNLIKELY_LOG_PROB: f32 = -8.0;
const UNLIKELY_LOG_PROB_ABS: f32 = 1e-3;
/// Argmax may differ only where our top two classes are this close in log-prob.
const NEAR_TIE_LOG_PROB: f32 = 1e-3;

/// One CAM++ session for all embedding tests (loading takes about a second).
static EMBEDDER: LazyLock<Mutex<Embedder>> = LazyLock::new(|| {
    let path = model_path(None, embedding::MODEL_FILE).expect("CAM++ model file");
    Mutex::new(Embedder::load(&path, 1).expect("load CAM++"))
});

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn as_f32s(value: &Value) -> Vec<f32> {
    let values = value.as_array().expect("a JSON array of numbers");
    values
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect()
}

/// A `[rows][cols]` JSON array, flattened row-major.
fn as_f32_rows(value: &Value, cols: usize) -> Vec<f32> {
    let rows = value.as_array().expect("a JSON array of rows");
    let mut flat = Vec::with_capacity(rows.len() * cols);
    for row in rows {
        let row = as_f32s(row);
        assert_eq!(row.len(), cols);
        flat.extend(row);
    }
    flat
}

fn as_usize(value: &Value) -> usize {
    value.as_u64().expect("a non-negative integer") as usize
}

/// sample.wav as int16, read with `hound` independently of our decoder.
fn wav_int16() -> Vec<i16> {
    let mut reader = hound::WavReader::open(SAMPLE_WAV).expect("open sample.wav");
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (16_000, 1, 16)
    );
    reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("read sample.wav")
}

/// `int16 / 32768`, the input scale of both models (MODELS.md §1 and §2).
fn to_float(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (k, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = k;
        }
    }
    best
}

fn embed(features: &[f32], frames: usize) -> [f32; EMBEDDING_DIM] {
    let mut embedder = EMBEDDER.lock().unwrap_or_else(|e| e.into_inner());
    let embeddings = embedder.run(features, frames).expect("run CAM++");
    assert_eq!(embeddings.len(), 1);
    embeddings[0]
}

fn assert_embedding_matches(ours: &[f32], golden: &[f32], what: &str) {
    assert_eq!(golden.len(), EMBEDDING_DIM);
    let cos = cosine(ours, golden);
    let diff = max_abs_diff(ours, golden);
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    println!(
        "{what}: cosine {cos:.8}, max abs diff {diff:.2e}, norm {:.4} (golden {:.4})",
        norm(ours),
        norm(golden)
    );
    assert!(
        cos >= EMBEDDING_COSINE_MIN,
        "{what}: cosine {cos} < {EMBEDDING_COSINE_MIN}"
    );
    // The ONNX output is not normalised, so raw values are compared: this also checks the scale.
    assert!(
        diff <= EMBEDDING_ABS,
        "{what}: max abs diff {diff} > {EMBEDDING_ABS}"
    );
}

/// Compares log-probs row by row with the tolerance each golden value's likelihood allows.
fn assert_log_probs_match(ours: &[f32], golden: &[f32], frame_ids: &[usize], what: &str) {
    assert_eq!(ours.len(), golden.len());
    let mut worst_likely = 0f32;
    let mut worst_unlikely = 0f32;
    let mut unlikely = 0;
    for (row, &frame) in frame_ids.iter().enumerate() {
        for k in 0..POWERSET_CLASSES {
            let (o, g) = (
                ours[row * POWERSET_CLASSES + k],
                golden[row * POWERSET_CLASSES + k],
            );
            let diff = (o - g).abs();
            let (tolerance, worst) = if g < UNLIKELY_LOG_PROB {
                unlikely += 1;
                (UNLIKELY_LOG_PROB_ABS, &mut worst_unlikely)
            } else {
                (LOG_PROB_ABS, &mut worst_likely)
            };
            *worst = worst.max(diff);
            assert!(
                diff <= tolerance,
                "{what}: frame {frame} class {k}: ours {o}, golden {g}, diff {diff} > {tolerance}"
            );
        }
    }
    println!(
        "{what}: max abs diff {worst_likely:.2e} on likely classes, {worst_unlikely:.2e} on the {unlikely} with log-prob < -8"
    );
}

#[test]
fn wav_reader_gives_the_exact_int16_samples() {
    let golden = read_json(GOLDEN_SEGMENTATION);
    let bytes = std::fs::read(SAMPLE_WAV).expect("read sample.wav");
    assert_eq!(
        hex(&sha256(&bytes)),
        golden["wav_sha256"].as_str().expect("wav_sha256"),
        "tests/data/sample.wav is not the file the golden vectors were made from"
    );

    let (info, samples) = read_analysis_audio(Path::new(SAMPLE_WAV)).expect("decode sample.wav");
    assert_eq!((info.sample_rate, info.channels), (16_000, 1));
    let first: Vec<i64> = golden["first_samples_int16"]
        .as_array()
        .expect("first_samples_int16")
        .iter()
        .map(|v| v.as_i64().expect("an integer"))
        .collect();
    assert_eq!(first.len(), 16);
    let ours: Vec<f64> = samples[..16]
        .iter()
        .map(|&s| f64::from(s) * 32768.0)
        .collect();
    let expected: Vec<f64> = first.iter().map(|&s| s as f64).collect();
    assert_eq!(ours, expected, "first 16 samples (×32768)");

    // 16 kHz mono needs no resampling, so every sample must come through bit-exact.
    let reference = to_float(&wav_int16());
    assert_eq!(samples.len(), reference.len(), "sample count");
    let first_mismatch = samples.iter().zip(&reference).position(|(a, b)| a != b);
    assert_eq!(
        first_mismatch, None,
        "decoded samples differ from the int16 values / 32768"
    );
}

#[test]
fn fbank_matches_kaldi_golden() {
    let golden = read_json(GOLDEN_CAMPPLUS);
    let samples: Vec<i16> = golden["samples_int16"]
        .as_array()
        .expect("samples_int16")
        .iter()
        .map(|v| i16::try_from(v.as_i64().expect("an integer")).expect("an int16"))
        .collect();
    let expected_frames = as_usize(&golden["num_frames"]);
    assert_eq!(samples.len(), as_usize(&golden["num_samples"]));
    // The excerpt is the stated stretch of sample.wav, so the 3 s excerpt below can be cut the same way.
    let start = as_usize(&golden["start_sample"]);
    assert_eq!(samples, wav_int16()[start..start + samples.len()]);

    let mut features = Vec::new();
    let frames = Fbank::new().compute(&to_float(&samples), &mut features);
    assert_eq!(frames, expected_frames);
    assert_eq!(frames, num_frames(samples.len()));
    // Fbank exposes only the mean-normalised features, which is the model input `fbank_cmn`.
    // (Raw = cmn + `fbank_mean`; the raw log-mel is internal, so it is checked through cmn.)
    let cmn = as_f32_rows(&golden["fbank_cmn"], NUM_MEL_BINS);
    assert_eq!(features.len(), cmn.len());
    let mut worst = (0f32, 0, 0);
    for (i, (o, g)) in features.iter().zip(&cmn).enumerate() {
        let diff = (o - g).abs();
        if diff > worst.0 {
            worst = (diff, i / NUM_MEL_BINS, i % NUM_MEL_BINS);
        }
    }
    println!(
        "fbank: max abs diff {:.2e} at frame {} bin {}",
        worst.0, worst.1, worst.2
    );
    assert!(
        worst.0 <= FBANK_ABS,
        "fbank: max abs diff {} at frame {} bin {} > {FBANK_ABS}",
        worst.0,
        worst.1,
        worst.2
    );

    // Bin 0 sits at the log floor in 46 of 98 frames: the floor is exercised, not skipped.
    let mean = as_f32s(&golden["fbank_mean"]);
    let floor = f32::EPSILON.ln();
    let floored = (0..frames)
        .filter(|t| (features[t * NUM_MEL_BINS] + mean[0] - floor).abs() < 1e-3)
        .count();
    assert!(
        floored >= 40,
        "only {floored} frames of bin 0 at the log floor"
    );
}

#[test]
fn campplus_embedding_of_1s_excerpt_matches_golden() {
    let golden = read_json(GOLDEN_CAMPPLUS);
    let expected = as_f32s(&golden["embedding"]);
    let frames = as_usize(&golden["num_frames"]);

    // The model alone, on the golden features.
    let cmn = as_f32_rows(&golden["fbank_cmn"], NUM_MEL_BINS);
    assert_embedding_matches(&embed(&cmn, frames), &expected, "CAM++ on golden fbank");

    // Our fbank and the model together.
    let samples: Vec<f32> = as_f32s(&golden["samples_int16"])
        .into_iter()
        .map(|s| s / 32768.0)
        .collect();
    let mut features = Vec::new();
    let frames = Fbank::new().compute(&samples, &mut features);
    assert_embedding_matches(&embed(&features, frames), &expected, "CAM++ on our fbank");
}

#[test]
fn campplus_embedding_of_3s_excerpt_matches_golden() {
    let golden = read_json(GOLDEN_CAMPPLUS);
    let excerpt = &golden["excerpt_3s"];
    let start = as_usize(&excerpt["start_sample"]);
    let len = as_usize(&excerpt["num_samples"]);
    let samples = to_float(&wav_int16()[start..start + len]);
    let mut features = Vec::new();
    let frames = Fbank::new().compute(&samples, &mut features);
    assert_eq!(frames, as_usize(&excerpt["num_frames"]));
    let expected = as_f32s(&excerpt["embedding"]);
    assert_embedding_matches(&embed(&features, frames), &expected, "CAM++ 3 s excerpt");
}

#[test]
fn segmentation_matches_golden() {
    let golden = read_json(GOLDEN_SEGMENTATION);
    let path = model_path(None, segmentation::MODEL_FILE).expect("segmentation model file");
    let mut segmenter =
        Segmenter::load(&path, segmentation::MODEL_FILE, 1).expect("load segmentation model");
    let wav = to_float(&wav_int16());

    // 10 s window: log-probs at the listed frames, argmax at every frame.
    let window = &golden["window_10s"];
    let (start, len) = (
        as_usize(&window["start_sample"]),
        as_usize(&window["num_samples"]),
    );
    assert_eq!(len, TRAINED_WINDOW_SAMPLES);
    let frames = as_usize(&window["num_frames"]);
    assert_eq!(frames_for(len), frames);
    let out = segmenter
        .run(&wav[start..start + len], len)
        .expect("segment 10 s");
    assert_eq!(out.len(), 1);
    let ours = &out[0];
    assert_eq!(ours.len(), frames * POWERSET_CLASSES);
    for row in ours.chunks_exact(POWERSET_CLASSES) {
        let total: f32 = row.iter().map(|lp| lp.exp()).sum();
        assert!((total - 1.0).abs() < 1e-4, "probabilities sum to {total}");
    }

    let listed: Vec<usize> = window["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(as_usize)
        .collect();
    let listed_ours: Vec<f32> = listed
        .iter()
        .flat_map(|&f| {
            ours[f * POWERSET_CLASSES..(f + 1) * POWERSET_CLASSES]
                .iter()
                .copied()
        })
        .collect();
    let listed_golden = as_f32_rows(&window["log_probs"], POWERSET_CLASSES);
    assert_log_probs_match(&listed_ours, &listed_golden, &listed, "window_10s");

    let golden_argmax: Vec<usize> = window["argmax_all_frames"]
        .as_array()
        .expect("argmax_all_frames")
        .iter()
        .map(as_usize)
        .collect();
    assert_eq!(golden_argmax.len(), frames);
    let mut agree = 0;
    for (f, (row, &expected)) in ours
        .chunks_exact(POWERSET_CLASSES)
        .zip(&golden_argmax)
        .enumerate()
    {
        let got = argmax(row);
        if got == expected {
            agree += 1;
        } else {
            // We only have golden argmaxes here, so "near tie" is judged on our log-probs.
            let gap = row[got] - row[expected];
            assert!(
                gap <= NEAR_TIE_LOG_PROB,
                "frame {f}: argmax {got}, golden {expected}, not a near tie (gap {gap})"
            );
        }
    }
    let agreement = agree as f64 / frames as f64;
    println!("window_10s: argmax agreement {agree}/{frames}");
    assert!(agreement >= 0.995, "argmax agreement {agreement}");

    // 2 s window: all 115 × 7 log-probs.
    let window = &golden["window_2s"];
    let (start, len) = (
        as_usize(&window["start_sample"]),
        as_usize(&window["num_samples"]),
    );
    let frames = as_usize(&window["num_frames"]);
    assert_eq!(frames_for(len), frames);
    let out = segmenter
        .run(&wav[start..start + len], len)
        .expect("segment 2 s");
    let all: Vec<usize> = (0..frames).collect();
    let expected = as_f32_rows(&window["log_probs_all_frames"], POWERSET_CLASSES);
    assert_log_probs_match(&out[0], &expected, &all, "window_2s");
}

/// SHA-256 (FIPS 180-4), enough to check a test file without another dependency.
fn sha256(message: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut data = message.to_vec();
    data.push(0x80);
    while data.len() % 64 != 56 {
        data.push(0);
    }
    data.extend_from_slice(&((message.len() as u64) * 8).to_be_bytes());
    for block in data.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let choice = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(choice)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let majority = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(majority);
            (hh, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(h) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn sha256_matches_known_digests() {
    assert_eq!(
        hex(&sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
