//! Binary frames to interleaved f32 samples at the stream's own rate.

use super::spec::{Encoding, StreamFormat};

/// Longest Opus packet: 120 ms.
const MAX_OPUS_PACKET_SECONDS: f64 = 0.12;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("libopus: {0}")]
    Opus(#[from] opus::Error),
}

/// Turns the client's frames into whole interleaved sample frames.
pub enum InputDecoder {
    /// PCM frames may split a sample or a frame anywhere; the tail waits for
    /// the next frame.
    Pcm {
        bytes_per_sample: usize,
        bytes_per_frame: usize,
        float: bool,
        carry: Vec<u8>,
    },
    Opus {
        decoder: opus::Decoder,
        channels: usize,
        /// libopus conceals losses in whole steps of 2.5 ms.
        conceal_step: usize,
        pcm: Vec<f32>,
    },
}

impl InputDecoder {
    pub fn new(format: StreamFormat) -> Result<Self, InputError> {
        let channels = usize::from(format.channels);
        let pcm = |bytes_per_sample, float| Self::Pcm {
            bytes_per_sample,
            bytes_per_frame: bytes_per_sample * channels,
            float,
            carry: Vec::new(),
        };
        Ok(match format.encoding {
            Encoding::PcmS16le => pcm(2, false),
            Encoding::PcmF32le => pcm(4, true),
            Encoding::Opus => {
                let layout = if channels == 2 {
                    opus::Channels::Stereo
                } else {
                    opus::Channels::Mono
                };
                Self::Opus {
                    decoder: opus::Decoder::new(format.sample_rate, layout)?,
                    channels,
                    conceal_step: format.sample_rate as usize / 400,
                    pcm: vec![0.0; format.samples_in(MAX_OPUS_PACKET_SECONDS)],
                }
            }
        })
    }

    /// Appends the whole sample frames `frame` completes to `out`.
    pub fn decode(&mut self, frame: &[u8], out: &mut Vec<f32>) -> Result<(), InputError> {
        match self {
            Self::Pcm {
                bytes_per_sample,
                bytes_per_frame,
                float,
                carry,
            } => {
                carry.extend_from_slice(frame);
                let whole = carry.len() - carry.len() % *bytes_per_frame;
                let samples = carry[..whole].chunks_exact(*bytes_per_sample);
                if *float {
                    out.extend(samples.map(|b| {
                        let sample = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        // NaN and infinities are not audio; keep them out of the models.
                        if sample.is_finite() {
                            sample.clamp(-1.0, 1.0)
                        } else {
                            0.0
                        }
                    }));
                } else {
                    out.extend(
                        samples.map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0),
                    );
                }
                carry.drain(..whole);
            }
            Self::Opus {
                decoder,
                channels,
                pcm,
                ..
            } => {
                let frames = decoder.decode_float(frame, pcm, false)?;
                out.extend_from_slice(&pcm[..frames * *channels]);
            }
        }
        Ok(())
    }

    /// Appends about `frames` sample frames of packet-loss concealment, in
    /// whole 2.5 ms steps. Only Opus streams have losses to conceal.
    pub fn conceal(&mut self, frames: usize, out: &mut Vec<f32>) -> Result<(), InputError> {
        let Self::Opus {
            decoder,
            channels,
            conceal_step,
            pcm,
        } = self
        else {
            return Ok(());
        };
        let most = pcm.len() / *channels;
        let mut left = frames - frames % *conceal_step;
        while left > 0 {
            let n = left.min(most);
            let made = decoder.decode_float(&[], &mut pcm[..n * *channels], false)?;
            out.extend_from_slice(&pcm[..made * *channels]);
            left -= n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm_frames_split_anywhere() {
        let format = StreamFormat {
            sample_rate: 16_000,
            channels: 2,
            encoding: Encoding::PcmS16le,
        };
        let mut decoder = InputDecoder::new(format).unwrap();
        let bytes: Vec<u8> = [0i16, 16_384, -32_768, 8_192]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let mut out = Vec::new();
        decoder.decode(&bytes[..3], &mut out).unwrap();
        assert!(out.is_empty(), "no whole stereo frame yet");
        decoder.decode(&bytes[3..5], &mut out).unwrap();
        assert_eq!(out, [0.0, 0.5]);
        decoder.decode(&bytes[5..], &mut out).unwrap();
        assert_eq!(out, [0.0, 0.5, -1.0, 0.25]);
    }

    #[test]
    fn opus_packets_decode_at_the_stream_rate() {
        let mut encoder =
            opus::Encoder::new(16_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let tone: Vec<f32> = (0..320).map(|i| (i as f32 * 0.1).sin() * 0.3).collect();
        let packet = encoder.encode_vec_float(&tone, 4_000).unwrap();
        let format = StreamFormat {
            sample_rate: 16_000,
            channels: 1,
            encoding: Encoding::Opus,
        };
        let mut decoder = InputDecoder::new(format).unwrap();
        let mut out = Vec::new();
        decoder.decode(&packet, &mut out).unwrap();
        assert_eq!(out.len(), 320);
        // A lost 20 ms packet, and a gap that is not a whole number of 2.5 ms steps.
        decoder.conceal(320, &mut out).unwrap();
        assert_eq!(out.len(), 640);
        decoder.conceal(100, &mut out).unwrap();
        assert_eq!(out.len(), 640 + 80);
    }
}
