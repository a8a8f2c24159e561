//! One worker process from start to stop.
//!
//! [`spawn`] writes the embedded shim into the runtime directory, listens on a fresh Unix socket in
//! a private directory, starts `python -u -c SHIM_BOOT berth_worker.py --socket PATH` (the shim's
//! bytecode is compiled once per interpreter, see [`crate::SHIM_BOOT`]), accepts exactly one
//! connection (while watching for the process exiting early, with a timeout), reads HELLO (checks
//! the protocol version) and waits for INIT_OK or INIT_FAILED. Output is captured line by line into
//! a [`LogTail`]. [`Worker::shutdown`] sends SHUTDOWN, waits for the grace period, then kills.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use crate::client::{ConnError, PendingConn, WorkerConn};
use crate::logs::{self, LogTail, Stream};
use crate::protocol::{DEFAULT_MAX_FRAME, Hello, InitOk, InitStage, PROTOCOL_VERSION};
use crate::{SHIM_BOOT, SHIM_CACHE_DIR, SHIM_FILE_NAME, SHIM_SOURCE};

/// Longest socket path Linux accepts (`sun_path` is 108 bytes including the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// How many output lines an error carries.
const ERROR_OUTPUT_LINES: usize = 60;
/// How long to wait for a process that should be exiting anyway (after INIT_FAILED or a kill).
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// How long the socket may outlive the process before the connection is closed anyway.
const EXIT_SOCKET_GRACE: Duration = Duration::from_secs(1);
/// How long to wait for the output pipes to drain after the process exited.
const PUMP_DRAIN: Duration = Duration::from_secs(2);

static SOCKET_COUNTER: AtomicU64 = AtomicU64::new(0);
static SHIM_TMP_COUNTER: AtomicU64 = AtomicU64::new(0);
/// (interpreter, shim) pairs whose bytecode compilation this process has started.
static PRECOMPILED: LazyLock<Mutex<HashSet<(PathBuf, PathBuf)>>> = LazyLock::new(Default::default);
/// Compiles the file named by `argv[1]` into its `__pycache__`.
const PRECOMPILE: &str = "import py_compile, sys; py_compile.compile(sys.argv[1], doraise=True)";

/// Everything needed to start one worker.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The environment's interpreter (`python3` is looked up on PATH).
    pub python: PathBuf,
    /// Directory the embedded shim is written to (as [`SHIM_FILE_NAME`]); created if missing.
    pub runtime_dir: PathBuf,
    /// Directory for the listening socket; created 0700 if missing. Keep the path short.
    pub socket_dir: PathBuf,
    /// Working directory: the unpacked source directory.
    pub cwd: PathBuf,
    /// Variables set for the worker (AZUREML_MODEL_DIR, AZUREML_ENTRY_SCRIPT, ...).
    pub env: Vec<(OsString, OsString)>,
    /// Start from an empty environment instead of inheriting this process's.
    pub clear_env: bool,
    /// Limit for starting the interpreter up to the HELLO frame.
    pub connect_timeout: Duration,
    /// Limit for importing the entry script and running init(), after HELLO.
    pub init_timeout: Duration,
    /// Largest frame either side may send.
    pub max_frame: u32,
    /// Output lines kept in the tail.
    pub log_lines: usize,
    /// Output bytes kept in the tail.
    pub log_bytes: usize,
    /// Called with the process id as soon as the process runs, before its
    /// entry script is imported (e.g. to watch its memory during `init()`).
    pub on_started: Option<OnStarted>,
    /// Start the interpreter through this launcher, which applies the sandbox first.
    pub launcher: Option<crate::sandbox::Launcher>,
    /// `(uid, gid)` the worker runs as: its private socket directory is given to it.
    pub socket_owner: Option<(u32, u32)>,
}

/// A callback given the worker's process id once it runs.
#[derive(Clone)]
pub struct OnStarted(pub std::sync::Arc<dyn Fn(u32) + Send + Sync>);

impl std::fmt::Debug for OnStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnStarted(..)")
    }
}

impl WorkerSpec {
    /// A spec with defaults: inherited environment, 60 s to connect, 10 min for init, the default
    /// frame limit, and a tail of 2,000 lines / 1 MiB.
    pub fn new(
        python: impl Into<PathBuf>,
        runtime_dir: impl Into<PathBuf>,
        socket_dir: impl Into<PathBuf>,
        cwd: impl Into<PathBuf>,
    ) -> WorkerSpec {
        WorkerSpec {
            python: python.into(),
            runtime_dir: runtime_dir.into(),
            socket_dir: socket_dir.into(),
            cwd: cwd.into(),
            env: Vec::new(),
            clear_env: false,
            connect_timeout: Duration::from_secs(60),
            init_timeout: Duration::from_secs(600),
            max_frame: DEFAULT_MAX_FRAME,
            log_lines: 2000,
            log_bytes: 1 << 20,
            on_started: None,
            launcher: None,
            socket_owner: None,
        }
    }

    /// Add an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> WorkerSpec {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// Starting a worker failed; the variant names the step. The process, if any, has been killed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The working directory is missing or unreadable.
    #[error("working directory {path}: {source}")]
    Cwd {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Creating or securing the socket directory failed.
    #[error("preparing the socket directory {path}: {source}")]
    SocketDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing the shim file failed.
    #[error("writing the worker shim into {path}: {source}")]
    WriteShim {
        /// The runtime directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The socket path does not fit a `sockaddr_un`.
    #[error("socket path {path} is {len} bytes; Unix sockets allow at most {MAX_SOCKET_PATH}")]
    SocketPathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// Binding the listening socket failed.
    #[error("listening on {path}: {source}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The interpreter could not be started.
    #[error("starting {python}: {source}")]
    Start {
        /// The interpreter.
        python: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The process exited before connecting and saying HELLO.
    #[error("the worker exited ({status}) before connecting")]
    ExitedBeforeConnect {
        /// Its exit status.
        status: ExitStatus,
        /// The tail of its output.
        output: String,
    },
    /// The process did not connect and say HELLO in time.
    #[error("the worker did not connect within {timeout:?}")]
    ConnectTimeout {
        /// The limit.
        timeout: Duration,
        /// The tail of its output.
        output: String,
    },
    /// Accepting the connection failed.
    #[error("accepting the worker connection: {source}")]
    Accept {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The first frame was not a valid HELLO.
    #[error("reading the worker's HELLO: {source}")]
    Hello {
        /// Why.
        #[source]
        source: ConnError,
        /// The tail of its output.
        output: String,
    },
    /// The HELLO did not carry the nonce this worker was given.
    #[error("the worker's HELLO did not carry the nonce it was started with; connection refused")]
    BadNonce {
        /// The tail of its output.
        output: String,
    },
    /// The shim speaks another protocol version.
    #[error("the worker speaks protocol version {got}; this server speaks {PROTOCOL_VERSION}")]
    VersionMismatch {
        /// The worker's version.
        got: u16,
    },
    /// The entry script failed to import, broke the contract, or init() raised (INIT_FAILED).
    #[error("the entry script failed while {stage}:\n{message}")]
    InitFailed {
        /// Which step.
        stage: InitStage,
        /// Usually a Python traceback.
        message: String,
        /// The worker's exit status (3), if it exited in time.
        exit: Option<ExitStatus>,
        /// The tail of its output.
        output: String,
    },
    /// init() did not finish in time.
    #[error("the entry script's import and init() did not finish within {timeout:?}")]
    InitTimeout {
        /// The limit.
        timeout: Duration,
        /// The tail of its output.
        output: String,
    },
    /// The process died during init without reporting INIT_FAILED (crash, os._exit, OOM kill).
    #[error("the worker exited ({status}) while loading the entry script or running init()")]
    ExitedDuringInit {
        /// Its exit status.
        status: ExitStatus,
        /// The tail of its output.
        output: String,
    },
    /// The connection failed during init for another reason.
    #[error("waiting for the init result: {source}")]
    Init {
        /// Why.
        #[source]
        source: ConnError,
        /// The tail of its output.
        output: String,
    },
}

impl SpawnError {
    /// The tail of the worker's stdout/stderr captured before the failure ("" when none).
    pub fn output(&self) -> &str {
        match self {
            SpawnError::ExitedBeforeConnect { output, .. }
            | SpawnError::ConnectTimeout { output, .. }
            | SpawnError::Hello { output, .. }
            | SpawnError::BadNonce { output, .. }
            | SpawnError::InitFailed { output, .. }
            | SpawnError::InitTimeout { output, .. }
            | SpawnError::ExitedDuringInit { output, .. }
            | SpawnError::Init { output, .. } => output,
            _ => "",
        }
    }

    /// The INIT_FAILED stage, when the entry script itself failed.
    pub fn init_stage(&self) -> Option<InitStage> {
        match self {
            SpawnError::InitFailed { stage, .. } => Some(*stage),
            _ => None,
        }
    }
}

/// Stopping a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The process could not be reaped after the kill.
    #[error("worker {pid} did not exit after being killed")]
    NotReaped {
        /// Its pid.
        pid: u32,
    },
}

/// How a worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Its exit status.
    pub status: ExitStatus,
    /// True when the grace period ran out and it was killed.
    pub forced: bool,
}

/// A running worker whose init() succeeded. Dropping it kills the process.
#[derive(Debug)]
pub struct Worker {
    conn: WorkerConn,
    hello: Hello,
    init: InitOk,
    process: Process,
}

impl Worker {
    /// The connection for requests (clone it to share).
    pub fn conn(&self) -> &WorkerConn {
        &self.conn
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// What the worker said in HELLO.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// init() time and input mode.
    pub fn init(&self) -> &InitOk {
        &self.init
    }

    /// The captured output.
    pub fn logs(&self) -> &LogTail {
        &self.process.logs
    }

    /// The exit status, once the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.process.exit_rx.borrow()
    }

    /// Wait until the process exits (None if its status could not be collected).
    pub async fn exited(&self) -> Option<ExitStatus> {
        self.process.wait_exit().await
    }

    /// Kill the process now (SIGKILL); in-flight requests fail.
    pub fn kill(&self) {
        self.process.kill();
    }

    /// Send SHUTDOWN (requests already sent are still answered), wait up to `grace` for the
    /// process to exit, then kill it. Always reaps the process.
    pub async fn shutdown(&self, grace: Duration) -> Result<Stopped, StopError> {
        if let Err(err) = self.conn.shutdown() {
            tracing::debug!(pid = self.pid(), %err, "SHUTDOWN not sent");
        }
        if let Ok(Some(status)) = timeout(grace, self.process.wait_exit()).await {
            return Ok(Stopped {
                status,
                forced: false,
            });
        }
        tracing::warn!(
            pid = self.pid(),
            ?grace,
            "worker did not stop within the grace period; killing it"
        );
        match self.process.kill_and_reap().await {
            Some(status) => Ok(Stopped {
                status,
                forced: true,
            }),
            None => Err(StopError::NotReaped { pid: self.pid() }),
        }
    }
}

/// The process side of a worker: pid, output, exit watch, kill switch.
#[derive(Debug)]
struct Process {
    pid: u32,
    logs: LogTail,
    exit_rx: watch::Receiver<Option<ExitStatus>>,
    kill_tx: mpsc::UnboundedSender<()>,
    pumps: Vec<JoinHandle<()>>,
}

impl Process {
    /// Resolves with the exit status; pending forever if the status cannot be collected.
    async fn exit_status_or_pending(&self) -> ExitStatus {
        match self.wait_exit().await {
            Some(status) => status,
            None => std::future::pending().await,
        }
    }

    async fn wait_exit(&self) -> Option<ExitStatus> {
        let mut rx = self.exit_rx.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(status) => *status,
            Err(_) => None,
        }
    }

    async fn exit_within(&self, limit: Duration) -> Option<ExitStatus> {
        timeout(limit, self.wait_exit()).await.ok().flatten()
    }

    fn kill(&self) {
        let _ = self.kill_tx.send(());
    }

    async fn kill_and_reap(&self) -> Option<ExitStatus> {
        self.kill();
        self.exit_within(EXIT_WAIT).await
    }

    /// The output tail, after giving the pipes a moment to drain.
    async fn output(&mut self) -> String {
        for pump in self.pumps.drain(..) {
            let _ = timeout(PUMP_DRAIN, pump).await;
        }
        self.logs.tail_text(ERROR_OUTPUT_LINES)
    }
}

/// Removes the socket file and its private directory when dropped.
struct SocketFile {
    path: PathBuf,
    dir: PathBuf,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Start a worker and wait until its init() succeeded. See the module documentation.
pub async fn spawn(spec: WorkerSpec) -> Result<Worker, SpawnError> {
    let cwd_meta = tokio::fs::metadata(&spec.cwd)
        .await
        .map_err(|source| SpawnError::Cwd {
            path: spec.cwd.clone(),
            source,
        })?;
    if !cwd_meta.is_dir() {
        return Err(SpawnError::Cwd {
            path: spec.cwd.clone(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    let private_dir = spec.socket_dir.join(format!(
        "w{}-{}",
        std::process::id(),
        SOCKET_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let shim = install_shim(&spec.runtime_dir)
        .await
        .map_err(|source| SpawnError::WriteShim {
            path: spec.runtime_dir.clone(),
            source,
        })?;
    let socket_path = private_dir.join("s");
    let len = socket_path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(SpawnError::SocketPathTooLong {
            path: socket_path,
            len,
        });
    }
    prepare_socket_dir(&spec.socket_dir, &private_dir, spec.socket_owner).await?;
    let socket_file = SocketFile {
        path: socket_path.clone(),
        dir: private_dir.clone(),
    };
    let listener = UnixListener::bind(&socket_path).map_err(|source| SpawnError::Listen {
        path: socket_path.clone(),
        source,
    })?;
    if let Some((uid, gid)) = spec.socket_owner {
        std::os::unix::fs::chown(&socket_path, Some(uid), Some(gid)).map_err(|source| {
            SpawnError::SocketDir {
                path: socket_path.clone(),
                source,
            }
        })?;
    }
    let nonce = new_nonce();

    let mut command = match &spec.launcher {
        Some(launcher) => {
            let mut command = Command::new(&launcher.program);
            command.args(launcher.args()).arg(&spec.python);
            command
        }
        None => Command::new(&spec.python),
    };
    command
        .arg("-u")
        .arg("-c")
        .arg(SHIM_BOOT)
        .arg(&shim)
        .arg("--socket")
        .arg(&socket_path)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: a Ctrl-C meant for the server does not hit the workers directly.
        .process_group(0);
    if spec.max_frame != DEFAULT_MAX_FRAME {
        command.arg("--max-frame").arg(spec.max_frame.to_string());
    }
    if spec.clear_env {
        command.env_clear();
    }
    command.envs(spec.env.iter().map(|(key, value)| (key, value)));
    command.env(NONCE_VAR, &nonce);
    let child = command.spawn().map_err(|source| SpawnError::Start {
        python: spec.python.clone(),
        source,
    })?;
    let mut process = supervise(child, &spec);
    precompile_shim(&spec.python, &shim);
    if let Some(hook) = &spec.on_started {
        (hook.0)(process.pid);
    }
    tracing::debug!(pid = process.pid, socket = %socket_path.display(), "worker process started");

    let connect_deadline = Instant::now() + spec.connect_timeout;
    let stream = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = accepted.map_err(|source| SpawnError::Accept { source })?.0;
                if peer_is(&stream, process.pid, &socket_path) {
                    break stream;
                }
                // Anything but the spawned process is closed at once; keep waiting for it.
                drop(stream);
            }
            status = process.exit_status_or_pending() => {
                let output = process.output().await;
                return Err(SpawnError::ExitedBeforeConnect { status, output });
            }
            () = sleep_until(connect_deadline) => {
                process.kill_and_reap().await;
                let output = process.output().await;
                return Err(SpawnError::ConnectTimeout { timeout: spec.connect_timeout, output });
            }
        }
    };
    drop(listener);
    drop(socket_file);

    let mut pending = PendingConn::new(stream, spec.max_frame);
    let hello = tokio::select! {
        hello = pending.read_hello() => hello,
        () = sleep_until(connect_deadline) => {
            process.kill_and_reap().await;
            let output = process.output().await;
            return Err(SpawnError::ConnectTimeout { timeout: spec.connect_timeout, output });
        }
    };
    let hello = match hello {
        Ok(hello) => hello,
        Err(source) => {
            return Err(match process.exit_within(EXIT_WAIT).await {
                Some(status) => SpawnError::ExitedBeforeConnect {
                    status,
                    output: process.output().await,
                },
                None => {
                    process.kill_and_reap().await;
                    SpawnError::Hello {
                        source,
                        output: process.output().await,
                    }
                }
            });
        }
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        process.kill_and_reap().await;
        return Err(SpawnError::VersionMismatch {
            got: hello.protocol_version,
        });
    }
    if hello.nonce != nonce {
        tracing::warn!(
            pid = process.pid,
            "the worker's HELLO carried a wrong nonce; connection closed"
        );
        process.kill_and_reap().await;
        return Err(SpawnError::BadNonce {
            output: process.output().await,
        });
    }
    if hello.pid != process.pid {
        tracing::warn!(
            pid = process.pid,
            hello_pid = hello.pid,
            "worker HELLO names another pid"
        );
    }

    let init = match timeout(spec.init_timeout, pending.read_init()).await {
        Err(_) => {
            process.kill_and_reap().await;
            let output = process.output().await;
            return Err(SpawnError::InitTimeout {
                timeout: spec.init_timeout,
                output,
            });
        }
        Ok(Ok(Ok(init))) => init,
        Ok(Ok(Err(failed))) => {
            let exit = match process.exit_within(EXIT_WAIT).await {
                Some(status) => Some(status),
                None => process.kill_and_reap().await,
            };
            let output = process.output().await;
            return Err(SpawnError::InitFailed {
                stage: failed.stage,
                message: failed.message,
                exit,
                output,
            });
        }
        Ok(Err(source)) => {
            return Err(match process.exit_within(EXIT_WAIT).await {
                Some(status) => SpawnError::ExitedDuringInit {
                    status,
                    output: process.output().await,
                },
                None => {
                    process.kill_and_reap().await;
                    SpawnError::Init {
                        source,
                        output: process.output().await,
                    }
                }
            });
        }
    };
    tracing::debug!(pid = process.pid, init_ms = init.init_ms, mode = ?init.input_mode, "worker ready");
    let conn = pending.into_conn();
    tokio::spawn(close_on_exit(conn.clone(), process.exit_rx.clone()));
    Ok(Worker {
        conn,
        hello,
        init,
        process,
    })
}

/// When the process has exited, the connection normally ends by itself right after its last
/// answers have been read. If it does not (a forked child still holds the socket open), fail the
/// outstanding requests instead of letting them wait forever.
async fn close_on_exit(conn: WorkerConn, mut exit_rx: watch::Receiver<Option<ExitStatus>>) {
    let status = match exit_rx.wait_for(Option::is_some).await {
        Ok(status) => *status,
        Err(_) => None,
    };
    let Some(status) = status else {
        return;
    };
    if timeout(EXIT_SOCKET_GRACE, conn.closed()).await.is_err() {
        conn.abort(&format!(
            "the worker process exited ({status}) but its socket stayed open (held by a child process?)"
        ));
    }
}

/// Start the output pumps and the exit watcher for a freshly spawned child.
fn supervise(mut child: Child, spec: &WorkerSpec) -> Process {
    let pid = child.id().unwrap_or(0);
    let logs = LogTail::new(spec.log_lines, spec.log_bytes);
    let mut pumps = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        pumps.push(tokio::spawn(logs::pump(
            stdout,
            Stream::Stdout,
            logs.clone(),
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        pumps.push(tokio::spawn(logs::pump(
            stderr,
            Stream::Stderr,
            logs.clone(),
        )));
    }
    let (exit_tx, exit_rx) = watch::channel(None);
    let (kill_tx, kill_rx) = mpsc::unbounded_channel();
    tokio::spawn(watch_exit(child, pid, kill_rx, exit_tx));
    Process {
        pid,
        logs,
        exit_rx,
        kill_tx,
        pumps,
    }
}

/// Owns the child: reaps it, publishes its exit status, and kills it on request or when every
/// kill sender is gone (the `Worker` was dropped).
async fn watch_exit(
    mut child: Child,
    pid: u32,
    mut kill_rx: mpsc::UnboundedReceiver<()>,
    exit_tx: watch::Sender<Option<ExitStatus>>,
) {
    let mut kill_sent = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = kill_rx.recv(), if !kill_sent => {
                kill_sent = true;
                if let Err(err) = child.start_kill() {
                    tracing::debug!(pid, %err, "killing the worker");
                }
            }
        }
    };
    match status {
        Ok(status) => {
            tracing::debug!(pid, %status, "worker process exited");
            exit_tx.send_replace(Some(status));
        }
        Err(err) => tracing::warn!(pid, %err, "collecting the worker's exit status failed"),
    }
}

/// Whether the connection comes from the spawned process (SO_PEERCRED); logs it when not.
fn peer_is(stream: &UnixStream, pid: u32, socket: &Path) -> bool {
    match stream.peer_cred() {
        Ok(cred) => match cred.pid() {
            Some(peer) if i64::from(peer) == i64::from(pid) => true,
            peer => {
                tracing::warn!(
                    pid,
                    peer = ?peer,
                    peer_uid = cred.uid(),
                    socket = %socket.display(),
                    "a process other than the worker connected to its socket; connection closed"
                );
                false
            }
        },
        Err(err) => {
            tracing::warn!(pid, %err, socket = %socket.display(), "cannot read the peer credentials of a worker socket connection; connection closed");
            false
        }
    }
}

/// The variable that carries the per-worker nonce; the shim removes it before user code runs.
pub const NONCE_VAR: &str = "BERTH_WORKER_NONCE";

/// 128 random bits as hex (a clock-and-counter mix only if the OS has no randomness).
fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (now ^ u128::from(SOCKET_COUNTER.load(Ordering::Relaxed))).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates the shared socket directory (0700) and this worker's private one inside it (0700,
/// owned by the worker's user when it runs as another one).
async fn prepare_socket_dir(
    parent: &Path,
    dir: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), SpawnError> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SpawnError::SocketDir { path, source }
    };
    let mode = if owner.is_some() { 0o711 } else { 0o700 };
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(parent)
        .await
        .map_err(fail(parent))?;
    tokio::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(fail(parent))?;
    let _ = tokio::fs::remove_dir_all(dir).await;
    tokio::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .await
        .map_err(fail(dir))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(fail(dir))?;
    }
    Ok(())
}

/// Compile the shim's bytecode for `python` into `__pycache__` beside it, once per interpreter and
/// shim in this process, in the background. A sandboxed worker may read that cache but not write
/// it, so the server's user compiles: `-I -S` keeps environment variables, user and site packages
/// (their `.pth` code) out of that run; it compiles the shim and nothing else. A failure only
/// means workers of that interpreter keep compiling the shim themselves.
fn precompile_shim(python: &Path, shim: &Path) {
    let key = (python.to_path_buf(), shim.to_path_buf());
    match PRECOMPILED.lock() {
        Ok(mut started) => {
            if !started.insert(key) {
                return;
            }
        }
        Err(_) => return,
    }
    let mut command = Command::new(python);
    command
        .args(["-I", "-S", "-c", PRECOMPILE])
        .arg(shim)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let python = python.to_path_buf();
    tokio::spawn(async move {
        match command.output().await {
            Ok(output) if output.status.success() => {}
            Ok(output) => tracing::debug!(
                python = %python.display(),
                stderr = %String::from_utf8_lossy(&output.stderr).trim(),
                "compiling the worker shim's bytecode failed"
            ),
            Err(err) => tracing::debug!(
                python = %python.display(),
                "compiling the worker shim's bytecode failed: {err}"
            ),
        }
    });
}

/// Write the embedded shim to `dir/berth_worker.py` (atomically; skipped when already identical)
/// and create `dir/__pycache__` for its bytecode; a rewritten shim's old bytecode is removed.
pub async fn install_shim(dir: &Path) -> io::Result<PathBuf> {
    let cache = dir.join(SHIM_CACHE_DIR);
    tokio::fs::create_dir_all(&cache).await?;
    let path = dir.join(SHIM_FILE_NAME);
    if let Ok(existing) = tokio::fs::read(&path).await
        && existing == SHIM_SOURCE.as_bytes()
    {
        return Ok(path);
    }
    let stem = SHIM_FILE_NAME.trim_end_matches(".py");
    if let Ok(mut entries) = tokio::fs::read_dir(&cache).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(&format!("{stem}.")) {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }
    let tmp = dir.join(format!(
        ".{SHIM_FILE_NAME}.{}.{}.tmp",
        std::process::id(),
        SHIM_TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    tokio::fs::write(&tmp, SHIM_SOURCE).await?;
    if let Err(err) = tokio::fs::rename(&tmp, &path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(err);
    }
    Ok(path)
}

#[cfg(test)]
mod tests;
