//! Command-line arguments, checked and turned into typed settings here.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure};
use clap::{Args, Parser, Subcommand};
use url::Url;

use crate::audio::Encoding;
use crate::client::StreamConfig;

/// The live endpoint's path, added to a bare `http://ADDR`.
const STREAM_PATH: &str = "/api/v1/speaker/stream";

#[derive(Debug, Parser)]
#[command(
    name = "whospoke-loadtest",
    version,
    about = "Load, delay and memory measurements for whospoke's live WebSocket API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// N concurrent streams once: delays, errors, server CPU and RSS.
    Run(RunArgs),
    /// `run` with more and more streams; finds the largest N that keeps up.
    Ramp(RampArgs),
    /// One long stream, printing the server's RSS at given marks.
    Memory(MemoryArgs),
    /// Live streams (WebSocket and WHIP) and batch jobs for a long run under
    /// faults, with server restarts; checks jobs, RSS and the log at the end.
    Soak(crate::soak::SoakArgs),
}

/// Where the server is and how to reach it.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Server base address (`http://ADDR`) or a full `ws://…` stream URL.
    #[arg(long)]
    pub url: String,
    /// API key, sent as `X-API-Key`.
    #[arg(long)]
    pub api_key: String,
    /// Server process to sample (CPU % and RSS, once a second).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// How each stream talks to the server.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Latency asked for in `start`, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub latency_ms: u64,
    /// Audio seconds sent per wall second: 1 is real time, 0 as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    pub pace: f64,
    /// Audio per binary message, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub frame_ms: u32,
    #[arg(long, value_enum, default_value_t = Encoding::PcmS16le)]
    pub encoding: Encoding,
    /// Exact number of speakers, sent in `start`.
    #[arg(long)]
    pub num_speakers: Option<u32>,
    /// Upper bound on speakers, sent in `start`.
    #[arg(long)]
    pub max_speakers: Option<u32>,
    /// Ask the server to extract per-speaker tracks too.
    #[arg(long)]
    pub extract: bool,
    /// Limit for connecting and for the `ready` answer, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout_seconds: f64,
    /// Limit for `completed` after `end` (and for one blocked send), in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub completion_timeout_seconds: f64,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    /// WAV files, given to the streams round-robin.
    #[arg(long, num_args = 1.., required = true)]
    pub files: Vec<PathBuf>,
    /// Concurrent streams [default: one per file].
    #[arg(long)]
    pub streams: Option<usize>,
    /// Cut or loop every stream's file to this length.
    #[arg(long)]
    pub duration_seconds: Option<f64>,
    /// Spread the stream starts evenly over this many seconds.
    #[arg(long, default_value_t = 0.0)]
    pub ramp_seconds: f64,
    /// Directory for summary.json, per-stream events and RTTMs (must be empty).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RampArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    #[arg(long, num_args = 1.., required = true)]
    pub files: Vec<PathBuf>,
    /// First number of streams.
    #[arg(long, default_value_t = 8)]
    pub from: usize,
    /// Last number of streams (inclusive).
    #[arg(long, default_value_t = 40)]
    pub to: usize,
    #[arg(long, default_value_t = 4)]
    pub step: usize,
    /// Length of every stream of every step.
    #[arg(long, default_value_t = 60.0)]
    pub duration_seconds: f64,
    #[arg(long, default_value_t = 0.0)]
    pub ramp_seconds: f64,
    /// Pause between steps so the server drains.
    #[arg(long, default_value_t = 5.0)]
    pub settle_seconds: f64,
    /// A step passes when p95 final delay ≤ latency + this, with no errors.
    #[arg(long, default_value_t = 0.5)]
    pub slack_seconds: f64,
    /// Go on after the first failing step.
    #[arg(long)]
    pub keep_going: bool,
    /// Directory for ramp.json and one run directory per step (must be empty).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MemoryArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    /// WAV files, concatenated and looped (all of one format).
    #[arg(long, num_args = 1.., required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, default_value_t = 1800.0)]
    pub duration_seconds: f64,
    /// Audio seconds at which to report RSS.
    #[arg(long, value_delimiter = ',', default_value = "60,600,1800")]
    pub marks: Vec<f64>,
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl StreamArgs {
    pub fn config(&self, server: &ServerArgs) -> anyhow::Result<StreamConfig> {
        ensure!(
            self.pace >= 0.0 && self.pace.is_finite(),
            "--pace must be 0 or more"
        );
        ensure!(self.frame_ms > 0, "--frame-ms must be positive");
        let seconds = |s: f64, flag: &str| {
            ensure!(s > 0.0 && s.is_finite(), "{flag} must be positive");
            Ok(Duration::from_secs_f64(s))
        };
        Ok(StreamConfig {
            url: stream_url(&server.url)?,
            api_key: server.api_key.clone(),
            latency_ms: self.latency_ms,
            encoding: self.encoding,
            frame_ms: self.frame_ms,
            pace: self.pace,
            num_speakers: self.num_speakers,
            max_speakers: self.max_speakers,
            extract: self.extract,
            connect_timeout: seconds(self.connect_timeout_seconds, "--connect-timeout-seconds")?,
            completion_timeout: seconds(
                self.completion_timeout_seconds,
                "--completion-timeout-seconds",
            )?,
        })
    }
}

/// `http://ADDR` → `ws://ADDR/api/v1/speaker/stream`; a `ws://` URL with a
/// path is kept as given.
pub fn stream_url(address: &str) -> anyhow::Result<Url> {
    let mut url = Url::parse(address)?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => {
            bail!("TLS is not supported by this tool: use the server's http:// address")
        }
        other => bail!("unsupported scheme {other:?} in --url"),
    };
    url.set_scheme(scheme)
        .map_err(|()| anyhow::anyhow!("cannot use {address} as a WebSocket URL"))?;
    if url.path() == "/" {
        url.set_path(STREAM_PATH);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_address_gets_the_stream_path() {
        let url = stream_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(url.as_str(), "ws://127.0.0.1:8080/api/v1/speaker/stream");
        let url = stream_url("http://127.0.0.1:8080/").unwrap();
        assert_eq!(url.as_str(), "ws://127.0.0.1:8080/api/v1/speaker/stream");
    }

    #[test]
    fn full_ws_urls_are_kept() {
        let url = stream_url("ws://localhost:9/custom?x=1").unwrap();
        assert_eq!(url.as_str(), "ws://localhost:9/custom?x=1");
    }

    #[test]
    fn tls_and_other_schemes_are_refused() {
        assert!(stream_url("https://example.test").is_err());
        assert!(stream_url("ftp://example.test").is_err());
        assert!(stream_url("not a url").is_err());
    }

    #[test]
    fn arguments_parse() {
        let cli = Cli::try_parse_from([
            "whospoke-loadtest",
            "memory",
            "--url",
            "http://127.0.0.1:1",
            "--api-key",
            "ap_x",
            "--files",
            "a.wav",
            "b.wav",
            "--marks",
            "60,600",
            "--pace",
            "0",
        ])
        .unwrap();
        let Command::Memory(args) = cli.command else {
            panic!("expected memory")
        };
        assert_eq!(args.files.len(), 2);
        assert_eq!(args.marks, [60.0, 600.0]);
        assert_eq!(args.duration_seconds, 1800.0);
        let config = args.stream.config(&args.server).unwrap();
        assert_eq!(config.pace, 0.0);
        assert_eq!(config.frame_ms, 100);
        assert!(
            Cli::try_parse_from(["whospoke-loadtest", "run", "--url", "x", "--api-key", "k"])
                .is_err(),
            "--files is required"
        );
    }
}
