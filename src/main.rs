//! The `whospoke` command line.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "whospoke",
    version,
    about = "Who spoke when: speaker diarization and per-speaker tracks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Diarize audio or video files and write RTTM, per-speaker WAVs and result.json.
    Diarize(commands::diarize::Args),
    /// Run the HTTP API and the job workers.
    Serve(Box<commands::serve::Args>),
    /// Manage users, API keys and credits.
    Admin(commands::admin::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHOSPOKE_LOG")
                .unwrap_or_else(|_| "warn,symphonia_core=off,symphonia=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Diarize(args) => commands::diarize::run(args),
        Command::Serve(args) => commands::serve::run(*args),
        Command::Admin(args) => commands::admin::run(args),
    }
}
