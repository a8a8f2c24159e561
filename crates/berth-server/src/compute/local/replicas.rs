//! Starting, draining and stopping the worker processes of a revision.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_api::deployment::ContainerResourceRequirements;
use berth_worker::{InitStage, SpawnError, WorkerSpec};

use super::limits::{self, LimitsError, ResourceManager};
use super::sandbox::Isolation;
use crate::compute::Replica;

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
    /// The revision's CPU, memory and GPU settings.
    pub requirements: ContainerResourceRequirements,
    /// Groups, GPUs and the memory watchdog.
    pub resources: Arc<ResourceManager>,
    /// `maxProcessesPerContainer`.
    pub max_processes: u32,
    /// The worker sandbox.
    pub isolation: Arc<Isolation>,
    /// Where each replica's scratch directory (`TMPDIR`, `HOME`) is made.
    pub scratch_root: PathBuf,
    /// With `--replica-transport tcp`: start `berth replica` children instead of workers.
    pub child: Option<super::remote_child::ChildLaunch>,
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
#[derive(Debug, thiserror::Error)]
#[error("replica {index}: {error}")]
pub struct StartFailure {
    /// Which replica.
    pub index: u32,
    /// What happened.
    pub error: StartError,
}

/// What stopped a replica from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The worker did not start or its init failed.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// Its group or GPUs could not be set up (code `Unschedulable` for GPUs).
    #[error(transparent)]
    Resources(#[from] LimitsError),
    /// `--worker-isolation strict` and the sandbox is incomplete.
    #[error("{0}")]
    Isolation(String),
    /// The replica's scratch directory could not be made.
    #[error("preparing the replica's scratch directory {path}: {source}")]
    Scratch {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A replica on another compute target (a cluster's pod) did not start.
    #[error("{message}")]
    Elsewhere {
        /// The operation error code it shows as.
        code: berth_api::OperationErrorCode,
        /// What happened.
        message: String,
        /// The replica's last output lines (a pod's log).
        output: String,
    },
    /// A `berth replica` child exited or could not be reached before it was ready.
    #[error("the berth replica process {}", match .status {
        Some(status) => format!("exited {status} before it was ready"),
        None => "was not ready in time or could not be reached".to_owned(),
    })]
    Replica {
        /// Its exit status (3: the entry script failed or init() raised).
        status: Option<std::process::ExitStatus>,
        /// Its last output.
        output: String,
    },
    /// The worker was killed for its memory limit while starting.
    #[error("the worker was {reason} while loading the entry script or running init()")]
    LimitKilled {
        /// Why.
        reason: String,
        /// The worker failure it caused.
        spawn: SpawnError,
    },
}

impl StartError {
    /// The tail of the worker's output ("" when none).
    pub fn output(&self) -> &str {
        match self {
            Self::Spawn(e) | Self::LimitKilled { spawn: e, .. } => e.output(),
            Self::Elsewhere { output, .. } => output,
            Self::Replica { output, .. } => output,
            Self::Resources(_) | Self::Isolation(_) | Self::Scratch { .. } => "",
        }
    }

    /// The INIT_FAILED stage, when the entry script itself failed.
    pub fn init_stage(&self) -> Option<InitStage> {
        match self {
            Self::Spawn(e) => e.init_stage(),
            Self::Replica {
                status: Some(status),
                ..
            } if status.code() == Some(i32::from(crate::replica::EXIT_INIT_FAILED)) => {
                Some(InitStage::Init)
            }
            _ => None,
        }
    }

    /// The operation error code and what failed, for failures that are not the worker's own.
    pub fn resource_code(&self) -> Option<(berth_api::OperationErrorCode, &'static str)> {
        use berth_api::OperationErrorCode as Code;
        match self {
            Self::Resources(e) => Some((e.code(), "its resources could not be assigned")),
            Self::LimitKilled { .. } => Some((
                Code::MemoryLimitExceeded,
                "the worker went over memoryInGBLimit while starting",
            )),
            Self::Isolation(_) => Some((
                Code::IsolationUnavailable,
                "the worker sandbox is incomplete on this machine",
            )),
            Self::Scratch { .. } => Some((
                Code::ReplicaStartFailed,
                "its scratch directory could not be made",
            )),
            Self::Elsewhere { code, .. } => Some((*code, "the replica's pod did not serve")),
            Self::Spawn(_) | Self::Replica { .. } => None,
        }
    }
}

fn spawn_exit(error: &SpawnError) -> Option<std::process::ExitStatus> {
    match error {
        SpawnError::ExitedBeforeConnect { status, .. }
        | SpawnError::ExitedDuringInit { status, .. } => Some(*status),
        SpawnError::InitFailed { exit, .. } => *exit,
        _ => None,
    }
}

/// Starts one replica: assigns its resources, spawns the worker inside them,
/// and supervises them until the process is gone.
pub async fn start_replica(plan: &LaunchPlan, index: u32) -> Result<Arc<Replica>, StartFailure> {
    if let Some(child) = &plan.child {
        return super::remote_child::start(plan, child, index).await;
    }
    let fail = |error: StartError| StartFailure { index, error };
    if let Some(reason) = plan.isolation.refusal() {
        return Err(fail(StartError::Isolation(reason)));
    }
    let scratch = plan
        .scratch_root
        .join(format!("{}-r{}-{index}", plan.service, plan.revision));
    prepare_scratch(&scratch, &plan.isolation).map_err(|source| {
        fail(StartError::Scratch {
            path: scratch.clone(),
            source,
        })
    })?;
    let limits = plan
        .resources
        .prepare_with(
            &plan.service,
            plan.revision,
            index,
            &plan.requirements,
            plan.max_processes,
        )
        .map_err(|e| fail(e.into()))?;
    let mut spec = plan.spec();
    let launcher = match plan.isolation.launcher(
        &plan.python,
        &plan.runtime_dir,
        &plan.app,
        &scratch,
        limits.cgroup_procs(),
    ) {
        Ok(launcher) => launcher,
        Err(reason) => {
            limits.start_failed(None).await;
            return Err(fail(StartError::Isolation(reason)));
        }
    };
    for (key, value) in limits.env() {
        // The launcher joins the groups before it drops privileges and locks /sys/fs/cgroup.
        if launcher.is_some() && key == limits::CGROUP_PROCS_VAR {
            continue;
        }
        spec.env.push((key.into(), value.into()));
    }
    if launcher.is_some() {
        for key in ["TMPDIR", "HOME"] {
            spec.env.push((key.into(), scratch.clone().into()));
        }
        if let (Some(user), Some(policy)) =
            (plan.isolation.user(), launcher.as_ref().map(|l| &l.policy))
            && policy.user.is_some()
        {
            for key in ["USER", "LOGNAME"] {
                spec.env.push((key.into(), user.name.clone().into()));
            }
            spec.socket_owner = policy.user;
        }
    }
    spec.launcher = launcher;
    spec.on_started = limits.on_started();
    let worker = match berth_worker::spawn(spec).await {
        Ok(worker) => worker,
        Err(error) => {
            // A worker killed before it connected has no exit status here: assume SIGKILL.
            let exit = spawn_exit(&error);
            return Err(fail(match limits.start_failed(exit).await {
                Some(reason) => StartError::LimitKilled {
                    reason,
                    spawn: error,
                },
                None => StartError::Spawn(error),
            }));
        }
    };
    limits.set_pid(worker.pid());
    let replica = Arc::new(Replica::local(index, plan.revision, worker, Some(limits)));
    limits::supervise(&replica);
    let worker = replica.clone();
    tokio::spawn(async move {
        worker.exited().await;
        drop(worker);
        let _ = tokio::fs::remove_dir_all(&scratch).await;
    });
    Ok(replica)
}

/// A fresh, private scratch directory for one replica, owned by the worker's user.
fn prepare_scratch(dir: &std::path::Path, isolation: &Isolation) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    isolation.give(dir)
}

/// Stops replicas: SHUTDOWN, then kill after `grace`.
pub async fn stop_all(replicas: Vec<Arc<Replica>>, grace: Duration) {
    let stops = replicas.iter().map(|r| {
        r.retiring.store(true, std::sync::atomic::Ordering::Release);
        r.healthy.store(false, std::sync::atomic::Ordering::Release);
        r.shutdown(grace)
    });
    futures_util::future::join_all(stops).await;
}
