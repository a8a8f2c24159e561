//! Starting, draining and stopping the worker processes of a revision.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use berth_worker::{SpawnError, WorkerSpec};

use crate::gateway::{Replica, Route};

/// Everything needed to start a replica of one revision.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    /// Service.
    pub service: String,
    /// Revision.
    pub revision: u32,
    /// The environment's interpreter.
    pub python: PathBuf,
    /// Where the shim is written.
    pub runtime_dir: PathBuf,
    /// Where sockets are created.
    pub socket_dir: PathBuf,
    /// The app root (cwd).
    pub app: PathBuf,
    /// Variables for the worker (the whole environment: nothing is inherited).
    pub env: Vec<(String, String)>,
    /// How long import + `init()` may take before the replica counts as failed.
    pub init_timeout: Duration,
}

/// Variables passed through from the server's own environment.
const PASSED_THROUGH: &[&str] = &[
    "PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME",
];

impl LaunchPlan {
    fn spec(&self) -> WorkerSpec {
        let mut spec = WorkerSpec::new(
            self.python.clone(),
            self.runtime_dir.clone(),
            self.socket_dir.clone(),
            self.app.clone(),
        );
        spec.clear_env = true;
        spec.init_timeout = self.init_timeout;
        for key in PASSED_THROUGH {
            if let Some(value) = std::env::var_os(key) {
                spec.env.push((OsString::from(key), value));
            }
        }
        for (key, value) in &self.env {
            spec.env.push((key.into(), value.into()));
        }
        spec
    }
}

/// Why a replica did not start.
#[derive(Debug)]
pub struct StartFailure {
    /// Which replica.
    pub index: u32,
    /// What happened.
    pub error: SpawnError,
}

/// Starts one replica.
pub async fn start_replica(plan: &LaunchPlan, index: u32) -> Result<Arc<Replica>, StartFailure> {
    let worker = berth_worker::spawn(plan.spec())
        .await
        .map_err(|error| StartFailure { index, error })?;
    Ok(Arc::new(Replica {
        index,
        revision: plan.revision,
        worker,
        healthy: AtomicBool::new(true),
        retiring: AtomicBool::new(false),
        started: std::time::Instant::now(),
        kill_reason: std::sync::OnceLock::new(),
    }))
}

/// Stops replicas: SHUTDOWN, then kill after `grace`.
pub async fn stop_all(replicas: Vec<Arc<Replica>>, grace: Duration) {
    let stops = replicas.iter().map(|r| {
        r.retiring.store(true, std::sync::atomic::Ordering::Release);
        r.healthy.store(false, std::sync::atomic::Ordering::Release);
        r.worker.shutdown(grace)
    });
    for result in futures_util::future::join_all(stops).await {
        if let Err(e) = result {
            tracing::warn!(error = %e, "a replica did not stop cleanly");
        }
    }
}

/// Waits until no request holds `route` (every request that was routed to it
/// has been answered), at most `limit`, then stops its replicas.
pub async fn drain(route: Arc<Route>, limit: Duration, grace: Duration) {
    let replicas = route.replicas.clone();
    drain_subset(route, replicas, limit, grace).await;
}

/// Like [`drain`], but stops only `retired` (a scale-down keeps the others).
pub async fn drain_subset(
    route: Arc<Route>,
    retired: Vec<Arc<Replica>>,
    limit: Duration,
    grace: Duration,
) {
    for replica in &retired {
        replica
            .retiring
            .store(true, std::sync::atomic::Ordering::Release);
    }
    let deadline = tokio::time::Instant::now() + limit;
    // Our clone is the last one once no request holds the old route.
    while Arc::strong_count(&route) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(route);
    while retired.iter().any(|r| r.in_flight() > 0) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_all(retired, grace).await;
}
