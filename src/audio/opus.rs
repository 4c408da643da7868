//! Opus packets (from Symphonia's Ogg and Matroska demuxers) decoded with libopus.
//!
//! Symphonia has no Opus decoder. Opus always decodes at 48 kHz; the `OpusHead`'s pre-skip
//! (encoder delay) is dropped here because neither demuxer trims it.

use super::decode::DecodeError;

/// Opus always decodes at this rate (RFC 7845 §4).
pub(super) const OPUS_SAMPLE_RATE: u32 = 48_000;

/// Longest Opus packet: 120 ms at 48 kHz.
const MAX_PACKET_FRAMES: usize = 5_760;

/// The identification header every Opus stream starts with (RFC 7845 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OpusHead {
    pub channels: u8,
    /// Frames at 48 kHz to drop from the start of the decoded audio.
    pub pre_skip: u16,
    /// Gain to apply, in 1/256 dB (Q7.8).
    pub output_gain: i16,
    pub mapping_family: u8,
}

impl OpusHead {
    pub fn parse(data: &[u8]) -> Result<Self, DecodeError> {
        let corrupt = |reason: &str| DecodeError::Corrupt {
            reason: format!("OpusHead: {reason}"),
        };
        // Fixed layout: magic (8), version, channels, pre-skip (u16 LE), input rate (u32 LE),
        // output gain (i16 LE), mapping family.
        let header = data
            .first_chunk::<19>()
            .filter(|header| header.starts_with(b"OpusHead"))
            .ok_or_else(|| corrupt("missing or too short"))?;
        let (version, channels, mapping_family) = (header[8], header[9], header[18]);
        // Major version 0 is the only one defined; higher ones are incompatible.
        if version >> 4 != 0 {
            return Err(corrupt("unknown version"));
        }
        if channels == 0 {
            return Err(corrupt("zero channels"));
        }
        Ok(Self {
            channels,
            pre_skip: u16::from_le_bytes([header[10], header[11]]),
            output_gain: i16::from_le_bytes([header[16], header[17]]),
            mapping_family,
        })
    }
}

/// One Opus stream being decoded.
pub(super) struct OpusStream {
    decoder: opus::Decoder,
    channels: usize,
    /// Frames of pre-skip still to drop.
    skip_frames: usize,
    pcm: Vec<f32>,
}

impl OpusStream {
    /// Decoder for a mono or stereo stream; multichannel layouts (mapping family 1+) need
    /// libopus's multistream API, which the `opus` crate does not wrap.
    pub fn new(head: OpusHead) -> Result<Self, DecodeError> {
        let channels = match (head.mapping_family, head.channels) {
            (0, 1) => opus::Channels::Mono,
            (0, 2) => opus::Channels::Stereo,
            (family, channels) => {
                return Err(DecodeError::Unsupported {
                    reason: format!("Opus with {channels} channels (mapping family {family})"),
                });
            }
        };
        let libopus_error = |error: opus::Error| DecodeError::Corrupt {
            reason: format!("libopus: {error}"),
        };
        let mut decoder = opus::Decoder::new(OPUS_SAMPLE_RATE, channels).map_err(libopus_error)?;
        decoder
            .set_gain(i32::from(head.output_gain))
            .map_err(libopus_error)?;
        let channels = usize::from(head.channels);
        Ok(Self {
            decoder,
            channels,
            skip_frames: usize::from(head.pre_skip),
            pcm: vec![0.0; MAX_PACKET_FRAMES * channels],
        })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Decodes one packet into `out` (replacing its contents), dropping pre-skip and the
    /// last `trim_end_frames` frames the container marks as padding.
    pub fn decode(
        &mut self,
        packet: &[u8],
        trim_end_frames: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), opus::Error> {
        out.clear();
        let frames = self.decoder.decode_float(packet, &mut self.pcm, false)?;
        let end = frames.saturating_sub(trim_end_frames);
        let start = self.skip_frames.min(end);
        self.skip_frames -= start;
        if let Some(kept) = self.pcm.get(start * self.channels..end * self.channels) {
            out.extend_from_slice(kept);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_bytes(channels: u8, pre_skip: u16, family: u8) -> Vec<u8> {
        let mut data = b"OpusHead".to_vec();
        data.push(1);
        data.push(channels);
        data.extend_from_slice(&pre_skip.to_le_bytes());
        data.extend_from_slice(&48_000u32.to_le_bytes());
        data.extend_from_slice(&(-256i16).to_le_bytes());
        data.push(family);
        data
    }

    #[test]
    fn parses_opus_head() {
        let head = OpusHead::parse(&head_bytes(2, 312, 0)).unwrap();
        assert_eq!(
            head,
            OpusHead {
                channels: 2,
                pre_skip: 312,
                output_gain: -256,
                mapping_family: 0
            }
        );
    }

    #[test]
    fn rejects_bad_opus_heads() {
        assert!(OpusHead::parse(b"OpusHead").is_err());
        assert!(OpusHead::parse(&head_bytes(0, 0, 0)).is_err());
        let mut wrong_magic = head_bytes(1, 0, 0);
        wrong_magic[0] = b'X';
        assert!(OpusHead::parse(&wrong_magic).is_err());
    }

    #[test]
    fn multichannel_opus_is_unsupported() {
        let head = OpusHead::parse(&head_bytes(6, 0, 1)).unwrap();
        assert!(matches!(
            OpusStream::new(head),
            Err(DecodeError::Unsupported { .. })
        ));
    }
}
