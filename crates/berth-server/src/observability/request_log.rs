//! The request-log writer: one JSON line per scoring request, appended to
//! `<data>/logs/<service>/requests.log`, rotated by size (`requests.log.1` is
//! the newest rotated file). Runs on its own thread; flushes whenever its
//! queue is empty.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use super::{BodyJson, REQUEST_LOG_KEEP, REQUEST_LOG_MAX_BYTES, RequestRecord, body_json, rfc3339};

/// The current request log of `service` under `root`.
pub fn path(root: &Path, service: &str) -> PathBuf {
    root.join(service).join("requests.log")
}

fn ms(us: u64) -> f64 {
    (us as f64) / 1000.0
}

/// One line of the request log.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    time: String,
    service: &'a str,
    revision: u32,
    request_id: &'a str,
    method: &'a str,
    status: u16,
    queued_ms: f64,
    run_ms: f64,
    overhead_ms: f64,
    total_ms: f64,
    request_bytes: usize,
    response_bytes: usize,
    replica: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_body: Option<BodyJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_body: Option<BodyJson<'a>>,
}

impl RequestRecord {
    fn to_line(&self) -> Vec<u8> {
        let line = Line {
            time: rfc3339(self.at),
            service: &self.service,
            revision: self.revision,
            request_id: &self.request_id,
            method: &self.method,
            status: self.status,
            queued_ms: ms(self.queued_us),
            run_ms: ms(self.run_us),
            overhead_ms: ms(self.overhead_us),
            total_ms: ms(self.total_us),
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
            replica: self.replica,
            request_body: self.request_body.as_deref().map(body_json),
            response_body: self.response_body.as_deref().map(body_json),
        };
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// Writes records until every sender is gone.
pub(super) fn run_writer(root: &Path, mut rx: mpsc::Receiver<RequestRecord>) {
    let mut files: HashMap<Arc<str>, RotatingFile> = HashMap::new();
    loop {
        let record = match rx.try_recv() {
            Ok(record) => record,
            Err(mpsc::error::TryRecvError::Empty) => {
                for (service, file) in &mut files {
                    if let Err(e) = file.flush() {
                        tracing::warn!(%service, error = %e, "cannot flush the request log");
                    }
                }
                // Polling, not parking on the queue: a sender then never has
                // a sleeping thread to wake, so the request path makes no syscall.
                std::thread::sleep(super::WRITER_POLL);
                continue;
            }
            Err(mpsc::error::TryRecvError::Disconnected) => return,
        };
        let file = files.entry(record.service.clone()).or_insert_with(|| {
            RotatingFile::new(
                path(root, &record.service),
                REQUEST_LOG_MAX_BYTES,
                REQUEST_LOG_KEEP,
            )
        });
        if let Err(e) = file.write_line(&record.to_line()) {
            let path = path(root, &record.service);
            if crate::disk::is_full(&e) {
                crate::disk::warn_full(&path, crate::disk::free_bytes(&path));
            } else {
                tracing::warn!(service = %record.service, error = %e, "cannot write the request log");
            }
        }
    }
}

/// An append-only file that moves aside (`.1`, `.2`, … `.keep`) when it would
/// grow past `max_bytes`.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<BufWriter<File>>,
    size: u64,
}

impl RotatingFile {
    /// A file at `path`, opened on first write.
    pub fn new(path: PathBuf, max_bytes: u64, keep: usize) -> Self {
        Self {
            path,
            max_bytes,
            keep,
            file: None,
            size: 0,
        }
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn open(&mut self) -> std::io::Result<&mut BufWriter<File>> {
        if self.file.is_none() {
            if let Some(parent) = self.path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(BufWriter::with_capacity(64 * 1024, file));
        }
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the request log is not open"))
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        for n in (1..self.keep).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.size = 0;
        Ok(())
    }

    /// Appends `line` (ending in `\n`), rotating first when it would not fit.
    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.open()?;
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.open()?.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Writes buffered lines to the file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

/// The last `tail` lines of the log at `path` and its rotated files, oldest first.
pub fn read_tail(path: &Path, keep: usize, tail: usize) -> std::io::Result<Vec<String>> {
    let mut lines: Vec<String> = Vec::new();
    for n in 0..=keep {
        if lines.len() >= tail {
            break;
        }
        let file = if n == 0 {
            path.to_owned()
        } else {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut older: Vec<String> = text.lines().map(str::to_owned).collect();
        older.append(&mut lines);
        lines = older;
    }
    let start = lines.len().saturating_sub(tail);
    Ok(lines.split_off(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc").join("requests.log");
        let mut log = RotatingFile::new(path.clone(), 100, 2);
        for i in 0..20 {
            // 10 bytes a line: 10 lines a file.
            log.write_line(format!("line {i:04}\n").as_bytes()).unwrap();
        }
        log.flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let rotated = |n: usize| dir.path().join("svc").join(format!("requests.log.{n}"));
        assert_eq!(read(&path).lines().count(), 10);
        assert!(read(&path).starts_with("line 0010\n"));
        assert!(read(&rotated(1)).starts_with("line 0000\n"));
        assert!(!rotated(2).exists());
        for i in 20..45 {
            log.write_line(format!("line {i:04}\n").as_bytes()).unwrap();
        }
        log.flush().unwrap();
        // 45 lines: current holds 40..45, .1 30..40, .2 20..30; 0..20 are gone.
        assert!(read(&path).starts_with("line 0040\n"));
        assert!(read(&rotated(1)).starts_with("line 0030\n"));
        assert!(read(&rotated(2)).starts_with("line 0020\n"));
        assert!(!rotated(3).exists());
        let tail = read_tail(&path, 2, 12).unwrap();
        assert_eq!(tail.len(), 12);
        assert_eq!(tail[0], "line 0033");
        assert_eq!(tail[11], "line 0044");
        let all = read_tail(&path, 2, 1000).unwrap();
        assert_eq!(all.len(), 25);
        assert_eq!(all[0], "line 0020");
    }

    #[test]
    fn reading_a_missing_log_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read_tail(&dir.path().join("requests.log"), 4, 10)
                .unwrap()
                .is_empty()
        );
    }
}
