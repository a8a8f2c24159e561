//! The worker protocol, version 1: message types and their byte encoding.
//!
//! Pure functions over bytes, no I/O. `docs/worker-protocol.md` is the specification; the Python end
//! is `shim/berth_worker.py`. A frame is `u32 length N | u8 type | N-1 bytes of payload`, all
//! integers big-endian; `str16` is a u16 length and UTF-8, `bytes32` a u32 length and bytes; a
//! headers block is a u16 count of (`str16` lowercase name, `bytes32` value) pairs.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::time::Duration;

/// The protocol version this crate speaks (sent by the worker in HELLO).
pub const PROTOCOL_VERSION: u16 = 1;

/// Default largest frame (length field value) either side accepts: 1 GiB + 64 KiB.
pub const DEFAULT_MAX_FRAME: u32 = (1 << 30) + (64 << 10);

/// Bytes before the payload: the u32 length and the u8 type.
pub const FRAME_HEADER_LEN: usize = 5;

/// SCORE_RESULT flag: run() failed (raised, timed out, or returned a response with status >= 500).
pub const FLAG_RUN_FAILED: u8 = 0x01;
/// SCORE_RESULT flag: run() returned, so `exec_us` is its execution time.
pub const FLAG_RUN_RETURNED: u8 = 0x02;

/// Frame type bytes.
pub mod frame_type {
    /// Worker → gateway: protocol version, pid, versions.
    pub const HELLO: u8 = 0x01;
    /// Worker → gateway: init() succeeded.
    pub const INIT_OK: u8 = 0x02;
    /// Worker → gateway: loading or init() failed; the worker then exits with code 3.
    pub const INIT_FAILED: u8 = 0x03;
    /// Gateway → worker: one scoring request.
    pub const SCORE: u8 = 0x10;
    /// Worker → gateway: the answer to one SCORE.
    pub const SCORE_RESULT: u8 = 0x11;
    /// Gateway → worker: a SCORE to start only before a deadline (queued behind another request).
    pub const SCORE_BY: u8 = 0x12;
    /// Worker → gateway: the answer to a SCORE_BY reached after its deadline: not run.
    pub const SCORE_EXPIRED: u8 = 0x13;
    /// Gateway → worker: liveness probe.
    pub const PING: u8 = 0x20;
    /// Worker → gateway: the answer to PING.
    pub const PONG: u8 = 0x21;
    /// Gateway → worker: swagger document request.
    pub const SWAGGER: u8 = 0x30;
    /// Worker → gateway: swagger document (or 404 message).
    pub const SWAGGER_RESULT: u8 = 0x31;
    /// Gateway → worker: finish the current request and exit 0.
    pub const SHUTDOWN: u8 = 0x40;
}

/// Request or response headers: lowercase names and raw values, in order, repeats allowed.
pub type Headers = Vec<(String, Bytes)>;

/// How the entry script's run() takes its input (reported in INIT_OK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputMode {
    /// Undecorated: the body as a UTF-8 string (GET: the query as a JSON string).
    Raw,
    /// `@input_schema` from inference-schema: JSON object keys become parameters.
    InferenceSchema,
    /// `@rawhttp`: an AMLRequest object, for any method.
    RawHttp,
}

impl InputMode {
    /// The wire byte.
    pub fn to_u8(self) -> u8 {
        match self {
            InputMode::Raw => 0,
            InputMode::InferenceSchema => 1,
            InputMode::RawHttp => 2,
        }
    }

    /// From the wire byte.
    pub fn from_u8(value: u8) -> Option<InputMode> {
        match value {
            0 => Some(InputMode::Raw),
            1 => Some(InputMode::InferenceSchema),
            2 => Some(InputMode::RawHttp),
            _ => None,
        }
    }
}

/// Where starting the entry script failed (INIT_FAILED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InitStage {
    /// Importing the script (syntax error, missing dependency, file not found...).
    LoadScript,
    /// The script breaks the contract: no init/run, `*args` in run, `@rawhttp` with `@input_schema`.
    Contract,
    /// init() raised.
    Init,
}

impl InitStage {
    /// The wire byte.
    pub fn to_u8(self) -> u8 {
        match self {
            InitStage::LoadScript => 0,
            InitStage::Contract => 1,
            InitStage::Init => 2,
        }
    }

    /// From the wire byte.
    pub fn from_u8(value: u8) -> Option<InitStage> {
        match value {
            0 => Some(InitStage::LoadScript),
            1 => Some(InitStage::Contract),
            2 => Some(InitStage::Init),
            _ => None,
        }
    }
}

impl std::fmt::Display for InitStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InitStage::LoadScript => "loading the entry script",
            InitStage::Contract => "checking the entry script's init()/run() contract",
            InitStage::Init => "running init()",
        })
    }
}

/// HELLO: the first frame the worker sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Must equal [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// The worker's process id.
    pub pid: u32,
    /// e.g. "3.11.7".
    pub python_version: String,
    /// Version of the shim file.
    pub shim_version: String,
    /// The per-worker nonce the supervisor passed in `BERTH_WORKER_NONCE`.
    pub nonce: String,
}

/// INIT_OK: the script is loaded and init() returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitOk {
    /// Milliseconds spent importing the script and running init().
    pub init_ms: u32,
    /// How run() takes its input.
    pub input_mode: InputMode,
}

/// INIT_FAILED: the script could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitFailed {
    /// Which step failed.
    pub stage: InitStage,
    /// The message, usually a Python traceback.
    pub message: String,
}

/// One scoring request (the SCORE frame without its sequence number, which the client assigns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScoreRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// The request id used in the worker's diagnostics (usually `x-request-id`).
    pub request_id: String,
    /// Raw query string without the '?'.
    pub query: Bytes,
    /// The client's headers, lowercase names.
    pub headers: Headers,
    /// The raw body.
    pub body: Bytes,
}

/// SCORE_RESULT: the answer to one SCORE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreResult {
    /// The sequence number of the SCORE it answers.
    pub seq: u64,
    /// HTTP status.
    pub status: u16,
    /// Microseconds inside run() (meaningful when [`ScoreResult::run_returned`]).
    pub exec_us: u32,
    /// [`FLAG_RUN_FAILED`], [`FLAG_RUN_RETURNED`]; unknown bits are ignored.
    pub flags: u8,
    /// Response headers, lowercase names (no content-length).
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

impl ScoreResult {
    /// True when the gateway must send `x-ms-run-function-failed: True`.
    pub fn run_failed(&self) -> bool {
        self.flags & FLAG_RUN_FAILED != 0
    }

    /// True when run() returned (the gateway then sends `x-ms-run-fn-exec-ms`).
    pub fn run_returned(&self) -> bool {
        self.flags & FLAG_RUN_RETURNED != 0
    }

    /// Time inside run(), when it returned.
    pub fn exec_time(&self) -> Option<Duration> {
        self.run_returned()
            .then(|| Duration::from_micros(u64::from(self.exec_us)))
    }
}

/// SWAGGER_RESULT: a swagger document (status 200) or a `{"message": ...}` body (404, 500).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwaggerResult {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Bytes,
}

/// A frame the worker sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerMessage {
    /// 0x01
    Hello(Hello),
    /// 0x02
    InitOk(InitOk),
    /// 0x03
    InitFailed(InitFailed),
    /// 0x11
    ScoreResult(ScoreResult),
    /// 0x13, with the seq of a SCORE_BY the worker reached after its deadline (not run).
    ScoreExpired(u64),
    /// 0x21, with the nonce of the PING.
    Pong(u64),
    /// 0x31
    SwaggerResult(SwaggerResult),
}

impl WorkerMessage {
    /// Name of the frame type, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            WorkerMessage::Hello(_) => "HELLO",
            WorkerMessage::InitOk(_) => "INIT_OK",
            WorkerMessage::InitFailed(_) => "INIT_FAILED",
            WorkerMessage::ScoreResult(_) => "SCORE_RESULT",
            WorkerMessage::ScoreExpired(_) => "SCORE_EXPIRED",
            WorkerMessage::Pong(_) => "PONG",
            WorkerMessage::SwaggerResult(_) => "SWAGGER_RESULT",
        }
    }
}

/// A frame the gateway sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayMessage {
    /// 0x10
    Score {
        /// Sequence number echoed in the SCORE_RESULT.
        seq: u64,
        /// The request.
        request: ScoreRequest,
    },
    /// 0x12: a SCORE the worker runs only if it reaches it before `start_by`
    /// (`CLOCK_MONOTONIC` nanoseconds, the clock both ends of a Unix socket share);
    /// otherwise it answers SCORE_EXPIRED without running it.
    ScoreBy {
        /// Sequence number echoed in the SCORE_RESULT or SCORE_EXPIRED.
        seq: u64,
        /// The deadline to start by.
        start_by: u64,
        /// The request.
        request: ScoreRequest,
    },
    /// 0x20, with a nonce echoed in the PONG.
    Ping(u64),
    /// 0x30, with the swagger version ("" = "2").
    Swagger(String),
    /// 0x40
    Shutdown,
}

/// A malformed frame or a field that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The length field is above the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Announced or encoded length.
        len: u64,
        /// The limit.
        max: u32,
    },
    /// A frame must hold at least its type byte.
    #[error("frame with length 0 (no type byte)")]
    EmptyFrame,
    /// The type byte is not one this direction uses.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownFrameType(u8),
    /// A field runs past the end of the payload.
    #[error("{frame} frame is truncated in field {field}")]
    Truncated {
        /// Frame name.
        frame: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// Bytes left after the last field.
    #[error("{frame} frame has {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// Frame name.
        frame: &'static str,
        /// How many.
        extra: usize,
    },
    /// A text field is not UTF-8.
    #[error("{frame} frame: field {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Frame name.
        frame: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// The input mode byte is not 0, 1 or 2.
    #[error("INIT_OK frame: invalid input mode {0}")]
    InvalidInputMode(u8),
    /// The stage byte is not 0, 1 or 2.
    #[error("INIT_FAILED frame: invalid stage {0}")]
    InvalidInitStage(u8),
    /// A value does not fit its length prefix when encoding.
    #[error("field {field} is {len} bytes (or items), more than its length prefix allows ({max})")]
    FieldTooLong {
        /// Field name.
        field: &'static str,
        /// Actual length.
        len: usize,
        /// Largest encodable length.
        max: u64,
    },
}

/// An encoded gateway frame: `head` (length, type, every field before the body) then `body`.
///
/// Kept in two parts so that a large request body is written without being copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// Frame header and fixed fields.
    pub head: Bytes,
    /// The SCORE body (empty for other frames).
    pub body: Bytes,
}

impl EncodedFrame {
    /// Bytes on the wire, including the 4-byte length.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// Never true: a frame has at least a header.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of the length field.
    pub fn frame_len(&self) -> u64 {
        (self.len() - 4) as u64
    }

    /// Head and body as one buffer (tests, small frames).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.body);
        out.freeze()
    }
}

/// Split one complete frame off the front of `buf`: `Ok(None)` until all of it has arrived.
///
/// When the header is in but the payload is not, reserves room for the rest so that reading a
/// large frame does not reallocate repeatedly.
pub fn split_frame(
    buf: &mut BytesMut,
    max_frame: u32,
) -> Result<Option<(u8, Bytes)>, ProtocolError> {
    if buf.len() < FRAME_HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len == 0 {
        return Err(ProtocolError::EmptyFrame);
    }
    if len > max_frame {
        return Err(ProtocolError::FrameTooLarge {
            len: u64::from(len),
            max: max_frame,
        });
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    frame.advance(4);
    let frame_type = frame.get_u8();
    Ok(Some((frame_type, frame.freeze())))
}

/// Now on `CLOCK_MONOTONIC`, in nanoseconds: the clock of SCORE_BY deadlines (Python's
/// `time.monotonic_ns()` reads the same clock, so both ends of a Unix socket agree on it).
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0))
}

/// Encode a gateway → worker frame.
pub fn encode_gateway(message: &GatewayMessage) -> Result<EncodedFrame, ProtocolError> {
    let mut head = BytesMut::new();
    let mut body = Bytes::new();
    let frame_type = match message {
        GatewayMessage::Score { seq, request } => {
            put_score(&mut head, *seq, request)?;
            body = request.body.clone();
            frame_type::SCORE
        }
        GatewayMessage::ScoreBy {
            seq,
            start_by,
            request,
        } => {
            head.reserve(8);
            head.put_u64(*start_by);
            put_score(&mut head, *seq, request)?;
            body = request.body.clone();
            frame_type::SCORE_BY
        }
        GatewayMessage::Ping(nonce) => {
            head.put_u64(*nonce);
            frame_type::PING
        }
        GatewayMessage::Swagger(version) => {
            put_str16(&mut head, "version", version)?;
            frame_type::SWAGGER
        }
        GatewayMessage::Shutdown => frame_type::SHUTDOWN,
    };
    Ok(EncodedFrame {
        head: with_frame_header(frame_type, head, body.len())?,
        body,
    })
}

/// A SCORE payload up to (not including) the body.
fn put_score(head: &mut BytesMut, seq: u64, request: &ScoreRequest) -> Result<(), ProtocolError> {
    head.reserve(64 + request.headers.len() * 32);
    head.put_u64(seq);
    put_str16(head, "method", &request.method)?;
    put_str16(head, "request_id", &request.request_id)?;
    put_bytes32(head, "query", &request.query)?;
    put_headers(head, &request.headers)
}

/// Encode a worker → gateway frame (the Rust side of tests and fake workers).
pub fn encode_worker(message: &WorkerMessage) -> Result<Bytes, ProtocolError> {
    let mut payload = BytesMut::new();
    let frame_type = match message {
        WorkerMessage::Hello(hello) => {
            payload.put_u16(hello.protocol_version);
            payload.put_u32(hello.pid);
            put_str16(&mut payload, "python_version", &hello.python_version)?;
            put_str16(&mut payload, "shim_version", &hello.shim_version)?;
            put_str16(&mut payload, "nonce", &hello.nonce)?;
            frame_type::HELLO
        }
        WorkerMessage::InitOk(ok) => {
            payload.put_u32(ok.init_ms);
            payload.put_u8(ok.input_mode.to_u8());
            frame_type::INIT_OK
        }
        WorkerMessage::InitFailed(failed) => {
            payload.put_u8(failed.stage.to_u8());
            payload.extend_from_slice(failed.message.as_bytes());
            frame_type::INIT_FAILED
        }
        WorkerMessage::ScoreResult(result) => {
            payload.put_u64(result.seq);
            payload.put_u16(result.status);
            payload.put_u32(result.exec_us);
            payload.put_u8(result.flags);
            put_headers(&mut payload, &result.headers)?;
            payload.extend_from_slice(&result.body);
            frame_type::SCORE_RESULT
        }
        WorkerMessage::ScoreExpired(seq) => {
            payload.put_u64(*seq);
            frame_type::SCORE_EXPIRED
        }
        WorkerMessage::Pong(nonce) => {
            payload.put_u64(*nonce);
            frame_type::PONG
        }
        WorkerMessage::SwaggerResult(swagger) => {
            payload.put_u16(swagger.status);
            payload.extend_from_slice(&swagger.body);
            frame_type::SWAGGER_RESULT
        }
    };
    with_frame_header(frame_type, payload, 0)
}

/// Decode the payload of a worker → gateway frame.
pub fn decode_worker(frame_type: u8, payload: Bytes) -> Result<WorkerMessage, ProtocolError> {
    match frame_type {
        frame_type::HELLO => {
            let mut r = Fields::new("HELLO", payload);
            let hello = Hello {
                protocol_version: r.u16("protocol_version")?,
                pid: r.u32("pid")?,
                python_version: r.str16("python_version")?,
                shim_version: r.str16("shim_version")?,
                nonce: r.str16("nonce")?,
            };
            r.finish()?;
            Ok(WorkerMessage::Hello(hello))
        }
        frame_type::INIT_OK => {
            let mut r = Fields::new("INIT_OK", payload);
            let init_ms = r.u32("init_ms")?;
            let mode = r.u8("input_mode")?;
            r.finish()?;
            let input_mode =
                InputMode::from_u8(mode).ok_or(ProtocolError::InvalidInputMode(mode))?;
            Ok(WorkerMessage::InitOk(InitOk {
                init_ms,
                input_mode,
            }))
        }
        frame_type::INIT_FAILED => {
            let mut r = Fields::new("INIT_FAILED", payload);
            let stage_byte = r.u8("stage")?;
            let stage = InitStage::from_u8(stage_byte)
                .ok_or(ProtocolError::InvalidInitStage(stage_byte))?;
            // The message is diagnostic text: keep it even if the worker mangled its encoding.
            let message = String::from_utf8_lossy(&r.rest()).into_owned();
            Ok(WorkerMessage::InitFailed(InitFailed { stage, message }))
        }
        frame_type::SCORE_RESULT => {
            let mut r = Fields::new("SCORE_RESULT", payload);
            let result = ScoreResult {
                seq: r.u64("seq")?,
                status: r.u16("status")?,
                exec_us: r.u32("exec_us")?,
                flags: r.u8("flags")?,
                headers: r.headers()?,
                body: r.rest(),
            };
            Ok(WorkerMessage::ScoreResult(result))
        }
        frame_type::SCORE_EXPIRED => {
            let mut r = Fields::new("SCORE_EXPIRED", payload);
            let seq = r.u64("seq")?;
            r.finish()?;
            Ok(WorkerMessage::ScoreExpired(seq))
        }
        frame_type::PONG => {
            let mut r = Fields::new("PONG", payload);
            let nonce = r.u64("nonce")?;
            r.finish()?;
            Ok(WorkerMessage::Pong(nonce))
        }
        frame_type::SWAGGER_RESULT => {
            let mut r = Fields::new("SWAGGER_RESULT", payload);
            let status = r.u16("status")?;
            Ok(WorkerMessage::SwaggerResult(SwaggerResult {
                status,
                body: r.rest(),
            }))
        }
        other => Err(ProtocolError::UnknownFrameType(other)),
    }
}

/// Decode the payload of a gateway → worker frame.
pub fn decode_gateway(frame_type: u8, payload: Bytes) -> Result<GatewayMessage, ProtocolError> {
    match frame_type {
        frame_type::SCORE => {
            let mut r = Fields::new("SCORE", payload);
            let seq = r.u64("seq")?;
            let request = take_score(&mut r)?;
            Ok(GatewayMessage::Score { seq, request })
        }
        frame_type::SCORE_BY => {
            let mut r = Fields::new("SCORE_BY", payload);
            let start_by = r.u64("start_by")?;
            let seq = r.u64("seq")?;
            let request = take_score(&mut r)?;
            Ok(GatewayMessage::ScoreBy {
                seq,
                start_by,
                request,
            })
        }
        frame_type::PING => {
            let mut r = Fields::new("PING", payload);
            let nonce = r.u64("nonce")?;
            r.finish()?;
            Ok(GatewayMessage::Ping(nonce))
        }
        frame_type::SWAGGER => {
            let mut r = Fields::new("SWAGGER", payload);
            let version = r.str16("version")?;
            r.finish()?;
            Ok(GatewayMessage::Swagger(version))
        }
        frame_type::SHUTDOWN => {
            Fields::new("SHUTDOWN", payload).finish()?;
            Ok(GatewayMessage::Shutdown)
        }
        other => Err(ProtocolError::UnknownFrameType(other)),
    }
}

/// The fields of a SCORE payload after `seq`.
fn take_score(r: &mut Fields) -> Result<ScoreRequest, ProtocolError> {
    Ok(ScoreRequest {
        method: r.str16("method")?,
        request_id: r.str16("request_id")?,
        query: r.bytes32("query")?,
        headers: r.headers()?,
        body: r.rest(),
    })
}

fn with_frame_header(
    frame_type: u8,
    payload: BytesMut,
    extra: usize,
) -> Result<Bytes, ProtocolError> {
    let len = 1 + payload.len() + extra;
    let len32 = u32::try_from(len).map_err(|_| ProtocolError::FieldTooLong {
        field: "frame",
        len,
        max: u64::from(u32::MAX),
    })?;
    let mut out = BytesMut::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.put_u32(len32);
    out.put_u8(frame_type);
    out.extend_from_slice(&payload);
    Ok(out.freeze())
}

fn put_str16(out: &mut BytesMut, field: &'static str, value: &str) -> Result<(), ProtocolError> {
    let len = u16::try_from(value.len()).map_err(|_| ProtocolError::FieldTooLong {
        field,
        len: value.len(),
        max: u64::from(u16::MAX),
    })?;
    out.put_u16(len);
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

fn put_bytes32(out: &mut BytesMut, field: &'static str, value: &[u8]) -> Result<(), ProtocolError> {
    let len = u32::try_from(value.len()).map_err(|_| ProtocolError::FieldTooLong {
        field,
        len: value.len(),
        max: u64::from(u32::MAX),
    })?;
    out.put_u32(len);
    out.extend_from_slice(value);
    Ok(())
}

fn put_headers(out: &mut BytesMut, headers: &[(String, Bytes)]) -> Result<(), ProtocolError> {
    let count = u16::try_from(headers.len()).map_err(|_| ProtocolError::FieldTooLong {
        field: "headers",
        len: headers.len(),
        max: u64::from(u16::MAX),
    })?;
    out.put_u16(count);
    for (name, value) in headers {
        put_str16(out, "header name", name)?;
        put_bytes32(out, "header value", value)?;
    }
    Ok(())
}

/// Reads fields in order from a payload, naming the frame and field on failure. Zero-copy.
struct Fields {
    frame: &'static str,
    buf: Bytes,
}

impl Fields {
    fn new(frame: &'static str, buf: Bytes) -> Fields {
        Fields { frame, buf }
    }

    fn need(&self, field: &'static str, n: usize) -> Result<(), ProtocolError> {
        if self.buf.remaining() < n {
            return Err(ProtocolError::Truncated {
                frame: self.frame,
                field,
            });
        }
        Ok(())
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, ProtocolError> {
        self.need(field, 1)?;
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, ProtocolError> {
        self.need(field, 2)?;
        Ok(self.buf.get_u16())
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, ProtocolError> {
        self.need(field, 4)?;
        Ok(self.buf.get_u32())
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, ProtocolError> {
        self.need(field, 8)?;
        Ok(self.buf.get_u64())
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<Bytes, ProtocolError> {
        self.need(field, n)?;
        Ok(self.buf.split_to(n))
    }

    fn str16(&mut self, field: &'static str) -> Result<String, ProtocolError> {
        let len = usize::from(self.u16(field)?);
        let raw = self.take(field, len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| ProtocolError::InvalidUtf8 {
            frame: self.frame,
            field,
        })
    }

    fn bytes32(&mut self, field: &'static str) -> Result<Bytes, ProtocolError> {
        let len = self.u32(field)? as usize;
        self.take(field, len)
    }

    fn headers(&mut self) -> Result<Headers, ProtocolError> {
        let count = usize::from(self.u16("headers")?);
        let mut headers = Vec::with_capacity(count.min(256));
        for _ in 0..count {
            let name = self.str16("header name")?;
            let value = self.bytes32("header value")?;
            headers.push((name, value));
        }
        Ok(headers)
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    fn finish(self) -> Result<(), ProtocolError> {
        if self.buf.has_remaining() {
            return Err(ProtocolError::TrailingBytes {
                frame: self.frame,
                extra: self.buf.remaining(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ScoreRequest {
        ScoreRequest {
            method: "POST".into(),
            request_id: "req-1".into(),
            query: Bytes::from_static(b"a=1&b=%20"),
            headers: vec![
                (
                    "content-type".into(),
                    Bytes::from_static(b"application/json"),
                ),
                ("x-custom".into(), Bytes::from_static(b"\xff\x00raw")),
                ("x-custom".into(), Bytes::new()),
            ],
            body: Bytes::from_static(b"{\"data\": [1, 2]}"),
        }
    }

    fn worker_messages() -> Vec<WorkerMessage> {
        vec![
            WorkerMessage::Hello(Hello {
                protocol_version: 1,
                pid: 4242,
                python_version: "3.11.7".into(),
                shim_version: "1.0.0".into(),
                nonce: "00ff".into(),
            }),
            WorkerMessage::InitOk(InitOk {
                init_ms: 1234,
                input_mode: InputMode::RawHttp,
            }),
            WorkerMessage::InitFailed(InitFailed {
                stage: InitStage::Init,
                message: "Traceback ...\nRuntimeError: ✗".into(),
            }),
            WorkerMessage::ScoreResult(ScoreResult {
                seq: u64::MAX,
                status: 503,
                exec_us: 77,
                flags: FLAG_RUN_FAILED | FLAG_RUN_RETURNED,
                headers: vec![
                    ("x-multi".into(), Bytes::from_static(b"a")),
                    ("x-multi".into(), Bytes::from_static(b"b")),
                ],
                body: Bytes::from_static(b"{}"),
            }),
            WorkerMessage::ScoreResult(ScoreResult {
                seq: 0,
                status: 200,
                exec_us: 0,
                flags: 0,
                headers: vec![],
                body: Bytes::new(),
            }),
            WorkerMessage::Pong(9),
            WorkerMessage::SwaggerResult(SwaggerResult {
                status: 404,
                body: Bytes::from_static(b"{\"message\": \"no\"}"),
            }),
        ]
    }

    fn gateway_messages() -> Vec<GatewayMessage> {
        vec![
            GatewayMessage::Score {
                seq: 7,
                request: request(),
            },
            GatewayMessage::Score {
                seq: 8,
                request: ScoreRequest::default(),
            },
            GatewayMessage::Ping(u64::MAX),
            GatewayMessage::Swagger(String::new()),
            GatewayMessage::Swagger("3.1".into()),
            GatewayMessage::Shutdown,
        ]
    }

    fn split_one(wire: &[u8]) -> (u8, Bytes) {
        let mut buf = BytesMut::from(wire);
        let frame = split_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert!(buf.is_empty(), "one frame, nothing left over");
        frame
    }

    #[test]
    fn worker_messages_round_trip() {
        for message in worker_messages() {
            let wire = encode_worker(&message).unwrap();
            let (kind, payload) = split_one(&wire);
            assert_eq!(decode_worker(kind, payload).unwrap(), message);
        }
    }

    #[test]
    fn gateway_messages_round_trip() {
        for message in gateway_messages() {
            let encoded = encode_gateway(&message).unwrap();
            assert_eq!(encoded.frame_len() as usize, encoded.len() - 4);
            let (kind, payload) = split_one(&encoded.to_bytes());
            assert_eq!(decode_gateway(kind, payload).unwrap(), message);
        }
    }

    #[test]
    fn score_body_is_not_copied_into_the_head() {
        let body = Bytes::from(vec![7u8; 1 << 20]);
        let message = GatewayMessage::Score {
            seq: 1,
            request: ScoreRequest {
                body: body.clone(),
                ..request()
            },
        };
        let encoded = encode_gateway(&message).unwrap();
        assert!(encoded.head.len() < 200);
        assert_eq!(encoded.body.as_ptr(), body.as_ptr());
    }

    #[test]
    fn known_bytes_of_a_score_frame() {
        let message = GatewayMessage::Score {
            seq: 2,
            request: ScoreRequest {
                method: "GET".into(),
                request_id: "r".into(),
                query: Bytes::from_static(b"q"),
                headers: vec![("h".into(), Bytes::from_static(b"v"))],
                body: Bytes::from_static(b"B"),
            },
        };
        let wire = encode_gateway(&message).unwrap().to_bytes();
        let expected: &[u8] = b"\x00\x00\x00\x21\x10\
            \x00\x00\x00\x00\x00\x00\x00\x02\
            \x00\x03GET\
            \x00\x01r\
            \x00\x00\x00\x01q\
            \x00\x01\x00\x01h\x00\x00\x00\x01v\
            B";
        assert_eq!(&wire[..], expected);
    }

    #[test]
    fn split_frame_waits_for_the_whole_frame() {
        let wire = encode_worker(&WorkerMessage::Pong(5)).unwrap();
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            assert_eq!(
                split_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap(),
                None,
                "after {i} bytes"
            );
            buf.put_u8(*byte);
        }
        let (kind, payload) = split_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!(
            decode_worker(kind, payload).unwrap(),
            WorkerMessage::Pong(5)
        );
    }

    #[test]
    fn split_frame_leaves_the_next_frame() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&encode_worker(&WorkerMessage::Pong(1)).unwrap());
        buf.extend_from_slice(&encode_worker(&WorkerMessage::Pong(2)).unwrap()[..7]);
        let (_, first) = split_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!(
            decode_worker(frame_type::PONG, first).unwrap(),
            WorkerMessage::Pong(1)
        );
        assert_eq!(buf.len(), 7);
        assert_eq!(split_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap(), None);
    }

    #[test]
    fn split_frame_rejects_oversized_and_empty_frames() {
        let mut buf = BytesMut::from(&b"\x00\x00\x04\x01\x10"[..]);
        assert_eq!(
            split_frame(&mut buf, 1024),
            Err(ProtocolError::FrameTooLarge {
                len: 1025,
                max: 1024
            })
        );
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x00\x10"[..]);
        assert_eq!(split_frame(&mut buf, 1024), Err(ProtocolError::EmptyFrame));
    }

    #[test]
    fn every_truncation_of_a_fixed_frame_is_an_error() {
        for message in worker_messages() {
            let wire = encode_worker(&message).unwrap();
            let kind = wire[4];
            let payload = wire.slice(5..);
            let fixed = match kind {
                frame_type::INIT_FAILED => 1,
                frame_type::SCORE_RESULT => 17,
                frame_type::SWAGGER_RESULT => 2,
                _ => payload.len(),
            };
            for cut in 0..fixed {
                assert!(
                    decode_worker(kind, payload.slice(..cut)).is_err(),
                    "{} cut at {cut} decoded",
                    message.name()
                );
            }
        }
        let wire = encode_gateway(&GatewayMessage::Score {
            seq: 1,
            request: request(),
        })
        .unwrap()
        .head;
        let payload = wire.slice(5..);
        for cut in 0..payload.len() {
            assert!(
                decode_gateway(frame_type::SCORE, payload.slice(..cut)).is_err(),
                "SCORE cut at {cut}"
            );
        }
    }

    #[test]
    fn malformed_payloads_name_the_problem() {
        assert_eq!(
            decode_worker(frame_type::PONG, Bytes::from_static(&[0; 9])),
            Err(ProtocolError::TrailingBytes {
                frame: "PONG",
                extra: 1
            })
        );
        assert_eq!(
            decode_worker(frame_type::INIT_OK, Bytes::from_static(&[0, 0, 0, 1, 9])),
            Err(ProtocolError::InvalidInputMode(9))
        );
        assert_eq!(
            decode_worker(frame_type::INIT_FAILED, Bytes::from_static(&[3, b'x'])),
            Err(ProtocolError::InvalidInitStage(3))
        );
        assert_eq!(
            decode_worker(0x7f, Bytes::new()),
            Err(ProtocolError::UnknownFrameType(0x7f))
        );
        assert_eq!(
            decode_gateway(frame_type::SCORE_RESULT, Bytes::new()),
            Err(ProtocolError::UnknownFrameType(frame_type::SCORE_RESULT))
        );
        assert_eq!(
            decode_gateway(frame_type::SHUTDOWN, Bytes::from_static(b"x")),
            Err(ProtocolError::TrailingBytes {
                frame: "SHUTDOWN",
                extra: 1
            })
        );
        let bad_utf8 = Bytes::from_static(b"\x00\x01\x00\x00\x00\x01\x00\x01\xff\x00\x00");
        assert_eq!(
            decode_worker(frame_type::HELLO, bad_utf8),
            Err(ProtocolError::InvalidUtf8 {
                frame: "HELLO",
                field: "python_version"
            })
        );
        let huge_header_count = Bytes::from_static(b"\0\0\0\0\0\0\0\x01\x00\xc8\0\0\0\0\0\xff\xff");
        assert_eq!(
            decode_worker(frame_type::SCORE_RESULT, huge_header_count),
            Err(ProtocolError::Truncated {
                frame: "SCORE_RESULT",
                field: "header name"
            })
        );
    }

    #[test]
    fn init_failed_message_survives_bad_utf8() {
        let decoded = decode_worker(
            frame_type::INIT_FAILED,
            Bytes::from_static(b"\x02bad \xff byte"),
        )
        .unwrap();
        let WorkerMessage::InitFailed(failed) = decoded else {
            panic!("not INIT_FAILED: {decoded:?}");
        };
        assert_eq!(failed.stage, InitStage::Init);
        assert_eq!(failed.message, "bad \u{fffd} byte");
    }

    #[test]
    fn fields_that_do_not_fit_are_encoding_errors() {
        let long = "m".repeat(70_000);
        let message = GatewayMessage::Score {
            seq: 1,
            request: ScoreRequest {
                request_id: long,
                ..ScoreRequest::default()
            },
        };
        assert!(matches!(
            encode_gateway(&message),
            Err(ProtocolError::FieldTooLong {
                field: "request_id",
                ..
            })
        ));
        let headers = vec![("a".to_string(), Bytes::new()); 70_000];
        let message = GatewayMessage::Score {
            seq: 1,
            request: ScoreRequest {
                headers,
                ..ScoreRequest::default()
            },
        };
        assert!(matches!(
            encode_gateway(&message),
            Err(ProtocolError::FieldTooLong {
                field: "headers",
                ..
            })
        ));
    }

    #[test]
    fn flags_and_exec_time() {
        let mut result = ScoreResult {
            seq: 1,
            status: 200,
            exec_us: 1500,
            flags: FLAG_RUN_RETURNED | 0x80,
            headers: vec![],
            body: Bytes::new(),
        };
        assert!(!result.run_failed());
        assert_eq!(result.exec_time(), Some(Duration::from_micros(1500)));
        result.flags = FLAG_RUN_FAILED;
        assert!(result.run_failed());
        assert_eq!(result.exec_time(), None);
    }

    #[test]
    fn wire_bytes_of_modes_and_stages() {
        for mode in [
            InputMode::Raw,
            InputMode::InferenceSchema,
            InputMode::RawHttp,
        ] {
            assert_eq!(InputMode::from_u8(mode.to_u8()), Some(mode));
        }
        for stage in [InitStage::LoadScript, InitStage::Contract, InitStage::Init] {
            assert_eq!(InitStage::from_u8(stage.to_u8()), Some(stage));
        }
        assert_eq!(InputMode::from_u8(3), None);
        assert_eq!(InitStage::from_u8(3), None);
    }
}
