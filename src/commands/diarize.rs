//! `whospoke diarize`: files in, RTTM + tracks + result.json out.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use whospoke::Overlap;
use whospoke::engine::{Engine, EngineConfig, SpeakerCount};
use whospoke::output::Report;
use whospoke::pipeline;
use whospoke::runtime;

#[derive(clap::Args)]
pub struct Args {
    /// Audio or video files to diarize.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder; each input gets `OUT/<stem>/`.
    #[arg(long, short, default_value = "out")]
    out: PathBuf,
    /// Exact number of speakers, when known.
    #[arg(long, conflicts_with_all = ["min_speakers", "max_speakers"])]
    num_speakers: Option<usize>,
    /// At least this many speakers.
    #[arg(long)]
    min_speakers: Option<usize>,
    /// At most this many speakers.
    #[arg(long)]
    max_speakers: Option<usize>,
    /// At most one speaker at a time (for speech-recognition alignment):
    /// where voices overlap, the one who started last has the floor.
    #[arg(long)]
    exclusive: bool,
    /// Print one JSON document on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Inference threads, each with its own model sessions.
    #[arg(long, default_value_t = 2, env = "WHOSPOKE_THREADS")]
    threads: usize,
    /// Folder holding the ONNX models.
    #[arg(long, env = runtime::MODELS_DIR_ENV)]
    models_dir: Option<PathBuf>,
    /// The ONNX Runtime library (libonnxruntime.so.1.31.1).
    #[arg(long, env = runtime::ORT_LIBRARY_ENV)]
    ort_lib: Option<PathBuf>,
}

/// What `--json` prints.
#[derive(Serialize)]
struct Summary {
    model_load_seconds: f64,
    total_seconds: f64,
    peak_rss_mb: Option<f64>,
    results: Vec<Outcome>,
}

#[derive(Serialize)]
struct Outcome {
    input: PathBuf,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(args: Args) -> ExitCode {
    let speakers = match SpeakerCount::new(args.num_speakers, args.min_speakers, args.max_speakers)
    {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let overlap = if args.exclusive {
        Overlap::Exclusive
    } else {
        Overlap::Kept
    };
    let started = Instant::now();
    if let Err(e) = runtime::environment(args.ort_lib.as_deref()) {
        return fail(&e);
    }
    let config = EngineConfig {
        models_dir: args.models_dir.clone(),
        threads: args.threads,
    };
    let engine = match Engine::load(&config) {
        Ok(engine) => engine,
        Err(e) => return fail(&e),
    };
    let model_load_seconds = started.elapsed().as_secs_f64();

    let mut used_dirs = HashSet::new();
    let results: Vec<Outcome> = args
        .inputs
        .iter()
        .map(|input| {
            let dir = unique_dir(&args.out, input, &mut used_dirs);
            let outcome = diarize_one(&engine, input, &dir, speakers, overlap, args.json);
            if !args.json {
                print_outcome(&outcome);
            }
            outcome
        })
        .collect();

    let failed = results.iter().filter(|r| !r.ok).count();
    if args.json {
        let summary = Summary {
            model_load_seconds,
            total_seconds: started.elapsed().as_secs_f64(),
            peak_rss_mb: peak_rss_mb(),
            results,
        };
        match serde_json::to_string_pretty(&summary) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(&e),
        }
    } else if results.len() > 1 {
        println!(
            "{} of {} inputs diarized",
            results.len() - failed,
            results.len()
        );
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn diarize_one(
    engine: &Engine,
    input: &Path,
    dir: &Path,
    speakers: SpeakerCount,
    overlap: Overlap,
    quiet: bool,
) -> Outcome {
    let bar = progress_bar(input, quiet);
    let result = pipeline::process_file(engine, input, dir, speakers, overlap, |done, total| {
        if let Some(total) = total {
            bar.set_length((total * 10.0) as u64);
        }
        bar.set_position((done * 10.0) as u64);
        ControlFlow::Continue(())
    });
    bar.finish_and_clear();
    match result {
        Ok(report) => Outcome {
            input: input.to_path_buf(),
            ok: true,
            output_dir: Some(dir.to_path_buf()),
            report: Some(report),
            error: None,
        },
        Err(e) => Outcome {
            input: input.to_path_buf(),
            ok: false,
            output_dir: None,
            report: None,
            error: Some(e.to_string()),
        },
    }
}

/// `OUT/<stem>`, with a numeric suffix when two inputs share a stem.
fn unique_dir(out: &Path, input: &Path, used: &mut HashSet<PathBuf>) -> PathBuf {
    let stem = pipeline::file_id(input);
    let mut dir = out.join(&stem);
    let mut n = 2;
    while !used.insert(dir.clone()) {
        dir = out.join(format!("{stem}-{n}"));
        n += 1;
    }
    dir
}

fn progress_bar(input: &Path, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    // Length 1 until the duration is known, so the bar starts at 0 %, not 100 %.
    let bar = ProgressBar::new(1);
    // Positions are tenths of a second of audio.
    let style =
        ProgressStyle::with_template("{msg} [{bar:30}] {percent:>3}% {elapsed_precise} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_message(input.display().to_string());
    bar
}

fn print_outcome(outcome: &Outcome) {
    match (&outcome.report, &outcome.error) {
        (Some(report), _) => {
            let dir = outcome.output_dir.as_deref().unwrap_or(Path::new("."));
            println!(
                "{}: {} speakers, {:.1} s of audio, {:.1} s of speech → {}",
                outcome.input.display(),
                report.num_speakers,
                report.duration_seconds,
                report.total_speech_seconds,
                dir.display()
            );
            println!(
                "  {:<11} {:>9} {:>7} {:>6} {:>10} {:>8} {:>8}",
                "speaker", "speaking", "share", "turns", "overlap", "rms dB", "peak dB"
            );
            for s in &report.speakers {
                println!(
                    "  {:<11} {:>8.1}s {:>6.1}% {:>6} {:>9.1}s {:>8.1} {:>8.1}",
                    s.label,
                    s.stats.speaking_seconds,
                    s.stats.share_of_speech * 100.0,
                    s.stats.turns,
                    s.stats.overlapped_seconds,
                    s.stats.rms_db,
                    s.stats.peak_db
                );
            }
        }
        (None, Some(error)) => eprintln!("{}: error: {error}", outcome.input.display()),
        (None, None) => {}
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}

/// Peak resident memory of this process (Linux `VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
