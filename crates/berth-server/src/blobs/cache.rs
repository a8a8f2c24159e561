//! The local cache of an object store's blobs, `<data>/blob-cache/sha256/<2>/<64>`: revisions
//! are laid out from local files, so a blob is streamed from the store into a temporary file,
//! hashed on the way, and renamed into the cache only when it matches its digest (a mismatch
//! is an error naming the digest, and the bad copy is removed). Entries go when the blob is
//! collected.

use super::{BlobError, Inner, Result, format_digest, io, writer};

impl Inner {
    /// Streams blob `digest` from the object store into the cache unless it is there,
    /// checking it on the way; content that does not match is not kept.
    pub(super) async fn fill_cache(&self, digest: &str) -> Result<()> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let target = self.path(digest);
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            return Ok(());
        }
        let mut reader = remote.reader(digest).await?;
        let mut temp = writer::TempFile::new(self.temp_path());
        let mut file = tokio::fs::File::create(&temp.path)
            .await
            .map_err(io("create temporary file", &temp.path))?;
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let n = reader
                .read(&mut buf)
                .await
                .map_err(io("download into", &temp.path))?;
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut hasher, &buf[..n]);
            file.write_all(&buf[..n])
                .await
                .map_err(io("write", &temp.path))?;
        }
        file.sync_data().await.map_err(io("sync", &temp.path))?;
        drop(file);
        let actual = format_digest(&sha2::Digest::finalize(hasher));
        if actual != digest {
            let location = format!("{}/{}", remote.display(), remote.key(digest));
            tracing::error!(blob = %digest, %actual, %location, "blob corruption: the stored content does not match its digest");
            return Err(BlobError::Corrupt {
                expected: digest.to_owned(),
                actual,
                location,
            });
        }
        writer::place_file(&mut temp, &target)
    }
}
