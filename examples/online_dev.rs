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
    let new_speaker_distance = std::env::var("NEW_SPEAKER_DISTANCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(defaults.new_speaker_distance);
    runtime::environment(None).expect("onnxruntime");
    let engine = Engine::load(&EngineConfig::default()).expect("engine");
    std::fs::create_dir_all(&out).expect("out dir");
    for input in &args[2..] {
        let (_, samples) = read_analysis_audio(Path::new(input)).expect("decode");
        let started = std::time::Instant::now();
        let mut run = engine.start_online(OnlineParams {
            latency_seconds: latency_ms / 1000.0,
            new_speaker_distance,
            ..defaults
        });
        let mut events = 0;
        for block in samples.chunks(1600) {
            events += run.push(block).expect("push").len();
        }
        let diarization = run.finish().expect("finish");
        write_rttm(&diarization, &file_id(Path::new(input)), &out).expect("rttm");
        let seconds = samples.len() as f64 / 16000.0;
        println!(
            "{input}: {} speakers, {events} final turns, {:.1}x real time",
            diarization.num_speakers,
            seconds / started.elapsed().as_secs_f64()
        );
    }
}
