//! Concurrent live runs, each pushing audio as fast as it goes: CPU time per
//! second of audio.
//!   cargo run --release --example online_throughput -- FILE [SECONDS [STREAMS...]]
//! Defaults: the first 60 s of FILE; 1, 8 and 24 streams. Stream i starts
//! i/N of the way into the audio and wraps around, so the streams differ.

use std::path::Path;
use std::time::Instant;

use whospoke::audio::read_analysis_audio;
use whospoke::engine::{ANALYSIS_SAMPLE_RATE, Engine, EngineConfig, OnlineParams};
use whospoke::runtime;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(file) = args.first() else {
        eprintln!("usage: online_throughput FILE [SECONDS [STREAMS...]]");
        std::process::exit(2);
    };
    let seconds: f64 = args.get(1).map_or(60.0, |s| s.parse().expect("SECONDS"));
    let counts: Vec<usize> = match args.get(2..) {
        Some(counts) if !counts.is_empty() => {
            counts.iter().map(|n| n.parse().expect("STREAMS")).collect()
        }
        _ => vec![1, 8, 24],
    };
    runtime::environment(None).expect("onnxruntime");
    let engine = Engine::load(&EngineConfig::default()).expect("engine");
    let rate = f64::from(ANALYSIS_SAMPLE_RATE);
    let (_, mut samples) = read_analysis_audio(Path::new(file)).expect("decode");
    samples.truncate((seconds * rate) as usize);
    let audio_seconds = samples.len() as f64 / rate;

    // Loads every session and warms the models up.
    stream(
        &engine,
        &samples[..samples.len().min(10 * ANALYSIS_SAMPLE_RATE as usize)],
    );

    println!("{file}, {audio_seconds:.1} s per stream");
    println!("streams  wall s  x real time  CPU ms per audio s");
    for n in counts {
        let cpu = cpu_seconds();
        let started = Instant::now();
        std::thread::scope(|scope| {
            for i in 0..n {
                let (before, after) = samples.split_at(samples.len() * i / n);
                let audio = [after, before].concat();
                let engine = &engine;
                scope.spawn(move || stream(engine, &audio));
            }
        });
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        let total_audio = audio_seconds * n as f64;
        println!(
            "{n:>7}  {wall:>6.1}  {:>11.1}  {:>18.1}",
            total_audio / wall,
            cpu * 1000.0 / total_audio,
        );
    }
}

fn stream(engine: &Engine, samples: &[f32]) {
    let mut run = engine.start_online(OnlineParams::default());
    for block in samples.chunks(1600) {
        run.push(block).expect("push");
    }
    run.finish().expect("finish");
}

/// User and system CPU time of the whole process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the parenthesised command name; utime and stime are 14th
    // and 15th of the line, in clock ticks (100 a second on Linux).
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split(' ')
        .collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("ticks");
    (ticks(11) + ticks(12)) / 100.0
}
