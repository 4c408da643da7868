//! What a client asks for when it starts a stream, validated once.

use std::time::Duration;

use whospoke_protocol::{self as protocol, Start};

use crate::audio::SampleFormat;
use crate::engine::{SpeakerCount, SpeakerCountError};
use crate::output::TrackFormat;

/// Stream sample rates accepted, in Hz.
pub const SAMPLE_RATES_HZ: std::ops::RangeInclusive<u32> = 8_000..=48_000;
/// The rates libopus decodes at (RFC 6716 §2).
pub const OPUS_SAMPLE_RATES_HZ: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];
/// Latency accepted, in milliseconds.
pub const LATENCY_MS: std::ops::RangeInclusive<u32> = 500..=5_000;
pub const DEFAULT_LATENCY_MS: u32 = 2_000;

/// How the binary frames carry audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Interleaved 16-bit little-endian PCM, frames split anywhere.
    PcmS16le,
    /// Interleaved 32-bit float little-endian PCM, frames split anywhere.
    PcmF32le,
    /// One raw Opus packet per binary frame.
    Opus,
}

impl Encoding {
    /// The encoding a start message names, or the name the server cannot take.
    fn from_wire(encoding: protocol::Encoding) -> Result<Self, SpecError> {
        match encoding {
            protocol::Encoding::PcmS16le => Ok(Self::PcmS16le),
            protocol::Encoding::PcmF32le => Ok(Self::PcmF32le),
            protocol::Encoding::Opus => Ok(Self::Opus),
            protocol::Encoding::Unsupported(name) => Err(SpecError::Encoding(name)),
        }
    }

    /// The sample format of the tracks cut from such a stream.
    fn track_format(self) -> SampleFormat {
        match self {
            Self::PcmS16le | Self::Opus => SampleFormat::Int16,
            Self::PcmF32le => SampleFormat::Float32,
        }
    }
}

/// The audio of a stream: its own rate and channels, kept for the tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamFormat {
    pub sample_rate: u32,
    pub channels: u16,
    pub encoding: Encoding,
}

impl StreamFormat {
    pub fn track_format(self) -> TrackFormat {
        TrackFormat {
            sample_rate: self.sample_rate,
            channels: self.channels,
            sample_format: self.encoding.track_format(),
        }
    }

    /// Samples (all channels) in `seconds` of this stream.
    pub fn samples_in(self, seconds: f64) -> usize {
        (seconds * f64::from(self.sample_rate)) as usize * usize::from(self.channels)
    }
}

/// A validated start: everything a session needs to know up front.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub format: StreamFormat,
    pub num_speakers: Option<i64>,
    pub max_speakers: Option<i64>,
    pub speakers: SpeakerCount,
    pub latency: Duration,
    /// Cut per-speaker tracks at the end (default true).
    pub extract: bool,
    /// The job's file name; also the RTTM's file id.
    pub filename: String,
    /// Where the job's end is POSTed (checked against private addresses at start).
    pub webhook_url: Option<url::Url>,
    /// The finished job's timeline has at most one speaker at a time (the
    /// events stay overlap-aware).
    pub exclusive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("webhook_url must be an http or https URL, not {0:?}")]
    WebhookUrl(String),
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("sample_rate must be between 8000 and 48000 Hz, not {0}")]
    SampleRate(i64),
    #[error("channels must be 1 or 2, not {0}")]
    Channels(i64),
    #[error("encoding {0:?} is not one of pcm_s16le, pcm_f32le, opus")]
    Encoding(String),
    #[error("opus streams must be at 8000, 12000, 16000, 24000 or 48000 Hz, not {0}")]
    OpusRate(u32),
    #[error("latency_ms must be between 500 and 5000, not {0}")]
    Latency(i64),
    #[error("{0}")]
    Speakers(#[from] SpeakerCountError),
    #[error("num_speakers and max_speakers must be between 1 and 100")]
    SpeakerRange,
}

impl SpecError {
    /// Whether the client asked for an encoding the server cannot take, as
    /// opposed to a malformed start.
    pub fn is_unsupported_encoding(&self) -> bool {
        matches!(self, Self::Encoding(_) | Self::OpusRate(_))
    }
}

/// Most speakers a stream may name; the online clusterer's own cap is lower.
const MAX_SPEAKERS: i64 = 100;

impl TryFrom<Start> for StreamSpec {
    type Error = SpecError;

    fn try_from(fields: Start) -> Result<Self, SpecError> {
        let sample_rate = fields.sample_rate.ok_or(SpecError::Missing {
            field: "sample_rate",
        })?;
        let sample_rate = u32::try_from(sample_rate)
            .ok()
            .filter(|rate| SAMPLE_RATES_HZ.contains(rate))
            .ok_or(SpecError::SampleRate(sample_rate))?;
        let channels = fields
            .channels
            .ok_or(SpecError::Missing { field: "channels" })?;
        let channels = match channels {
            1 | 2 => channels as u16,
            other => return Err(SpecError::Channels(other)),
        };
        let encoding = fields
            .encoding
            .ok_or(SpecError::Missing { field: "encoding" })?;
        let encoding = Encoding::from_wire(encoding)?;
        if encoding == Encoding::Opus && !OPUS_SAMPLE_RATES_HZ.contains(&sample_rate) {
            return Err(SpecError::OpusRate(sample_rate));
        }
        let latency_ms = fields.latency_ms.unwrap_or(i64::from(DEFAULT_LATENCY_MS));
        let latency_ms = u32::try_from(latency_ms)
            .ok()
            .filter(|ms| LATENCY_MS.contains(ms))
            .ok_or(SpecError::Latency(latency_ms))?;
        let in_range = |n: Option<i64>| n.is_none_or(|n| n <= MAX_SPEAKERS);
        if !in_range(fields.num_speakers) || !in_range(fields.max_speakers) {
            return Err(SpecError::SpeakerRange);
        }
        let size = |n: Option<i64>| n.map(|n| usize::try_from(n).unwrap_or(0));
        let speakers =
            SpeakerCount::new(size(fields.num_speakers), None, size(fields.max_speakers))?;
        let webhook_url = fields
            .webhook_url
            .as_deref()
            .map(|text| {
                url::Url::parse(text)
                    .ok()
                    .filter(|url| matches!(url.scheme(), "http" | "https"))
                    .ok_or_else(|| SpecError::WebhookUrl(text.to_owned()))
            })
            .transpose()?;
        let filename = fields
            .name
            .as_deref()
            .map_or_else(|| "stream".to_owned(), crate::jobs::safe_filename);
        Ok(Self {
            format: StreamFormat {
                sample_rate,
                channels,
                encoding,
            },
            num_speakers: fields.num_speakers,
            max_speakers: fields.max_speakers,
            speakers,
            latency: Duration::from_millis(u64::from(latency_ms)),
            extract: fields.extract.unwrap_or(true),
            filename,
            webhook_url,
            exclusive: fields.exclusive.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(rate: i64, channels: i64, encoding: &str) -> Start {
        Start {
            sample_rate: Some(rate),
            channels: Some(channels),
            encoding: serde_json::from_value(encoding.into()).ok(),
            ..Start::default()
        }
    }

    #[test]
    fn defaults_apply() {
        let spec = StreamSpec::try_from(start(16_000, 1, "pcm_s16le")).unwrap();
        assert_eq!(spec.latency, Duration::from_secs(2));
        assert!(spec.extract);
        assert_eq!(spec.filename, "stream");
    }

    #[test]
    fn rejects_what_cannot_be_streamed() {
        let error = |fields| StreamSpec::try_from(fields).unwrap_err();
        assert_eq!(
            error(start(7_999, 1, "pcm_s16le")),
            SpecError::SampleRate(7_999)
        );
        assert_eq!(error(start(16_000, 3, "pcm_s16le")), SpecError::Channels(3));
        assert!(error(start(16_000, 1, "mp3")).is_unsupported_encoding());
        assert!(error(start(44_100, 2, "opus")).is_unsupported_encoding());
        let mut slow = start(16_000, 1, "pcm_f32le");
        slow.latency_ms = Some(6_000);
        assert_eq!(error(slow), SpecError::Latency(6_000));
        let mut none = start(16_000, 1, "pcm_f32le");
        none.num_speakers = Some(0);
        assert!(matches!(error(none), SpecError::Speakers(_)));
    }
}
