//! The received audio on disk, so the final tracks can be cut from it without
//! holding the stream in memory.
//!
//! ```text
//! <spool dir>/<job_id>-<task_id>/session.json   the stream's format and settings
//!                                 /audio.f32      interleaved f32 LE at the stream's rate
//! ```
//!
//! Both survive a crash: the next start-up finalizes the job from them.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::StreamFormat;
use crate::output::{BlockSource, OutputError};

const META_FILE: &str = "session.json";
const AUDIO_FILE: &str = "audio.f32";
pub const BYTES_PER_SAMPLE: usize = 4;
/// Frames per block read back for the tracks.
const READ_FRAMES: usize = 16_384;

/// What a spool needs to be finalized without its session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpoolMeta {
    pub format: StreamFormat,
    pub latency_ms: u64,
    pub extract: bool,
}

/// One session's spool folder.
#[derive(Debug, Clone)]
pub struct SpoolDir(PathBuf);

impl SpoolDir {
    pub fn of_job(root: &Path, job_id: i64, task_id: &str) -> Self {
        Self(root.join(format!("{job_id}-{task_id}")))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Creates the folder and its settings file, and opens the audio for appending.
    pub fn create(&self, meta: &SpoolMeta) -> io::Result<SpoolWriter> {
        self.prepare(meta)?;
        let file = File::create(self.audio_path())?;
        Ok(SpoolWriter {
            file: BufWriter::new(file),
            bytes: Vec::new(),
        })
    }

    /// The folder and its settings file, for audio written by someone else.
    pub fn prepare(&self, meta: &SpoolMeta) -> io::Result<()> {
        fs::create_dir_all(&self.0)?;
        fs::write(self.0.join(META_FILE), serde_json::to_vec(meta)?)
    }

    /// The audio: interleaved f32 LE at the stream's rate.
    pub fn audio_path(&self) -> PathBuf {
        self.0.join(AUDIO_FILE)
    }

    pub fn meta(&self) -> io::Result<SpoolMeta> {
        Ok(serde_json::from_slice(&fs::read(self.0.join(META_FILE))?)?)
    }

    pub fn reader(&self, channels: u16) -> io::Result<SpoolReader> {
        let file = File::open(self.audio_path())?;
        let samples = READ_FRAMES * usize::from(channels);
        Ok(SpoolReader {
            file: BufReader::new(file),
            bytes: vec![0; samples * BYTES_PER_SAMPLE],
            block: Vec::with_capacity(samples),
            channels: usize::from(channels),
        })
    }

    pub fn remove(&self) {
        if let Err(e) = fs::remove_dir_all(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.0.display(), error = %e, "removing a spool failed");
        }
    }
}

/// Appends samples to the spool.
pub struct SpoolWriter {
    file: BufWriter<File>,
    bytes: Vec<u8>,
}

impl SpoolWriter {
    pub fn append(&mut self, samples: &[f32]) -> io::Result<()> {
        self.bytes.clear();
        self.bytes
            .extend(samples.iter().flat_map(|s| s.to_le_bytes()));
        self.file.write_all(&self.bytes)
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
}

/// Reads the spool back in blocks of whole frames; a torn last frame (a crash
/// mid-write) is dropped.
pub struct SpoolReader {
    file: BufReader<File>,
    bytes: Vec<u8>,
    block: Vec<f32>,
    channels: usize,
}

impl SpoolReader {
    fn fill(&mut self) -> io::Result<usize> {
        let mut filled = 0;
        while filled < self.bytes.len() {
            match self.file.read(&mut self.bytes[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

impl BlockSource for SpoolReader {
    fn next_block(&mut self) -> Result<Option<&[f32]>, OutputError> {
        let filled = self.fill().map_err(|source| OutputError::Io {
            path: PathBuf::from(AUDIO_FILE),
            source,
        })?;
        let frame_bytes = BYTES_PER_SAMPLE * self.channels;
        let whole = filled - filled % frame_bytes;
        self.block.clear();
        self.block.extend(
            self.bytes[..whole]
                .chunks_exact(BYTES_PER_SAMPLE)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        Ok((!self.block.is_empty()).then_some(self.block.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::spec::Encoding;

    #[test]
    fn reads_back_what_was_written_in_whole_frames() {
        let root = std::env::temp_dir().join(format!("spool-test-{}", std::process::id()));
        let dir = SpoolDir::of_job(&root, 1, "t");
        let meta = SpoolMeta {
            format: StreamFormat {
                sample_rate: 8_000,
                channels: 2,
                encoding: Encoding::PcmF32le,
            },
            latency_ms: 2_000,
            extract: true,
        };
        let mut writer = dir.create(&meta).unwrap();
        let samples: Vec<f32> = (0..40_000).map(|i| i as f32).collect();
        writer.append(&samples[..1]).unwrap();
        writer.append(&samples[1..]).unwrap();
        writer.finish().unwrap();
        assert_eq!(dir.meta().unwrap().format, meta.format);
        let mut reader = dir.reader(2).unwrap();
        let mut back = Vec::new();
        while let Some(block) = reader.next_block().unwrap() {
            assert_eq!(block.len() % 2, 0);
            back.extend_from_slice(block);
        }
        assert_eq!(back, samples);
        dir.remove();
        let _ = fs::remove_dir_all(root);
    }
}
