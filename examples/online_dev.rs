//! Streams files through the online diarizer in 100 ms blocks and writes RTTMs.
//!   cargo run --release --example online_dev -- OUT_DIR LATENCY_MS FILE...

use std::path::{Path, PathBuf};

use whospoke::audio::read_analysis_audio;
use whospoke::engine::{Engine, EngineConfig, OnlineParams};
use whospoke::output::write_rttm;
use whospoke::pipeline::file_id;
use whospoke::runtime;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(&args[0]);
    let latency_ms: f64 = args[1].parse().expect("latency in ms");
    let defaults = OnlineParams::default();
    let setting = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let new_speaker_distance = setting(
        "NEW_SPEAKER_DISTANCE",
        f64::from(defaults.new_speaker_distance),
    ) as f32;
    let merge_distance = setting("MERGE_DISTANCE", f64::from(defaults.merge_distance)) as f32;
    let assign_distance = setting("ASSIGN_DISTANCE", f64::from(defaults.assign_distance)) as f32;
    let refresh_seconds = setting("REFRESH_SECONDS", defaults.refresh_seconds);
    runtime::environment(None).expect("onnxruntime");
    let engine = Engine::load(&EngineConfig::default()).expect("engine");
    std::fs::create_dir_all(&out).expect("out dir");
    for input in &args[2..] {
        let (_, samples) = read_analysis_audio(Path::new(input)).expect("decode");
        let started = std::time::Instant::now();
        let mut run = engine.start_online(OnlineParams {
            latency_seconds: latency_ms / 1000.0,
            new_speaker_distance,
            merge_distance,
            assign_distance,
            refresh_seconds,
            ..defaults
        });
        let mut events = 0;
        for block in samples.chunks(1600) {
            events += run.push(block).expect("push").len();
        }
        let (last, diarization) = run.finish().expect("finish");
        events += last.len();
        write_rttm(&diarization, &file_id(Path::new(input)), &out).expect("rttm");
        let seconds = samples.len() as f64 / 16000.0;
        println!(
            "{input}: {} speakers, {events} events, {:.1}x real time",
            diarization.num_speakers,
            seconds / started.elapsed().as_secs_f64()
        );
    }
}
