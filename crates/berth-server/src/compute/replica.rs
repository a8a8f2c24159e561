//! The handle of one running replica: what the gateway sends requests to and
//! what the reconciler starts, watches, drains and stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use berth_worker::Worker;

/// One running worker process.
pub struct Replica {
    /// Position in its set, from 0.
    pub index: u32,
    /// Revision it serves.
    pub revision: u32,
    /// The process and its connection.
    pub worker: Worker,
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
    /// ([`crate::compute::local::ReplicaLimits::exit_reason`]).
    pub limits: Arc<crate::compute::local::ReplicaLimits>,
}

impl Replica {
    /// Whether it takes new requests.
    pub fn is_ready(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && !self.worker.conn().is_closed()
    }

    /// Requests written to it and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.worker.conn().in_flight()
    }

    /// Takes it out of rotation and kills its process, recording why.
    pub fn kill(&self, reason: String) {
        self.healthy.store(false, Ordering::Release);
        let _ = self.kill_reason.set(reason);
        self.worker.kill();
    }
}
