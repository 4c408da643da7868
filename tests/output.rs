//! The output layer on real audio: pyannote's 30 s sample and its reference turns, as the
//! original 16-bit mono file and as 44.1 kHz stereo float and 24-bit stereo copies.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use hound::{SampleFormat as WavFormat, WavReader, WavSpec, WavWriter};
use whospoke::audio::{AudioReader, SampleFormat};
use whospoke::output::{
    self, BlockSource, DB_FLOOR, FADE_SECONDS, OutputError, RESULT_FILE, Report, RttmError,
    TrackFormat, format_rttm, parse_rttm, write_tracks, write_tracks_from_reader,
};
use whospoke::{Diarization, SpeakerId, Turn};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The reference turns of `sample.wav`.
fn reference() -> Diarization {
    let text = std::fs::read_to_string(data("sample.rttm")).unwrap();
    let files = parse_rttm(&text).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].file_id, "sample");
    files[0].to_diarization()
}

/// Every sample of a WAV file, scaled like the decoder (integers over 2^(bits-1)).
fn read_wav(path: &Path) -> (WavSpec, Vec<f32>) {
    let mut reader = WavReader::open(path).unwrap();
    let spec = reader.spec();
    let samples = match spec.sample_format {
        WavFormat::Float => reader.samples::<f32>().map(Result::unwrap).collect(),
        WavFormat::Int => {
            let scale = f32::powi(2.0, i32::from(spec.bits_per_sample) - 1);
            reader
                .samples::<i32>()
                .map(|s| s.unwrap() as f32 / scale)
                .collect()
        }
    };
    (spec, samples)
}

fn write_wav(
    path: &Path,
    spec: WavSpec,
    write: impl FnOnce(&mut WavWriter<std::io::BufWriter<std::fs::File>>),
) {
    let mut writer = WavWriter::create(path, spec).unwrap();
    write(&mut writer);
    writer.finalize().unwrap();
}

/// `sample.wav` linearly resampled to 44.1 kHz stereo float, the right channel inverted and halved.
fn float_stereo_44k(dir: &Path) -> PathBuf {
    let (_, mono) = read_wav(&data("sample.wav"));
    let path = dir.join("float.wav");
    let spec = WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 32,
        sample_format: WavFormat::Float,
    };
    write_wav(&path, spec, |writer| {
        let frames = mono.len() * 44_100 / 16_000;
        for frame in 0..frames {
            let position = frame as f64 * 16_000.0 / 44_100.0;
            let (index, fraction) = (position as usize, position.fract() as f32);
            let next = mono.get(index + 1).copied().unwrap_or(0.0);
            let sample = mono[index] * (1.0 - fraction) + next * fraction;
            writer.write_sample(sample).unwrap();
            writer.write_sample(-0.5 * sample).unwrap();
        }
    });
    path
}

/// `sample.wav` as 24-bit stereo, with distinct low bits in each channel so that every bit counts.
fn int24_stereo(dir: &Path) -> PathBuf {
    let mut reader = WavReader::open(data("sample.wav")).unwrap();
    let mono: Vec<i32> = reader
        .samples::<i16>()
        .map(|s| i32::from(s.unwrap()))
        .collect();
    let path = dir.join("int24.wav");
    let spec = WavSpec {
        channels: 2,
        sample_rate: 16_000,
        bits_per_sample: 24,
        sample_format: WavFormat::Int,
    };
    write_wav(&path, spec, |writer| {
        for (index, sample) in mono.iter().enumerate() {
            let low_bits = (index as i32 * 37) % 256 - 128;
            writer
                .write_sample((sample * 256 + low_bits).clamp(-8_388_608, 8_388_607))
                .unwrap();
            writer
                .write_sample((-sample * 128 - low_bits).clamp(-8_388_608, 8_388_607))
                .unwrap();
        }
    });
    path
}

/// Per speaker, per frame: inside one of its turns, and within a fade of one (or inside).
struct Activity {
    active: Vec<Vec<bool>>,
    near: Vec<Vec<bool>>,
}

fn activity(
    diarization: &Diarization,
    sample_rate: u32,
    frames: usize,
    fade_frames: usize,
) -> Activity {
    let to_frame = |seconds: f64| ((seconds * f64::from(sample_rate)).round() as usize).min(frames);
    let mut active = vec![vec![false; frames]; diarization.num_speakers];
    let mut near = vec![vec![false; frames]; diarization.num_speakers];
    for turn in &diarization.turns {
        let (start, end) = (to_frame(turn.start_seconds), to_frame(turn.end_seconds));
        active[turn.speaker.0][start..end].fill(true);
        near[turn.speaker.0]
            [start.saturating_sub(fade_frames + 1)..(end + fade_frames + 1).min(frames)]
            .fill(true);
    }
    Activity { active, near }
}

/// Seconds per speaker on a 1 ms grid (the reference turns are ms-aligned), and how many of
/// those milliseconds overlap someone else; then total speech and total overlap.
fn grid_seconds(diarization: &Diarization) -> (Vec<f64>, Vec<f64>, f64, f64) {
    let ms = (diarization.duration_seconds * 1000.0).round() as usize + 1;
    // cells[ms][speaker]: whether the speaker talks during that millisecond.
    let mut cells = vec![vec![false; diarization.num_speakers]; ms];
    for turn in &diarization.turns {
        let to_ms = |seconds: f64| (seconds * 1000.0).round() as usize;
        for cell in &mut cells[to_ms(turn.start_seconds)..to_ms(turn.end_seconds)] {
            cell[turn.speaker.0] = true;
        }
    }
    let mut speaking = vec![0.0; diarization.num_speakers];
    let mut overlapped = vec![0.0; diarization.num_speakers];
    let (mut total, mut overlap) = (0.0, 0.0);
    for cell in &cells {
        let speakers: Vec<usize> = (0..cell.len()).filter(|&s| cell[s]).collect();
        for &s in &speakers {
            speaking[s] += 0.001;
            if speakers.len() > 1 {
                overlapped[s] += 0.001;
            }
        }
        total += if speakers.is_empty() { 0.0 } else { 0.001 };
        overlap += if speakers.len() > 1 { 0.001 } else { 0.0 };
    }
    (speaking, overlapped, total, overlap)
}

/// Runs `write_all` on `input` against the reference turns and checks tracks and statistics.
fn check_outputs(input: &Path, expected_format: SampleFormat) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let mut diarization = reference();
    // The decoded length must win over the diarization's idea of it.
    diarization.duration_seconds += 0.5;
    let reader = AudioReader::open(input).unwrap();
    let format = TrackFormat::from(reader.info());
    assert_eq!(format.sample_format, expected_format);
    let report = output::write_all(reader, &diarization, "sample", dir.path()).unwrap();

    let (input_spec, original) = read_wav(input);
    let channels = usize::from(input_spec.channels);
    let frames = original.len() / channels;
    let tracks: Vec<Vec<f32>> = (0..diarization.num_speakers)
        .map(|id| {
            let (spec, samples) = read_wav(&dir.path().join(format!("speaker_{id}.wav")));
            assert_eq!(
                spec, input_spec,
                "track {id} keeps the input's rate, channels and format"
            );
            assert_eq!(
                samples.len(),
                original.len(),
                "track {id} has the input's frame count"
            );
            samples
        })
        .collect();
    assert_eq!(
        report.duration_seconds,
        frames as f64 / f64::from(input_spec.sample_rate)
    );

    let fade_frames = (FADE_SECONDS * f64::from(input_spec.sample_rate)).round() as usize;
    let Activity { active, near } =
        activity(&diarization, input_spec.sample_rate, frames, fade_frames);
    let lsb = match input_spec.sample_format {
        WavFormat::Float => 0.0,
        WavFormat::Int => f64::powi(2.0, 1 - i32::from(input_spec.bits_per_sample)),
    };
    // |Δ(g·x)| ≤ |Δx| + |Δg| for |x|, g ≤ 1, and a raised cosine over F + 1 steps has
    // |Δg| ≤ π / (2 (F + 1)); rounding adds at most one LSB.
    let max_extra_jump = PI / (2.0 * (fade_frames + 1) as f64) + lsb;
    let (mut exact_sum_frames, mut silent_frames) = (0, 0);
    for frame in 0..frames {
        let at = |samples: &[f32], channel: usize| samples[frame * channels + channel];
        let speaking: Vec<usize> = (0..tracks.len()).filter(|&s| active[s][frame]).collect();
        let near_edges = (0..tracks.len())
            .filter(|&s| near[s][frame] && !active[s][frame])
            .count();
        for channel in 0..channels {
            let x = at(&original, channel);
            for (s, track) in tracks.iter().enumerate() {
                let y = at(track, channel);
                if active[s][frame] {
                    assert_eq!(
                        y, x,
                        "speaker {s} frame {frame}: inside a turn the track is the original"
                    );
                } else if !near[s][frame] {
                    assert_eq!(
                        y, 0.0,
                        "speaker {s} frame {frame}: away from its turns the track is silent"
                    );
                }
                if frame > 0 {
                    let previous = track[(frame - 1) * channels + channel];
                    let jump = (f64::from(y) - f64::from(previous)).abs();
                    let original_jump = (f64::from(x)
                        - f64::from(original[(frame - 1) * channels + channel]))
                    .abs();
                    assert!(
                        jump <= original_jump + max_extra_jump,
                        "speaker {s} frame {frame}: jump {jump} vs original {original_jump}"
                    );
                }
            }
            let sum: f32 = tracks.iter().map(|track| at(track, channel)).sum();
            if speaking.len() == 1 && near_edges == 0 {
                assert_eq!(
                    sum, x,
                    "frame {frame}: one speaker, the tracks add up to the input"
                );
                exact_sum_frames += 1;
            }
            if speaking.is_empty() && near_edges == 0 {
                assert_eq!(
                    sum, 0.0,
                    "frame {frame}: nobody speaks, all tracks are silent"
                );
                silent_frames += 1;
            }
        }
    }
    assert!(
        exact_sum_frames > frames * channels / 2,
        "most of the sample has a single speaker"
    );
    assert!(silent_frames > 0, "the sample has pauses");

    check_stats(&report, &diarization, &original, channels, &active);
    report
}

fn check_stats(
    report: &Report,
    diarization: &Diarization,
    original: &[f32],
    channels: usize,
    active: &[Vec<bool>],
) {
    let (speaking, overlapped, total, overlap) = grid_seconds(diarization);
    assert!((report.total_speech_seconds - total).abs() < 1e-6);
    assert!((report.overlap_seconds - overlap).abs() < 1e-6);
    assert!(report.overlap_seconds > 0.0, "the reference turns overlap");
    let shares: f64 = report
        .speakers
        .iter()
        .map(|speaker| speaker.stats.share_of_speech)
        .sum();
    assert!(
        shares > 1.0,
        "overlap counts for both speakers, so shares sum above 1: {shares}"
    );

    for (id, speaker) in report.speakers.iter().enumerate() {
        let stats = &speaker.stats;
        assert!(
            (stats.speaking_seconds - speaking[id]).abs() < 1e-6,
            "speaker {id} speaking_seconds"
        );
        assert!(
            (stats.overlapped_seconds - overlapped[id]).abs() < 1e-6,
            "speaker {id} overlapped_seconds"
        );
        assert!((0.0..=1.0).contains(&stats.share_of_speech));
        assert!((stats.share_of_speech - speaking[id] / total).abs() < 1e-6);
        assert_eq!(stats.turns, diarization.turns_of(SpeakerId(id)).count());

        let active_samples = original
            .chunks_exact(channels)
            .zip(&active[id])
            .filter(|(_, active)| **active)
            .flat_map(|(frame, _)| frame.iter().map(|&s| f64::from(s)));
        let (mut sum_of_squares, mut count, mut peak) = (0.0, 0usize, 0.0f64);
        for sample in active_samples {
            sum_of_squares += sample * sample;
            count += 1;
            peak = peak.max(sample.abs());
        }
        let rms_db = 20.0 * (sum_of_squares / count as f64).sqrt().log10();
        assert!(
            (stats.rms_db - rms_db).abs() < 1e-6,
            "speaker {id}: rms {} vs {rms_db}",
            stats.rms_db
        );
        assert!((DB_FLOOR..=0.0).contains(&stats.rms_db));
        assert_eq!(stats.peak, peak);
        assert!((0.0..=1.0).contains(&stats.peak));
        assert!((stats.peak_db - 20.0 * stats.peak.log10()).abs() < 1e-9);
    }
}

#[test]
fn sixteen_bit_mono_tracks_are_exact() {
    check_outputs(&data("sample.wav"), SampleFormat::Int16);
}

#[test]
fn float_stereo_44k_tracks_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    check_outputs(&float_stereo_44k(dir.path()), SampleFormat::Float32);
}

#[test]
fn twenty_four_bit_stereo_tracks_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    check_outputs(&int24_stereo(dir.path()), SampleFormat::Int24);
}

#[test]
fn rttm_round_trips() {
    let diarization = reference();
    assert_eq!(diarization.num_speakers, 2);
    assert_eq!(diarization.turns.len(), 10);
    assert_eq!(
        diarization.turns[0],
        Turn {
            speaker: SpeakerId(0),
            start_seconds: 6.69,
            end_seconds: 6.69 + 0.43
        }
    );

    let text = format_rttm(&diarization, "sample");
    assert_eq!(
        text.lines().next(),
        Some("SPEAKER sample 1 6.690 0.430 <NA> <NA> SPEAKER_0 <NA> <NA>")
    );
    let files = parse_rttm(&text).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].labels(), ["SPEAKER_0", "SPEAKER_1"]);
    assert_eq!(files[0].to_diarization(), diarization);

    // Fields are whitespace-separated, so a file id with spaces keeps one field.
    let spaced = format_rttm(&diarization, "my talk");
    assert!(spaced.starts_with("SPEAKER my_talk 1 6.690 "), "{spaced}");
}

#[test]
fn rttm_parser_groups_files_and_reports_bad_lines() {
    let text = ";; comment\n\nSPEAKER a 1 0.5 1.0 <NA> <NA> x <NA> <NA>\nSPEAKER b 1 0 2 <NA> <NA> y <NA>\n\
                SPEAKER a 1 0.0 0.25 <NA> <NA> y <NA> <NA>\n";
    let files = parse_rttm(text).unwrap();
    let ids: Vec<&str> = files.iter().map(|file| file.file_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(files[0].turns.len(), 2);
    // Speakers are numbered by first appearance in time, not in the file.
    assert_eq!(files[0].labels(), ["y", "x"]);

    let cases = [
        (
            "SPEAKER a 1 0.5 1.0 <NA>",
            RttmError::FieldCount { line: 1, found: 6 },
        ),
        (
            "LEXEME a 1 0.5 1.0 <NA> <NA> x <NA> <NA>",
            RttmError::UnsupportedType {
                line: 1,
                kind: "LEXEME".into(),
            },
        ),
        (
            "\nSPEAKER a 1 zero 1.0 <NA> <NA> x <NA> <NA>",
            RttmError::NotANumber {
                line: 2,
                field: "onset",
                value: "zero".into(),
            },
        ),
        (
            "SPEAKER a 1 0.5 -1 <NA> <NA> x <NA> <NA>",
            RttmError::OutOfRange {
                line: 1,
                field: "duration",
                value: -1.0,
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_rttm(text), Err(expected), "{text:?}");
    }
}

#[test]
fn result_json_has_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let reader = AudioReader::open(&data("sample.wav")).unwrap();
    let report = output::write_all(reader, &reference(), "sample", dir.path()).unwrap();

    let rttm = std::fs::read_to_string(dir.path().join("sample.rttm")).unwrap();
    assert_eq!(rttm, format_rttm(&reference(), "sample"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(RESULT_FILE)).unwrap()).unwrap();
    assert_eq!(json["file_id"], "sample");
    assert_eq!(json["duration_seconds"], 30.0);
    assert_eq!(json["sample_rate"], 16_000);
    assert_eq!(json["channels"], 1);
    assert_eq!(json["num_speakers"], 2);
    assert_eq!(json["rttm"], "sample.rttm");
    assert!(json["total_speech_seconds"].is_f64() && json["overlap_seconds"].is_f64());
    assert!(
        json.get("timing").is_none(),
        "timing is left to the pipeline"
    );

    let speaker = &json["speakers"][1];
    assert_eq!(speaker["id"], 1);
    assert_eq!(speaker["label"], "SPEAKER_1");
    assert_eq!(speaker["track"], "speaker_1.wav");
    for field in [
        "speaking_seconds",
        "share_of_speech",
        "overlapped_seconds",
        "rms_db",
        "peak",
        "peak_db",
    ] {
        assert!(speaker[field].is_f64(), "{field}");
    }
    assert_eq!(speaker["turns"], 5);

    let segments = json["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 10);
    assert_eq!(
        segments[0],
        serde_json::json!({ "speaker": "SPEAKER_0", "start": 6.69, "end": 7.12 })
    );
    for track in &report.speakers {
        assert!(dir.path().join(&track.track).is_file());
    }
    let parsed: Report = serde_json::from_value(json).unwrap();
    assert_eq!(parsed.segments, report.segments);
}

/// Interleaved samples handed out in blocks of a fixed size, as a live stream's spool would.
struct Spool {
    samples: Vec<f32>,
    block_samples: usize,
    position: usize,
}

impl BlockSource for Spool {
    fn next_block(&mut self) -> Result<Option<&[f32]>, OutputError> {
        let start = self.position;
        self.position = (start + self.block_samples).min(self.samples.len());
        Ok(Some(&self.samples[start..self.position]).filter(|block| !block.is_empty()))
    }
}

#[test]
fn any_block_source_writes_the_same_tracks() {
    let (from_reader, from_spool) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let diarization = reference();
    let reader = AudioReader::open(&data("sample.wav")).unwrap();
    let format = TrackFormat::from(reader.info());
    let written = write_tracks_from_reader(reader, &diarization, from_reader.path()).unwrap();

    let (_, samples) = read_wav(&data("sample.wav"));
    let mut spool = Spool {
        samples,
        block_samples: 777,
        position: 0,
    };
    let spooled = write_tracks(&mut spool, format, &diarization, from_spool.path()).unwrap();
    assert_eq!(spooled.frames, written.frames);
    assert_eq!(spooled.levels, written.levels);
    for (a, b) in written.paths.iter().zip(&spooled.paths) {
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let stereo = TrackFormat {
        sample_rate: 16_000,
        channels: 2,
        sample_format: SampleFormat::Int16,
    };
    let mut spool = Spool {
        samples: vec![0.0; 9],
        block_samples: 3,
        position: 0,
    };
    let error = write_tracks(&mut spool, stereo, &reference(), dir.path()).unwrap_err();
    assert!(
        matches!(
            error,
            OutputError::PartialFrame {
                samples: 3,
                channels: 2
            }
        ),
        "{error}"
    );

    let mut unknown = reference();
    unknown.num_speakers = 1;
    let error = output::write_rttm(&unknown, "sample", dir.path())
        .map(drop)
        .and_then(|()| {
            write_tracks(
                &mut Spool {
                    samples: vec![],
                    block_samples: 1,
                    position: 0,
                },
                stereo,
                &unknown,
                dir.path(),
            )
            .map(drop)
        });
    assert!(
        matches!(
            error,
            Err(OutputError::UnknownSpeaker {
                index: 1,
                num_speakers: 1,
                ..
            })
        ),
        "{error:?}"
    );

    for file_id in ["", "../up", "a\\b", ".."] {
        let reader = AudioReader::open(&data("sample.wav")).unwrap();
        let error = output::write_all(reader, &reference(), file_id, dir.path()).unwrap_err();
        assert!(
            matches!(error, OutputError::InvalidFileId { .. }),
            "{file_id:?}: {error}"
        );
    }
}
