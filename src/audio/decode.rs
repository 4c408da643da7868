//! Streaming decode of any audio file to interleaved f32 at its original rate and channel count.
//!
//! Symphonia (with libopus for Opus) decodes in process; anything it cannot read goes to an
//! `ffmpeg` subprocess when one is installed. Every bad file becomes a typed [`DecodeError`].

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use tracing::debug;

use super::{ffmpeg, native};

/// What a file holds, known once it is opened.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioInfo {
    pub sample_rate: u32,
    pub channels: u16,
    /// Frames per channel when the container states it (for progress bars and credit
    /// estimates); None when unknown.
    pub frames: Option<u64>,
    /// Short codec name, e.g. "pcm_s16le", "mp3", "aac", "flac", "vorbis", "opus", or what
    /// ffmpeg reports.
    pub codec: String,
    /// Container name: "wav", "ogg", "mp4", "mov", "mkv", "webm", "mp3", "flac", or
    /// "ffmpeg:<format>" for files decoded by ffmpeg.
    pub container: String,
    /// How per-speaker output tracks should be written so they hold the original audio
    /// without loss.
    pub sample_format: SampleFormat,
}

impl AudioInfo {
    /// Stated duration in seconds, when the container states the frame count.
    pub fn duration_seconds(&self) -> Option<f64> {
        self.frames
            .map(|frames| frames as f64 / f64::from(self.sample_rate))
    }
}

/// Sample format for lossless per-speaker output tracks.
///
/// Int16 for 8/16-bit PCM and for lossy codecs, Int24 for 24-bit PCM/FLAC, Float32 for 32-bit
/// int or float input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleFormat {
    Int16,
    Int24,
    Float32,
}

impl SampleFormat {
    /// Format that holds `bits`-bit lossless samples without loss.
    pub(super) fn for_lossless_bits(bits: u32) -> Self {
        match bits {
            0..=16 => Self::Int16,
            17..=24 => Self::Int24,
            _ => Self::Float32,
        }
    }
}

/// Bounds on what an untrusted file may make the decoder do.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeLimits {
    /// Most channels accepted. Default 32.
    pub max_channels: u16,
    /// Lowest sample rate accepted, in Hz. Default 4000.
    pub min_sample_rate: u32,
    /// Highest sample rate accepted, in Hz. Default 768 000.
    pub max_sample_rate: u32,
    /// Longest audio accepted, in seconds, checked against the stated length at open and
    /// against the decoded length while streaming. Default 12 h.
    pub max_duration_seconds: f64,
    /// Whether formats Symphonia cannot read may be handed to an `ffmpeg` subprocess.
    /// Default true (used only when `ffmpeg` and `ffprobe` are on the PATH).
    pub use_ffmpeg: bool,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_channels: 32,
            min_sample_rate: 4_000,
            max_sample_rate: 768_000,
            max_duration_seconds: 12.0 * 3600.0,
            use_ffmpeg: true,
        }
    }
}

impl DecodeLimits {
    /// Checks a stream's rate and channel count against the limits.
    pub(super) fn check_format(&self, sample_rate: u32, channels: u32) -> Result<(), DecodeError> {
        if channels == 0 || channels > u32::from(self.max_channels) {
            return Err(LimitExceeded::Channels {
                channels,
                max: self.max_channels,
            }
            .into());
        }
        if !(self.min_sample_rate..=self.max_sample_rate).contains(&sample_rate) {
            return Err(LimitExceeded::SampleRate {
                rate: sample_rate,
                min: self.min_sample_rate,
                max: self.max_sample_rate,
            }
            .into());
        }
        Ok(())
    }

    /// Most frames per channel accepted at `sample_rate`.
    fn max_frames(&self, sample_rate: u32) -> u64 {
        (self.max_duration_seconds.max(0.0) * f64::from(sample_rate)) as u64
    }
}

/// Which limit a file broke.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("{channels} channels (accepted: 1 to {max})")]
    Channels { channels: u32, max: u16 },
    #[error("sample rate {rate} Hz (accepted: {min} to {max} Hz)")]
    SampleRate { rate: u32, min: u32, max: u32 },
    #[error("{seconds:.1} s of audio (accepted: up to {max_seconds:.1} s)")]
    Duration { seconds: f64, max_seconds: f64 },
}

/// Why a file could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// Zero bytes, or a stream that decodes to no audio frames.
    #[error("{path} contains no audio")]
    Empty { path: PathBuf },
    /// No decoder understands the file, and ffmpeg (if installed) could not either.
    #[error("unsupported format: {reason}")]
    Unsupported { reason: String },
    /// A container with no audio track (a video without sound, an image).
    #[error("the file has no audio track")]
    NoAudioTrack,
    /// A known format whose data is damaged or cut off before any audio.
    #[error("corrupt audio: {reason}")]
    Corrupt { reason: String },
    /// Too many channels, an absurd sample rate, or longer than allowed.
    #[error("audio exceeds a limit: {exceeded}")]
    Limit { exceeded: LimitExceeded },
    /// ffmpeg or ffprobe could not be run or read.
    #[error("{program} failed: {reason}")]
    Ffmpeg {
        program: &'static str,
        reason: String,
    },
}

impl From<LimitExceeded> for DecodeError {
    fn from(exceeded: LimitExceeded) -> Self {
        Self::Limit { exceeded }
    }
}

/// Where decoded blocks come from.
enum Source {
    Native(native::NativeSource),
    Ffmpeg(ffmpeg::FfmpegSource),
}

impl Source {
    /// Replaces `out` with the next block of interleaved samples; leaves it empty at the end.
    fn read_block(&mut self, out: &mut Vec<f32>) -> Result<(), DecodeError> {
        match self {
            Self::Native(source) => source.read_block(out),
            Self::Ffmpeg(source) => source.read_block(out),
        }
    }
}

/// Streaming decoder: holds one block of audio at a time, never the whole file.
pub struct AudioReader {
    info: AudioInfo,
    source: Source,
    block: Vec<f32>,
    /// The first block is decoded by `open` (to prove the file decodes) and handed out first.
    primed: bool,
    frames_read: u64,
    max_frames: u64,
    max_seconds: f64,
}

impl AudioReader {
    /// Opens `path` with the default [`DecodeLimits`].
    pub fn open(path: &Path) -> Result<Self, DecodeError> {
        Self::open_with(path, &DecodeLimits::default())
    }

    /// Opens `path`, decoding its first block so that a file which cannot be decoded fails
    /// here rather than midway.
    pub fn open_with(path: &Path, limits: &DecodeLimits) -> Result<Self, DecodeError> {
        let io_error = |source| DecodeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        if file.metadata().map_err(io_error)?.len() == 0 {
            return Err(DecodeError::Empty {
                path: path.to_path_buf(),
            });
        }
        if let Some(kind) = ffmpeg::playlist_kind(path) {
            return Err(DecodeError::Unsupported {
                reason: format!("{kind} are not supported; send the audio or video file itself"),
            });
        }

        let native = native::open(file, path, limits)
            .and_then(|(info, source)| Self::prime(path, info, Source::Native(source), limits));
        let native_error = match native {
            Ok(reader) => return Ok(reader),
            Err(error @ (DecodeError::Unsupported { .. } | DecodeError::Corrupt { .. })) => error,
            Err(error) => return Err(error),
        };
        if !limits.use_ffmpeg {
            return Err(native_error);
        }
        debug!(path = %path.display(), error = %native_error, "trying ffmpeg");
        let fallback = ffmpeg::open(path, limits)
            .and_then(|(info, source)| Self::prime(path, info, Source::Ffmpeg(source), limits));
        match (fallback, native_error) {
            (Ok(reader), _) => Ok(reader),
            // ffmpeg's view of a file Symphonia found damaged adds nothing.
            (
                Err(DecodeError::Unsupported { .. } | DecodeError::Empty { .. }),
                corrupt @ DecodeError::Corrupt { .. },
            ) => Err(corrupt),
            (
                Err(DecodeError::Unsupported { reason }),
                DecodeError::Unsupported { reason: ours },
            ) => Err(DecodeError::Unsupported {
                reason: format!("{ours}; {reason}"),
            }),
            (Err(error), _) => Err(error),
        }
    }

    fn prime(
        path: &Path,
        info: AudioInfo,
        mut source: Source,
        limits: &DecodeLimits,
    ) -> Result<Self, DecodeError> {
        let max_frames = limits.max_frames(info.sample_rate);
        if let Some(seconds) = info.duration_seconds()
            && info.frames.is_some_and(|frames| frames > max_frames)
        {
            return Err(LimitExceeded::Duration {
                seconds,
                max_seconds: limits.max_duration_seconds,
            }
            .into());
        }
        let mut block = Vec::new();
        source.read_block(&mut block)?;
        if block.is_empty() {
            return Err(DecodeError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            info,
            source,
            block,
            primed: true,
            frames_read: 0,
            max_frames,
            max_seconds: limits.max_duration_seconds,
        })
    }

    pub fn info(&self) -> &AudioInfo {
        &self.info
    }

    /// Next block of interleaved f32 samples in [-1, 1] at the original rate and channel
    /// count; Ok(None) at the end.
    pub fn next_block(&mut self) -> Result<Option<&[f32]>, DecodeError> {
        if !std::mem::take(&mut self.primed) {
            self.source.read_block(&mut self.block)?;
        }
        if self.block.is_empty() {
            return Ok(None);
        }
        self.frames_read += (self.block.len() / usize::from(self.info.channels)) as u64;
        if self.frames_read > self.max_frames {
            return Err(LimitExceeded::Duration {
                seconds: self.frames_read as f64 / f64::from(self.info.sample_rate),
                max_seconds: self.max_seconds,
            }
            .into());
        }
        Ok(Some(&self.block))
    }
}

/// Makes decoded samples safe for analysis: NaN and infinities become silence, and
/// everything is clamped to [-1, 1].
pub(super) fn sanitize(samples: &mut [f32]) {
    for sample in samples {
        *sample = if sample.is_finite() {
            sample.clamp(-1.0, 1.0)
        } else {
            0.0
        };
    }
}
