//! One connection to a worker: [`PendingConn`] for the handshake, then [`WorkerConn`] for requests.
//!
//! A `WorkerConn` is a reader task and a writer task around the two halves of a byte stream: a
//! Unix socket to a local worker ([`PendingConn::new`]) or any other stream, such as TLS over TCP
//! to a `berth replica` ([`PendingConn::over`]). On a Unix socket a
//! request is queued in one short synchronous critical section (assign the sequence number, push a
//! oneshot onto the pending queue, write the frame), so callers never hold a lock across an await
//! and any number of requests can be in flight (pipelining). The caller writes its frame to the
//! socket itself when nothing is queued before it and the socket takes it whole (the common case:
//! no hand-off to another task, no wake-up); whatever the socket does not take at once goes to a
//! backlog that the writer task drains in order. On other streams every frame goes through the
//! backlog (their writers cannot be tried without a task context). The worker answers strictly in
//! order; the reader
//! pops the queue front for each answer and checks it matches.
//!
//! [`WorkerConn::score_queued`] queues a request behind others as a SCORE_BY with a start-by
//! deadline; [`Queued::start`] tells when the worker started it, or decides at the deadline
//! that it never will (`docs/worker-protocol.md` §3.2).
//!
//! Dropping every clone of a `WorkerConn` closes the write half: the worker sees end of stream,
//! finishes what it has read, and exits 0.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot, watch};

use crate::protocol::{
    self, EncodedFrame, GatewayMessage, Hello, InitFailed, InitOk, ProtocolError, ScoreRequest,
    ScoreResult, SwaggerResult, WorkerMessage,
};

const READ_CHUNK: usize = 64 * 1024;
/// Most buffers handed to one `writev` when draining the backlog.
const MAX_WRITE_SLICES: usize = 64;

/// Why a request on a connection failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnError {
    /// The connection is closed (worker exited, protocol error, shut down); the reason says which.
    #[error("worker connection closed: {0}")]
    Closed(Arc<str>),
    /// The request frame would exceed the frame limit; nothing was sent, the connection is fine.
    #[error("request frame of {len} bytes exceeds the limit of {max} bytes")]
    RequestTooLarge {
        /// Frame length.
        len: u64,
        /// The limit.
        max: u32,
    },
    /// A request field cannot be encoded (e.g. a header name over 64 KiB); nothing was sent.
    #[error("encoding the request: {0}")]
    Encode(#[source] ProtocolError),
    /// The worker sent bytes that do not follow the protocol.
    #[error("worker protocol error: {0}")]
    Protocol(#[source] ProtocolError),
    /// Reading from the socket failed.
    #[error("reading from the worker socket: {0}")]
    Read(#[source] Arc<std::io::Error>),
    /// The worker's answer is larger than the caller's response limit: it was read past and
    /// dropped without being held, and the connection stays usable.
    #[error("the worker's answer of {len} bytes exceeds the response limit of {max} bytes")]
    ResponseTooLarge {
        /// Frame length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The worker reached a request queued with a start-by deadline after that deadline and
    /// answered SCORE_EXPIRED: it did not run it.
    #[error("the worker reached the request after its start-by deadline and did not run it")]
    Expired,
    /// The connection closed while a request queued behind another had not started (the
    /// worker never answered the request before it): it was not run.
    #[error("worker connection closed before the request started: {0}")]
    ClosedBeforeStart(Arc<str>),
    /// The worker sent a valid frame that is wrong at this point.
    #[error("worker sent {got} while {expected} was expected")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
}

/// Reads whole frames from the read half of the socket.
struct FrameReader {
    half: ReadHalf,
    buf: BytesMut,
    max_frame: u32,
    /// Raised before every read from a Unix socket and lowered only when the socket turns out
    /// empty, so bytes taken off the socket count as "being read" until the frames they complete
    /// are dispatched (see [`Queued::start`]).
    busy: Arc<AtomicBool>,
}

/// What the reader took off the socket.
#[derive(Debug)]
enum Read {
    /// A whole frame, decoded.
    Message(WorkerMessage),
    /// The head of a SCORE_RESULT longer than the streaming threshold (its body empty);
    /// `body_len` bytes of body follow on the socket.
    StreamStart {
        /// Status, headers and timing; `body` is empty.
        head: ScoreResult,
        /// Body bytes still to come.
        body_len: u64,
    },
    /// A SCORE_RESULT over the response limit for `seq`, read past without being kept.
    Oversized {
        /// Its sequence number.
        seq: u64,
        /// Its frame length.
        len: u64,
    },
}

/// Bytes of a SCORE_RESULT frame needed to learn its sequence number.
const SCORE_RESULT_PREFIX: usize = protocol::FRAME_HEADER_LEN + 8;
/// Longest a streamed answer waits for its reader before the rest is dropped.
const STREAM_STALL: Duration = Duration::from_secs(30);

/// Length of a SCORE_RESULT payload's head (seq, status, exec_us, flags,
/// headers) when all of it is in `payload`.
fn score_head_len(payload: &[u8]) -> Option<usize> {
    let u16_at = |i: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *payload.get(i)?,
            *payload.get(i + 1)?,
        ])))
    };
    let u32_at = |i: usize| -> Option<usize> {
        let b = payload.get(i..i + 4)?;
        usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok()
    };
    let mut at = 8 + 2 + 4 + 1;
    let count = u16_at(at)?;
    at += 2;
    for _ in 0..count {
        at += 2 + u16_at(at)?;
        at += 4 + u32_at(at)?;
    }
    (at <= payload.len()).then_some(at)
}

/// Where frames are read from: a Unix socket (static dispatch on the hot path) or any stream.
enum ReadHalf {
    Unix(tokio::net::unix::OwnedReadHalf),
    Stream(Box<dyn AsyncRead + Send + Unpin>),
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Unix(half) => std::pin::Pin::new(half).poll_read(cx, buf),
            ReadHalf::Stream(half) => std::pin::Pin::new(half).poll_read(cx, buf),
        }
    }
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("buffered", &self.buf.len())
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}

impl FrameReader {
    /// The next message, or `None` at a clean end of stream. Cancel-safe.
    async fn next(&mut self) -> Result<Option<WorkerMessage>, ConnError> {
        match self.next_within(|| (u64::MAX, u64::MAX)).await? {
            Some(Read::Message(message)) => Ok(Some(message)),
            Some(Read::Oversized { len, .. }) => {
                Err(ConnError::ResponseTooLarge { len, max: u64::MAX })
            }
            Some(Read::StreamStart { .. }) => Err(ConnError::Closed(
                "a streamed answer where none was asked for".into(),
            )),
            None => Ok(None),
        }
    }

    /// The next frame; a SCORE_RESULT longer than `limit()` (asked once its header is in) is
    /// discarded as it streams in instead of being buffered. Not cancel-safe while discarding.
    async fn next_within(
        &mut self,
        limits: impl Fn() -> (u64, u64),
    ) -> Result<Option<Read>, ConnError> {
        loop {
            if self.buf.len() >= SCORE_RESULT_PREFIX
                && self.buf[4] == protocol::frame_type::SCORE_RESULT
            {
                let len = u64::from(u32::from_be_bytes([
                    self.buf[0],
                    self.buf[1],
                    self.buf[2],
                    self.buf[3],
                ]));
                let (limit, stream_above) = limits();
                if len <= u64::from(self.max_frame)
                    && len <= limit
                    && len > stream_above
                    && let Some(head_len) = score_head_len(&self.buf[protocol::FRAME_HEADER_LEN..])
                {
                    let mut head = self.buf.split_to(protocol::FRAME_HEADER_LEN + head_len);
                    head.advance(protocol::FRAME_HEADER_LEN);
                    let WorkerMessage::ScoreResult(head) =
                        protocol::decode_worker(protocol::frame_type::SCORE_RESULT, head.freeze())
                            .map_err(ConnError::Protocol)?
                    else {
                        return Err(ConnError::Closed(
                            "a SCORE_RESULT decoded as another frame".into(),
                        ));
                    };
                    let body_len = len - 1 - head_len as u64;
                    return Ok(Some(Read::StreamStart { head, body_len }));
                }
                if len <= u64::from(self.max_frame) && len > limit {
                    let mut seq = [0u8; 8];
                    seq.copy_from_slice(&self.buf[protocol::FRAME_HEADER_LEN..SCORE_RESULT_PREFIX]);
                    self.skip(4 + len).await?;
                    return Ok(Some(Read::Oversized {
                        seq: u64::from_be_bytes(seq),
                        len,
                    }));
                }
            }
            if let Some((kind, payload)) =
                protocol::split_frame(&mut self.buf, self.max_frame).map_err(ConnError::Protocol)?
            {
                return protocol::decode_worker(kind, payload)
                    .map(|m| Some(Read::Message(m)))
                    .map_err(ConnError::Protocol);
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            let read = self
                .read_some(usize::MAX)
                .await
                .map_err(|err| ConnError::Read(Arc::new(err)))?;
            if read == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(ConnError::Closed(
                    "the worker closed the connection inside a frame".into(),
                ));
            }
        }
    }

    /// Appends at most `want` bytes from the socket to the buffer, waiting until some arrive
    /// (0 at end of stream). On a Unix socket `busy` is up from before each read until a read
    /// finds the socket empty.
    async fn read_some(&mut self, want: usize) -> std::io::Result<usize> {
        match &mut self.half {
            ReadHalf::Unix(half) => loop {
                self.busy.store(true, Ordering::SeqCst);
                match half.try_read_buf(&mut (&mut self.buf).limit(want)) {
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                        self.busy.store(false, Ordering::SeqCst);
                        half.readable().await?;
                    }
                    read => return read,
                }
            },
            ReadHalf::Stream(half) => {
                let mut limited = half.take(want as u64);
                limited.read_buf(&mut self.buf).await
            }
        }
    }

    /// Sends the next `total` bytes of the stream to `tx` chunk by chunk; once the
    /// receiver is gone (or stalls longer than [`STREAM_STALL`]) the rest is dropped.
    async fn forward(
        &mut self,
        total: u64,
        tx: mpsc::Sender<Result<bytes::Bytes, ConnError>>,
    ) -> Result<(), ConnError> {
        let mut left = total;
        let mut tx = Some(tx);
        loop {
            let here = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            let chunk = self.buf.split_to(here).freeze();
            left -= here as u64;
            if !chunk.is_empty()
                && let Some(sender) = &tx
                && sender.send_timeout(Ok(chunk), STREAM_STALL).await.is_err()
            {
                tx = None;
            }
            if left == 0 {
                return Ok(());
            }
            if self.buf.capacity() < READ_CHUNK {
                self.buf.reserve(READ_CHUNK);
            }
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(READ_CHUNK);
            match self.read_some(want).await {
                Ok(0) | Err(_) => {
                    let reason: Arc<str> = "the worker closed the connection inside a frame".into();
                    if let Some(sender) = &tx {
                        let _ = sender.try_send(Err(ConnError::Closed(reason.clone())));
                    }
                    return Err(ConnError::Closed(reason));
                }
                Ok(_) => {}
            }
        }
    }

    /// Drops the next `total` bytes of the stream, holding at most one read chunk.
    async fn skip(&mut self, total: u64) -> Result<(), ConnError> {
        let mut left = total;
        loop {
            let here = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            let _ = self.buf.split_to(here);
            left -= here as u64;
            if left == 0 {
                return Ok(());
            }
            self.buf.clear();
            if self.buf.capacity() < READ_CHUNK {
                self.buf.reserve(READ_CHUNK);
            }
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(READ_CHUNK);
            let read = self
                .read_some(want)
                .await
                .map_err(|err| ConnError::Read(Arc::new(err)))?;
            if read == 0 {
                return Err(ConnError::Closed(
                    "the worker closed the connection inside a frame".into(),
                ));
            }
        }
    }
}

/// A freshly accepted connection, before INIT_OK: read HELLO and the init result, then
/// [`PendingConn::into_conn`].
#[derive(Debug)]
pub struct PendingConn {
    reader: FrameReader,
    writer: WriteHalf,
}

impl PendingConn {
    /// Wrap an accepted Unix stream; frames larger than `max_frame` are protocol errors.
    pub fn new(stream: UnixStream, max_frame: u32) -> PendingConn {
        let (read, writer) = stream.into_split();
        PendingConn {
            reader: FrameReader {
                half: ReadHalf::Unix(read),
                buf: BytesMut::with_capacity(READ_CHUNK),
                max_frame,
                busy: Arc::default(),
            },
            writer: WriteHalf::Unix(writer),
        }
    }

    /// Wrap any other byte stream (e.g. TLS over TCP to a `berth replica`); frames larger than
    /// `max_frame` are protocol errors. Frames are written by the writer task, vectored.
    pub fn over<S>(stream: S, max_frame: u32) -> PendingConn
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        PendingConn {
            reader: FrameReader {
                half: ReadHalf::Stream(Box::new(read)),
                buf: BytesMut::with_capacity(READ_CHUNK),
                max_frame,
                busy: Arc::default(),
            },
            writer: WriteHalf::Stream(tokio::sync::Mutex::new(Box::new(write))),
        }
    }

    /// Read the HELLO frame. Cancel-safe.
    pub async fn read_hello(&mut self) -> Result<Hello, ConnError> {
        match self.reader.next().await? {
            Some(WorkerMessage::Hello(hello)) => Ok(hello),
            Some(other) => Err(ConnError::Unexpected {
                expected: "HELLO",
                got: other.name(),
            }),
            None => Err(ConnError::Closed(
                "the worker closed the connection before HELLO".into(),
            )),
        }
    }

    /// Read INIT_OK (`Ok(Ok)`) or INIT_FAILED (`Ok(Err)`). Cancel-safe.
    pub async fn read_init(&mut self) -> Result<Result<InitOk, InitFailed>, ConnError> {
        match self.reader.next().await? {
            Some(WorkerMessage::InitOk(ok)) => Ok(Ok(ok)),
            Some(WorkerMessage::InitFailed(failed)) => Ok(Err(failed)),
            Some(other) => Err(ConnError::Unexpected {
                expected: "INIT_OK or INIT_FAILED",
                got: other.name(),
            }),
            None => Err(ConnError::Closed(
                "the worker closed the connection during init".into(),
            )),
        }
    }

    /// Start the reader and writer tasks (needs a tokio runtime).
    pub fn into_conn(self) -> WorkerConn {
        WorkerConn::start(self.reader, self.writer)
    }
}

/// What the queue front expects.
#[derive(Debug)]
enum Expect {
    Score(u64),
    Pong(u64),
    Swagger,
}

impl Expect {
    fn name(&self) -> &'static str {
        match self {
            Expect::Score(_) => "SCORE_RESULT",
            Expect::Pong(_) => "PONG",
            Expect::Swagger => "SWAGGER_RESULT",
        }
    }
}

#[derive(Debug)]
struct Pending {
    expect: Expect,
    /// Largest answer frame accepted for this request.
    max_response: u64,
    /// Answer frames longer than this are streamed ([`ScoreAnswer::Streamed`]).
    stream_above: u64,
    /// The deadline of a SCORE_BY ([`protocol::monotonic_ns`]).
    start_by: Option<u64>,
    /// When a SCORE_BY became the first unanswered frame: the worker's serial loop started
    /// it then (or expired it).
    started: Option<Instant>,
    /// The caller gave up on it at its start-by deadline ([`Start::Expired`]).
    abandoned: bool,
    reply: oneshot::Sender<Result<Answered, ConnError>>,
}

/// A reply and, for a SCORE_BY, when it started.
#[derive(Debug)]
struct Answered {
    reply: Reply,
    started: Option<Instant>,
}

/// What a request's caller receives.
#[derive(Debug)]
enum Reply {
    Message(WorkerMessage),
    Streamed(StreamedResult),
}

/// A SCORE_RESULT whose body arrives in parts.
#[derive(Debug)]
pub struct StreamedResult {
    /// Status, timing, flags and headers; `body` is empty.
    pub head: ScoreResult,
    /// Length of the body to come.
    pub body_len: u64,
    /// The body's parts; an `Err` ends it early (the worker went away).
    pub body: mpsc::Receiver<Result<bytes::Bytes, ConnError>>,
}

/// The answer to a SCORE: whole, or (when long) streamed.
#[derive(Debug)]
pub enum ScoreAnswer {
    /// Held whole.
    Whole(ScoreResult),
    /// Arriving in parts.
    Streamed(StreamedResult),
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    pending: VecDeque<Pending>,
    /// Entries of `pending` whose callers gave up at their start-by deadline.
    abandoned: usize,
    /// True while a streamed answer's body is still arriving (it counts as in flight, and the
    /// frame after it has not started).
    streaming: bool,
    closed: Option<Arc<str>>,
}

impl State {
    /// Takes the answered front off the queue; a SCORE_BY that becomes the front now has
    /// started (unless an answer is still streaming in).
    fn pop_front(&mut self) -> Option<Pending> {
        let front = self.pending.pop_front()?;
        if front.abandoned {
            self.abandoned -= 1;
        }
        self.mark_front_started();
        Some(front)
    }

    fn mark_front_started(&mut self) {
        if self.streaming {
            return;
        }
        if let Some(next) = self.pending.front_mut()
            && next.start_by.is_some()
            && next.started.is_none()
        {
            next.started = Some(Instant::now());
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    max_frame: u32,
    shutdown_sent: AtomicBool,
    /// The reader's [`FrameReader::busy`].
    reader_busy: Arc<AtomicBool>,
    closed_tx: watch::Sender<bool>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves State consistent; a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Mark closed and fail everything pending (the first reason given wins).
    fn close(&self, reason: &str) {
        let (reason, drained) = {
            let mut state = self.state();
            let reason = state
                .closed
                .get_or_insert_with(|| Arc::from(reason))
                .clone();
            state.abandoned = 0;
            (reason, state.pending.drain(..).collect::<Vec<_>>())
        };
        tracing::debug!(%reason, "worker connection closed");
        for pending in drained {
            let error = if pending.start_by.is_some() && pending.started.is_none() {
                ConnError::ClosedBeforeStart(reason.clone())
            } else {
                ConnError::Closed(reason.clone())
            };
            let _ = pending.reply.send(Err(error));
        }
        self.closed_tx.send_replace(true);
    }
}

/// The write half, shared by callers (who write inline when the backlog is empty) and the
/// writer task (which drains the backlog). Every write happens under the backlog lock, so bytes
/// reach the socket in the order frames were queued. Dropping the last reference (all
/// `WorkerConn` clones and the writer task gone) shuts the write half down.
#[derive(Debug)]
struct WriteSide {
    half: WriteHalf,
    /// Bytes queued but not yet written, in order; the front may be a partly written buffer.
    backlog: Mutex<VecDeque<bytes::Bytes>>,
}

/// Where frames are written.
enum WriteHalf {
    /// A Unix socket: callers try the write inline.
    Unix(OwnedWriteHalf),
    /// Any other stream: only the writer task writes (the lock is never contended).
    Stream(tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>),
}

impl std::fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteHalf::Unix(_) => "WriteHalf::Unix",
            WriteHalf::Stream(_) => "WriteHalf::Stream",
        })
    }
}

/// What became of a frame handed to [`WriteSide::send`].
enum Sent {
    /// All of it is in the socket.
    Written,
    /// Some or all of it waits in the backlog; the writer task must be woken.
    Queued,
}

impl WriteSide {
    fn backlog(&self) -> MutexGuard<'_, VecDeque<bytes::Bytes>> {
        // Every critical section leaves the backlog consistent; a poisoned lock is still usable.
        self.backlog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Write `frame` now if nothing is queued before it and the socket takes it, else queue
    /// what is left. Never blocks.
    fn send(&self, frame: EncodedFrame) -> std::io::Result<Sent> {
        let mut backlog = self.backlog();
        let half = match &self.half {
            WriteHalf::Unix(half) if backlog.is_empty() => half,
            _ => {
                backlog.push_back(frame.head);
                if !frame.body.is_empty() {
                    backlog.push_back(frame.body);
                }
                return Ok(Sent::Queued);
            }
        };
        let written = match half
            .try_write_vectored(&[IoSlice::new(&frame.head), IoSlice::new(&frame.body)])
        {
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(err) => return Err(err),
        };
        let EncodedFrame { mut head, mut body } = frame;
        if written >= head.len() + body.len() {
            return Ok(Sent::Written);
        }
        if written < head.len() {
            head.advance(written);
            backlog.push_back(head);
        } else {
            body.advance(written - head.len());
        }
        if !body.is_empty() {
            backlog.push_back(body);
        }
        Ok(Sent::Queued)
    }

    /// Write the backlog out, waiting for the socket as needed, until it is empty.
    async fn drain(&self) -> std::io::Result<()> {
        let half = match &self.half {
            WriteHalf::Unix(half) => half,
            WriteHalf::Stream(stream) => return self.drain_stream(stream).await,
        };
        loop {
            {
                let mut backlog = self.backlog();
                loop {
                    if backlog.is_empty() {
                        return Ok(());
                    }
                    let slices: Vec<IoSlice<'_>> = backlog
                        .iter()
                        .take(MAX_WRITE_SLICES)
                        .map(|b| IoSlice::new(b))
                        .collect();
                    let written = match half.try_write_vectored(&slices) {
                        Ok(n) => n,
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(err) => return Err(err),
                    };
                    drop(slices);
                    consume(&mut backlog, written);
                }
            }
            half.writable().await?;
        }
    }

    /// [`WriteSide::drain`] for a stream without inline writes: takes buffers off the
    /// backlog (callers keep queueing meanwhile), writes them vectored, flushes once empty.
    async fn drain_stream(
        &self,
        stream: &tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
    ) -> std::io::Result<()> {
        let mut half = stream.lock().await;
        let mut batch: Vec<bytes::Bytes> = Vec::with_capacity(MAX_WRITE_SLICES);
        loop {
            {
                let mut backlog = self.backlog();
                let take = backlog.len().min(MAX_WRITE_SLICES);
                batch.extend(backlog.drain(..take));
            }
            if batch.is_empty() {
                return half.flush().await;
            }
            let mut first = 0;
            while first < batch.len() {
                let slices: Vec<IoSlice<'_>> =
                    batch[first..].iter().map(|b| IoSlice::new(b)).collect();
                let written = half.write_vectored(&slices).await?;
                drop(slices);
                if written == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                let mut left = written;
                while left > 0 && first < batch.len() {
                    let front = &mut batch[first];
                    if left < front.len() {
                        front.advance(left);
                        left = 0;
                    } else {
                        left -= front.len();
                        first += 1;
                    }
                }
            }
            batch.clear();
        }
    }

    /// Bytes the worker has written that nobody has read yet (`FIONREAD`); `None` when that
    /// cannot be known (not a Unix socket, or the ioctl failed).
    fn unread(&self) -> Option<u64> {
        match &self.half {
            WriteHalf::Unix(half) => rustix::io::ioctl_fionread(half.as_ref()).ok(),
            WriteHalf::Stream(_) => None,
        }
    }

    /// Shuts a stream's write side down once nothing more will be written.
    async fn finish(&self) {
        if let WriteHalf::Stream(stream) = &self.half {
            let _ = stream.lock().await.shutdown().await;
        }
    }
}

/// Drop the first `n` bytes of the backlog.
fn consume(backlog: &mut VecDeque<bytes::Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = backlog.front_mut() else {
            return;
        };
        if n < front.len() {
            front.advance(n);
            return;
        }
        n -= front.len();
        backlog.pop_front();
    }
}

/// An established connection to a worker. Cheap to clone; all clones share one connection.
#[derive(Debug, Clone)]
pub struct WorkerConn {
    shared: Arc<Shared>,
    write: Arc<WriteSide>,
    /// Wakes the writer task when the backlog has bytes; closed when every clone is dropped.
    wake_writer: mpsc::UnboundedSender<()>,
    closed_rx: watch::Receiver<bool>,
}

impl WorkerConn {
    fn start(reader: FrameReader, writer: WriteHalf) -> WorkerConn {
        let (closed_tx, closed_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_seq: 1,
                pending: VecDeque::new(),
                abandoned: 0,
                streaming: false,
                closed: None,
            }),
            max_frame: reader.max_frame,
            shutdown_sent: AtomicBool::new(false),
            reader_busy: reader.busy.clone(),
            closed_tx,
        });
        let write = Arc::new(WriteSide {
            half: writer,
            backlog: Mutex::new(VecDeque::new()),
        });
        let (wake_writer, wake_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(write.clone(), wake_rx, shared.clone()));
        tokio::spawn(read_loop(reader, shared.clone()));
        WorkerConn {
            shared,
            write,
            wake_writer,
            closed_rx,
        }
    }

    /// Send one scoring request and wait for its result.
    ///
    /// Cancelling the future does not cancel the request: the worker still runs it and its
    /// result is discarded. After a caller-side timeout the worker is still busy; recycle it.
    pub async fn score(&self, request: ScoreRequest) -> Result<ScoreResult, ConnError> {
        self.score_within(request, u64::MAX).await
    }

    /// Like [`WorkerConn::score`], but an answer frame longer than `max_response` bytes fails
    /// with [`ConnError::ResponseTooLarge`]: it is read past without being held in memory and
    /// the connection stays usable.
    pub async fn score_within(
        &self,
        request: ScoreRequest,
        max_response: u64,
    ) -> Result<ScoreResult, ConnError> {
        match self.score_answer(request, max_response, u64::MAX).await? {
            ScoreAnswer::Whole(result) => Ok(result),
            ScoreAnswer::Streamed(_) => Err(ConnError::Closed(
                "a streamed answer where none was asked for".into(),
            )),
        }
    }

    /// Like [`WorkerConn::score_within`], but an answer frame longer than
    /// `stream_above` bytes comes as [`ScoreAnswer::Streamed`]: its body is passed
    /// on in parts as it arrives instead of being held whole. Later requests on the
    /// connection wait behind a streamed body (answers come in order).
    pub async fn score_answer(
        &self,
        request: ScoreRequest,
        max_response: u64,
        stream_above: u64,
    ) -> Result<ScoreAnswer, ConnError> {
        let (reply, _) = self.enqueue_within(
            |seq, _| protocol::encode_gateway(&GatewayMessage::Score { seq, request }),
            Expect::Score,
            Limits {
                max_response,
                stream_above,
                start_by: None,
            },
        )?;
        score_answer(self.wait_reply(reply).await?.reply)
    }

    /// True when [`WorkerConn::score_queued`] can queue a request behind another with a
    /// start-by deadline: a Unix socket, whose two ends share `CLOCK_MONOTONIC`.
    pub fn can_start_by(&self) -> bool {
        matches!(self.write.half, WriteHalf::Unix(_))
    }

    /// Like [`WorkerConn::score_answer`], for a worker that runs one request at a time: when
    /// the worker is idle the request is a SCORE and starts now; when frames are queued before
    /// it, it is a SCORE_BY that the worker runs only if it reaches it before `start_by`
    /// ([`protocol::monotonic_ns`]). Follow it with [`Queued::start`] and [`Queued::answer`].
    /// On a connection that [cannot](WorkerConn::can_start_by) it is always a SCORE.
    pub fn score_queued(
        &self,
        request: ScoreRequest,
        max_response: u64,
        stream_above: u64,
        start_by: u64,
    ) -> Result<Queued, ConnError> {
        let start_by = self.can_start_by().then_some(start_by);
        let (reply, sent) = self.enqueue_within(
            |seq, start_by| {
                protocol::encode_gateway(&match start_by {
                    Some(start_by) => GatewayMessage::ScoreBy {
                        seq,
                        start_by,
                        request,
                    },
                    None => GatewayMessage::Score { seq, request },
                })
            },
            Expect::Score,
            Limits {
                max_response,
                stream_above,
                start_by,
            },
        )?;
        Ok(Queued {
            conn: self.clone(),
            seq: sent.seq,
            start_by: sent.start_by,
            started: sent.started,
            reply,
        })
    }

    /// Round trip a PING; returns the time it took (it waits behind requests already queued).
    pub async fn ping(&self) -> Result<Duration, ConnError> {
        let started = Instant::now();
        let reply = self.enqueue(
            |nonce, _| protocol::encode_gateway(&GatewayMessage::Ping(nonce)),
            Expect::Pong,
        )?;
        self.wait(reply).await?;
        Ok(started.elapsed())
    }

    /// Ask for the swagger document; `version` "" means the default (2).
    pub async fn swagger(&self, version: &str) -> Result<SwaggerResult, ConnError> {
        let version = version.to_string();
        let reply = self.enqueue(
            |_, _| protocol::encode_gateway(&GatewayMessage::Swagger(version)),
            |_| Expect::Swagger,
        )?;
        match self.wait(reply).await? {
            WorkerMessage::SwaggerResult(result) => Ok(result),
            other => Err(unexpected("SWAGGER_RESULT", &other)),
        }
    }

    /// Queue SHUTDOWN behind the requests already sent (they are still answered) and refuse new
    /// requests. The worker exits 0 once it reaches it; wait for that on the process.
    pub fn shutdown(&self) -> Result<(), ConnError> {
        // Held while sending so that the frame is ordered with concurrent enqueues.
        let state = self.shared.state();
        if let Some(reason) = &state.closed {
            return Err(ConnError::Closed(reason.clone()));
        }
        if self.shared.shutdown_sent.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let frame =
            protocol::encode_gateway(&GatewayMessage::Shutdown).map_err(ConnError::Encode)?;
        let sent = self.write_frame(frame);
        drop(state);
        sent.map_err(|reason| {
            self.shared.close(&reason);
            ConnError::Closed(reason.into())
        })
    }

    /// Requests sent and not yet answered (not counting those whose callers gave up at their
    /// start-by deadline).
    pub fn in_flight(&self) -> usize {
        let state = self.shared.state();
        state.pending.len().saturating_sub(state.abandoned) + usize::from(state.streaming)
    }

    /// Why the connection closed, once it has.
    pub fn closed_reason(&self) -> Option<Arc<str>> {
        self.shared.state().closed.clone()
    }

    /// True once the connection is closed (no request can succeed any more).
    pub fn is_closed(&self) -> bool {
        *self.closed_rx.borrow()
    }

    /// True once [`WorkerConn::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown_sent.load(Ordering::SeqCst)
    }

    /// Resolves when the connection closes.
    pub async fn closed(&self) {
        let mut rx = self.closed_rx.clone();
        let _ = rx.wait_for(|closed| *closed).await;
    }

    /// Close the connection now: pending and later requests fail with `reason`.
    pub fn abort(&self, reason: &str) {
        self.shared.close(reason);
    }

    /// The largest frame this connection sends or accepts.
    pub fn max_frame(&self) -> u32 {
        self.shared.max_frame
    }

    fn enqueue(
        &self,
        encode: impl FnOnce(u64, Option<u64>) -> Result<EncodedFrame, ProtocolError>,
        expect: impl FnOnce(u64) -> Expect,
    ) -> Result<ReplyRx, ConnError> {
        let limits = Limits {
            max_response: u64::MAX,
            stream_above: u64::MAX,
            start_by: None,
        };
        Ok(self.enqueue_within(encode, expect, limits)?.0)
    }

    /// Queues one frame: `encode` gets the sequence number and the start-by deadline to send
    /// (`limits.start_by` when frames are queued before this one, else `None`).
    fn enqueue_within(
        &self,
        encode: impl FnOnce(u64, Option<u64>) -> Result<EncodedFrame, ProtocolError>,
        expect: impl FnOnce(u64) -> Expect,
        limits: Limits,
    ) -> Result<(ReplyRx, Enqueued), ConnError> {
        let mut state = self.shared.state();
        if let Some(reason) = &state.closed {
            return Err(ConnError::Closed(reason.clone()));
        }
        if self.shared.shutdown_sent.load(Ordering::SeqCst) {
            return Err(ConnError::Closed("the worker is shutting down".into()));
        }
        let seq = state.next_seq;
        let idle = state.pending.is_empty() && !state.streaming;
        let start_by = limits.start_by.filter(|_| !idle);
        let frame = encode(seq, start_by).map_err(ConnError::Encode)?;
        if frame.frame_len() > u64::from(self.shared.max_frame) {
            return Err(ConnError::RequestTooLarge {
                len: frame.frame_len(),
                max: self.shared.max_frame,
            });
        }
        state.next_seq += 1;
        let (reply, receiver) = oneshot::channel();
        let started = (limits.start_by.is_some() && idle).then(Instant::now);
        // Pushing and sending under one lock keeps the queue in the order frames are written.
        state.pending.push_back(Pending {
            expect: expect(seq),
            max_response: limits.max_response,
            stream_above: limits.stream_above,
            start_by,
            started: None,
            abandoned: false,
            reply,
        });
        if let Err(reason) = self.write_frame(frame) {
            // The caller's oneshot is failed by `close` with the reason.
            drop(state);
            self.shared.close(&reason);
        }
        let enqueued = Enqueued {
            seq,
            start_by: start_by.unwrap_or(0),
            started,
        };
        Ok((receiver, enqueued))
    }

    /// Write or queue one frame; called under the state lock so frames go out in queue order.
    /// `Err` is the reason the connection must close.
    fn write_frame(&self, frame: EncodedFrame) -> Result<(), String> {
        match self.write.send(frame) {
            Ok(Sent::Written) => Ok(()),
            Ok(Sent::Queued) => self
                .wake_writer
                .send(())
                .map_err(|_| "the writer task has stopped".to_string()),
            Err(err) => Err(format!("writing to the worker failed: {err}")),
        }
    }

    async fn wait(&self, reply: ReplyRx) -> Result<WorkerMessage, ConnError> {
        match self.wait_reply(reply).await?.reply {
            Reply::Message(message) => Ok(message),
            Reply::Streamed(_) => Err(ConnError::Closed(
                "a streamed answer where none was asked for".into(),
            )),
        }
    }

    async fn wait_reply(&self, reply: ReplyRx) -> Result<Answered, ConnError> {
        match reply.await {
            Ok(result) => result,
            Err(_) => Err(ConnError::Closed(
                self.closed_reason()
                    .unwrap_or_else(|| "the reader task has stopped".into()),
            )),
        }
    }
}

type ReplyRx = oneshot::Receiver<Result<Answered, ConnError>>;

/// Per-request limits of [`WorkerConn::enqueue_within`].
struct Limits {
    max_response: u64,
    stream_above: u64,
    /// A start-by deadline, for a SCORE that may be queued behind other frames.
    start_by: Option<u64>,
}

/// What [`WorkerConn::enqueue_within`] sent.
struct Enqueued {
    seq: u64,
    /// The SCORE_BY deadline sent, 0 for a plain SCORE.
    start_by: u64,
    /// Set when the request asked for a start-by deadline and went out as a plain SCORE to an
    /// idle worker: it starts now.
    started: Option<Instant>,
}

fn score_answer(reply: Reply) -> Result<ScoreAnswer, ConnError> {
    match reply {
        Reply::Message(WorkerMessage::ScoreResult(result)) => Ok(ScoreAnswer::Whole(result)),
        Reply::Message(WorkerMessage::ScoreExpired(_)) => Err(ConnError::Expired),
        Reply::Message(other) => Err(unexpected("SCORE_RESULT", &other)),
        Reply::Streamed(streamed) => Ok(ScoreAnswer::Streamed(streamed)),
    }
}

/// Where a request sent with [`WorkerConn::score_queued`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The worker started it at this instant (its scoring time runs from here).
    Started(Instant),
    /// Frames before it are still unanswered and its start-by deadline has not passed.
    Waiting,
    /// Its deadline has passed and the worker cannot have started it: it is given up (the
    /// worker will skip it). Answer the caller now.
    Expired,
    /// Its deadline has passed but the answer before it may be arriving (or it has been
    /// answered): ask again shortly, the worker's word is on its way.
    Unsure,
}

/// A request sent with [`WorkerConn::score_queued`].
#[derive(Debug)]
pub struct Queued {
    conn: WorkerConn,
    seq: u64,
    start_by: u64,
    started: Option<Instant>,
    reply: ReplyRx,
}

impl Queued {
    /// Whether the worker has started it. Once its start-by deadline has passed (on
    /// [`protocol::monotonic_ns`]) and it has not started, this decides for good: the worker
    /// starts a SCORE_BY only before its deadline and only after writing the answer to every
    /// frame before it, so when none of those answers is in the socket (`FIONREAD`) or being
    /// read ([`FrameReader::busy`]) it cannot have started, and never will.
    pub fn start(&self) -> Start {
        if let Some(at) = self.started {
            return Start::Started(at);
        }
        let mut state = self.conn.shared.state();
        let Some(position) = state
            .pending
            .iter()
            .position(|p| matches!(p.expect, Expect::Score(s) if s == self.seq))
        else {
            return Start::Unsure;
        };
        if let Some(at) = state.pending[position].started {
            return Start::Started(at);
        }
        if protocol::monotonic_ns() < self.start_by {
            return Start::Waiting;
        }
        // In this order: an answer read before the ioctl raised `busy` before that read.
        if self.conn.write.unread() != Some(0)
            || self.conn.shared.reader_busy.load(Ordering::SeqCst)
        {
            return Start::Unsure;
        }
        state.pending[position].abandoned = true;
        state.abandoned += 1;
        Start::Expired
    }

    /// Its answer, and when it started (`None` when unknown: it was answered before
    /// [`Queued::start`] saw it start, and then it started at the latest when sent).
    /// [`ConnError::Expired`] when the worker reached it after its deadline. Cancel-safe.
    pub async fn answer(&mut self) -> Result<(ScoreAnswer, Option<Instant>), ConnError> {
        let answered = match (&mut self.reply).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ConnError::Closed(
                    self.conn
                        .closed_reason()
                        .unwrap_or_else(|| "the reader task has stopped".into()),
                ));
            }
        };
        let started = self.started.or(answered.started);
        Ok((score_answer(answered.reply)?, started))
    }
}

fn unexpected(expected: &'static str, got: &WorkerMessage) -> ConnError {
    ConnError::Unexpected {
        expected,
        got: got.name(),
    }
}

/// Drains the backlog whenever woken; once every `WorkerConn` is dropped, writes what is left
/// and lets the write half go (which shuts it down: the worker sees end of stream).
async fn write_loop(
    write: Arc<WriteSide>,
    mut wake: mpsc::UnboundedReceiver<()>,
    shared: Arc<Shared>,
) {
    let result: std::io::Result<()> = async {
        while wake.recv().await.is_some() {
            // Coalesce wake-ups already queued: one drain writes everything.
            while wake.try_recv().is_ok() {}
            write.drain().await?;
        }
        write.drain().await
    }
    .await;
    if let Err(err) = result {
        shared.close(&format!("writing to the worker failed: {err}"));
    }
    write.finish().await;
}

async fn read_loop(mut reader: FrameReader, shared: Arc<Shared>) {
    let reason = loop {
        let limits = || {
            shared
                .state()
                .pending
                .front()
                .map_or((u64::MAX, u64::MAX), |p| (p.max_response, p.stream_above))
        };
        let message = match reader.next_within(limits).await {
            Ok(Some(Read::Message(message))) => message,
            Ok(Some(Read::StreamStart { head, body_len })) => {
                let front = {
                    let mut state = shared.state();
                    // The frame after this one starts once the body is in.
                    state.streaming = true;
                    state.pop_front()
                };
                let Some(pending) =
                    front.filter(|p| matches!(p.expect, Expect::Score(s) if s == head.seq))
                else {
                    break format!(
                        "worker answered out of order: SCORE_RESULT seq {}",
                        head.seq
                    );
                };
                let (tx, rx) = mpsc::channel(4);
                let _ = pending.reply.send(Ok(Answered {
                    reply: Reply::Streamed(StreamedResult {
                        head,
                        body_len,
                        body: rx,
                    }),
                    started: pending.started,
                }));
                let forwarded = reader.forward(body_len, tx).await;
                {
                    let mut state = shared.state();
                    state.streaming = false;
                    state.mark_front_started();
                }
                if let Err(err) = forwarded {
                    break err.to_string();
                }
                continue;
            }
            Ok(Some(Read::Oversized { seq, len })) => {
                let front = shared.state().pop_front();
                match front {
                    Some(pending) if matches!(pending.expect, Expect::Score(s) if s == seq) => {
                        let _ = pending.reply.send(Err(ConnError::ResponseTooLarge {
                            len,
                            max: pending.max_response,
                        }));
                        continue;
                    }
                    Some(pending) => {
                        let reason = format!(
                            "worker answered out of order: expected {} ({:?}), got SCORE_RESULT seq {seq}",
                            pending.expect.name(),
                            pending.expect,
                        );
                        let _ = pending
                            .reply
                            .send(Err(ConnError::Closed(reason.as_str().into())));
                        break reason;
                    }
                    None => break "worker sent an unsolicited SCORE_RESULT frame".to_string(),
                }
            }
            Ok(None) => break "the worker closed the connection".to_string(),
            Err(err) => break err.to_string(),
        };
        let front = shared.state().pop_front();
        let Some(pending) = front else {
            break format!("worker sent an unsolicited {} frame", message.name());
        };
        let matches = match (&pending.expect, &message) {
            (Expect::Score(seq), WorkerMessage::ScoreResult(result)) => result.seq == *seq,
            (Expect::Score(seq), WorkerMessage::ScoreExpired(got)) => {
                got == seq && pending.start_by.is_some()
            }
            (Expect::Pong(nonce), WorkerMessage::Pong(got)) => got == nonce,
            (Expect::Swagger, WorkerMessage::SwaggerResult(_)) => true,
            _ => false,
        };
        if !matches {
            let reason = format!(
                "worker answered out of order: expected {} ({:?}), got {}",
                pending.expect.name(),
                pending.expect,
                describe(&message)
            );
            let _ = pending
                .reply
                .send(Err(ConnError::Closed(reason.as_str().into())));
            break reason;
        }
        if pending.abandoned && matches!(message, WorkerMessage::ScoreResult(_)) {
            tracing::error!(
                "the worker ran a request after its start-by deadline, which the gateway had answered 503"
            );
        }
        let _ = pending.reply.send(Ok(Answered {
            reply: Reply::Message(message),
            started: pending.started,
        }));
    };
    shared.close(&reason);
}

fn describe(message: &WorkerMessage) -> String {
    match message {
        WorkerMessage::ScoreResult(result) => format!("SCORE_RESULT seq {}", result.seq),
        WorkerMessage::ScoreExpired(seq) => format!("SCORE_EXPIRED seq {seq}"),
        WorkerMessage::Pong(nonce) => format!("PONG {nonce}"),
        other => other.name().to_string(),
    }
}

#[cfg(test)]
#[path = "client_queued_tests.rs"]
mod queued_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{DEFAULT_MAX_FRAME, FLAG_RUN_RETURNED, InputMode};
    use bytes::Bytes;
    use tokio::io::AsyncWriteExt;

    /// A worker written in Rust: answers SCOREs by echoing the body, in order.
    struct FakeWorker {
        stream: UnixStream,
        buf: BytesMut,
    }

    impl FakeWorker {
        async fn next(&mut self) -> Option<GatewayMessage> {
            loop {
                if let Some((kind, payload)) =
                    protocol::split_frame(&mut self.buf, DEFAULT_MAX_FRAME).unwrap()
                {
                    return Some(protocol::decode_gateway(kind, payload).unwrap());
                }
                if self.stream.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        }

        async fn send(&mut self, message: WorkerMessage) {
            let wire = protocol::encode_worker(&message).unwrap();
            self.stream.write_all(&wire).await.unwrap();
        }

        async fn echo_all(mut self) {
            while let Some(message) = self.next().await {
                let reply = match message {
                    GatewayMessage::Score { seq, request } => {
                        WorkerMessage::ScoreResult(ScoreResult {
                            seq,
                            status: 200,
                            exec_us: 1,
                            flags: FLAG_RUN_RETURNED,
                            headers: vec![("x-method".into(), Bytes::from(request.method))],
                            body: request.body,
                        })
                    }
                    GatewayMessage::ScoreBy { seq, .. } => WorkerMessage::ScoreExpired(seq),
                    GatewayMessage::Ping(nonce) => WorkerMessage::Pong(nonce),
                    GatewayMessage::Swagger(version) => {
                        WorkerMessage::SwaggerResult(SwaggerResult {
                            status: 200,
                            body: Bytes::from(version),
                        })
                    }
                    GatewayMessage::Shutdown => return,
                };
                self.send(reply).await;
            }
        }
    }

    async fn connected(max_frame: u32) -> (PendingConn, FakeWorker) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let worker = FakeWorker {
            stream: theirs,
            buf: BytesMut::new(),
        };
        (PendingConn::new(ours, max_frame), worker)
    }

    fn post(body: &'static [u8]) -> ScoreRequest {
        ScoreRequest {
            method: "POST".into(),
            body: Bytes::from_static(body),
            ..ScoreRequest::default()
        }
    }

    #[tokio::test]
    async fn handshake_then_requests() {
        let (mut pending, mut worker) = connected(DEFAULT_MAX_FRAME).await;
        let hello = Hello {
            protocol_version: 1,
            pid: 1,
            python_version: "3.11.0".into(),
            shim_version: "x".into(),
            nonce: String::new(),
        };
        worker.send(WorkerMessage::Hello(hello.clone())).await;
        worker
            .send(WorkerMessage::InitOk(InitOk {
                init_ms: 5,
                input_mode: InputMode::Raw,
            }))
            .await;
        assert_eq!(pending.read_hello().await.unwrap(), hello);
        assert_eq!(pending.read_init().await.unwrap().unwrap().init_ms, 5);
        tokio::spawn(worker.echo_all());
        let conn = pending.into_conn();
        let result = conn.score(post(b"hello")).await.unwrap();
        assert_eq!(result.body, Bytes::from_static(b"hello"));
        assert!(conn.ping().await.unwrap() < Duration::from_secs(5));
        assert_eq!(
            conn.swagger("3").await.unwrap().body,
            Bytes::from_static(b"3")
        );
        assert_eq!(conn.in_flight(), 0);
    }

    #[tokio::test]
    async fn an_answer_over_the_response_limit_is_dropped_and_the_connection_kept() {
        let (pending, worker) = connected(DEFAULT_MAX_FRAME).await;
        tokio::spawn(worker.echo_all());
        let conn = pending.into_conn();
        let big: &'static [u8] = Box::leak(vec![b'x'; 300_000].into_boxed_slice());
        // Pipelined: a small answer, the oversized one, and a small one after it.
        let (a, b, c) = tokio::join!(
            conn.score_within(post(b"before"), 1000),
            conn.score_within(post(big), 1000),
            conn.score_within(post(b"after"), 1000),
        );
        assert_eq!(a.unwrap().body, Bytes::from_static(b"before"));
        match b.unwrap_err() {
            ConnError::ResponseTooLarge { len, max } => {
                assert!(len > 300_000, "{len}");
                assert_eq!(max, 1000);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(c.unwrap().body, Bytes::from_static(b"after"));
        assert!(!conn.is_closed());
        assert_eq!(conn.score(post(big)).await.unwrap().body.len(), 300_000);
    }

    #[tokio::test]
    async fn a_long_answer_is_streamed_in_parts_and_the_connection_goes_on() {
        let (pending, worker) = connected(DEFAULT_MAX_FRAME).await;
        tokio::spawn(worker.echo_all());
        let conn = pending.into_conn();
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let big: &'static [u8] = Box::leak(big.into_boxed_slice());
        let answer = conn
            .score_answer(post(big), u64::MAX, 10_000)
            .await
            .unwrap();
        let ScoreAnswer::Streamed(mut streamed) = answer else {
            panic!("a 1 MB answer over a 10 kB threshold is streamed");
        };
        assert_eq!(streamed.head.status, 200);
        assert_eq!(streamed.body_len, 1_000_000);
        assert_eq!(streamed.head.headers[0].0, "x-method");
        let mut body = Vec::new();
        let mut parts = 0;
        while let Some(part) = streamed.body.recv().await {
            body.extend_from_slice(&part.unwrap());
            parts += 1;
        }
        assert_eq!(body, big);
        assert!(parts > 1, "{parts}");
        // Short answers stay whole; a dropped stream does not stall the connection.
        let small = conn
            .score_answer(post(b"hi"), u64::MAX, 10_000)
            .await
            .unwrap();
        assert!(matches!(small, ScoreAnswer::Whole(ref r) if r.body == Bytes::from_static(b"hi")));
        drop(
            conn.score_answer(post(big), u64::MAX, 10_000)
                .await
                .unwrap(),
        );
        assert_eq!(
            conn.score(post(b"after")).await.unwrap().body,
            Bytes::from_static(b"after")
        );
    }

    #[tokio::test]
    async fn init_failed_is_reported() {
        let (mut pending, mut worker) = connected(DEFAULT_MAX_FRAME).await;
        worker
            .send(WorkerMessage::InitFailed(InitFailed {
                stage: protocol::InitStage::Contract,
                message: "no run()".into(),
            }))
            .await;
        let failed = pending.read_init().await.unwrap().unwrap_err();
        assert_eq!(failed.message, "no run()");
    }

    #[tokio::test]
    async fn many_concurrent_callers_get_their_own_results() {
        let (pending, worker) = connected(DEFAULT_MAX_FRAME).await;
        tokio::spawn(worker.echo_all());
        let conn = pending.into_conn();
        let mut tasks = Vec::new();
        for task in 0..32 {
            let conn = conn.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    let body = format!("{task}-{i}");
                    let request = ScoreRequest {
                        method: "POST".into(),
                        body: Bytes::from(body.clone()),
                        ..ScoreRequest::default()
                    };
                    let result = conn.score(request).await.unwrap();
                    assert_eq!(result.body, Bytes::from(body));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(conn.in_flight(), 0);
    }

    #[tokio::test]
    async fn frames_the_socket_cannot_take_at_once_keep_their_order() {
        let (pending, worker) = connected(DEFAULT_MAX_FRAME).await;
        tokio::spawn(worker.echo_all());
        let conn = pending.into_conn();
        // Large bodies fill the socket buffer, so later frames wait in the backlog behind the
        // rest of an earlier one; small ones in between must not overtake it.
        let mut tasks = Vec::new();
        for task in 0..8usize {
            let conn = conn.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..4usize {
                    let size = if (task + i) % 2 == 0 { 600_000 } else { 7 };
                    let body: Bytes = (0..size)
                        .map(|n| ((n + task * 31 + i) % 251) as u8)
                        .collect::<Vec<u8>>()
                        .into();
                    let request = ScoreRequest {
                        method: "POST".into(),
                        body: body.clone(),
                        ..ScoreRequest::default()
                    };
                    assert_eq!(conn.score(request).await.unwrap().body, body);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(conn.in_flight(), 0);
        assert!(!conn.is_closed());
    }

    #[tokio::test]
    async fn a_connection_over_any_stream_pipelines_in_order_and_closes_on_drop() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let worker = FakeWorker {
            stream: theirs,
            buf: BytesMut::new(),
        };
        let echo = tokio::spawn(worker.echo_all());
        // Through a byte stream, not the Unix fast path: every frame goes via the writer task.
        let conn = PendingConn::over(ours, DEFAULT_MAX_FRAME).into_conn();
        let mut tasks = Vec::new();
        for task in 0..8usize {
            let conn = conn.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..6usize {
                    let size = if (task + i) % 2 == 0 { 400_000 } else { 5 };
                    let body: Bytes = (0..size)
                        .map(|n| ((n + task * 7 + i) % 251) as u8)
                        .collect::<Vec<u8>>()
                        .into();
                    let request = ScoreRequest {
                        method: "POST".into(),
                        body: body.clone(),
                        ..ScoreRequest::default()
                    };
                    assert_eq!(conn.score(request).await.unwrap().body, body);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(conn.in_flight(), 0);
        assert!(conn.ping().await.is_ok());
        drop(conn);
        // The writer shuts the stream down once the last clone is gone: the worker sees the end.
        tokio::time::timeout(Duration::from_secs(10), echo)
            .await
            .expect("the fake worker saw the end of the stream")
            .unwrap();
    }

    #[tokio::test]
    async fn worker_exit_fails_pending_and_later_requests() {
        let (pending, mut worker) = connected(DEFAULT_MAX_FRAME).await;
        let conn = pending.into_conn();
        let waiting = tokio::spawn({
            let conn = conn.clone();
            async move { conn.score(post(b"never answered")).await }
        });
        assert!(matches!(
            worker.next().await,
            Some(GatewayMessage::Score { .. })
        ));
        drop(worker);
        let err = waiting.await.unwrap().unwrap_err();
        assert!(matches!(err, ConnError::Closed(_)), "{err}");
        conn.closed().await;
        assert!(conn.is_closed());
        assert!(matches!(
            conn.score(post(b"late")).await,
            Err(ConnError::Closed(_))
        ));
        assert!(
            conn.closed_reason()
                .unwrap()
                .contains("closed the connection")
        );
    }

    #[tokio::test]
    async fn out_of_order_answer_closes_the_connection() {
        let (pending, mut worker) = connected(DEFAULT_MAX_FRAME).await;
        let conn = pending.into_conn();
        let waiting = tokio::spawn({
            let conn = conn.clone();
            async move { conn.score(post(b"x")).await }
        });
        let Some(GatewayMessage::Score { seq, .. }) = worker.next().await else {
            panic!("no SCORE");
        };
        worker.send(WorkerMessage::Pong(seq)).await;
        let err = waiting.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
        conn.closed().await;
    }

    #[tokio::test]
    async fn unsolicited_frame_closes_the_connection() {
        let (pending, mut worker) = connected(DEFAULT_MAX_FRAME).await;
        let conn = pending.into_conn();
        worker.send(WorkerMessage::Pong(1)).await;
        conn.closed().await;
        assert!(conn.closed_reason().unwrap().contains("unsolicited PONG"));
    }

    #[tokio::test]
    async fn oversized_request_is_refused_without_closing() {
        let (pending, worker) = connected(1024).await;
        tokio::spawn(worker.echo_all());
        let conn = pending.into_conn();
        let big = ScoreRequest {
            method: "POST".into(),
            body: Bytes::from(vec![b'x'; 2000]),
            ..ScoreRequest::default()
        };
        assert!(matches!(
            conn.score(big).await,
            Err(ConnError::RequestTooLarge { max: 1024, .. })
        ));
        assert_eq!(
            conn.score(post(b"small")).await.unwrap().body,
            Bytes::from_static(b"small")
        );
    }

    #[tokio::test]
    async fn oversized_answer_is_a_protocol_error() {
        let (pending, mut worker) = connected(64).await;
        let conn = pending.into_conn();
        let waiting = tokio::spawn({
            let conn = conn.clone();
            async move { conn.score(post(b"x")).await }
        });
        let Some(GatewayMessage::Score { seq, .. }) = worker.next().await else {
            panic!("no SCORE");
        };
        worker
            .send(WorkerMessage::ScoreResult(ScoreResult {
                seq,
                status: 200,
                exec_us: 0,
                flags: 0,
                headers: vec![],
                body: Bytes::from(vec![0u8; 100]),
            }))
            .await;
        assert!(matches!(waiting.await.unwrap(), Err(ConnError::Closed(_))));
        assert!(
            conn.closed_reason()
                .unwrap()
                .contains("exceeds the maximum of 64")
        );
    }

    #[tokio::test]
    async fn shutdown_is_queued_after_requests_and_refuses_new_ones() {
        let (pending, mut worker) = connected(DEFAULT_MAX_FRAME).await;
        let conn = pending.into_conn();
        let first = tokio::spawn({
            let conn = conn.clone();
            async move { conn.score(post(b"first")).await }
        });
        while conn.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        conn.shutdown().unwrap();
        assert!(conn.is_shutting_down());
        assert!(matches!(
            conn.score(post(b"late")).await,
            Err(ConnError::Closed(_))
        ));
        let Some(GatewayMessage::Score { seq, request }) = worker.next().await else {
            panic!("no SCORE");
        };
        assert_eq!(worker.next().await, Some(GatewayMessage::Shutdown));
        worker
            .send(WorkerMessage::ScoreResult(ScoreResult {
                seq,
                status: 200,
                exec_us: 0,
                flags: 0,
                headers: vec![],
                body: request.body,
            }))
            .await;
        assert_eq!(
            first.await.unwrap().unwrap().body,
            Bytes::from_static(b"first")
        );
    }

    #[tokio::test]
    async fn dropping_the_connection_ends_the_stream() {
        let (pending, mut worker) = connected(DEFAULT_MAX_FRAME).await;
        let conn = pending.into_conn();
        drop(conn);
        assert_eq!(worker.next().await, None);
    }

    #[tokio::test]
    async fn large_bodies_cross_intact() {
        let (pending, worker) = connected(DEFAULT_MAX_FRAME).await;
        tokio::spawn(worker.echo_all());
        let conn = pending.into_conn();
        let body: Bytes = (0..8 * 1024 * 1024)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        let request = ScoreRequest {
            method: "POST".into(),
            body: body.clone(),
            ..ScoreRequest::default()
        };
        let result = conn.score(request).await.unwrap();
        assert_eq!(result.body, body);
    }
}
