//! In-process decoding: Symphonia's demuxers, with Symphonia's decoders or libopus.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use symphonia::core::audio::Channels;
use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::well_known::{CODEC_ID_AAC, CODEC_ID_OPUS};
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::packet::Packet;
use tracing::warn;

use super::decode::{AudioInfo, DecodeError, DecodeLimits, SampleFormat, sanitize};
use super::opus::{OPUS_SAMPLE_RATE, OpusHead, OpusStream};

/// Encoder delay of AAC-LC. MP4 states it in an edit list, which Symphonia does not read.
const AAC_PRIMING_FRAMES: u64 = 1_024;

/// Bytes read from the start of the file to tell MP4 from MOV and MKV from WebM.
const SNIFF_BYTES: usize = 64;

/// Opens `file` with Symphonia and prepares a decoder for its first audio track.
pub(super) fn open(
    mut file: File,
    path: &Path,
    limits: &DecodeLimits,
) -> Result<(AudioInfo, NativeSource), DecodeError> {
    let io_error = |source| DecodeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut file)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io_error)?;
    file.seek(SeekFrom::Start(0)).map_err(io_error)?;

    let mut hint = Hint::new();
    if let Some(extension) = path.extension().and_then(|extension| extension.to_str()) {
        hint.with_extension(extension);
    }
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let probe = || {
        symphonia::default::get_probe().probe(
            &hint,
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
    };
    let format = catch_panic(probe)
        .map_err(|reason| DecodeError::Corrupt { reason })?
        .map_err(|error| match error {
            SymphoniaError::Unsupported(_) => DecodeError::Unsupported {
                reason: "no known container format".into(),
            },
            error => DecodeError::Corrupt {
                reason: error.to_string(),
            },
        })?;

    let track = format
        .tracks()
        .iter()
        .find(|track| matches!(track.codec_params, Some(CodecParameters::Audio(_))))
        .cloned()
        .ok_or(DecodeError::NoAudioTrack)?;
    let Some(CodecParameters::Audio(params)) = &track.codec_params else {
        return Err(DecodeError::NoAudioTrack);
    };
    let container = container_name(format.format_info().short_name, &head);

    let setup = setup_decoder(params, &container, limits)?;
    let stated = track
        .num_frames
        .map(|frames| frames.saturating_sub(setup.stated_delay_frames));
    let info = AudioInfo {
        sample_rate: setup.sample_rate,
        channels: u16::try_from(setup.channels).unwrap_or(u16::MAX),
        frames: stated,
        sample_format: sample_format(params, &setup.codec),
        codec: setup.codec,
        container,
    };
    let source = NativeSource {
        track_id: track.id,
        format,
        decoder: setup.decoder,
        sample_rate: setup.sample_rate,
        channels: setup.channels,
        start_trim_samples: setup.start_trim_frames as usize * setup.channels,
        // Where Symphonia cannot trim the codec's padding (AAC in MP4), the stated length
        // ends the audio.
        end_frame: stated.filter(|_| setup.start_trim_frames > 0),
        frames_decoded: 0,
        decode_errors: 0,
        done: false,
        remix: Vec::new(),
    };
    Ok((info, source))
}

/// A decoder for one track, and what it needs trimmed.
struct DecoderSetup {
    decoder: TrackDecoder,
    codec: String,
    sample_rate: u32,
    channels: usize,
    /// Encoder delay that Symphonia counts in the track's stated frames.
    stated_delay_frames: u64,
    /// Encoder delay that the decoder leaves in and we must drop.
    start_trim_frames: u64,
}

fn setup_decoder(
    params: &AudioCodecParameters,
    container: &str,
    limits: &DecodeLimits,
) -> Result<DecoderSetup, DecodeError> {
    if params.codec == CODEC_ID_OPUS {
        let head = OpusHead::parse(params.extra_data.as_deref().unwrap_or_default())?;
        limits.check_format(OPUS_SAMPLE_RATE, u32::from(head.channels))?;
        let stream = OpusStream::new(head)?;
        return Ok(DecoderSetup {
            channels: stream.channels(),
            decoder: TrackDecoder::Opus(stream),
            codec: "opus".to_string(),
            sample_rate: OPUS_SAMPLE_RATE,
            // Ogg counts the pre-skip; the Opus decoder drops it.
            stated_delay_frames: u64::from(head.pre_skip),
            start_trim_frames: 0,
        });
    }
    let decoder = make_decoder(params)?;
    let params = decoder.codec_params();
    let sample_rate = params.sample_rate.ok_or_else(|| DecodeError::Corrupt {
        reason: "the audio track states no sample rate".into(),
    })?;
    let channels = params.channels.as_ref().map_or(0, Channels::count);
    if channels == 0 {
        return Err(DecodeError::Corrupt {
            reason: "the audio track states no channel count".into(),
        });
    }
    limits.check_format(sample_rate, u32::try_from(channels).unwrap_or(u32::MAX))?;
    let priming = match (params.codec, container) {
        (CODEC_ID_AAC, "mp4" | "mov") => AAC_PRIMING_FRAMES,
        _ => 0,
    };
    Ok(DecoderSetup {
        codec: decoder.codec_info().short_name.to_string(),
        decoder: TrackDecoder::Symphonia(decoder),
        sample_rate,
        channels,
        stated_delay_frames: priming,
        start_trim_frames: priming,
    })
}

fn make_decoder(params: &AudioCodecParameters) -> Result<Box<dyn AudioDecoder>, DecodeError> {
    let make = || {
        symphonia::default::get_codecs().make_audio_decoder(params, &AudioDecoderOptions::default())
    };
    match catch_panic(make) {
        Ok(Ok(decoder)) => Ok(decoder),
        Ok(Err(SymphoniaError::Unsupported(what))) => Err(DecodeError::Unsupported {
            reason: format!("no built-in decoder ({what})"),
        }),
        Ok(Err(error)) => Err(DecodeError::Corrupt {
            reason: error.to_string(),
        }),
        Err(reason) => Err(DecodeError::Corrupt { reason }),
    }
}

/// Maps Symphonia's format names to the ones we report.
fn container_name(format: &str, head: &[u8]) -> String {
    let name = match format {
        "wave" => "wav",
        "isomp4" if head.get(8..12) == Some(b"qt  ") => "mov",
        "isomp4" => "mp4",
        "matroska" if head.windows(4).any(|window| window == b"webm") => "webm",
        "matroska" => "mkv",
        other => other,
    };
    name.to_string()
}

/// Lossless codecs keep their bit depth; lossy ones decode to 16-bit precision at best.
fn sample_format(params: &AudioCodecParameters, codec: &str) -> SampleFormat {
    let lossless = codec.starts_with("pcm") || codec == "flac" || codec == "alac";
    match params.bits_per_sample {
        Some(bits) if lossless => SampleFormat::for_lossless_bits(bits),
        _ => SampleFormat::Int16,
    }
}

/// Runs Symphonia code that may panic on malformed input, turning a panic into a reason.
fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| "the decoder failed on malformed data".to_string())
}

enum TrackDecoder {
    Symphonia(Box<dyn AudioDecoder>),
    Opus(OpusStream),
}

/// What decoding one packet did.
enum PacketOutcome {
    Decoded,
    /// The packet was bad but the stream goes on.
    Skipped,
    /// Nothing after this point can be decoded.
    Fatal(String),
}

/// A Symphonia demuxer and a decoder for one of its audio tracks.
pub(super) struct NativeSource {
    format: Box<dyn FormatReader>,
    track_id: u32,
    decoder: TrackDecoder,
    sample_rate: u32,
    channels: usize,
    /// Interleaved samples of encoder delay still to drop.
    start_trim_samples: usize,
    /// Frame at which the audio ends, when decoding alone would overrun it.
    end_frame: Option<u64>,
    frames_decoded: u64,
    decode_errors: u64,
    done: bool,
    remix: Vec<f32>,
}

impl NativeSource {
    /// Replaces `out` with the next block of interleaved samples; leaves it empty at the end.
    pub fn read_block(&mut self, out: &mut Vec<f32>) -> Result<(), DecodeError> {
        out.clear();
        while !self.done {
            if self
                .end_frame
                .is_some_and(|end_frame| self.frames_decoded >= end_frame)
            {
                return self.end();
            }
            let packet = match catch_panic(|| self.format.next_packet()) {
                Ok(Ok(Some(packet))) => packet,
                Ok(Ok(None)) => return self.end(),
                Ok(Err(SymphoniaError::ResetRequired)) => {
                    return self.stop("the stream changes format midway".into());
                }
                Ok(Err(error)) => return self.stop(error.to_string()),
                Err(reason) => return self.stop(reason),
            };
            // Symphonia's metadata log grows with every update unless consumed.
            while !self.format.metadata().is_latest() {
                self.format.metadata().pop();
            }
            if packet.track_id != self.track_id {
                continue;
            }
            match self.decode(&packet, out) {
                PacketOutcome::Decoded => {}
                PacketOutcome::Skipped => {
                    out.clear();
                    self.decode_errors += 1;
                    continue;
                }
                PacketOutcome::Fatal(reason) => {
                    out.clear();
                    return self.stop(reason);
                }
            }
            let trim = self.start_trim_samples.min(out.len());
            out.drain(..trim);
            self.start_trim_samples -= trim;
            if let Some(end_frame) = self.end_frame {
                let room = end_frame.saturating_sub(self.frames_decoded);
                out.truncate(
                    usize::try_from(room)
                        .unwrap_or(usize::MAX)
                        .saturating_mul(self.channels),
                );
            }
            if !out.is_empty() {
                sanitize(out);
                self.frames_decoded += (out.len() / self.channels) as u64;
                return Ok(());
            }
        }
        Ok(())
    }

    fn decode(&mut self, packet: &Packet, out: &mut Vec<f32>) -> PacketOutcome {
        match &mut self.decoder {
            TrackDecoder::Opus(stream) => {
                let trim_end = usize::try_from(packet.trim_end.get()).unwrap_or(usize::MAX);
                match stream.decode(&packet.data, trim_end, out) {
                    Ok(()) => PacketOutcome::Decoded,
                    Err(_) => PacketOutcome::Skipped,
                }
            }
            TrackDecoder::Symphonia(decoder) => {
                let decoded = catch_panic(|| match decoder.decode(packet) {
                    Ok(buffer) => {
                        let spec = buffer.spec();
                        let format = (spec.rate(), spec.channels().count());
                        buffer.copy_to_vec_interleaved(out);
                        Ok(format)
                    }
                    Err(error) => Err(error),
                });
                match decoded {
                    Ok(Ok((rate, _))) if rate != self.sample_rate => {
                        PacketOutcome::Fatal(format!("the sample rate changes midway to {rate} Hz"))
                    }
                    Ok(Ok((_, channels))) => {
                        if channels != self.channels {
                            remix(out, channels, self.channels, &mut self.remix);
                        }
                        PacketOutcome::Decoded
                    }
                    Ok(Err(SymphoniaError::DecodeError(_) | SymphoniaError::IoError(_))) => {
                        PacketOutcome::Skipped
                    }
                    Ok(Err(error)) => PacketOutcome::Fatal(error.to_string()),
                    Err(reason) => PacketOutcome::Fatal(reason),
                }
            }
        }
    }

    /// The stream ended normally.
    fn end(&mut self) -> Result<(), DecodeError> {
        self.done = true;
        if self.decode_errors > 0 {
            if self.frames_decoded == 0 {
                return Err(DecodeError::Corrupt {
                    reason: format!(
                        "none of {} audio packets could be decoded",
                        self.decode_errors
                    ),
                });
            }
            warn!(
                skipped_packets = self.decode_errors,
                "skipped undecodable audio packets"
            );
        }
        Ok(())
    }

    /// Decoding cannot go on: keep what was decoded, if anything.
    fn stop(&mut self, reason: String) -> Result<(), DecodeError> {
        self.done = true;
        if self.frames_decoded == 0 {
            return Err(DecodeError::Corrupt { reason });
        }
        warn!(
            %reason,
            decoded_seconds = self.frames_decoded as f64 / f64::from(self.sample_rate),
            "audio ends early; keeping what was decoded"
        );
        Ok(())
    }
}

/// Maps a block whose channel count changed midway onto the stream's channel count: the
/// mean of the block's channels goes to every output channel.
fn remix(samples: &mut Vec<f32>, from: usize, to: usize, scratch: &mut Vec<f32>) {
    scratch.clear();
    if from > 0 {
        for frame in samples.chunks_exact(from) {
            let mean = frame.iter().sum::<f32>() / from as f32;
            scratch.extend(std::iter::repeat_n(mean, to));
        }
    }
    std::mem::swap(samples, scratch);
}
