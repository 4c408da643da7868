//! One WAV per speaker, cut from the ORIGINAL audio in a single streaming pass.
//!
//! Each track has the input's rate, channel count, sample format and exact frame count.
//! It holds the original samples inside the speaker's turns, fades just outside them,
//! and zeros elsewhere. The same pass measures each speaker's levels, so statistics
//! need no third decode. Memory stays bounded: one block and one writer per speaker.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use hound::{WavSpec, WavWriter};

use super::OutputError;
use super::gain::{Gain, GainCursor};
use super::stats::Levels;
use crate::audio::{AudioInfo, AudioReader, SampleFormat};
use crate::diarization::{Diarization, SpeakerId};

/// Bytes hound writes before the samples; the RIFF sizes must fit in 32 bits with them.
const WAV_HEADER_BYTES: u64 = 68;

/// Audio to cut tracks from: interleaved f32 samples in [-1, 1], block by block.
///
/// Every block holds whole frames. Files implement it through [`AudioReader`];
/// a live stream can implement it over its spooled PCM.
pub trait BlockSource {
    /// The next block, or `None` once the audio has ended.
    fn next_block(&mut self) -> Result<Option<&[f32]>, OutputError>;
}

impl BlockSource for AudioReader {
    fn next_block(&mut self) -> Result<Option<&[f32]>, OutputError> {
        Ok(AudioReader::next_block(self)?)
    }
}

/// How the tracks are written: the original audio's layout, so nothing is lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackFormat {
    pub sample_rate: u32,
    pub channels: u16,
    pub sample_format: SampleFormat,
}

impl From<&AudioInfo> for TrackFormat {
    fn from(info: &AudioInfo) -> Self {
        Self {
            sample_rate: info.sample_rate,
            channels: info.channels,
            sample_format: info.sample_format,
        }
    }
}

impl TrackFormat {
    fn wav_spec(self) -> WavSpec {
        let (bits_per_sample, sample_format) = match self.sample_format {
            SampleFormat::Int16 => (16, hound::SampleFormat::Int),
            SampleFormat::Int24 => (24, hound::SampleFormat::Int),
            SampleFormat::Float32 => (32, hound::SampleFormat::Float),
        };
        WavSpec {
            channels: self.channels,
            sample_rate: self.sample_rate,
            bits_per_sample,
            sample_format,
        }
    }

    fn check(self) -> Result<(), OutputError> {
        if self.sample_rate == 0 || self.channels == 0 {
            return Err(OutputError::InvalidFormat {
                sample_rate: self.sample_rate,
                channels: self.channels,
            });
        }
        Ok(())
    }

    /// The most frames a WAV file of this format can hold; the format must pass `check`.
    fn max_frames(self) -> u64 {
        let spec = self.wav_spec();
        let bytes_per_frame = u64::from(spec.bits_per_sample / 8) * u64::from(spec.channels);
        (u64::from(u32::MAX) - WAV_HEADER_BYTES) / bytes_per_frame
    }
}

/// What [`write_tracks`] produced.
#[derive(Debug, Clone)]
pub struct WrittenTracks {
    /// `paths[i]` is the track of `SpeakerId(i)`.
    pub paths: Vec<PathBuf>,
    /// Frames in every track: exactly those the source yielded.
    pub frames: u64,
    /// `levels[i]` covers the samples inside the turns of `SpeakerId(i)`.
    pub levels: Vec<Levels>,
}

/// The track file name of a speaker, e.g. `speaker_0.wav`.
pub fn file_name(speaker: SpeakerId) -> String {
    format!("speaker_{}.wav", speaker.0)
}

/// Writes `DIR/speaker_N.wav` for every speaker from a reader freshly opened on the original input.
pub fn write_tracks_from_reader(
    mut reader: AudioReader,
    diarization: &Diarization,
    dir: &Path,
) -> Result<WrittenTracks, OutputError> {
    let format = TrackFormat::from(reader.info());
    format.check()?;
    // Fail before the long pass when the container already says the tracks cannot fit.
    let max_frames = format.max_frames();
    if reader
        .info()
        .frames
        .is_some_and(|frames| frames > max_frames)
    {
        return Err(OutputError::TrackTooLong {
            dir: dir.to_owned(),
            max_frames,
        });
    }
    write_tracks(&mut reader, format, diarization, dir)
}

/// Writes `DIR/speaker_N.wav` for every speaker from `source`, whose audio is in `format`.
pub fn write_tracks(
    source: &mut impl BlockSource,
    format: TrackFormat,
    diarization: &Diarization,
    dir: &Path,
) -> Result<WrittenTracks, OutputError> {
    format.check()?;
    super::check_turns(diarization)?;

    let mut tracks = (0..diarization.num_speakers)
        .map(|id| Track::create(dir, SpeakerId(id), diarization, format))
        .collect::<Result<Vec<_>, _>>()?;
    let channels = usize::from(format.channels);
    let max_frames = format.max_frames();
    let mut frames: u64 = 0;
    while let Some(block) = source.next_block()? {
        if !block.len().is_multiple_of(channels) {
            return Err(OutputError::PartialFrame {
                samples: block.len(),
                channels: format.channels,
            });
        }
        let block_frames = (block.len() / channels) as u64;
        if frames + block_frames > max_frames {
            return Err(OutputError::TrackTooLong {
                dir: dir.to_owned(),
                max_frames,
            });
        }
        for track in &mut tracks {
            track
                .write_block(block, channels, frames, format.sample_format)
                .map_err(|source| OutputError::Wav {
                    path: track.path.clone(),
                    source,
                })?;
        }
        frames += block_frames;
    }

    let mut paths = Vec::with_capacity(tracks.len());
    let mut levels = Vec::with_capacity(tracks.len());
    for track in tracks {
        track.writer.finalize().map_err(|source| OutputError::Wav {
            path: track.path.clone(),
            source,
        })?;
        paths.push(track.path);
        levels.push(track.levels);
    }
    Ok(WrittenTracks {
        paths,
        frames,
        levels,
    })
}

/// One speaker's open track and what has been measured of it so far.
struct Track {
    path: PathBuf,
    writer: WavWriter<BufWriter<File>>,
    gain: GainCursor,
    levels: Levels,
    /// One block of this track's samples, reused across blocks.
    scratch: Vec<f32>,
}

impl Track {
    fn create(
        dir: &Path,
        speaker: SpeakerId,
        diarization: &Diarization,
        format: TrackFormat,
    ) -> Result<Self, OutputError> {
        let path = dir.join(file_name(speaker));
        let writer =
            WavWriter::create(&path, format.wav_spec()).map_err(|source| OutputError::Wav {
                path: path.clone(),
                source,
            })?;
        let gain = GainCursor::new(diarization.turns_of(speaker), format.sample_rate);
        Ok(Self {
            path,
            writer,
            gain,
            levels: Levels::default(),
            scratch: Vec::new(),
        })
    }

    /// Writes one block of whole frames, the first of which is frame `first_frame` of the input.
    fn write_block(
        &mut self,
        block: &[f32],
        channels: usize,
        first_frame: u64,
        sample_format: SampleFormat,
    ) -> Result<(), hound::Error> {
        self.scratch.clear();
        let frames = (block.len() / channels) as u64;
        if frames > 0
            && self
                .gain
                .silent_through(first_frame, first_frame + frames - 1)
        {
            self.scratch.resize(block.len(), 0.0);
            return write_samples(&mut self.writer, sample_format, &self.scratch);
        }
        for (frame, samples) in (first_frame..).zip(block.chunks_exact(channels)) {
            match self.gain.at(frame) {
                Gain::Active => {
                    samples.iter().for_each(|&s| self.levels.add(s));
                    self.scratch.extend_from_slice(samples);
                }
                Gain::Fade(gain) => self.scratch.extend(samples.iter().map(|s| s * gain)),
                Gain::Silent => self.scratch.extend(std::iter::repeat_n(0.0, samples.len())),
            }
        }
        write_samples(&mut self.writer, sample_format, &self.scratch)
    }
}

/// Quantises with the decoder's scale (2^15, 2^23), so decoded integers come back unchanged.
fn write_samples(
    writer: &mut WavWriter<BufWriter<File>>,
    format: SampleFormat,
    samples: &[f32],
) -> Result<(), hound::Error> {
    match format {
        SampleFormat::Int16 => {
            // hound's buffered 16-bit writer: most tracks are mostly silence,
            // and per-sample calls would dominate the second pass.
            let mut buffered = writer.get_i16_writer(samples.len() as u32);
            for &s in samples {
                buffered.write_sample((s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16);
            }
            buffered.flush()
        }
        SampleFormat::Int24 => samples.iter().try_for_each(|&s| {
            writer.write_sample((s * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32)
        }),
        SampleFormat::Float32 => samples.iter().try_for_each(|&s| writer.write_sample(s)),
    }
}
