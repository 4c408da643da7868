//! Decoding every supported format to 16 kHz mono, and a typed error for every bad file.
//!
//! Fixtures are made at run time with ffmpeg from the first 5 s of `tests/data/sample.wav`
//! (16 kHz mono s16le), so each check can compare the decoded audio with the original.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use whospoke::audio::{
    AnalysisResampler, AudioInfo, AudioReader, DecodeError, DecodeLimits, LimitExceeded,
    SampleFormat, read_analysis_audio,
};

const SAMPLE: &str = "tests/data/sample.wav";
const SECONDS: u32 = 5;
const REFERENCE_RATE: u32 = 16_000;

fn fixtures_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

/// The first 5 s of sample.wav as `int16 / 32768`, the reference every decode is compared with.
fn reference() -> &'static [f32] {
    static SAMPLES: OnceLock<Vec<f32>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let mut reader = hound::WavReader::open(SAMPLE).expect("sample.wav");
        reader
            .samples::<i16>()
            .take((SECONDS * REFERENCE_RATE) as usize)
            .map(|sample| f32::from(sample.expect("sample")) / 32_768.0)
            .collect()
    })
}

/// Encodes the first 5 s of sample.wav to `name` with the given output options.
fn encode(name: &str, output_args: &[&str]) -> PathBuf {
    encode_with(name, &[], output_args)
}

/// Like [`encode`], with extra inputs placed before sample.wav (e.g. a lavfi video source).
fn encode_with(name: &str, extra_inputs: &[&str], output_args: &[&str]) -> PathBuf {
    let path = fixtures_dir().join(name);
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(extra_inputs)
        .args(["-t", &SECONDS.to_string(), "-i", SAMPLE])
        .args(output_args)
        .arg(&path)
        .status()
        .expect("ffmpeg must be installed to make the fixtures");
    assert!(status.success(), "ffmpeg could not make {name}");
    path
}

fn write_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = fixtures_dir().join(name);
    std::fs::write(&path, bytes).expect("write fixture");
    path
}

/// Decodes `path` block by block, checking every sample is in [-1, 1].
fn decode_all(path: &Path) -> (AudioInfo, Vec<f32>) {
    let mut reader = AudioReader::open(path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    let info = reader.info().clone();
    let mut samples = Vec::new();
    while let Some(block) = reader.next_block().expect("next_block") {
        assert_eq!(
            block.len() % usize::from(info.channels),
            0,
            "block holds whole frames"
        );
        samples.extend_from_slice(block);
    }
    assert!(samples.iter().all(|sample| (-1.0..=1.0).contains(sample)));
    (info, samples)
}

fn to_analysis(info: &AudioInfo, samples: &[f32]) -> Vec<f32> {
    let mut resampler = AnalysisResampler::new(info.sample_rate, info.channels).unwrap();
    let mut out = Vec::new();
    // Uneven pieces exercise the resampler's buffering.
    for piece in samples.chunks(3_001 * usize::from(info.channels)) {
        resampler.push(piece, &mut out);
    }
    resampler.finish(&mut out);
    out
}

/// Normalised correlation of `a` with the reference at lag 0, over their common length.
fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(f64::MIN_POSITIVE)
}

/// Correlation of `a` with the reference when `a` lags it by `lag` samples (negative: leads).
fn correlation_at(a: &[f32], lag: i64) -> f64 {
    let shifted = a.get(lag.max(0) as usize..).unwrap_or_default();
    let reference = reference()
        .get((-lag).max(0) as usize..)
        .unwrap_or_default();
    correlation(shifted, reference)
}

/// Lag (in 16 kHz samples, ±50 ms) at which `a` best matches the reference, for diagnosis.
fn best_lag(a: &[f32]) -> (i64, f64) {
    (-800i64..=800)
        .map(|lag| (lag, correlation_at(a, lag)))
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap_or_default()
}

/// What a decoded fixture must look like.
struct Expect {
    rate: u32,
    channels: u16,
    container: &'static str,
    codec: &'static str,
    sample_format: SampleFormat,
    /// Allowed error in the decoded length, in frames at `rate`: one codec frame for codecs
    /// whose container cannot state the exact end (PCM and FLAC are exact).
    tolerance_frames: u64,
    /// Least correlation of the 16 kHz mono output with the original: close to 1 for
    /// lossless and good lossy codecs; lower for speech vocoders.
    min_correlation: f64,
    /// Lag of the output behind the original, in 16 kHz samples. 0 whenever the file states
    /// its encoder delay; otherwise the delay the encoder/decoder pair is known to add.
    lag: i64,
}

fn check(path: &Path, expect: &Expect) -> (AudioInfo, Vec<f32>) {
    let (info, samples) = decode_all(path);
    assert_eq!(
        (info.sample_rate, info.channels),
        (expect.rate, expect.channels),
        "{path:?}: {info:?}"
    );
    assert!(
        info.container.starts_with(expect.container),
        "{path:?}: {info:?}"
    );
    assert!(info.codec.starts_with(expect.codec), "{path:?}: {info:?}");
    assert_eq!(
        info.sample_format, expect.sample_format,
        "{path:?}: {info:?}"
    );

    let frames = (samples.len() / usize::from(info.channels)) as u64;
    let true_frames = u64::from(SECONDS * expect.rate);
    assert!(
        frames.abs_diff(true_frames) <= expect.tolerance_frames,
        "{path:?}: decoded {frames} frames, expected {true_frames} ± {}",
        expect.tolerance_frames
    );
    if let Some(stated) = info.frames {
        // ffprobe estimates some durations from the bit rate: allow it 50 ms.
        let stated_tolerance = if info.container.starts_with("ffmpeg:") {
            u64::from(expect.rate) / 20
        } else {
            expect.tolerance_frames
        };
        assert!(
            stated.abs_diff(true_frames) <= stated_tolerance,
            "{path:?}: states {stated} frames, expected {true_frames}"
        );
    }

    let analysis = to_analysis(&info, &samples);
    let expected_len = (frames as f64 * 16_000.0 / f64::from(info.sample_rate)).round() as usize;
    assert_eq!(analysis.len(), expected_len, "{path:?}: analysis length");
    let r = correlation_at(&analysis, expect.lag);
    assert!(
        r >= expect.min_correlation,
        "{path:?}: correlation {r:.4} < {} at lag {} (best: {:?})",
        expect.min_correlation,
        expect.lag,
        best_lag(&analysis)
    );
    (info, samples)
}

fn pcm(rate: u32, channels: u16, codec: &'static str, sample_format: SampleFormat) -> Expect {
    Expect {
        rate,
        channels,
        container: "wav",
        codec,
        sample_format,
        tolerance_frames: 0,
        min_correlation: 0.99,
        lag: 0,
    }
}

#[test]
fn wav_s16_at_16k_decodes_to_exactly_int16_over_32768() {
    let path = encode("s16_16k.wav", &["-c:a", "pcm_s16le"]);
    let (info, samples) = check(&path, &pcm(16_000, 1, "pcm_s16le", SampleFormat::Int16));
    assert_eq!(info.frames, Some(80_000));
    assert_eq!(samples, reference());
    let (_, analysis) = read_analysis_audio(&path).unwrap();
    assert_eq!(
        analysis,
        reference(),
        "16 kHz mono passes through bit-exactly"
    );
}

#[test]
fn wav_u8_8k() {
    // sample.wav peaks at -39 dBFS, below what 8 bits resolve: raise it 30 dB first.
    let path = encode(
        "u8_8k.wav",
        &["-af", "volume=30dB", "-ar", "8000", "-c:a", "pcm_u8"],
    );
    // 8-bit quantisation and the 4 kHz band limit cost some correlation.
    check(
        &path,
        &Expect {
            min_correlation: 0.9,
            ..pcm(8_000, 1, "pcm_u8", SampleFormat::Int16)
        },
    );
}

#[test]
fn wav_s16_22050_stereo() {
    let path = encode(
        "s16_22k.wav",
        &["-ar", "22050", "-ac", "2", "-c:a", "pcm_s16le"],
    );
    check(&path, &pcm(22_050, 2, "pcm_s16le", SampleFormat::Int16));
}

#[test]
fn wav_s24_44100_stereo_matches_the_original_at_16k() {
    let path = encode(
        "s24_44k.wav",
        &["-ar", "44100", "-ac", "2", "-c:a", "pcm_s24le"],
    );
    let (info, _) = check(&path, &pcm(44_100, 2, "pcm_s24le", SampleFormat::Int24));
    assert_eq!(info.frames, Some(220_500));
    let (_, analysis) = read_analysis_audio(&path).unwrap();
    assert!(correlation(&analysis, reference()) > 0.999);
}

#[test]
fn wav_s32_48k() {
    let path = encode("s32_48k.wav", &["-ar", "48000", "-c:a", "pcm_s32le"]);
    check(&path, &pcm(48_000, 1, "pcm_s32le", SampleFormat::Float32));
}

#[test]
fn wav_f32_16k_is_exact() {
    let path = encode("f32_16k.wav", &["-c:a", "pcm_f32le"]);
    let (_, samples) = check(&path, &pcm(16_000, 1, "pcm_f32le", SampleFormat::Float32));
    assert_eq!(samples, reference());
}

fn lossy(rate: u32, channels: u16, container: &'static str, codec: &'static str) -> Expect {
    Expect {
        rate,
        channels,
        container,
        codec,
        sample_format: SampleFormat::Int16,
        // AAC and Vorbis frames are 1024 frames, MP3 1152, Opus 20 ms (960 at 48 kHz).
        tolerance_frames: 1_152,
        min_correlation: 0.95,
        lag: 0,
    }
}

#[test]
fn mp3_44100_stereo() {
    let path = encode(
        "a.mp3",
        &[
            "-ar",
            "44100",
            "-ac",
            "2",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "128k",
        ],
    );
    check(&path, &lossy(44_100, 2, "mp3", "mp3"));
}

#[test]
fn mp3_decodes_identically_twice() {
    let path = encode(
        "twice.mp3",
        &["-ar", "22050", "-c:a", "libmp3lame", "-b:a", "64k"],
    );
    let (_, first) = decode_all(&path);
    let (_, second) = decode_all(&path);
    assert!(!first.is_empty());
    assert!(first == second, "decoding must be deterministic");
}

#[test]
fn m4a_aac_with_priming_trimmed() {
    let path = encode("a.m4a", &["-ar", "44100", "-c:a", "aac", "-b:a", "96k"]);
    let (info, samples) = check(&path, &lossy(44_100, 1, "mp4", "aac"));
    // 1024 priming frames dropped at the start, the last frame's padding at the end.
    assert_eq!(info.frames, Some(220_500));
    assert_eq!(samples.len(), 220_500);
}

#[test]
fn flac_16_bit_is_exact() {
    let path = encode("a.flac", &["-c:a", "flac"]);
    let expect = Expect {
        container: "flac",
        codec: "flac",
        ..pcm(16_000, 1, "", SampleFormat::Int16)
    };
    let (_, samples) = check(&path, &expect);
    assert_eq!(samples, reference());
}

#[test]
fn flac_24_bit_48k_stereo() {
    let path = encode(
        "a24.flac",
        &[
            "-ar",
            "48000",
            "-ac",
            "2",
            "-c:a",
            "flac",
            "-sample_fmt",
            "s32",
        ],
    );
    let expect = Expect {
        container: "flac",
        codec: "flac",
        ..pcm(48_000, 2, "", SampleFormat::Int24)
    };
    check(&path, &expect);
}

#[test]
fn ogg_vorbis() {
    let path = encode("a.ogg", &["-ar", "44100", "-c:a", "libvorbis"]);
    check(&path, &lossy(44_100, 1, "ogg", "vorbis"));
}

#[test]
fn ogg_opus_with_pre_skip_removed() {
    let path = encode("a.opus", &["-c:a", "libopus", "-b:a", "48k"]);
    let (info, samples) = check(&path, &lossy(48_000, 1, "ogg", "opus"));
    // Ogg states the exact end; the pre-skip is dropped at the start.
    assert_eq!(info.frames, Some(240_000));
    assert_eq!(samples.len(), 240_000);
}

#[test]
fn webm_opus_stereo() {
    let path = encode("opus.webm", &["-ac", "2", "-c:a", "libopus"]);
    check(&path, &lossy(48_000, 2, "webm", "opus"));
}

#[test]
fn webm_vorbis() {
    let path = encode("vorbis.webm", &["-ar", "48000", "-c:a", "libvorbis"]);
    check(&path, &lossy(48_000, 1, "webm", "vorbis"));
}

/// A small video source placed before the audio, so the audio is not the first track.
const VIDEO: &[&str] = &["-f", "lavfi", "-t", "5", "-i", "color=c=blue:s=64x48:r=10"];

fn with_video(name: &str, audio_args: &[&str]) -> PathBuf {
    let mut args = vec![
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
    ];
    args.extend_from_slice(audio_args);
    encode_with(name, VIDEO, &args)
}

#[test]
fn mp4_with_video_track_decodes_the_audio() {
    let path = with_video("video.mp4", &["-ar", "44100", "-c:a", "aac"]);
    check(&path, &lossy(44_100, 1, "mp4", "aac"));
}

#[test]
fn mov_with_video_track() {
    let path = with_video("video.mov", &["-ar", "48000", "-c:a", "aac"]);
    check(&path, &lossy(48_000, 1, "mov", "aac"));
}

#[test]
fn mkv_with_video_and_opus() {
    let path = with_video("opus.mkv", &["-c:a", "libopus"]);
    check(&path, &lossy(48_000, 1, "mkv", "opus"));
}

#[test]
fn mkv_with_flac() {
    let path = encode("flac.mkv", &["-ar", "44100", "-c:a", "flac"]);
    let expect = Expect {
        container: "mkv",
        codec: "flac",
        ..pcm(44_100, 1, "", SampleFormat::Int16)
    };
    check(&path, &expect);
}

/// MP3 in a container that cannot hold LAME's gapless header (MKV, AVI) keeps the
/// encoder delay of 576 + 529 = 1105 frames (401 at 16 kHz) and the padding of the last
/// frame: nothing in the file states them.
fn mp3_without_gapless_info() -> Expect {
    Expect {
        tolerance_frames: 2 * 1_152,
        lag: 401,
        ..lossy(44_100, 1, "", "mp3")
    }
}

#[test]
fn mkv_with_mp3() {
    let path = encode("mp3.mkv", &["-ar", "44100", "-c:a", "libmp3lame"]);
    check(
        &path,
        &Expect {
            container: "mkv",
            ..mp3_without_gapless_info()
        },
    );
}

// The ffmpeg fallback. This ffmpeg has no AMR encoder (no libopencore-amrnb or libvo-amrwbenc
// in `ffmpeg -encoders`), so AMR cannot be made here and is not covered.

#[test]
fn wma_via_ffmpeg() {
    let path = encode("a.wma", &["-ar", "44100", "-c:a", "wmav2", "-b:a", "128k"]);
    // WMA frames are 2048 frames long, and ffmpeg's WMA encoder/decoder pair loses the
    // first frame: the output leads the original by 2048 frames (743 at 16 kHz).
    let expect = Expect {
        tolerance_frames: 2_048,
        lag: -743,
        ..lossy(44_100, 1, "ffmpeg:asf", "wmav2")
    };
    check(&path, &expect);
}

#[test]
fn avi_pcm_via_ffmpeg() {
    let path = encode(
        "pcm.avi",
        &["-ar", "22050", "-ac", "2", "-c:a", "pcm_s16le"],
    );
    let expect = Expect {
        container: "ffmpeg:avi",
        ..pcm(22_050, 2, "pcm_s16le", SampleFormat::Int16)
    };
    check(&path, &expect);
}

#[test]
fn avi_mp3_via_ffmpeg() {
    let path = encode("mp3.avi", &["-ar", "44100", "-c:a", "libmp3lame"]);
    let expect = Expect {
        container: "ffmpeg:avi",
        ..mp3_without_gapless_info()
    };
    check(&path, &expect);
}

#[test]
fn speex_via_ffmpeg() {
    let path = encode("a.spx", &["-c:a", "libspeex"]);
    // A vocoder: intelligible but far from the waveform, and delayed by 216 samples that
    // ffmpeg's Speex decoder does not remove. One 20 ms frame of tolerance.
    let expect = Expect {
        tolerance_frames: 320,
        min_correlation: 0.7,
        lag: 216,
        ..lossy(16_000, 1, "ffmpeg:ogg", "speex")
    };
    check(&path, &expect);
}

#[test]
fn without_ffmpeg_an_unknown_format_is_unsupported() {
    let path = encode("noffmpeg.wma", &["-c:a", "wmav2"]);
    let limits = DecodeLimits {
        use_ffmpeg: false,
        ..DecodeLimits::default()
    };
    let error = AudioReader::open_with(&path, &limits)
        .err()
        .expect("must fail");
    assert!(
        matches!(error, DecodeError::Unsupported { .. }),
        "{error:?}"
    );
}

fn open_error(path: &Path) -> DecodeError {
    match AudioReader::open(path) {
        Ok(reader) => panic!("{path:?} opened: {:?}", reader.info()),
        Err(error) => {
            assert!(!error.to_string().is_empty());
            error
        }
    }
}

#[test]
fn missing_file_is_io_error() {
    let error = open_error(Path::new("tests/data/no-such-file.wav"));
    assert!(matches!(error, DecodeError::Io { .. }), "{error:?}");
}

#[test]
fn zero_bytes_is_empty() {
    let error = open_error(&write_file("empty.wav", &[]));
    assert!(matches!(error, DecodeError::Empty { .. }), "{error:?}");
}

#[test]
fn wav_with_no_frames_is_empty() {
    let path = fixtures_dir().join("no_frames.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(&path, spec)
        .unwrap()
        .finalize()
        .unwrap();
    let error = open_error(&path);
    assert!(matches!(error, DecodeError::Empty { .. }), "{error:?}");
}

#[test]
fn random_bytes_are_unsupported() {
    let bytes = noise(0x2545_f491_4f6c_dd1d, 8_192);
    let error = open_error(&write_file("random.bin", &bytes));
    assert!(
        matches!(error, DecodeError::Unsupported { .. }),
        "{error:?}"
    );
}

#[test]
fn text_file_is_unsupported() {
    let error = open_error(&write_file("notes.txt", b"This is not audio.\n"));
    assert!(
        matches!(error, DecodeError::Unsupported { .. }),
        "{error:?}"
    );
}

/// Files that make ffmpeg open other files are refused by what they are, whatever their
/// name, and the message names the format but no path of this machine.
#[test]
fn playlists_and_concat_scripts_are_refused_by_name() {
    let segment = encode("segment.ts", &["-c:a", "mp2", "-f", "mpegts"]);
    let cases = [
        (
            "list.m3u8",
            format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:5,\nfile:{}\n#EXT-X-ENDLIST\n",
                segment.display()
            ),
            "HLS playlists (m3u8) are not supported",
        ),
        (
            "disguised.wav",
            format!("\u{feff}\n#EXTM3U\n#EXTINF:5,\n{}\n", segment.display()),
            "HLS playlists (m3u8) are not supported",
        ),
        (
            "list.txt",
            format!("ffconcat version 1.0\nfile '{}'\n", segment.display()),
            "ffmpeg concat scripts are not supported",
        ),
    ];
    for (name, text, expected) in cases {
        let error = open_error(&write_file(name, text.as_bytes()));
        let message = error.to_string();
        assert!(
            matches!(error, DecodeError::Unsupported { .. }) && message.contains(expected),
            "{name}: {message}"
        );
        assert!(
            !message.contains('/'),
            "{name}: the message shows no path: {message}"
        );
    }
}

#[test]
fn png_image_has_no_audio_track() {
    let path = fixtures_dir().join("image.png");
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=red:s=32x32",
        ])
        .args(["-frames:v", "1"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let error = open_error(&path);
    assert!(matches!(error, DecodeError::NoAudioTrack), "{error:?}");
}

#[test]
fn video_without_audio_has_no_audio_track() {
    let path = fixtures_dir().join("silent.mp4");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(VIDEO)
        .args(["-c:v", "libx264", "-preset", "ultrafast"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let error = open_error(&path);
    assert!(matches!(error, DecodeError::NoAudioTrack), "{error:?}");
}

/// The first `len` bytes of a fixture, as a new file.
fn truncated(source: &Path, name: &str, len: usize) -> PathBuf {
    let bytes = std::fs::read(source).unwrap();
    write_file(name, bytes.get(..len).unwrap())
}

#[test]
fn truncated_headers_are_corrupt() {
    // Half of each format's fixed header: RIFF/WAVE 44 bytes, fLaC + STREAMINFO 42 bytes.
    let wav = encode("header.wav", &["-c:a", "pcm_s16le"]);
    let error = open_error(&truncated(&wav, "half_header.wav", 22));
    assert!(matches!(error, DecodeError::Corrupt { .. }), "{error:?}");
    let flac = encode("header.flac", &["-c:a", "flac"]);
    let error = open_error(&truncated(&flac, "half_header.flac", 21));
    assert!(matches!(error, DecodeError::Corrupt { .. }), "{error:?}");
}

#[test]
fn truncated_mp3_header_is_not_decodable() {
    // ID3v2 header (10 bytes) cut in half.
    let mp3 = encode("header.mp3", &["-c:a", "libmp3lame"]);
    let error = open_error(&truncated(&mp3, "half_header.mp3", 5));
    assert!(
        matches!(
            error,
            DecodeError::Unsupported { .. } | DecodeError::Corrupt { .. }
        ),
        "{error:?}"
    );
}

#[test]
fn truncated_files_keep_the_audio_before_the_cut() {
    for (name, args) in [
        ("cut.wav", &["-c:a", "pcm_s16le"][..]),
        ("cut.flac", &["-c:a", "flac"][..]),
        ("cut.mp3", &["-c:a", "libmp3lame"][..]),
        ("cut.wma", &["-c:a", "wmav2"][..]),
    ] {
        let whole = encode(name, args);
        let len = std::fs::metadata(&whole).unwrap().len() as usize;
        let (info, samples) = decode_all(&truncated(&whole, &format!("half_{name}"), len / 2));
        let seconds = samples.len() as f64 / f64::from(info.sample_rate);
        // Compressed formats spend bytes unevenly, so half the bytes is only about half the time.
        assert!((1.5..3.5).contains(&seconds), "{name}: {seconds} s kept");
    }
}

/// xorshift64: a fixed "random" sequence, the same on every run.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn damaged_files_never_panic() {
    let sources = [
        encode("damage.wav", &["-c:a", "pcm_s16le"]),
        encode("damage.mp3", &["-c:a", "libmp3lame"]),
        encode("damage.flac", &["-c:a", "flac"]),
        encode("damage.ogg", &["-c:a", "libvorbis"]),
        encode("damage.opus", &["-c:a", "libopus"]),
        encode("damage.m4a", &["-c:a", "aac"]),
        encode("damage.webm", &["-c:a", "libopus"]),
    ];
    for (index, source) in sources.iter().enumerate() {
        let mut bytes = std::fs::read(source).unwrap();
        // Garbage over a stretch of the header and a stretch of the middle.
        for start in [bytes.len() / 50, bytes.len() / 2] {
            let end = (start + 512).min(bytes.len());
            let garbage = noise(index as u64 + 1, end - start);
            bytes.splice(start..end, garbage);
        }
        let name = format!("damaged_{}", source.file_name().unwrap().to_string_lossy());
        // Either some audio or a typed error; the test fails only on a panic.
        if let Ok(mut reader) = AudioReader::open(&write_file(&name, &bytes)) {
            while let Ok(Some(block)) = reader.next_block() {
                assert!(block.iter().all(|sample| (-1.0..=1.0).contains(sample)));
            }
        }
    }
}

#[test]
fn too_many_channels_is_a_limit() {
    let path = encode("limit_stereo.wav", &["-ac", "2", "-c:a", "pcm_s16le"]);
    let limits = DecodeLimits {
        max_channels: 1,
        ..DecodeLimits::default()
    };
    let error = AudioReader::open_with(&path, &limits)
        .err()
        .expect("must fail");
    assert!(
        matches!(
            error,
            DecodeError::Limit {
                exceeded: LimitExceeded::Channels {
                    channels: 2,
                    max: 1
                }
            }
        ),
        "{error:?}"
    );
}

#[test]
fn too_long_is_a_limit_at_open_and_while_streaming() {
    let wav = encode("limit_long.wav", &["-c:a", "pcm_s16le"]);
    let limits = DecodeLimits {
        max_duration_seconds: 1.0,
        ..DecodeLimits::default()
    };
    let error = AudioReader::open_with(&wav, &limits)
        .err()
        .expect("stated length is too long");
    assert!(matches!(
        error,
        DecodeError::Limit {
            exceeded: LimitExceeded::Duration { .. }
        }
    ));

    // WebM states no length, so the limit trips while decoding.
    let webm = encode("limit_long.webm", &["-c:a", "libopus"]);
    let mut reader = AudioReader::open_with(&webm, &limits).unwrap();
    let error = loop {
        match reader.next_block() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("decoded past the limit"),
            Err(error) => break error,
        }
    };
    assert!(matches!(
        error,
        DecodeError::Limit {
            exceeded: LimitExceeded::Duration { .. }
        }
    ));
}
