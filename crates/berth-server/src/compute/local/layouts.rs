//! Garbage collection of revision lay-outs (`<data>/services/<name>/r<N>/`):
//! after each operation the lay-outs of revisions in use (serving, or with a
//! replica running) are kept, plus the newest `--keep-revision-layouts`
//! others; older ones are removed. A rollback to a removed revision lays it
//! out again from the blobs.

use std::path::Path;

/// The revisions among `present` to remove: all but those `in_use` and the
/// `keep` newest of the others (pure).
pub fn to_remove(present: &[u32], in_use: &[u32], keep: u32) -> Vec<u32> {
    let mut others: Vec<u32> = present
        .iter()
        .copied()
        .filter(|r| !in_use.contains(r))
        .collect();
    others.sort_unstable_by(|a, b| b.cmp(a));
    others.dedup();
    others.into_iter().skip(keep as usize).collect()
}

/// Removes `service`'s lay-outs not in use beyond the newest `keep`; returns
/// how many were removed.
pub fn collect(data: &Path, service: &str, in_use: &[u32], keep: u32) -> usize {
    let dir = data.join("services").join(service);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let present: Vec<u32> = entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix('r'))
                .and_then(|n| n.parse::<u32>().ok())
        })
        .collect();
    let mut removed = 0;
    for revision in to_remove(&present, in_use, keep) {
        let path = super::materialise::revision_root(data, service, revision);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an old revision lay-out")
            }
        }
    }
    if removed > 0 {
        tracing::debug!(service, removed, "removed old revision lay-outs");
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_revisions_and_the_newest_others_are_kept() {
        assert_eq!(to_remove(&[1, 2, 3, 4, 5, 6], &[6], 2), vec![3, 2, 1]);
        assert_eq!(to_remove(&[1, 2, 3, 4, 5, 6], &[2], 2), vec![4, 3, 1]);
        assert_eq!(to_remove(&[1, 2], &[2], 3), Vec::<u32>::new());
        assert_eq!(to_remove(&[5, 1, 9], &[1, 9], 0), vec![5]);
    }

    #[test]
    fn old_lay_outs_are_removed_from_disk() {
        let data = tempfile::tempdir().unwrap();
        for r in 1..=5 {
            std::fs::create_dir_all(data.path().join(format!("services/s/r{r}/app"))).unwrap();
        }
        assert_eq!(collect(data.path(), "s", &[5], 1), 3);
        let left: Vec<bool> = (1..=5)
            .map(|r| data.path().join(format!("services/s/r{r}")).exists())
            .collect();
        assert_eq!(left, vec![false, false, false, true, true]);
    }
}
