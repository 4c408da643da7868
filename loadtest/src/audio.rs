//! WAV input and its framing into the binary messages a stream sends.
//!
//! A clip is held once as interleaved `f32` samples and shared by every
//! stream that plays it; frames are encoded lazily, so a 30-minute stream
//! costs one frame of memory beyond its clips.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use clap::ValueEnum;
use serde::Serialize;

/// Sample encoding on the wire (little-endian PCM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    #[value(name = "pcm_s16le")]
    PcmS16le,
    #[value(name = "pcm_f32le")]
    PcmF32le,
}

impl From<Encoding> for whospoke_protocol::Encoding {
    fn from(encoding: Encoding) -> Self {
        match encoding {
            Encoding::PcmS16le => Self::PcmS16le,
            Encoding::PcmF32le => Self::PcmF32le,
        }
    }
}

impl Encoding {
    pub fn bytes_per_sample(self) -> usize {
        match self {
            Self::PcmS16le => 2,
            Self::PcmF32le => 4,
        }
    }

    /// Appends `samples` (interleaved, full scale ±1.0) in this encoding.
    pub fn encode_into(self, samples: &[f32], out: &mut Vec<u8>) {
        match self {
            Self::PcmS16le => {
                for &x in samples {
                    // ×32768 then clamp makes 16-bit input round-trip exactly.
                    let v = (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Self::PcmF32le => {
                for &x in samples {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
}

/// One audio file in memory: interleaved samples scaled to ±1.0.
#[derive(Debug)]
pub struct Clip {
    /// File name without extension: the stream's `name` and RTTM name.
    pub stem: String,
    pub sample_rate: u32,
    pub channels: u16,
    samples: Vec<f32>,
}

impl Clip {
    pub fn new(stem: String, sample_rate: u32, channels: u16, samples: Vec<f32>) -> Self {
        Self {
            stem,
            sample_rate,
            channels,
            samples,
        }
    }

    /// Reads an integer (8–32 bit) or 32-bit float PCM WAV file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut reader =
            hound::WavReader::open(path).with_context(|| format!("reading {}", path.display()))?;
        let spec = reader.spec();
        let samples: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>(),
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
                reader
                    .samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()
            }
        }
        .with_context(|| format!("decoding {}", path.display()))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stream".into());
        let clip = Self::new(stem, spec.sample_rate, spec.channels, samples);
        ensure!(clip.frame_count() > 0, "{} holds no audio", path.display());
        Ok(clip)
    }

    /// Length in sample frames (one sample per channel).
    pub fn frame_count(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }
}

/// What one stream plays: its clips in order, looped or cut to a length.
#[derive(Debug, Clone)]
pub struct StreamAudio {
    clips: Vec<Arc<Clip>>,
    pub sample_rate: u32,
    pub channels: u16,
    total_frames: usize,
}

impl StreamAudio {
    /// `duration_seconds` cuts or loops the clips; `None` plays them once.
    pub fn new(clips: Vec<Arc<Clip>>, duration_seconds: Option<f64>) -> anyhow::Result<Self> {
        let Some(first) = clips.first() else {
            bail!("no audio files")
        };
        let (sample_rate, channels) = (first.sample_rate, first.channels);
        for clip in &clips {
            ensure!(
                clip.sample_rate == sample_rate && clip.channels == channels,
                "{} is {} Hz × {} channels but {} is {} Hz × {}: one stream needs one format",
                clip.stem,
                clip.sample_rate,
                clip.channels,
                first.stem,
                sample_rate,
                channels
            );
            // An empty clip would make the looping framer spin forever.
            ensure!(clip.frame_count() > 0, "{} holds no audio", clip.stem);
        }
        let total_frames = match duration_seconds {
            Some(d) => {
                ensure!(d > 0.0, "--duration-seconds must be positive");
                (d * f64::from(sample_rate)).round() as usize
            }
            None => clips.iter().map(|c| c.frame_count()).sum(),
        };
        Ok(Self {
            clips,
            sample_rate,
            channels,
            total_frames,
        })
    }

    /// The name sent in `start`: the first clip's stem.
    pub fn name(&self) -> &str {
        &self.clips[0].stem
    }

    pub fn duration_seconds(&self) -> f64 {
        self.total_frames as f64 / f64::from(self.sample_rate)
    }

    /// True when the stream is exactly one file, played once: only then
    /// does its RTTM compare with that file's reference.
    pub fn is_whole_file(&self) -> bool {
        self.clips.len() == 1 && self.clips[0].frame_count() == self.total_frames
    }

    /// Frames of `frame_ms` milliseconds (the last one may be shorter).
    pub fn frames(&self, frame_ms: u32, encoding: Encoding) -> Framer<'_> {
        let per_frame = (f64::from(self.sample_rate) * f64::from(frame_ms) / 1000.0).round();
        Framer {
            audio: self,
            encoding,
            frames_per_message: (per_frame as usize).max(1),
            clip: 0,
            position: 0,
            produced: 0,
        }
    }
}

/// One binary message and the audio time at its end.
#[derive(Debug)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub end_seconds: f64,
}

/// Iterator over a stream's frames. Frames always hold whole sample frames,
/// so a stereo pair is never split across two messages.
pub struct Framer<'a> {
    audio: &'a StreamAudio,
    encoding: Encoding,
    frames_per_message: usize,
    clip: usize,
    /// Next sample frame inside the current clip.
    position: usize,
    /// Sample frames produced so far.
    produced: usize,
}

impl Iterator for Framer<'_> {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        let audio = self.audio;
        let wanted = self
            .frames_per_message
            .min(audio.total_frames - self.produced);
        if wanted == 0 {
            return None;
        }
        let channels = usize::from(audio.channels);
        let mut bytes = Vec::with_capacity(wanted * channels * self.encoding.bytes_per_sample());
        let mut filled = 0;
        while filled < wanted {
            let clip = &audio.clips[self.clip];
            let take = (clip.frame_count() - self.position).min(wanted - filled);
            let span = self.position * channels..(self.position + take) * channels;
            self.encoding.encode_into(&clip.samples[span], &mut bytes);
            filled += take;
            self.position += take;
            if self.position == clip.frame_count() {
                self.clip = (self.clip + 1) % audio.clips.len();
                self.position = 0;
            }
        }
        self.produced += wanted;
        Some(Frame {
            bytes,
            end_seconds: self.produced as f64 / f64::from(audio.sample_rate),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(rate: u32, channels: u16, samples: Vec<f32>) -> Arc<Clip> {
        Arc::new(Clip::new("c".into(), rate, channels, samples))
    }

    fn s16(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    #[test]
    fn s16le_is_little_endian_and_clamped() {
        let mut out = Vec::new();
        Encoding::PcmS16le.encode_into(&[0.0, 0.5, -1.0, 1.0, -0.25], &mut out);
        assert_eq!(
            out,
            [0x00, 0x00, 0x00, 0x40, 0x00, 0x80, 0xff, 0x7f, 0x00, 0xe0]
        );
    }

    #[test]
    fn f32le_is_little_endian() {
        let mut out = Vec::new();
        Encoding::PcmF32le.encode_into(&[1.0, -0.5], &mut out);
        assert_eq!(out, [0, 0, 0x80, 0x3f, 0, 0, 0, 0xbf]);
    }

    #[test]
    fn mono_frames_are_frame_ms_long_and_the_last_is_short() {
        // 0.25 s at 16 kHz in 100 ms frames: 1600 + 1600 + 800 samples.
        let audio = StreamAudio::new(vec![clip(16_000, 1, vec![0.1; 4000])], None).unwrap();
        let frames: Vec<Frame> = audio.frames(100, Encoding::PcmS16le).collect();
        let sizes: Vec<usize> = frames.iter().map(|f| f.bytes.len()).collect();
        assert_eq!(sizes, [3200, 3200, 1600]);
        let ends: Vec<f64> = frames.iter().map(|f| f.end_seconds).collect();
        assert_eq!(ends, [0.1, 0.2, 0.25]);
        assert!(audio.is_whole_file());
        let f32_frames: Vec<usize> = audio
            .frames(100, Encoding::PcmF32le)
            .map(|f| f.bytes.len())
            .collect();
        assert_eq!(f32_frames, [6400, 6400, 3200]);
    }

    #[test]
    fn stereo_frames_interleave_left_and_right() {
        // 1 kHz stereo: left = +n/1000, right = -n/1000 for sample frame n.
        let samples: Vec<f32> = (0..250)
            .flat_map(|n| [n as f32 / 1000.0, -(n as f32) / 1000.0])
            .collect();
        let audio = StreamAudio::new(vec![clip(1000, 2, samples)], None).unwrap();
        let frames: Vec<Frame> = audio.frames(100, Encoding::PcmS16le).collect();
        // 100 sample frames × 2 channels × 2 bytes per message.
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f.bytes.len() % 4 == 0));
        assert_eq!(frames[0].bytes.len(), 400);
        assert_eq!(frames[2].bytes.len(), 200);
        let second = s16(&frames[1].bytes);
        // Sample frame 100 opens the second message: L then R.
        assert_eq!(second[0], (0.1f32 * 32768.0).round() as i16);
        assert_eq!(second[1], -(0.1f32 * 32768.0).round() as i16);
        assert_eq!(second[2], (0.101f32 * 32768.0).round() as i16);
        assert_eq!(second[3], -(0.101f32 * 32768.0).round() as i16);
    }

    #[test]
    fn duration_loops_and_cuts_the_clips() {
        // Two clips of 3 and 2 samples at 10 Hz, looped to 1.2 s = 12 samples.
        let a = clip(10, 1, vec![0.1, 0.2, 0.3]);
        let b = clip(10, 1, vec![-0.1, -0.2]);
        let looped = StreamAudio::new(vec![a.clone(), b.clone()], Some(1.2)).unwrap();
        assert!(!looped.is_whole_file());
        let samples: Vec<i16> = looped
            .frames(400, Encoding::PcmS16le)
            .flat_map(|f| s16(&f.bytes))
            .collect();
        let expect: Vec<i16> = [0.1, 0.2, 0.3, -0.1, -0.2]
            .iter()
            .cycle()
            .take(12)
            .map(|x: &f32| (x * 32768.0).round() as i16)
            .collect();
        assert_eq!(samples, expect);

        let cut = StreamAudio::new(vec![a], Some(0.2)).unwrap();
        let frames: Vec<Frame> = cut.frames(100, Encoding::PcmS16le).collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].end_seconds, 0.2);
    }

    #[test]
    fn mixed_formats_and_empty_input_are_refused() {
        let mono = clip(16_000, 1, vec![0.0; 10]);
        let stereo = clip(16_000, 2, vec![0.0; 20]);
        assert!(StreamAudio::new(vec![mono.clone(), stereo], None).is_err());
        assert!(StreamAudio::new(vec![], None).is_err());
        assert!(StreamAudio::new(vec![clip(16_000, 1, vec![])], Some(1.0)).is_err());
        assert!(StreamAudio::new(vec![mono], Some(0.0)).is_err());
    }

    #[test]
    fn sixteen_bit_wav_round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("two.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let written: Vec<i16> = vec![0, 1, -1, 32767, -32768, 1234, -4321, 7];
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for &s in &written {
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();

        let clip = Clip::load(&path).unwrap();
        assert_eq!(
            (clip.stem.as_str(), clip.sample_rate, clip.channels),
            ("two", 8000, 2)
        );
        assert_eq!(clip.frame_count(), 4);
        let audio = StreamAudio::new(vec![Arc::new(clip)], None).unwrap();
        let bytes: Vec<u8> = audio
            .frames(100, Encoding::PcmS16le)
            .flat_map(|f| f.bytes)
            .collect();
        assert_eq!(s16(&bytes), written);
    }

    #[test]
    fn unreadable_wav_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.wav");
        std::fs::write(&path, b"RIFF not really").unwrap();
        assert!(Clip::load(&path).is_err());
        assert!(Clip::load(&dir.path().join("missing.wav")).is_err());
    }
}
