//! A worker's captured output: stdout/stderr split into lines, kept in a bounded in-memory tail
//! (by line count and bytes) and broadcast to followers (`logs --follow`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::broadcast;

/// Longest line kept; the rest of a longer line is dropped and the line marked truncated.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

const TRUNCATED_MARK: &str = " …[truncated]";
const FOLLOW_CAPACITY: usize = 1024;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The worker's stdout (user `print()`).
    Stdout,
    /// The worker's stderr (tracebacks, `berth-worker:` diagnostics).
    Stderr,
}

impl Stream {
    /// "stdout" or "stderr".
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of output, without its line terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the supervisor read it.
    pub at: SystemTime,
    /// Which pipe.
    pub stream: Stream,
    /// The text (invalid UTF-8 replaced).
    pub text: String,
}

/// Bounded tail of a worker's output plus a broadcast of new lines. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogTail {
    inner: Arc<Mutex<Ring>>,
    follow: broadcast::Sender<LogLine>,
}

#[derive(Debug)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
}

impl LogTail {
    /// A tail keeping at most `max_lines` lines and about `max_bytes` bytes of text (at least one line).
    pub fn new(max_lines: usize, max_bytes: usize) -> LogTail {
        let (follow, _) = broadcast::channel(FOLLOW_CAPACITY);
        LogTail {
            inner: Arc::new(Mutex::new(Ring {
                lines: VecDeque::new(),
                bytes: 0,
                max_lines: max_lines.max(1),
                max_bytes,
            })),
            follow,
        }
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding this lock cannot leave the ring inconsistent; keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Append a line (the supervisor's pumps call this; callers may add their own notes).
    pub fn push(&self, stream: Stream, text: String) {
        let line = LogLine {
            at: SystemTime::now(),
            stream,
            text,
        };
        let mut ring = self.ring();
        ring.bytes += line.text.len();
        ring.lines.push_back(line.clone());
        while ring.lines.len() > ring.max_lines
            || (ring.bytes > ring.max_bytes && ring.lines.len() > 1)
        {
            if let Some(old) = ring.lines.pop_front() {
                ring.bytes -= old.text.len();
            }
        }
        // Sent under the lock so that `follow` never misses or repeats a line.
        let _ = self.follow.send(line);
    }

    /// The lines currently kept, oldest first.
    pub fn snapshot(&self) -> Vec<LogLine> {
        self.ring().lines.iter().cloned().collect()
    }

    /// The last `n` lines as text, one per line (for error messages).
    pub fn tail_text(&self, n: usize) -> String {
        let ring = self.ring();
        let skip = ring.lines.len().saturating_sub(n);
        let mut out = String::new();
        for line in ring.lines.iter().skip(skip) {
            out.push_str(&line.text);
            out.push('\n');
        }
        out
    }

    /// New lines from now on. A follower that falls more than 1024 lines behind gets `Lagged`.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.follow.subscribe()
    }

    /// The current tail and a receiver of every later line, with no gap and no repeat.
    pub fn follow(&self) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let ring = self.ring();
        let receiver = self.follow.subscribe();
        (ring.lines.iter().cloned().collect(), receiver)
    }
}

/// Read `reader` to its end, pushing each line into `tail`. Lines longer than [`MAX_LINE_BYTES`]
/// are cut; a final line without a terminator is kept.
pub async fn pump<R: AsyncRead + Unpin>(reader: R, stream: Stream, tail: LogTail) {
    let mut reader = BufReader::with_capacity(16 * 1024, reader);
    let mut line: Vec<u8> = Vec::new();
    let mut truncated = false;
    loop {
        let available = match reader.fill_buf().await {
            Ok(available) => available,
            Err(err) => {
                tail.push(
                    Stream::Stderr,
                    format!("berth: reading the worker's {stream} failed: {err}"),
                );
                break;
            }
        };
        if available.is_empty() {
            if !line.is_empty() || truncated {
                emit(&tail, stream, &mut line, &mut truncated);
            }
            break;
        }
        let (chunk, complete) = match available.iter().position(|b| *b == b'\n') {
            Some(end) => (&available[..=end], true),
            None => (available, false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(line.len());
        if chunk.len() > room {
            truncated = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        reader.consume(used);
        if complete {
            emit(&tail, stream, &mut line, &mut truncated);
        }
    }
}

fn emit(tail: &LogTail, stream: Stream, line: &mut Vec<u8>, truncated: &mut bool) {
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    let mut text = String::from_utf8_lossy(line).into_owned();
    if *truncated {
        text.push_str(TRUNCATED_MARK);
    }
    tracing::trace!(target: "berth_worker::output", %stream, "{text}");
    tail.push(stream, text);
    line.clear();
    *truncated = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|line| line.text.as_str()).collect()
    }

    #[test]
    fn keeps_the_last_lines_within_both_bounds() {
        let tail = LogTail::new(3, 1000);
        for i in 0..5 {
            tail.push(Stream::Stdout, format!("line {i}"));
        }
        assert_eq!(texts(&tail.snapshot()), ["line 2", "line 3", "line 4"]);

        let tail = LogTail::new(100, 10);
        tail.push(Stream::Stdout, "aaaaaa".into());
        tail.push(Stream::Stderr, "bbbbbb".into());
        assert_eq!(texts(&tail.snapshot()), ["bbbbbb"]);
        tail.push(Stream::Stderr, "a line longer than the byte bound".into());
        assert_eq!(tail.snapshot().len(), 1, "one line is always kept");
        assert_eq!(tail.tail_text(5), "a line longer than the byte bound\n");
    }

    #[test]
    fn follow_has_no_gap_and_no_repeat() {
        let tail = LogTail::new(10, 1000);
        tail.push(Stream::Stdout, "before".into());
        let (past, mut rx) = tail.follow();
        tail.push(Stream::Stderr, "after".into());
        assert_eq!(texts(&past), ["before"]);
        let next = rx.try_recv().unwrap();
        assert_eq!((next.stream, next.text.as_str()), (Stream::Stderr, "after"));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn pump_splits_lines_and_cuts_long_ones() {
        let mut input = b"one\r\ntwo\n\n".to_vec();
        input.extend(vec![b'x'; MAX_LINE_BYTES + 10]);
        input.extend_from_slice(b"\nbad \xff utf8\nno newline at end");
        let tail = LogTail::new(100, 1 << 20);
        pump(&input[..], Stream::Stdout, tail.clone()).await;
        let lines = tail.snapshot();
        assert_eq!(texts(&lines[..3]), ["one", "two", ""]);
        assert!(lines[3].text.starts_with("xxxx"));
        assert!(lines[3].text.ends_with(TRUNCATED_MARK));
        assert_eq!(lines[3].text.len(), MAX_LINE_BYTES + TRUNCATED_MARK.len());
        assert_eq!(
            texts(&lines[4..]),
            ["bad \u{fffd} utf8", "no newline at end"]
        );
        assert!(lines.iter().all(|line| line.stream == Stream::Stdout));
    }
}
