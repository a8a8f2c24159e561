//! Pins keep freshly written blobs safe from collection until their metadata
//! is committed.

use std::sync::Arc;

use super::Inner;

/// A published blob, protected from garbage collection while this value lives.
pub struct BlobPin {
    inner: Arc<Inner>,
    digest: String,
    size: u64,
}

impl BlobPin {
    pub(crate) fn new(inner: Arc<Inner>, digest: String, size: u64) -> Self {
        if let Ok(mut pins) = inner.pins.lock() {
            *pins.entry(digest.clone()).or_insert(0) += 1;
        }
        Self {
            inner,
            digest,
            size,
        }
    }

    /// `sha256:<hex>`.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl std::fmt::Debug for BlobPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobPin({}, {} bytes)", self.digest, self.size)
    }
}

impl Drop for BlobPin {
    fn drop(&mut self) {
        if let Ok(mut pins) = self.inner.pins.lock()
            && let Some(count) = pins.get_mut(&self.digest)
        {
            *count -= 1;
            if *count == 0 {
                pins.remove(&self.digest);
            }
        }
    }
}
