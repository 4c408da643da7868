//! The three modes: `run`, `ramp` and `memory`.

use std::time::Duration;

use anyhow::ensure;

use crate::audio::StreamAudio;
use crate::cli::{MemoryArgs, RampArgs, RunArgs, StreamArgs};
use crate::output;
use crate::report::{self, RampStep, RunSettings, RunSummary};
use crate::run::{self, RunPlan};

fn settings(args: &StreamArgs) -> RunSettings {
    RunSettings {
        pace: args.pace,
        latency_ms: args.latency_ms,
        frame_ms: args.frame_ms,
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = args.stream.config(&args.server)?;
    ensure!(args.ramp_seconds >= 0.0, "--ramp-seconds must be 0 or more");
    if let Some(out) = &args.out {
        output::prepare(out)?;
    }
    let clips = run::load_clips(&args.files)?;
    let count = args.streams.unwrap_or(clips.len());
    ensure!(count > 0, "--streams must be positive");
    let plan = RunPlan {
        streams: run::round_robin(&clips, count, args.duration_seconds)?,
        config,
        ramp_seconds: args.ramp_seconds,
        server_pid: args.server.server_pid,
        marks: Vec::new(),
    };
    let result = run::execute(plan).await?;
    let summary = RunSummary::new(&result, settings(&args.stream), &[]);
    report::print_run(&summary);
    if let Some(out) = &args.out {
        output::write_run(out, &summary, &result)?;
        println!("(written to {})", out.display());
    }
    Ok(())
}

pub async fn ramp(args: RampArgs) -> anyhow::Result<()> {
    ensure!(
        args.stream.pace > 0.0,
        "ramp judges delays, which need a paced run: give --pace > 0"
    );
    ensure!(
        args.from > 0 && args.step > 0 && args.from <= args.to,
        "need 0 < --from <= --to and --step > 0"
    );
    ensure!(
        args.settle_seconds >= 0.0 && args.ramp_seconds >= 0.0,
        "--settle-seconds and --ramp-seconds must be 0 or more"
    );
    if let Some(out) = &args.out {
        output::prepare(out)?;
    }
    let config = args.stream.config(&args.server)?;
    let clips = run::load_clips(&args.files)?;
    let limit_seconds = args.stream.latency_ms as f64 / 1000.0 + args.slack_seconds;
    let mut steps = Vec::new();
    for count in (args.from..=args.to).step_by(args.step) {
        if !steps.is_empty() {
            tokio::time::sleep(Duration::from_secs_f64(args.settle_seconds)).await;
        }
        let plan = RunPlan {
            streams: run::round_robin(&clips, count, Some(args.duration_seconds))?,
            config: config.clone(),
            ramp_seconds: args.ramp_seconds,
            server_pid: args.server.server_pid,
            marks: Vec::new(),
        };
        let result = run::execute(plan).await?;
        let summary = RunSummary::new(&result, settings(&args.stream), &[]);
        report::print_run(&summary);
        println!();
        if let Some(out) = &args.out {
            output::write_run(&out.join(format!("n{count:03}")), &summary, &result)?;
        }
        let step = RampStep::new(&summary, args.slack_seconds);
        let stop = !step.keeps_up && !args.keep_going;
        steps.push(step);
        if stop {
            break;
        }
    }
    report::print_ramp(&steps, limit_seconds);
    if let Some(out) = &args.out {
        output::write_json(
            &out.join("ramp.json"),
            &serde_json::json!({
                "limit_seconds": limit_seconds,
                "largest_passing": report::largest_passing(&steps),
                "steps": steps,
            }),
        )?;
    }
    Ok(())
}

pub async fn memory(args: MemoryArgs) -> anyhow::Result<()> {
    let config = args.stream.config(&args.server)?;
    ensure!(
        args.server.server_pid.is_some(),
        "memory needs --server-pid to sample the server's RSS"
    );
    if let Some(out) = &args.out {
        output::prepare(out)?;
    }
    let clips = run::load_clips(&args.files)?;
    let plan = RunPlan {
        streams: vec![StreamAudio::new(clips, Some(args.duration_seconds))?],
        config,
        ramp_seconds: 0.0,
        server_pid: args.server.server_pid,
        marks: args.marks.clone(),
    };
    let result = run::execute(plan).await?;
    let summary = RunSummary::new(&result, settings(&args.stream), &args.marks);
    report::print_run(&summary);
    report::print_marks(&summary);
    if let Some(out) = &args.out {
        output::write_run(out, &summary, &result)?;
        println!("(written to {})", out.display());
    }
    Ok(())
}
