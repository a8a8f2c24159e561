//! Python worker processes for Berth: the framed Unix-socket protocol, the connection client, and
//! the supervisor that starts, watches and stops one `python -u berth_worker.py` process (through
//! [`SHIM_BOOT`], which loads the shim's cached bytecode).
//!
//! - [`protocol`]: message types and their encoding (pure, no I/O); spec in `docs/worker-protocol.md`.
//! - [`client`]: [`WorkerConn`], one pipelined connection (score, ping, swagger, shutdown).
//! - [`supervisor`]: [`spawn`] a [`Worker`] from a [`WorkerSpec`], [`Worker::shutdown`] it.
//! - [`sandbox`]: the policy a worker runs under and the launcher that applies it before `exec`.
//! - [`logs`]: the captured stdout/stderr tail ([`LogTail`]) with followers.
//!
//! The Python shim ([`SHIM_SOURCE`]) is embedded in the binary and written to disk by the supervisor.

pub mod client;
pub mod logs;
pub mod protocol;
pub mod sandbox;
pub mod supervisor;
pub mod test_skips;

pub use client::{ConnError, PendingConn, ScoreAnswer, StreamedResult, WorkerConn};
pub use logs::{LogLine, LogTail, Stream};
pub use protocol::{
    DEFAULT_MAX_FRAME, Headers, Hello, InitFailed, InitOk, InitStage, InputMode, PROTOCOL_VERSION,
    ProtocolError, ScoreRequest, ScoreResult, SwaggerResult,
};
pub use sandbox::{Launcher, SandboxPolicy};
pub use supervisor::{
    NONCE_VAR, OnStarted, SpawnError, StopError, Stopped, Worker, WorkerSpec, install_shim, spawn,
};

/// The Python worker shim (stdlib only), run as `python -u berth_worker.py --socket PATH` (the
/// supervisor starts it through [`SHIM_BOOT`], which is equivalent).
pub const SHIM_SOURCE: &str = include_str!("../shim/berth_worker.py");

/// File name the supervisor gives the shim in the runtime directory.
pub const SHIM_FILE_NAME: &str = "berth_worker.py";

/// Directory beside the shim holding its compiled bytecode (`berth_worker.<tag>.pyc`).
pub const SHIM_CACHE_DIR: &str = "__pycache__";

/// The `-c` program that starts the shim: `python -u -c SHIM_BOOT <shim> --socket PATH`.
///
/// It runs the shim as `__main__` exactly as `python -u <shim>` would (same `sys.argv`,
/// `sys.path[0]` and `__file__`), but through the import system's source loader, so its bytecode
/// comes from (and goes to) `__pycache__` when that is readable (writable): compiling the shim's
/// source in every worker costs tens of milliseconds and leaves megabytes of the compiler's memory
/// in the process.
pub const SHIM_BOOT: &str = "\
import sys
from importlib.machinery import SourceFileLoader
del sys.argv[0]
__file__ = sys.argv[0]
sys.path[0] = __file__.rpartition('/')[0]
exec(SourceFileLoader('__main__', __file__).get_code('__main__'))
";

/// `SHIM_VERSION` of the embedded shim (reported in HELLO).
pub const SHIM_VERSION: &str = "1.0.0";

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod conformance_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_shim_matches_the_crate_constants() {
        assert!(SHIM_SOURCE.contains(&format!("\nSHIM_VERSION = \"{SHIM_VERSION}\"\n")));
        assert!(SHIM_SOURCE.contains(&format!("\nPROTOCOL_VERSION = {PROTOCOL_VERSION}\n")));
        assert!(SHIM_SOURCE.contains("\nDEFAULT_MAX_FRAME = (1 << 30) + (64 << 10)\n"));
        assert_eq!(DEFAULT_MAX_FRAME, (1 << 30) + (64 << 10));
    }
}
