//! The `whospoke diarize` binary, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn whospoke(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_whospoke"));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the binary runs")
}

/// `whospoke diarize sample.wav --out OUT EXTRA...`
fn diarize_sample(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let sample = sample();
    let mut args = vec![
        "diarize",
        sample.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    whospoke(&args, env)
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sample.wav")
}

#[test]
fn diarizes_good_inputs_and_reports_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("notes.wav");
    std::fs::write(&bad, "this is not audio").unwrap();
    let out = dir.path().join("out");

    let output = whospoke(
        &[
            "diarize",
            sample().to_str().unwrap(),
            bad.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(
        !output.status.success(),
        "one bad input makes the exit code non-zero"
    );

    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    let results = summary["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["ok"], true);
    assert_eq!(results[0]["report"]["num_speakers"], 2);
    assert_eq!(results[1]["ok"], false);
    let error = results[1]["error"].as_str().unwrap();
    assert!(error.contains("unsupported format"), "{error}");
    assert!(summary["model_load_seconds"].as_f64().unwrap() > 0.0);

    let files = out.join("sample");
    for name in [
        "sample.rttm",
        "speaker_0.wav",
        "speaker_1.wav",
        "result.json",
    ] {
        assert!(files.join(name).is_file(), "{name} written");
    }
    assert!(!out.join("notes").join("result.json").exists());
    let rttm = std::fs::read_to_string(files.join("sample.rttm")).unwrap();
    assert!(rttm.lines().all(|l| l.starts_with("SPEAKER sample 1 ")));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(files.join("result.json")).unwrap()).unwrap();
    assert!(report["timing"]["embedding_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn prints_a_summary_table() {
    let dir = tempfile::tempdir().unwrap();
    let output = diarize_sample(dir.path(), &["--num-speakers", "2"], &[]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("2 speakers"), "{text}");
    assert!(
        text.contains("SPEAKER_0") && text.contains("SPEAKER_1"),
        "{text}"
    );
}

#[test]
fn missing_runtime_names_the_setup_command() {
    let dir = tempfile::tempdir().unwrap();
    let output = diarize_sample(
        dir.path(),
        &[],
        &[("WHOSPOKE_ORT_LIB", "/nonexistent/libonnxruntime.so.1.31.1")],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("scripts/setup.sh"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn rejects_contradictory_speaker_counts() {
    let output = whospoke(
        &[
            "diarize",
            sample().to_str().unwrap(),
            "--min-speakers",
            "3",
            "--max-speakers",
            "2",
        ],
        &[],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("greater than max_speakers"), "{stderr}");
}

#[test]
fn exclusive_output_has_one_speaker_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let overlapped = |extra: &[&str]| -> f64 {
        let out = dir.path().join(extra.join("_"));
        let output = diarize_sample(&out, extra, &[]);
        assert!(output.status.success(), "{output:?}");
        let text = std::fs::read_to_string(out.join("sample/sample.rttm")).unwrap();
        let files = whospoke::output::rttm::parse_rttm(&text).unwrap();
        let turns = &files[0].to_diarization().turns;
        // Seconds where two turns of different speakers overlap by more than
        // the RTTM's millisecond rounding.
        let mut seconds = 0.0;
        for (i, a) in turns.iter().enumerate() {
            for b in &turns[i + 1..] {
                let shared =
                    a.end_seconds.min(b.end_seconds) - a.start_seconds.max(b.start_seconds);
                if a.speaker != b.speaker && shared > 0.0015 {
                    seconds += shared;
                }
            }
        }
        seconds
    };
    assert!(overlapped(&[]) > 0.0, "sample.wav has overlapped speech");
    assert_eq!(overlapped(&["--exclusive"]), 0.0);
}
