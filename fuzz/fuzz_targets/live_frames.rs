//! The binary frames of a live session: the format the `start` chose (any
//! accepted rate, channels, PCM or Opus), then frames and losses, decoded and
//! resampled for analysis as the session does.
//!
//! Input: encoding, channels, sample rate (u16 LE), then records of a tag byte
//! and a u16 LE length: a frame of that many bytes (even tag) or a loss of
//! that many sample frames to conceal (odd tag).
#![no_main]

use libfuzzer_sys::fuzz_target;
use whospoke::audio::AnalysisResampler;
use whospoke::live::{InputDecoder, StreamSpec};
use whospoke_protocol::{Encoding, Start};

const ENCODINGS: [Encoding; 3] = [Encoding::PcmS16le, Encoding::PcmF32le, Encoding::Opus];

fuzz_target!(|data: &[u8]| {
    let Some((&[encoding, channels, rate_lo, rate_hi], mut rest)) = data.split_first_chunk::<4>()
    else {
        return;
    };
    let fields = Start {
        encoding: Some(ENCODINGS[usize::from(encoding) % ENCODINGS.len()].clone()),
        channels: Some(i64::from(channels % 3)),
        sample_rate: Some(i64::from(u16::from_le_bytes([rate_lo, rate_hi]))),
        ..Start::default()
    };
    let Ok(spec) = StreamSpec::try_from(fields) else {
        return;
    };
    let format = spec.format;
    let mut decoder = InputDecoder::new(format).expect("an accepted format has a decoder");
    let mut resampler = AnalysisResampler::new(format.sample_rate, format.channels)
        .expect("an accepted format resamples");
    let (mut samples, mut mono) = (Vec::new(), Vec::new());
    while let Some((&[tag, lo, hi], tail)) = rest.split_first_chunk::<3>() {
        let n = usize::from(u16::from_le_bytes([lo, hi]));
        samples.clear();
        let decoded = if tag % 2 == 0 {
            let (frame, after) = tail.split_at(n.min(tail.len()));
            rest = after;
            decoder.decode(frame, &mut samples)
        } else {
            rest = tail;
            decoder.conceal(n, &mut samples)
        };
        if decoded.is_err() {
            continue;
        }
        assert_eq!(
            samples.len() % usize::from(format.channels),
            0,
            "whole frames"
        );
        mono.clear();
        resampler.push(&samples, &mut mono);
    }
    mono.clear();
    resampler.finish(&mut mono);
});
