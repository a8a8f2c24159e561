//! Content-addressed artifact store: `<data>/blobs/sha256/<2 hex>/<64 hex>`.
//!
//! Content is streamed into a temporary file under `<data>/blobs/tmp/` while it is
//! hashed, then renamed to its digest; identical content is stored once. A blob
//! that has just been written is *pinned* until the metadata row that references
//! it is committed, so garbage collection never removes a blob a registration is
//! about to use. Collection and publication are serialised by one lock.

mod pins;
pub mod verify;
mod writer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use pins::BlobPin;
pub use writer::{BlobWriter, SyncBlobWriter};

use crate::store::Store;

/// What can go wrong with blobs.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// File-system failure.
    #[error("blob store: {step} `{}` failed", path.display())]
    Io {
        /// What was being done.
        step: &'static str,
        /// Which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The content exceeded the limit.
    #[error("the content is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
}

/// Result of blob calls.
pub type Result<T, E = BlobError> = std::result::Result<T, E>;

pub(crate) fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BlobError {
    let path = path.to_owned();
    move |source| BlobError::Io { step, path, source }
}

/// The blob store. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    root: PathBuf,
    pins: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Held while publishing a blob or collecting garbage.
    publish: tokio::sync::Mutex<()>,
}

impl BlobStore {
    /// Opens the store at `root`, creating it and emptying its temporary folder
    /// (left-overs of interrupted uploads).
    pub async fn open(root: &Path) -> Result<Self> {
        let tmp = root.join("tmp");
        if tokio::fs::try_exists(&tmp).await.unwrap_or(false) {
            tokio::fs::remove_dir_all(&tmp)
                .await
                .map_err(io("clear temporary folder", &tmp))?;
        }
        for dir in [root.join("sha256"), tmp] {
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(io("create folder", &dir))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                pins: Default::default(),
                publish: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Where the blob with `digest` (`sha256:<hex>`) lives.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.inner.path(digest)
    }

    /// A fresh temporary path under the store (same file system as the blobs).
    pub fn temp_path(&self) -> PathBuf {
        self.inner.temp_path()
    }

    /// Starts an async upload of at most `limit` bytes.
    pub async fn writer(&self, limit: u64) -> Result<BlobWriter> {
        BlobWriter::create(self.inner.clone(), limit).await
    }

    /// Starts a blocking upload of at most `limit` bytes (for use on a blocking thread).
    pub fn sync_writer(&self, limit: u64) -> Result<SyncBlobWriter> {
        SyncBlobWriter::create(self.inner.clone(), limit)
    }

    /// Removes those of `digests` that no model references and no upload pins.
    pub async fn collect(&self, digests: &[String], store: &dyn Store) -> usize {
        let _guard = self.inner.publish.lock().await;
        let mut removed = 0;
        for digest in digests.iter().collect::<HashSet<_>>() {
            if self.inner.is_pinned(digest) {
                continue;
            }
            match store.blob_referenced(digest).await {
                Ok(false) => {
                    let path = self.path(digest);
                    match tokio::fs::remove_file(&path).await {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            tracing::warn!(%digest, error = %e, "could not remove unused blob")
                        }
                    }
                }
                Ok(true) => {}
                Err(e) => tracing::warn!(%digest, error = %e, "could not check blob references"),
            }
        }
        removed
    }

    /// Removes every blob that no model references (after a crash, say).
    pub async fn sweep(&self, store: &dyn Store) -> Result<usize> {
        let referenced: HashSet<String> = match store.referenced_blobs().await {
            Ok(list) => list.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "skipping blob sweep: references unreadable");
                return Ok(0);
            }
        };
        let _guard = self.inner.publish.lock().await;
        let root = self.inner.root.join("sha256");
        let mut removed = 0;
        let mut shards = tokio::fs::read_dir(&root)
            .await
            .map_err(io("list", &root))?;
        while let Some(shard) = shards.next_entry().await.map_err(io("list", &root))? {
            let shard_path = shard.path();
            let mut files = tokio::fs::read_dir(&shard_path)
                .await
                .map_err(io("list", &shard_path))?;
            while let Some(file) = files.next_entry().await.map_err(io("list", &shard_path))? {
                let digest = format!("sha256:{}", file.file_name().to_string_lossy());
                if !referenced.contains(&digest) && !self.inner.is_pinned(&digest) {
                    tokio::fs::remove_file(file.path())
                        .await
                        .map_err(io("remove unused blob", &file.path()))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

impl Inner {
    fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let shard = hex.get(..2).unwrap_or("00");
        self.root.join("sha256").join(shard).join(hex)
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    fn is_pinned(&self, digest: &str) -> bool {
        self.pins
            .lock()
            .map(|pins| pins.contains_key(digest))
            .unwrap_or(true)
    }
}

/// Formats a finished sha256 as `sha256:<hex>`.
pub fn format_digest(hash: &[u8]) -> String {
    format!("sha256:{}", hex::encode(hash))
}
