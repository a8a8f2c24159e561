//! Copying blobs between two stores (`berth admin migrate`): each digest is streamed from one
//! store to the other and checked against its digest on the way; a digest the target already
//! has is not copied again. Failures are reported per digest; the others still copy.

use super::{BlobError, BlobStore};

/// What [`copy_blobs`] did.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// Digests written to the target.
    pub copied: Vec<String>,
    /// Digests the target had already.
    pub present: Vec<String>,
    /// Bytes written to the target.
    pub bytes: u64,
    /// Digests that could not be copied, with the reason.
    pub failed: Vec<(String, BlobError)>,
}

impl CopyReport {
    /// True when every digest is in the target.
    pub fn complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Streams each of `digests` from `from` to `to`, verifying it by digest.
pub async fn copy_blobs(from: &BlobStore, to: &BlobStore, digests: &[String]) -> CopyReport {
    let mut report = CopyReport::default();
    for digest in digests {
        match copy_one(from, to, digest).await {
            Ok(Some(bytes)) => {
                report.bytes += bytes;
                report.copied.push(digest.clone());
            }
            Ok(None) => report.present.push(digest.clone()),
            Err(e) => {
                tracing::warn!(%digest, error = %e, "could not copy blob");
                report.failed.push((digest.clone(), e));
            }
        }
    }
    report
}

/// `None` when the target has the blob already.
async fn copy_one(
    from: &BlobStore,
    to: &BlobStore,
    digest: &str,
) -> Result<Option<u64>, BlobError> {
    use tokio::io::AsyncReadExt;
    if to.contains(digest).await? {
        return Ok(None);
    }
    let (mut reader, _) = from.reader(digest).await?;
    let mut writer = to.writer(u64::MAX).await?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|source| BlobError::Io {
                step: "read blob to copy",
                path: digest.into(),
                source,
            })?;
        if n == 0 {
            break;
        }
        writer.write(&buf[..n]).await?;
    }
    let pin = writer.finish_expecting(digest).await?;
    Ok(Some(pin.size()))
}
