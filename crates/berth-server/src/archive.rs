//! Safe reading of uploaded tar archives into the blob store.
//!
//! Only regular files and directories are accepted. Absolute paths, `..`,
//! symbolic and hard links, device files, duplicate paths, and archives over the
//! size or file-count limits are refused, each with a sentence naming the entry.
//! Nothing is ever written outside the blob store.

use std::collections::HashSet;
use std::path::{Component, Path};

use crate::blobs::{BlobError, BlobPin, BlobStore};

/// Limits on one archive.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveLimits {
    /// Total bytes of all files.
    pub max_bytes: u64,
    /// Number of files.
    pub max_files: u64,
}

/// One file taken from an archive, its content published and pinned.
#[derive(Debug)]
pub struct ArchiveFile {
    /// Normalised relative path with `/` separators.
    pub path: String,
    /// Unix permission bits.
    pub mode: u32,
    /// The content.
    pub blob: BlobPin,
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An entry breaks a rule.
    #[error("archive entry `{entry}` refused: {reason}")]
    Refused {
        /// The entry's path as written in the archive.
        entry: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// Too many files.
    #[error("the archive has more than {limit} files, the server's limit")]
    TooManyFiles {
        /// The limit.
        limit: u64,
    },
    /// Too many bytes.
    #[error("the archive's files add up to more than {limit} bytes, the server's limit")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// No files at all.
    #[error("the archive holds no files: a folder model needs at least one file")]
    Empty,
    /// Not a readable tar stream.
    #[error("the upload is not a readable tar archive: {0}")]
    Malformed(#[source] std::io::Error),
    /// Storing a file failed.
    #[error(transparent)]
    Blob(BlobError),
}

/// `sha256` of a manifest: one `<hex digest>  <path>` line per file (the
/// `sha256sum` format), in path order.
pub fn manifest_digest<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    use sha2::{Digest, Sha256};
    let mut lines: Vec<(&str, &str)> = files.into_iter().collect();
    lines.sort_unstable();
    let mut hasher = Sha256::new();
    for (path, digest) in lines {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        hasher.update(format!("{hex}  {path}\n").as_bytes());
    }
    crate::blobs::format_digest(&hasher.finalize())
}

/// Turns an archive path into a safe relative `a/b/c` path, or says why not.
pub fn safe_relative_path(raw: &Path) -> Result<Option<String>, &'static str> {
    let mut parts = Vec::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => {
                parts.push(part.to_str().ok_or("the path is not valid UTF-8")?);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err("the path contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("the path is absolute"),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// Reads the tar archive at `tar_path` (blocking) and stores each file as a blob.
///
/// The digest of every blob it publishes is appended to `published`, also when it
/// fails later, so the caller can release them.
pub fn ingest_tar(
    tar_path: &Path,
    blobs: &BlobStore,
    limits: ArchiveLimits,
    published: &mut Vec<String>,
) -> Result<Vec<ArchiveFile>, ArchiveError> {
    let file = std::fs::File::open(tar_path).map_err(ArchiveError::Malformed)?;
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
    let mut files: Vec<ArchiveFile> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut dirs: HashSet<String> = HashSet::new();
    let mut total: u64 = 0;
    for entry in archive.entries().map_err(ArchiveError::Malformed)? {
        let mut entry = entry.map_err(ArchiveError::Malformed)?;
        let raw_path = entry.path().map_err(ArchiveError::Malformed)?.into_owned();
        let shown = raw_path.to_string_lossy().into_owned();
        let refuse = |reason| ArchiveError::Refused {
            entry: shown.clone(),
            reason,
        };
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        if kind.is_symlink() {
            return Err(refuse(
                "symbolic links are not accepted; upload the file it points to instead",
            ));
        }
        if kind.is_hard_link() {
            return Err(refuse(
                "hard links are not accepted; upload the file it points to instead",
            ));
        }
        let path = safe_relative_path(&raw_path).map_err(refuse)?;
        if kind.is_dir() {
            if let Some(path) = path {
                dirs.insert(path);
            }
            continue;
        }
        if !(kind.is_file() || kind.is_contiguous()) {
            return Err(refuse(
                "only regular files and folders are accepted (no devices, fifos or sockets)",
            ));
        }
        let path = path.ok_or_else(|| refuse("the entry has an empty path"))?;
        if !seen.insert(path.clone()) {
            return Err(refuse("the archive holds this path twice"));
        }
        if files.len() as u64 >= limits.max_files {
            return Err(ArchiveError::TooManyFiles {
                limit: limits.max_files,
            });
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let remaining = limits.max_bytes.saturating_sub(total);
        let mut writer = blobs.sync_writer(remaining).map_err(ArchiveError::Blob)?;
        writer.copy_from(&mut entry).map_err(|e| match e {
            BlobError::TooLarge { .. } => ArchiveError::TooLarge {
                limit: limits.max_bytes,
            },
            other => ArchiveError::Blob(other),
        })?;
        let blob = writer.finish().map_err(ArchiveError::Blob)?;
        published.push(blob.digest().to_owned());
        total += blob.size();
        files.push(ArchiveFile { path, mode, blob });
    }
    for file in &files {
        let mut prefix = String::new();
        for part in file.path.split('/') {
            if !prefix.is_empty() && seen.contains(&prefix) {
                return Err(ArchiveError::Refused {
                    entry: file.path.clone(),
                    reason: "a parent of this path is also a file",
                });
            }
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
        }
    }
    if files.is_empty() {
        return Err(ArchiveError::Empty);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_normalised_and_escapes_refused() {
        assert_eq!(
            safe_relative_path(Path::new("./a/./b.txt")).unwrap(),
            Some("a/b.txt".into())
        );
        assert_eq!(safe_relative_path(Path::new("./")).unwrap(), None);
        assert!(safe_relative_path(Path::new("/etc/passwd")).is_err());
        assert!(safe_relative_path(Path::new("a/../../b")).is_err());
    }

    fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> tempfile::NamedTempFile {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        let bytes = builder.into_inner().unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        file
    }

    fn add_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, content: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o640);
        header.set_entry_type(tar::EntryType::Regular);
        // Write the name bytes directly so that unsafe names reach the reader.
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, content).unwrap();
    }

    async fn ingest(
        file: &tempfile::NamedTempFile,
    ) -> (tempfile::TempDir, Result<Vec<ArchiveFile>, ArchiveError>) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).await.unwrap();
        let path = file.path().to_owned();
        let limits = ArchiveLimits {
            max_bytes: 1000,
            max_files: 3,
        };
        let out =
            tokio::task::spawn_blocking(move || ingest_tar(&path, &blobs, limits, &mut Vec::new()))
                .await
                .unwrap();
        (dir, out)
    }

    #[tokio::test]
    async fn regular_files_become_blobs_with_modes() {
        let tar = tar_with(|b| {
            add_file(b, "b/data.bin", b"hello");
            add_file(b, "a.txt", b"hello");
        });
        let (_dir, files) = ingest(&tar).await;
        let files = files.unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "a.txt");
        assert_eq!(files[0].mode, 0o640);
        assert_eq!(files[0].blob.digest(), files[1].blob.digest());
    }

    #[tokio::test]
    async fn escapes_links_and_limits_are_refused() {
        let parent = tar_with(|b| add_file(b, "../evil", b"x"));
        let err = ingest(&parent).await.1.unwrap_err();
        assert!(err.to_string().contains("`..`"), "{err}");

        let absolute = tar_with(|b| add_file(b, "/evil", b"x"));
        let err = ingest(&absolute).await.1.unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");

        let link = tar_with(|b| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            b.append_link(&mut header, "link", "/etc/passwd").unwrap();
        });
        let err = ingest(&link).await.1.unwrap_err();
        assert!(err.to_string().contains("symbolic links"), "{err}");

        let many = tar_with(|b| {
            for i in 0..4 {
                add_file(b, &format!("f{i}"), b"x");
            }
        });
        assert!(matches!(
            ingest(&many).await.1,
            Err(ArchiveError::TooManyFiles { limit: 3 })
        ));

        let big = tar_with(|b| add_file(b, "big", &[0u8; 1001]));
        assert!(matches!(
            ingest(&big).await.1,
            Err(ArchiveError::TooLarge { limit: 1000 })
        ));

        let twice = tar_with(|b| {
            add_file(b, "a", b"1");
            add_file(b, "./a", b"2");
        });
        assert!(
            ingest(&twice)
                .await
                .1
                .unwrap_err()
                .to_string()
                .contains("twice")
        );

        let empty = tar_with(|_| {});
        assert!(matches!(ingest(&empty).await.1, Err(ArchiveError::Empty)));
    }
}
