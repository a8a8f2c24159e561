//! The handle of one running replica: what the gateway sends requests to and
//! what the reconciler starts, watches, drains and stops.
//!
//! A replica is a worker connection ([`WorkerConn`], over a Unix socket or TLS
//! over TCP) plus what runs the worker ([`Runner`]): a local process this
//! server supervises, or a remote endpoint (a `berth replica` process or a pod)
//! with, when known, someone who can kill it and report its exit
//! ([`RemoteOwner`]). The gateway only needs the connection, so any target can
//! hand it a `Replica`.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_worker::{Hello, InitOk, LogTail, Worker, WorkerConn};

use crate::compute::local::ReplicaLimits;

/// Lines and bytes kept of a remote replica's output.
const REMOTE_LOG_LINES: usize = 1000;
const REMOTE_LOG_BYTES: usize = 256 * 1024;

/// Whoever runs a remote replica and can end it: the local target for a
/// `berth replica` child process, a cluster target for a pod.
#[async_trait]
pub trait RemoteOwner: Send + Sync + 'static {
    /// Ends the replica now (SIGKILL, pod deletion); in-flight requests fail.
    fn kill(&self);
    /// Resolves once the replica is gone, with its exit status when known.
    async fn exited(&self) -> Option<ExitStatus>;
    /// Its process id, when it is a process on this machine.
    fn pid(&self) -> Option<u32> {
        None
    }
    /// Asks it to stop (its worker finishes what it has), ends it after
    /// `grace`. By default: ends it at once.
    async fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        let _ = grace;
        self.kill();
        self.exited().await
    }
}

/// A replica reached over the network.
pub struct RemoteRunner {
    /// The address the gateway dialled.
    pub addr: SocketAddr,
    /// Its output as far as this server knows it (a local child's stdout/stderr,
    /// a pod's log lines fed by the cluster target); empty when nobody feeds it.
    pub logs: LogTail,
    /// Who ends it and observes its exit; `None` when this server cannot (then
    /// a closed connection counts as its exit).
    pub owner: Option<Arc<dyn RemoteOwner>>,
}

impl RemoteRunner {
    /// A runner for `addr` with an empty log tail.
    pub fn new(addr: SocketAddr, owner: Option<Arc<dyn RemoteOwner>>) -> RemoteRunner {
        RemoteRunner {
            addr,
            logs: LogTail::new(REMOTE_LOG_LINES, REMOTE_LOG_BYTES),
            owner,
        }
    }
}

/// What runs a replica's worker.
pub enum Runner {
    /// A sandboxed worker process this server spawned (it owns the connection).
    Local(Worker),
    /// A worker behind a `berth replica` endpoint.
    Remote {
        /// The endpoint and its owner.
        runner: RemoteRunner,
        /// The connection to it.
        conn: WorkerConn,
        /// The worker's HELLO, as relayed by the replica.
        hello: Hello,
        /// The worker's INIT_OK, as relayed by the replica.
        init: InitOk,
    },
}

/// One running replica.
pub struct Replica {
    /// Position in its set, from 0.
    pub index: u32,
    /// Revision it serves.
    pub revision: u32,
    /// What runs it and its connection.
    pub runner: Runner,
    /// False once the replica must get no new requests (timed out, exited, stopping).
    pub healthy: AtomicBool,
    /// True once the runtime stops it on purpose (drain, delete, shutdown): its
    /// exit is then expected and it is not replaced.
    pub retiring: AtomicBool,
    /// When its worker passed `init()`.
    pub started: Instant,
    /// Why Berth killed it (scoring timeout, liveness probe, memory limit), set
    /// once by whoever kills it and reported when it is replaced.
    pub kill_reason: OnceLock<String>,
    /// Its resource group and GPUs, and why it was killed for a limit
    /// ([`ReplicaLimits::exit_reason`]); `None` when this server does not
    /// enforce its limits (a cluster does).
    pub limits: Option<Arc<ReplicaLimits>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("revision", &self.revision)
            .field("index", &self.index)
            .field("at", &self.location())
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// A replica of `revision` whose worker runs as a local process.
    pub fn local(
        index: u32,
        revision: u32,
        worker: Worker,
        limits: Option<Arc<ReplicaLimits>>,
    ) -> Replica {
        Replica::with_runner(index, revision, Runner::Local(worker), limits)
    }

    /// A replica of `revision` reached over the network through `conn`.
    pub fn remote(
        index: u32,
        revision: u32,
        runner: RemoteRunner,
        conn: WorkerConn,
        hello: Hello,
        init: InitOk,
    ) -> Replica {
        Replica::with_runner(
            index,
            revision,
            Runner::Remote {
                runner,
                conn,
                hello,
                init,
            },
            None,
        )
    }

    fn with_runner(
        index: u32,
        revision: u32,
        runner: Runner,
        limits: Option<Arc<ReplicaLimits>>,
    ) -> Replica {
        Replica {
            index,
            revision,
            runner,
            healthy: AtomicBool::new(true),
            retiring: AtomicBool::new(false),
            started: Instant::now(),
            kill_reason: OnceLock::new(),
            limits,
        }
    }

    /// The connection requests go through (clone it to share).
    pub fn conn(&self) -> &WorkerConn {
        match &self.runner {
            Runner::Local(worker) => worker.conn(),
            Runner::Remote { conn, .. } => conn,
        }
    }

    /// What the worker said in HELLO.
    pub fn hello(&self) -> &Hello {
        match &self.runner {
            Runner::Local(worker) => worker.hello(),
            Runner::Remote { hello, .. } => hello,
        }
    }

    /// `init()` time and input mode.
    pub fn init(&self) -> &InitOk {
        match &self.runner {
            Runner::Local(worker) => worker.init(),
            Runner::Remote { init, .. } => init,
        }
    }

    /// Its captured output (for a remote replica, what its owner fed in).
    pub fn logs(&self) -> &LogTail {
        match &self.runner {
            Runner::Local(worker) => worker.logs(),
            Runner::Remote { runner, .. } => &runner.logs,
        }
    }

    /// The process id on this machine, when there is one.
    pub fn pid(&self) -> Option<u32> {
        match &self.runner {
            Runner::Local(worker) => Some(worker.pid()),
            Runner::Remote { runner, .. } => runner.owner.as_ref().and_then(|o| o.pid()),
        }
    }

    /// Where it runs, for messages: `pid N` or the remote address.
    pub fn location(&self) -> String {
        match &self.runner {
            Runner::Local(worker) => format!("pid {}", worker.pid()),
            Runner::Remote { runner, .. } => match runner.owner.as_ref().and_then(|o| o.pid()) {
                Some(pid) => format!("pid {pid}, {}", runner.addr),
                None => runner.addr.to_string(),
            },
        }
    }

    /// Whether it takes new requests.
    pub fn is_ready(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && !self.conn().is_closed()
    }

    /// Requests written to it and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.conn().in_flight()
    }

    /// Takes it out of rotation and kills it, recording why.
    pub fn kill(&self, reason: String) {
        self.healthy.store(false, Ordering::Release);
        let _ = self.kill_reason.set(reason);
        self.end_now();
    }

    /// Ends it at once without a reason (its process, or its connection and owner).
    pub fn end_now(&self) {
        match &self.runner {
            Runner::Local(worker) => worker.kill(),
            Runner::Remote { runner, conn, .. } => {
                conn.abort("the replica was killed");
                if let Some(owner) = &runner.owner {
                    owner.kill();
                }
            }
        }
    }

    /// Resolves once it is gone, with its exit status when known. A remote
    /// replica whose connection closed is ended through its owner (a replica
    /// this server cannot reach serves nobody); without an owner the closed
    /// connection is its end.
    pub async fn exited(&self) -> Option<ExitStatus> {
        match &self.runner {
            Runner::Local(worker) => worker.exited().await,
            Runner::Remote { runner, conn, .. } => match &runner.owner {
                Some(owner) => {
                    tokio::select! {
                        status = owner.exited() => return status,
                        () = conn.closed() => {}
                    }
                    // Stopping on purpose closes the connection first; the stop ends it.
                    if !self.retiring.load(Ordering::Acquire) {
                        owner.kill();
                    }
                    owner.exited().await
                }
                None => {
                    conn.closed().await;
                    None
                }
            },
        }
    }

    /// Asks it to finish (requests already sent are still answered), waits up
    /// to `grace`, then ends it.
    pub async fn shutdown(&self, grace: Duration) {
        match &self.runner {
            Runner::Local(worker) => {
                if let Err(e) = worker.shutdown(grace).await {
                    tracing::warn!(error = %e, "a replica did not stop cleanly");
                }
            }
            Runner::Remote { runner, conn, .. } => {
                // SHUTDOWN ends this connection after its answers; the replica
                // itself is ended by its owner (other servers may still use it).
                let _ = conn.shutdown();
                let drained = async {
                    while conn.in_flight() > 0 && !conn.is_closed() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                };
                let _ = tokio::time::timeout(grace, drained).await;
                conn.abort("the replica was stopped");
                if let Some(owner) = &runner.owner
                    && tokio::time::timeout(grace + Duration::from_secs(5), owner.stop(grace))
                        .await
                        .is_err()
                {
                    tracing::warn!(addr = %runner.addr, "a remote replica did not exit after being killed");
                }
            }
        }
    }
}
