//! A running stream's audio, copied from its spool to the file store every
//! few seconds, so that another node can finalize the stream if this one
//! dies: at most one interval of audio is lost.
//!
//! ```text
//! live/<job_id>-<task_id>/session.json        the spool's settings
//!                        /audio-000000.f32    the spool's bytes, in order
//!                        /audio-000001.f32    …
//! ```

use std::io::SeekFrom;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::spool::{BYTES_PER_SAMPLE, SpoolDir, SpoolMeta};
use crate::jobs::{Files, FilesError};

const META: &str = "session.json";
/// Largest piece read into memory at once (a minute of 48 kHz stereo is 23 MB).
const MAX_PIECE_BYTES: u64 = 8 << 20;

/// Where one stream's checkpoints live.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    prefix: String,
}

impl Checkpoints {
    pub fn of_job(job_id: i64, task_id: &str) -> Self {
        Self {
            prefix: format!("live/{job_id}-{task_id}"),
        }
    }

    /// Copies new spooled audio every `every` until stopped.
    pub fn start(
        &self,
        files: Files,
        spool: SpoolDir,
        meta: &SpoolMeta,
        every: Duration,
    ) -> Checkpointing {
        let stop = CancellationToken::new();
        let copier = Copier {
            files,
            spool,
            prefix: self.prefix.clone(),
            frame_bytes: (BYTES_PER_SAMPLE * usize::from(meta.format.channels)) as u64,
            copied: 0,
            pieces: 0,
        };
        let meta = serde_json::to_vec(meta).unwrap_or_default();
        let handle = tokio::spawn(copier.run(Bytes::from(meta), every, stop.clone()));
        Checkpointing {
            stop: stop.drop_guard(),
            handle,
        }
    }

    /// Rebuilds the spool from the checkpoints; `None` when there are none.
    pub async fn restore(
        &self,
        files: &Files,
        spool: &SpoolDir,
    ) -> Result<Option<SpoolMeta>, FilesError> {
        let keys = files.list(&self.prefix).await?;
        let meta_key = format!("{}/{META}", self.prefix);
        if !keys.contains(&meta_key) {
            return Ok(None);
        }
        let local = spool.path().join(META);
        let local_error = |source| FilesError::Local {
            path: local.clone(),
            source,
        };
        tokio::fs::create_dir_all(spool.path())
            .await
            .map_err(local_error)?;
        files.get_to_file(&meta_key, &local).await?;
        let meta: SpoolMeta = tokio::fs::read(&local)
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| {
                local_error(std::io::Error::other(
                    "the checkpoint's settings do not parse",
                ))
            })?;
        let audio = spool.audio_path();
        let mut file = tokio::fs::File::create(&audio).await.map_err(local_error)?;
        // Zero-padded names: sorted keys are the audio's order.
        for key in keys.iter().filter(|key| **key != meta_key) {
            files.append_to(key, &mut file, &audio).await?;
        }
        Ok(Some(meta))
    }

    pub async fn remove(&self, files: &Files) {
        if let Err(e) = files.delete_prefix(&self.prefix).await {
            tracing::warn!(prefix = self.prefix, error = %e, "removing checkpoints failed");
        }
    }
}

/// The copying task of a running stream; dropping it stops the copying.
pub struct Checkpointing {
    stop: DropGuard,
    handle: JoinHandle<()>,
}

impl Checkpointing {
    /// Stops copying and waits for a copy in flight, so nothing is written
    /// after the checkpoints are removed.
    pub async fn stop(self) {
        drop(self.stop);
        let _ = self.handle.await;
    }
}

struct Copier {
    files: Files,
    spool: SpoolDir,
    prefix: String,
    frame_bytes: u64,
    /// Bytes of the spool already in the store.
    copied: u64,
    pieces: u64,
}

impl Copier {
    async fn run(mut self, meta: Bytes, every: Duration, stop: CancellationToken) {
        let key = format!("{}/{META}", self.prefix);
        if let Err(e) = self.files.put_bytes(&key, meta).await {
            tracing::warn!(prefix = self.prefix, error = %e, "storing a checkpoint failed");
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            if let Err(e) = self.copy_new().await {
                // The next round tries again from the same place.
                tracing::warn!(prefix = self.prefix, error = %e, "storing a checkpoint failed");
            }
        }
    }

    /// Stores the whole frames spooled since the last copy, in pieces.
    async fn copy_new(&mut self) -> Result<(), FilesError> {
        let path = self.spool.audio_path();
        let local_error = |source| FilesError::Local {
            path: path.clone(),
            source,
        };
        let mut file = tokio::fs::File::open(&path).await.map_err(local_error)?;
        let length = file.metadata().await.map_err(local_error)?.len();
        let end = length - length % self.frame_bytes;
        while self.copied < end {
            let size =
                (end - self.copied).min(MAX_PIECE_BYTES - MAX_PIECE_BYTES % self.frame_bytes);
            let mut piece = vec![0u8; size as usize];
            file.seek(SeekFrom::Start(self.copied))
                .await
                .map_err(local_error)?;
            file.read_exact(&mut piece).await.map_err(local_error)?;
            let key = format!("{}/audio-{:06}.f32", self.prefix, self.pieces);
            self.files.put_bytes(&key, Bytes::from(piece)).await?;
            self.copied += size;
            self.pieces += 1;
        }
        Ok(())
    }
}
