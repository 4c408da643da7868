//! whospoke-loadtest: drives whospoke's live WebSocket API with many
//! concurrent streams and measures what a live user would see.
//!
//! ```text
//! WAV ─▶ audio (frames) ─▶ client (send on a clock, read events) ─▶ delay, stats ─▶ report, output
//!                                         procfs (server CPU, RSS) ─┘
//! ```

mod audio;
mod cli;
mod client;
mod clock;
mod commands;
mod delay;
#[cfg(test)]
mod fake_server;
mod output;
mod procfs;
mod record;
mod report;
mod run;
mod soak;
mod stats;
mod whip;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Run(args) => commands::run(args).await,
        Command::Ramp(args) => commands::ramp(args).await,
        Command::Memory(args) => commands::memory(args).await,
        Command::Soak(args) => soak::run(args).await,
    };
    // Only the tool's own failures (bad arguments, unreadable files, an
    // unwritable --out) end here; server faults are in the report.
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whospoke-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}
