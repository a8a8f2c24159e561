//! A full disk, as the API answers it: 507 naming the path and the free
//! space, and one warning a minute in the log however many requests hit it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds between two "disk full" warnings.
const WARN_EVERY_SECS: u64 = 60;

static LAST_WARNING: AtomicU64 = AtomicU64::new(0);

/// Whether `err` is "no space left on device" (ENOSPC, EDQUOT).
pub fn is_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(err.raw_os_error(), Some(28 | 122))
}

/// The path a disk-full error was met at, when `err`'s chain holds one.
pub fn full_at(err: &(dyn std::error::Error + 'static)) -> Option<PathBuf> {
    let mut current = Some(err);
    let mut path = None;
    let mut full = false;
    while let Some(e) = current {
        if let Some(crate::blobs::BlobError::Io { path: p, .. }) = e.downcast_ref() {
            path.get_or_insert_with(|| p.clone());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && is_full(io)
        {
            full = true;
        }
        current = e.source();
    }
    full.then(|| path.unwrap_or_default())
}

/// Bytes free to unprivileged users on the file system holding `path` (or
/// its nearest existing parent).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let stat = rustix::fs::statvfs(existing).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Logs a disk-full warning unless one was logged in the last minute.
pub fn warn_full(path: &Path, free: Option<u64>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let last = LAST_WARNING.load(Ordering::Relaxed);
    if now.saturating_sub(last) < WARN_EVERY_SECS && last != 0 {
        return;
    }
    if LAST_WARNING
        .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
    {
        tracing::warn!(path = %path.display(), free_bytes = ?free, "the disk is full; writes fail with 507 until space is freed (this warning repeats at most once a minute)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_in_a_blob_error_names_its_path() {
        let err = crate::blobs::BlobError::Io {
            step: "write",
            path: PathBuf::from("/data/blobs/tmp/x"),
            source: std::io::Error::from_raw_os_error(28),
        };
        assert_eq!(full_at(&err), Some(PathBuf::from("/data/blobs/tmp/x")));
        let other = crate::blobs::BlobError::Io {
            step: "write",
            path: PathBuf::from("/x"),
            source: std::io::Error::from_raw_os_error(13),
        };
        assert_eq!(full_at(&other), None);
    }

    #[test]
    fn free_space_is_measured_on_the_nearest_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(&dir.path().join("not/yet")).is_some());
    }
}
