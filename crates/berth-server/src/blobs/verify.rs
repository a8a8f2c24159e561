//! Reading a blob while checking it against its name: a blob whose content no longer hashes to
//! its digest is corruption (a damaged disk, or a writer that should not exist), never served or
//! laid out. The mismatch is an `InvalidData` error naming both digests, logged as corruption.

use std::io::{self, Read};
use std::path::Path;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::format_digest;

/// The error for content that hashed to `actual` instead of `expected`; logs it.
pub fn corruption(expected: &str, actual: &str, path: &Path) -> io::Error {
    tracing::error!(
        blob = %expected,
        actual = %actual,
        path = %path.display(),
        "blob corruption: the stored content does not match its digest"
    );
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "blob {expected} is corrupt: its content hashes to {actual} (file {}); restore it from a backup or register the model again",
            path.display()
        ),
    )
}

/// A reader that hashes what passes through and fails at the end on a mismatch.
pub struct VerifyingRead<R> {
    inner: R,
    hasher: Sha256,
    expected: String,
    path: std::path::PathBuf,
    done: bool,
}

impl<R: Read> VerifyingRead<R> {
    /// Wraps `inner`, the content of blob `expected` read from `path`.
    pub fn new(inner: R, expected: &str, path: &Path) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            expected: expected.to_owned(),
            path: path.to_owned(),
            done: false,
        }
    }
}

impl<R: Read> Read for VerifyingRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
        } else if !buf.is_empty() && !self.done {
            self.done = true;
            let actual = format_digest(&self.hasher.finalize_reset());
            if actual != self.expected {
                return Err(corruption(&self.expected, &actual, &self.path));
            }
        }
        Ok(n)
    }
}

/// Hashes the blob at `path` and checks it is `expected`.
pub fn check_file(path: &Path, expected: &str) -> io::Result<()> {
    let mut reader = VerifyingRead::new(std::fs::File::open(path)?, expected, path);
    io::copy(&mut reader, &mut io::sink()).map(|_| ())
}

/// Copies the blob at `path` to `target` and checks it on the way.
pub fn copy_checked(path: &Path, expected: &str, target: &Path) -> io::Result<()> {
    let mut reader = VerifyingRead::new(std::fs::File::open(path)?, expected, path);
    let mut out = std::fs::File::create(target)?;
    io::copy(&mut reader, &mut out)?;
    Ok(())
}

/// The content of blob `expected` as a stream of chunks. Each chunk is sent only once the
/// next one was read, so the last one is held until the whole content was checked: on a
/// mismatch it is replaced by an error and the client never receives the full length (a broken
/// transfer), while the log says corruption.
pub fn stream_checked<R: tokio::io::AsyncRead + Send + Unpin + 'static>(
    file: R,
    expected: &str,
    path: &Path,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static + use<R> {
    struct State<F> {
        file: Option<F>,
        hasher: Sha256,
        expected: String,
        path: std::path::PathBuf,
        held: Option<Bytes>,
    }
    let state = State {
        file: Some(file),
        hasher: Sha256::new(),
        expected: expected.to_owned(),
        path: path.to_owned(),
        held: None,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            let Some(file) = st.file.as_mut() else {
                // Finished: send what is held (checked), then end.
                return st.held.take().map(|chunk| (Ok(chunk), st));
            };
            let mut buf = vec![0u8; 256 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => {
                    st.file = None;
                    let actual = format_digest(&st.hasher.finalize_reset());
                    if actual != st.expected {
                        st.held = None;
                        let err = corruption(&st.expected, &actual, &st.path);
                        return Some((Err(err), st));
                    }
                }
                Ok(n) => {
                    buf.truncate(n);
                    st.hasher.update(&buf);
                    if let Some(previous) = st.held.replace(Bytes::from(buf)) {
                        return Some((Ok(previous), st));
                    }
                }
                Err(e) => {
                    st.file = None;
                    st.held = None;
                    return Some((Err(e), st));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn digest_of(data: &[u8]) -> String {
        format_digest(&Sha256::digest(data))
    }

    #[test]
    fn matching_content_passes_and_damaged_content_fails() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("blob");
        std::fs::write(&path, b"model bytes").expect("write");
        let good = digest_of(b"model bytes");
        check_file(&path, &good).expect("intact");
        copy_checked(&path, &good, &dir.path().join("copy")).expect("copied");
        std::fs::write(&path, b"model bytez").expect("damage");
        let err = check_file(&path, &good).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains(&good), "{err}");
        assert!(copy_checked(&path, &good, &dir.path().join("copy2")).is_err());
    }

    #[tokio::test]
    async fn streams_end_with_an_error_on_corruption() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("blob");
        std::fs::write(&path, b"abc").expect("write");
        let file = tokio::fs::File::open(&path).await.expect("open");
        let items: Vec<_> = stream_checked(file, &digest_of(b"abc"), &path)
            .collect()
            .await;
        assert!(items.iter().all(Result::is_ok) && items.len() == 1);
        let file = tokio::fs::File::open(&path).await.expect("open");
        let items: Vec<_> = stream_checked(file, &digest_of(b"abd"), &path)
            .collect()
            .await;
        assert!(items.last().is_some_and(Result::is_err));
    }
}
