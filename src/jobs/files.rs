//! Where job files live: inputs and outputs in an `object_store`.
//!
//! The local filesystem (`<data-dir>/objects`) is the default; an `s3://bucket/prefix`
//! URL (credentials and endpoint from the usual `AWS_*` variables) moves them to
//! S3-compatible storage without touching anything else.
//!
//! ```text
//! inputs/<task_id>/<filename>     the upload, until the job is deleted
//! jobs/<job_id>/<name>            outputs: speaker_N.wav, <file_id>.rttm, result.json
//! live/<job_id>-<task_id>/…       a running stream's checkpoints (`live::checkpoint`)
//! ```

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Parts in flight while uploading one file, each of the store's chunk size (5 MiB).
const UPLOADS_IN_FLIGHT: usize = 4;
const READ_CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
    #[error("storage URL {0:?}: only file paths and s3:// URLs are supported")]
    UnsupportedUrl(String),
    #[error("local file {path}: {source}")]
    Local {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The job file store.
#[derive(Clone)]
pub struct Files {
    store: Arc<dyn ObjectStore>,
}

impl Files {
    /// `url` is `s3://bucket[/prefix]`; `None` keeps files under `data_dir/objects`.
    pub fn open(url: Option<&str>, data_dir: &FsPath) -> Result<Self, FilesError> {
        let store: Arc<dyn ObjectStore> = match url {
            None => {
                let root = data_dir.join("objects");
                std::fs::create_dir_all(&root).map_err(|source| FilesError::Local {
                    path: root.clone(),
                    source,
                })?;
                Arc::new(LocalFileSystem::new_with_prefix(&root)?)
            }
            Some(url) if url.starts_with("s3://") => {
                let parsed =
                    url::Url::parse(url).map_err(|_| FilesError::UnsupportedUrl(url.to_owned()))?;
                let s3 = AmazonS3Builder::from_env().with_url(url).build()?;
                let prefix = parsed.path().trim_matches('/');
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix))
                }
            }
            Some(url) => return Err(FilesError::UnsupportedUrl(url.to_owned())),
        };
        Ok(Self { store })
    }

    pub fn input_key(task_id: &str, filename: &str) -> String {
        format!("inputs/{task_id}/{filename}")
    }

    pub fn output_key(job_id: i64, name: &str) -> String {
        format!("jobs/{job_id}/{name}")
    }

    /// Streams a local file into the store, never holding it whole in memory.
    pub async fn put_file(&self, key: &str, local: &FsPath) -> Result<(), FilesError> {
        let local_error = |source| FilesError::Local {
            path: local.to_owned(),
            source,
        };
        let mut file = tokio::fs::File::open(local).await.map_err(local_error)?;
        let upload = self.store.put_multipart(&Path::from(key)).await?;
        let mut writer = WriteMultipart::new(upload);
        let mut buffer = vec![0u8; READ_CHUNK];
        loop {
            let read = file.read(&mut buffer).await.map_err(local_error)?;
            if read == 0 {
                break;
            }
            writer.wait_for_capacity(UPLOADS_IN_FLIGHT).await?;
            writer.write(&buffer[..read]);
        }
        writer.finish().await?;
        Ok(())
    }

    /// Stores a small object whole.
    pub async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<(), FilesError> {
        self.store.put(&Path::from(key), bytes.into()).await?;
        Ok(())
    }

    /// The keys under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, FilesError> {
        let mut keys: Vec<String> = self
            .store
            .list(Some(&Path::from(prefix)))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await?;
        keys.sort();
        Ok(keys)
    }

    /// Appends an object's bytes to an open file.
    pub async fn append_to(
        &self,
        key: &str,
        file: &mut tokio::fs::File,
        local: &FsPath,
    ) -> Result<(), FilesError> {
        let mut stream = self.store.get(&Path::from(key)).await?.into_stream();
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk?)
                .await
                .map_err(|source| FilesError::Local {
                    path: local.to_owned(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Copies an object to a local file.
    pub async fn get_to_file(&self, key: &str, local: &FsPath) -> Result<(), FilesError> {
        let local_error = |source| FilesError::Local {
            path: local.to_owned(),
            source,
        };
        let mut stream = self.store.get(&Path::from(key)).await?.into_stream();
        let mut file = tokio::fs::File::create(local).await.map_err(local_error)?;
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk?).await.map_err(local_error)?;
        }
        file.flush().await.map_err(local_error)
    }

    /// Size in bytes, or `None` when the object does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, FilesError> {
        match self.store.head(&Path::from(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The bytes of `range` (or all) of an object, as a stream.
    pub async fn read(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, object_store::Error>>, FilesError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        Ok(self
            .store
            .get_opts(&Path::from(key), options)
            .await?
            .into_stream())
    }

    /// Deletes every object under `prefix` (a job's outputs, an input folder).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), FilesError> {
        let keys: Vec<Path> = self
            .store
            .list(Some(&Path::from(prefix)))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        for key in keys {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
