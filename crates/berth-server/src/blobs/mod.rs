//! Content-addressed artifact store: `sha256/<2 hex>/<64 hex>` in a local folder
//! (`<data>/blobs/`, the default) or under a prefix of an object store (see [`location`]).
//!
//! Content is streamed into a temporary file while it is hashed; once the digest is known it
//! is renamed into place (local) or uploaded under its digest key unless that key exists
//! (object store, multipart for large content); identical content is stored once. A blob
//! that has just been written is *pinned* until the metadata row that references it is
//! committed, so garbage collection never removes a blob a registration is about to use.
//! Collection and publication (the existence check and the pin) are serialised by one lock.
//!
//! With an object store, revisions still need local files: [`BlobStore::ensure_local`] fills a
//! digest-verified cache, `<data>/blob-cache/sha256/..`, by streaming from the store, and
//! [`BlobStore::path`] names the cached file. Downloads stream from the store directly.

mod cache;
mod copy;
mod health;
pub mod location;
mod pins;
mod remote;
#[doc(hidden)]
pub mod test_s3;
#[cfg(test)]
mod tests;
pub mod verify;
mod writer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use copy::{CopyReport, copy_blobs};
pub use location::{BlobLocation, LocationError};
pub use pins::BlobPin;
pub use remote::PART_BYTES;
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
    /// The object store failed.
    #[error("blob store: {step} `{key}` failed: {source}")]
    Remote {
        /// What was being done.
        step: &'static str,
        /// Which object (`s3://bucket/key`).
        key: String,
        /// The cause.
        #[source]
        source: Box<object_store::Error>,
    },
    /// Content read for a blob does not hash to its digest.
    #[error(
        "blob {expected} is corrupt at {location}: its content hashes to {actual}; restore it from a backup or register the model again"
    )]
    Corrupt {
        /// The digest the content should have.
        expected: String,
        /// What it hashed to.
        actual: String,
        /// Where it was read from.
        location: String,
    },
    /// The object store named by `--blobs` cannot be used.
    #[error(transparent)]
    Location(#[from] LocationError),
}

/// Result of blob calls.
pub type Result<T, E = BlobError> = std::result::Result<T, E>;

pub(crate) fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BlobError {
    let path = path.to_owned();
    move |source| BlobError::Io { step, path, source }
}

/// Blobs fetched into the cache at once (a snapshot may have thousands of small files).
const CACHE_FILLS_AT_ONCE: usize = 8;

/// The blob store. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The blobs (local backend) or the verified cache of the object store's.
    root: PathBuf,
    /// The object store, when blobs live in one.
    remote: Option<remote::Remote>,
    /// The last health probe.
    health: health::HealthCache,
    pins: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Held while publishing a blob or collecting garbage.
    publish: tokio::sync::Mutex<()>,
    /// How old an unreferenced object must be for a sweep to remove it.
    sweep_grace_secs: AtomicU64,
}

/// Unreferenced objects younger than this survive a sweep (see [`BlobStore::sweep`]).
pub const SWEEP_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

impl BlobStore {
    /// Opens the store at `root`, creating it and emptying its temporary folder
    /// (left-overs of interrupted uploads).
    pub async fn open(root: &Path) -> Result<Self> {
        Self::open_with(root, None).await
    }

    /// Opens the store `location` names; an object store caches under `<data>/blob-cache`.
    pub async fn open_location(location: &BlobLocation, data_dir: &Path) -> Result<Self> {
        match location {
            BlobLocation::Local(root) => Self::open(root).await,
            BlobLocation::Remote(remote) => {
                let store = remote.build().map_err(|reason| LocationError {
                    flag: "--blobs",
                    value: remote.display(),
                    reason,
                })?;
                let remote = remote::Remote::new(store, remote.clone());
                Self::open_with(&data_dir.join("blob-cache"), Some(remote)).await
            }
        }
    }

    async fn open_with(root: &Path, remote: Option<remote::Remote>) -> Result<Self> {
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
                remote,
                health: Default::default(),
                pins: Default::default(),
                publish: tokio::sync::Mutex::new(()),
                sweep_grace_secs: AtomicU64::new(SWEEP_GRACE.as_secs()),
            }),
        })
    }

    /// Where the blob with `digest` (`sha256:<hex>`) lives on local disk: in the store, or in
    /// the cache of an object store once [`Self::ensure_local`] has filled it.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.inner.path(digest)
    }

    /// Where blobs live, for logs: a folder or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        self.inner.describe()
    }

    /// Whether the blobs live in an object store.
    pub fn is_remote(&self) -> bool {
        self.inner.remote.is_some()
    }

    /// Objects uploaded to the object store by this process (0 for a local store).
    pub fn uploads(&self) -> u64 {
        self.inner
            .remote
            .as_ref()
            .map_or(0, remote::Remote::uploads)
    }

    /// Whether blob `digest` is stored.
    pub async fn contains(&self, digest: &str) -> Result<bool> {
        match &self.inner.remote {
            Some(remote) => remote.exists(digest).await,
            None => Ok(tokio::fs::try_exists(self.path(digest))
                .await
                .unwrap_or(false)),
        }
    }

    /// Makes every blob of `digests` available at [`Self::path`]: nothing to do for a local
    /// store; an object store's blobs are streamed into the cache and checked on the way.
    pub async fn ensure_local(&self, digests: &[String]) -> Result<()> {
        if self.inner.remote.is_none() {
            return Ok(());
        }
        use futures_util::{StreamExt, TryStreamExt};
        let mut fills = Vec::with_capacity(digests.len());
        for digest in digests {
            let (inner, digest) = (self.inner.clone(), digest.clone());
            fills.push(async move { inner.fill_cache(&digest).await });
        }
        futures_util::stream::iter(fills)
            .buffer_unordered(CACHE_FILLS_AT_ONCE)
            .try_collect::<()>()
            .await
    }

    /// The content of blob `digest` as a reader (not checked), and where it is read from.
    pub async fn reader(
        &self,
        digest: &str,
    ) -> Result<(Box<dyn tokio::io::AsyncRead + Send + Unpin>, PathBuf)> {
        match &self.inner.remote {
            Some(remote) => Ok((
                remote.reader(digest).await?,
                PathBuf::from(format!("{}/{}", remote.display(), remote.key(digest))),
            )),
            None => {
                let path = self.path(digest);
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(io("open", &path))?;
                Ok((Box::new(file), path))
            }
        }
    }

    /// The content of blob `digest`, checked against it as it streams (see
    /// [`verify::stream_checked`]).
    pub async fn stream(
        &self,
        digest: &str,
    ) -> Result<impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static>
    {
        let (reader, location) = self.reader(digest).await?;
        Ok(verify::stream_checked(reader, digest, &location))
    }

    /// Whether the store answers: a cheap probe, cached for a few seconds.
    pub async fn health(&self) -> std::result::Result<(), String> {
        self.inner.health.get(&self.inner).await
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
                Ok(false) => match self.inner.remove(digest).await {
                    Ok(true) => removed += 1,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(%digest, error = %e, "could not remove unused blob"),
                },
                Ok(true) => {}
                Err(e) => tracing::warn!(%digest, error = %e, "could not check blob references"),
            }
        }
        removed
    }

    /// Sets how old an unreferenced object must be for [`Self::sweep`] to remove it.
    #[cfg(test)]
    pub(crate) fn set_sweep_grace(&self, grace: std::time::Duration) {
        self.inner
            .sweep_grace_secs
            .store(grace.as_secs(), Ordering::Relaxed);
    }

    /// Removes every blob that no model references (after a crash, say). In an object store
    /// only objects older than [`SWEEP_GRACE`] go: pins are per process, and several servers
    /// may share a bucket.
    pub async fn sweep(&self, store: &dyn Store) -> Result<usize> {
        let referenced: HashSet<String> = match store.referenced_blobs().await {
            Ok(list) => list.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "skipping blob sweep: references unreadable");
                return Ok(0);
            }
        };
        let _guard = self.inner.publish.lock().await;
        let mut removed = 0;
        if let Some(remote) = &self.inner.remote {
            let grace = self.inner.sweep_grace_secs.load(Ordering::Relaxed);
            for (digest, age) in remote.list_digests().await? {
                // Another server on the same bucket may have just uploaded it for a
                // registration it has not committed yet: only old objects go.
                if age >= grace && !referenced.contains(&digest) && !self.inner.is_pinned(&digest) {
                    remote.delete(&digest).await?;
                    removed += 1;
                }
            }
        }
        // The local blobs, or the cache of the object store's.
        let root = self.inner.root.join("sha256");
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
                    if self.inner.remote.is_none() {
                        removed += 1;
                    }
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

    fn describe(&self) -> String {
        match &self.remote {
            Some(remote) => remote.display(),
            None => self.root.display().to_string(),
        }
    }

    /// Removes blob `digest` (and its cached copy); true when the store had it.
    async fn remove(&self, digest: &str) -> Result<bool> {
        let path = self.path(digest);
        let local = match tokio::fs::remove_file(&path).await {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io("remove unused blob", &path)(e)),
        };
        match &self.remote {
            Some(remote) => remote.delete(digest).await,
            None => Ok(local),
        }
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
