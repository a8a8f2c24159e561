//! The object-store side of the blob store: keys `<prefix>/sha256/<2 hex>/<64 hex>`, streaming
//! multipart uploads with bounded buffering (aborted on any failure, so nothing is left behind),
//! streaming reads, deletion, listing for garbage collection, and a cheap health probe.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

use super::location::RemoteLocation;
use super::{BlobError, Result};

/// Size of one multipart part; content smaller than this goes up in one request. Files so
/// large that this would pass [`MAX_PARTS`] use larger parts.
pub const PART_BYTES: usize = 8 << 20;
/// Parts per upload Berth stays under (S3 allows 10,000).
const MAX_PARTS: u64 = 9_000;
/// Parts uploading at once: with the part being filled, at most `PART_BYTES * (1 + this)` bytes
/// of an upload are in memory.
const PARTS_IN_FLIGHT: usize = 2;

/// An object store under a prefix.
pub(crate) struct Remote {
    store: Arc<dyn ObjectStore>,
    location: RemoteLocation,
    prefix: ObjectPath,
    /// Objects written (dedup is observable in tests).
    uploads: AtomicU64,
}

impl Remote {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, location: RemoteLocation) -> Self {
        let prefix = location.prefix_path();
        Self {
            store,
            location,
            prefix,
            uploads: AtomicU64::new(0),
        }
    }

    /// `s3://bucket/prefix`, without options.
    pub(crate) fn display(&self) -> String {
        self.location.display()
    }

    /// Objects this process has written.
    pub(crate) fn uploads(&self) -> u64 {
        self.uploads.load(Ordering::Relaxed)
    }

    /// The key of blob `digest`.
    pub(crate) fn key(&self, digest: &str) -> ObjectPath {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let shard = hex.get(..2).unwrap_or("00");
        self.prefix.clone().join("sha256").join(shard).join(hex)
    }

    fn error(
        &self,
        step: &'static str,
        key: &ObjectPath,
    ) -> impl FnOnce(object_store::Error) -> BlobError {
        let key = format!("{}/{key}", self.location.bucket_url());
        move |source| BlobError::Remote {
            step,
            key,
            source: Box::new(source),
        }
    }

    /// Whether blob `digest` exists.
    pub(crate) async fn exists(&self, digest: &str) -> Result<bool> {
        let key = self.key(digest);
        match self.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("look up", &key)(e)),
        }
    }

    /// Writes `content` to `key` in parts of [`PART_BYTES`] (see [`Self::upload_in_parts`]).
    #[cfg(test)]
    pub(crate) async fn upload<S>(&self, key: &ObjectPath, content: S) -> Result<u64>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin,
    {
        self.upload_in_parts(key, content, PART_BYTES).await
    }

    /// Writes `content` to `key`: one request when it fits in a part, else a multipart upload
    /// that is aborted when the content or the store fails (or the future is dropped).
    async fn upload_in_parts<S>(
        &self,
        key: &ObjectPath,
        content: S,
        part_bytes: usize,
    ) -> Result<u64>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin,
    {
        let mut content = content;
        let mut first = BytesMut::new();
        let mut size = 0u64;
        let read_error = |source: io::Error| BlobError::Io {
            step: "read content to upload to",
            path: key.to_string().into(),
            source,
        };
        while first.len() < part_bytes {
            match content.next().await {
                Some(chunk) => first.extend_from_slice(&chunk.map_err(read_error)?),
                None => {
                    size = first.len() as u64;
                    self.store
                        .put(key, first.freeze().into())
                        .await
                        .map_err(self.error("upload", key))?;
                    self.uploads.fetch_add(1, Ordering::Relaxed);
                    return Ok(size);
                }
            }
        }
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(self.error("start multipart upload of", key))?;
        let mut multipart = Multipart(Some(WriteMultipart::new_with_chunk_size(
            upload, part_bytes,
        )));
        let result: Result<()> = async {
            size += first.len() as u64;
            multipart
                .put(first.freeze())
                .await
                .map_err(self.error("upload a part of", key))?;
            while let Some(chunk) = content.next().await {
                let chunk = chunk.map_err(read_error)?;
                size += chunk.len() as u64;
                multipart
                    .put(chunk)
                    .await
                    .map_err(self.error("upload a part of", key))?;
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                multipart
                    .finish()
                    .await
                    .map_err(self.error("complete multipart upload of", key))?;
                self.uploads.fetch_add(1, Ordering::Relaxed);
                Ok(size)
            }
            Err(e) => {
                if let Err(abort) = multipart.abort().await {
                    tracing::warn!(key = %key, error = %abort, "could not abort a failed multipart upload");
                }
                Err(e)
            }
        }
    }

    /// Uploads the file at `path` as blob `digest`.
    pub(crate) async fn upload_file(&self, digest: &str, path: &std::path::Path) -> Result<u64> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(super::io("open for upload", path))?;
        let size = file
            .metadata()
            .await
            .map_err(super::io("read size of", path))?
            .len();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        self.upload_in_parts(&self.key(digest), stream, part_size(size))
            .await
    }

    /// The content of blob `digest`, streamed.
    pub(crate) async fn reader(
        &self,
        digest: &str,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>> {
        let key = self.key(digest);
        let got = self
            .store
            .get(&key)
            .await
            .map_err(self.error("read", &key))?;
        let stream = got.into_stream().map_err(io::Error::other);
        Ok(Box::new(tokio_util::io::StreamReader::new(stream)))
    }

    /// Deletes blob `digest`; true when it existed (S3 deletes answer the same either way,
    /// so existence is asked first).
    pub(crate) async fn delete(&self, digest: &str) -> Result<bool> {
        if !self.exists(digest).await? {
            return Ok(false);
        }
        let key = self.key(digest);
        match self.store.delete(&key).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("delete", &key)(e)),
        }
    }

    /// Every blob digest under the prefix, with its age in seconds.
    pub(crate) async fn list_digests(&self) -> Result<Vec<(String, u64)>> {
        let root = self.prefix.clone().join("sha256");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut listing = self.store.list(Some(&root));
        let mut digests = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(self.error("list", &root))?;
            if let Some(name) = meta.location.filename()
                && name.len() == 64
                && name.bytes().all(|b| b.is_ascii_hexdigit())
            {
                let modified = u64::try_from(meta.last_modified.timestamp()).unwrap_or(0);
                digests.push((format!("sha256:{name}"), now.saturating_sub(modified)));
            }
        }
        Ok(digests)
    }

    /// One cheap request proving the store answers, the bucket exists and the credentials may
    /// list it: the shard folders under the prefix (at most 256 names, one page).
    pub(crate) async fn probe(&self) -> std::result::Result<(), String> {
        let root = self.prefix.clone().join("sha256");
        match self.store.list_with_delimiter(Some(&root)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("{}: {e}", self.display())),
        }
    }
}

/// The part size for `size` bytes: [`PART_BYTES`], or whole MiB large enough to stay under
/// [`MAX_PARTS`].
fn part_size(size: u64) -> usize {
    let needed = size.div_ceil(MAX_PARTS).next_multiple_of(1 << 20);
    usize::try_from(needed).map_or(usize::MAX, |n| n.max(PART_BYTES))
}

/// A multipart upload that is aborted when dropped unfinished (in the background: a drop
/// cannot wait), so a cancelled registration leaves no upload behind.
struct Multipart(Option<WriteMultipart>);

impl Multipart {
    async fn put(&mut self, chunk: Bytes) -> object_store::Result<()> {
        if let Some(writer) = self.0.as_mut() {
            writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            writer.put(chunk);
        }
        Ok(())
    }

    async fn finish(mut self) -> object_store::Result<()> {
        match self.0.take() {
            Some(writer) => writer.finish().await.map(|_| ()),
            None => Ok(()),
        }
    }

    async fn abort(mut self) -> object_store::Result<()> {
        match self.0.take() {
            Some(writer) => writer.abort().await,
            None => Ok(()),
        }
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        if let Some(writer) = self.0.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                if let Err(e) = writer.abort().await {
                    tracing::warn!(error = %e, "could not abort an interrupted multipart upload");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parts_grow_only_for_very_large_files() {
        assert_eq!(super::part_size(0), super::PART_BYTES);
        assert_eq!(super::part_size(16 << 30), super::PART_BYTES);
        let huge = 200u64 << 30;
        let part = super::part_size(huge) as u64;
        assert!(part > super::PART_BYTES as u64 && part.is_multiple_of(1 << 20));
        assert!(huge.div_ceil(part) <= super::MAX_PARTS);
    }
}
