//! Writers that hash content on its way to a temporary file and publish it under its digest:
//! renamed into place in a local store, uploaded under its digest key (unless it is there
//! already) to an object store.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{BlobError, BlobPin, Inner, Result, format_digest, io};

const BUFFER_BYTES: usize = 1 << 20;

/// Deletes a temporary file when dropped, unless it was published.
pub(super) struct TempFile {
    pub(super) path: PathBuf,
    keep: bool,
}

impl TempFile {
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path, keep: false }
    }
}

/// Renames a finished, checked temporary file to `target`, read-only.
pub(super) fn place_file(temp: &mut TempFile, target: &std::path::Path) -> Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io("create folder", parent))?;
    }
    // Blobs are shared (hard-linked into revisions): nobody may write to them.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&temp.path, std::fs::Permissions::from_mode(0o444))
        .map_err(io("protect blob", &temp.path))?;
    std::fs::rename(&temp.path, target).map_err(io("publish blob", target))?;
    temp.keep = true;
    Ok(())
}

/// Publishes to the object store: pins the digest (under the publication lock, so that a
/// collection either ran before and the key is gone, or sees the pin), then uploads the file
/// unless the key exists. The temporary file is removed when `temp` drops.
async fn publish_remote(
    inner: &Arc<Inner>,
    temp: &TempFile,
    digest: String,
    size: u64,
) -> Result<BlobPin> {
    let pin = {
        let _guard = inner.publish.lock().await;
        BlobPin::new(inner.clone(), digest, size)
    };
    if let Some(remote) = &inner.remote
        && !remote.exists(pin.digest()).await?
    {
        let started = std::time::Instant::now();
        remote.upload_file(pin.digest(), &temp.path).await?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            blob = %pin.digest(),
            bytes = size,
            seconds = format!("{seconds:.2}"),
            "uploaded blob to the object store"
        );
    }
    Ok(pin)
}

fn check_expected(digest: &str, expected: Option<&str>, path: &std::path::Path) -> Result<()> {
    match expected {
        Some(expected) if expected != digest => Err(BlobError::Corrupt {
            expected: expected.to_owned(),
            actual: digest.to_owned(),
            location: path.display().to_string(),
        }),
        _ => Ok(()),
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Moves the temporary file into place (or drops it when the blob exists) and pins it.
fn publish(inner: &Arc<Inner>, temp: &mut TempFile, digest: String, size: u64) -> Result<BlobPin> {
    let target = inner.path(&digest);
    if target.exists() {
        std::fs::remove_file(&temp.path).map_err(io("remove duplicate upload", &temp.path))?;
        temp.keep = true;
    } else {
        place_file(temp, &target)?;
    }
    Ok(BlobPin::new(inner.clone(), digest, size))
}

fn check_limit(size: u64, limit: u64) -> Result<()> {
    if size > limit {
        Err(BlobError::TooLarge { limit })
    } else {
        Ok(())
    }
}

/// Streams content into the store from async code.
pub struct BlobWriter {
    inner: Arc<Inner>,
    temp: TempFile,
    file: tokio::io::BufWriter<tokio::fs::File>,
    hasher: Sha256,
    size: u64,
    limit: u64,
}

impl BlobWriter {
    pub(super) async fn create(inner: Arc<Inner>, limit: u64) -> Result<Self> {
        let path = inner.temp_path();
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(io("create temporary file", &path))?;
        Ok(Self {
            inner,
            temp: TempFile::new(path),
            file: tokio::io::BufWriter::with_capacity(BUFFER_BYTES, file),
            hasher: Sha256::new(),
            size: 0,
            limit,
        })
    }

    /// Appends a chunk.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.size += chunk.len() as u64;
        check_limit(self.size, self.limit)?;
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(io("write", &self.temp.path))
    }

    /// Flushes, syncs and publishes the content; the returned pin protects it.
    pub async fn finish(self) -> Result<BlobPin> {
        self.finish_checked(None).await
    }

    /// Like [`Self::finish`], but fails without publishing anything when the content does
    /// not hash to `expected` (copies between stores).
    pub async fn finish_expecting(self, expected: &str) -> Result<BlobPin> {
        self.finish_checked(Some(expected)).await
    }

    async fn finish_checked(mut self, expected: Option<&str>) -> Result<BlobPin> {
        self.file
            .flush()
            .await
            .map_err(io("flush", &self.temp.path))?;
        self.file
            .get_mut()
            .sync_data()
            .await
            .map_err(io("sync", &self.temp.path))?;
        let digest = format_digest(&self.hasher.finalize_reset());
        check_expected(&digest, expected, &self.temp.path)?;
        if self.inner.remote.is_some() {
            return publish_remote(&self.inner, &self.temp, digest, self.size).await;
        }
        let _guard = self.inner.publish.lock().await;
        publish(&self.inner, &mut self.temp, digest, self.size)
    }
}

/// Streams content into the store from blocking code (archive unpacking).
pub struct SyncBlobWriter {
    inner: Arc<Inner>,
    temp: TempFile,
    file: std::io::BufWriter<std::fs::File>,
    hasher: Sha256,
    size: u64,
    limit: u64,
}

impl SyncBlobWriter {
    pub(super) fn create(inner: Arc<Inner>, limit: u64) -> Result<Self> {
        let path = inner.temp_path();
        let file = std::fs::File::create(&path).map_err(io("create temporary file", &path))?;
        Ok(Self {
            inner,
            temp: TempFile::new(path),
            file: std::io::BufWriter::with_capacity(BUFFER_BYTES, file),
            hasher: Sha256::new(),
            size: 0,
            limit,
        })
    }

    /// Copies everything from `reader` into the blob.
    pub fn copy_from(&mut self, reader: &mut impl std::io::Read) -> Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io("read content for", &self.temp.path)(e)),
            };
            self.size += n as u64;
            check_limit(self.size, self.limit)?;
            self.hasher.update(&buf[..n]);
            std::io::Write::write_all(&mut self.file, &buf[..n])
                .map_err(io("write", &self.temp.path))?;
        }
    }

    /// Flushes, syncs and publishes the content.
    pub fn finish(mut self) -> Result<BlobPin> {
        std::io::Write::flush(&mut self.file).map_err(io("flush", &self.temp.path))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(io("sync", &self.temp.path))?;
        let digest = format_digest(&self.hasher.finalize_reset());
        if self.inner.remote.is_some() {
            // Called on a blocking thread of the runtime (archive ingestion).
            let handle = tokio::runtime::Handle::try_current().map_err(|e| BlobError::Io {
                step: "find the async runtime to upload",
                path: self.temp.path.clone(),
                source: std::io::Error::other(e),
            })?;
            return handle.block_on(publish_remote(&self.inner, &self.temp, digest, self.size));
        }
        let _guard = self.inner.publish.blocking_lock();
        publish(&self.inner, &mut self.temp, digest, self.size)
    }
}
