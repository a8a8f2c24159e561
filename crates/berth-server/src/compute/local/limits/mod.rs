//! Resource limits and GPUs on the local target.
//!
//! At start-up [`ResourceManager::start`] picks the enforcement: `cgroup-v2`
//! (a cgroup2 group offering memory and cpu under which the server can make
//! children), else `cgroup-v1` (writable memory and cpu hierarchies), else
//! `rlimit` (CPU affinity and a memory watchdog in the server), or `off`.
//! Requests (`cpu`, `memoryInGB`) shape sharing; limits (`cpuLimit`,
//! `memoryInGBLimit`) cap, and without a limit nothing is capped.
//!
//! Per replica, [`ResourceManager::prepare`] makes `berth/s<pid>/<service>/r<rev>-<index>`
//! and assigns GPUs, and hands the worker what its shim applies before the
//! entry script is imported (`BERTH_CGROUP_PROCS`, `BERTH_CPU_AFFINITY`,
//! `BERTH_RLIMIT_AS_BYTES`, `CUDA_VISIBLE_DEVICES`). [`supervise`] watches the
//! process; once it is gone the group is removed, the GPUs freed, and a kill
//! for memory is reported: a line in the replica's log tail, a server log line,
//! the service's `lastLimitKill`, and [`ReplicaLimits::exit_reason`].

mod cgroup;
pub mod descendants;
mod gpus;
mod status;
mod watchdog;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_api::deployment::ContainerResourceRequirements;
use berth_api::service::{LimitKill, ResourceEnforcement};
use tokio::sync::watch;

use cgroup::Group;
pub use cgroup::{CgroupRoots, GroupSettings, Layout};
pub use gpus::{GpuOwner, GpuPool};
pub use status::describe;

use crate::compute::Replica;

/// `--resource-enforcement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnforcementChoice {
    /// The best this machine offers: cgroup-v2, else cgroup-v1, else rlimit.
    Auto,
    /// cgroup v2 (fails start-up when unusable).
    #[value(name = "cgroup-v2")]
    CgroupV2,
    /// cgroup v1 (fails start-up when unusable).
    #[value(name = "cgroup-v1")]
    CgroupV1,
    /// CPU affinity and a memory watchdog.
    Rlimit,
    /// Enforce nothing.
    Off,
}

/// Setting up or applying resource limits failed.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// The asked-for enforcement cannot be used on this machine.
    #[error("{0}")]
    Unavailable(String),
    /// A group directory could not be made.
    #[error("creating the cgroup {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A control file could not be written.
    #[error("writing `{value}` to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The value.
        value: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not enough free GPUs.
    #[error("{0}")]
    Unschedulable(String),
}

impl LimitsError {
    /// The operation error code for a replica that could not start because of this.
    pub fn code(&self) -> berth_api::OperationErrorCode {
        match self {
            Self::Unschedulable(_) => berth_api::OperationErrorCode::Unschedulable,
            _ => berth_api::OperationErrorCode::ResourceLimitsFailed,
        }
    }
}

/// The variable naming the `cgroup.procs` files the shim joins (when no launcher does).
pub const CGROUP_PROCS_VAR: &str = "BERTH_CGROUP_PROCS";

/// Bytes in `gb` (GiB, like Kubernetes' `Gi`).
pub fn gb_to_bytes(gb: f64) -> u64 {
    (gb * f64::from(1u32 << 30)).round() as u64
}

/// The resource side of the local target: the mode, the group layout, the GPU
/// pool, the CPUs to spread affinity over, and the last limit kill per service.
#[derive(Debug)]
pub struct ResourceManager {
    mode: ResourceEnforcement,
    layout: Option<Layout>,
    gpus: Mutex<GpuPool>,
    cpus: Vec<u32>,
    next_cpu: AtomicUsize,
    kills: Mutex<HashMap<String, LimitKill>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `0-2,5` → `[0, 1, 2, 5]`.
pub fn parse_cpu_list(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.trim().parse::<u32>().ok()),
        }
    }
    out
}

fn allowed_cpus() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(parse_cpu_list)
        .unwrap_or_default();
    if list.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        (0..n).collect()
    } else {
        list
    }
}

impl ResourceManager {
    /// Detects (or checks) the enforcement and prepares this server's groups.
    pub fn start(choice: EnforcementChoice, gpus: &[String]) -> Result<Self, LimitsError> {
        let roots = cgroup::discover();
        let instance = format!("s{}", std::process::id());
        let (mode, layout) = Self::choose(choice, &roots, &instance)?;
        tracing::info!(enforcement = mode.as_str(), layout = ?layout, gpus = ?gpus, "resource enforcement");
        Ok(Self::with_layout(mode, layout, gpus, allowed_cpus()))
    }

    fn choose(
        choice: EnforcementChoice,
        roots: &CgroupRoots,
        instance: &str,
    ) -> Result<(ResourceEnforcement, Option<Layout>), LimitsError> {
        let v2 = || match &roots.v2 {
            Some(own) => cgroup::prepare_v2(own, instance),
            None => Err(LimitsError::Unavailable("no cgroup2 mount".into())),
        };
        let v1 = || match (&roots.v1_memory, &roots.v1_cpu) {
            (Some(m), Some(c)) => cgroup::prepare_v1(m, c, instance)
                .map(|layout| cgroup::with_v1_pids(layout, roots.v1_pids.as_deref(), instance)),
            _ => Err(LimitsError::Unavailable(
                "no cgroup v1 memory and cpu hierarchies".into(),
            )),
        };
        let refused = |name: &str, e: LimitsError| {
            LimitsError::Unavailable(format!(
                "`--resource-enforcement {name}` cannot be used here: {e}; use `auto` to take the best this machine offers, or `rlimit`"
            ))
        };
        Ok(match choice {
            EnforcementChoice::Off => (ResourceEnforcement::Off, None),
            EnforcementChoice::Rlimit => (ResourceEnforcement::Rlimit, None),
            EnforcementChoice::CgroupV2 => (
                ResourceEnforcement::CgroupV2,
                Some(v2().map_err(|e| refused("cgroup-v2", e))?),
            ),
            EnforcementChoice::CgroupV1 => (
                ResourceEnforcement::CgroupV1,
                Some(v1().map_err(|e| refused("cgroup-v1", e))?),
            ),
            EnforcementChoice::Auto => match v2() {
                Ok(layout) => (ResourceEnforcement::CgroupV2, Some(layout)),
                Err(e2) => match v1() {
                    Ok(layout) => (ResourceEnforcement::CgroupV1, Some(layout)),
                    Err(e1) => {
                        tracing::info!(cgroup_v2 = %e2, cgroup_v1 = %e1, "no usable cgroups; enforcing with affinity and a memory watchdog");
                        (ResourceEnforcement::Rlimit, None)
                    }
                },
            },
        })
    }

    /// A manager with a given mode and layout (tests, or after detection).
    pub fn with_layout(
        mode: ResourceEnforcement,
        layout: Option<Layout>,
        gpus: &[String],
        cpus: Vec<u32>,
    ) -> Self {
        Self {
            mode,
            layout,
            gpus: Mutex::new(GpuPool::new(gpus)),
            cpus,
            next_cpu: AtomicUsize::new(0),
            kills: Mutex::new(HashMap::new()),
        }
    }

    /// Removes this server's groups (after every replica stopped); groups a
    /// killed server leaves are removed by the next start.
    pub fn remove_groups(&self) {
        match &self.layout {
            Some(Layout::V2 { base }) => cgroup::remove_tree(base),
            Some(Layout::V1 { memory, cpu, pids }) => {
                cgroup::remove_tree(memory);
                cgroup::remove_tree(cpu);
                if let Some(pids) = pids {
                    cgroup::remove_tree(pids);
                }
            }
            None => {}
        }
    }

    /// Whether replica groups get `pids.max`.
    pub fn limits_processes(&self) -> bool {
        match &self.layout {
            Some(Layout::V1 { pids, .. }) => pids.is_some(),
            Some(Layout::V2 { base }) => {
                std::fs::read_to_string(base.join("cgroup.subtree_control"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .any(|c| c == "pids")
            }
            None => false,
        }
    }

    /// The enforcement in effect.
    pub fn mode(&self) -> ResourceEnforcement {
        self.mode
    }

    /// Checks that `replicas` replicas of `per_replica` GPUs can start for
    /// `service`. `live` is true when the change keeps the running replicas (a
    /// scale change): their GPUs count as available; a rolling change starts
    /// new replicas first, so they do not. The error message names the
    /// request, the free and configured GPUs, and the fix.
    pub fn check_gpus(
        &self,
        service: &str,
        per_replica: u32,
        replicas: u32,
        live: bool,
    ) -> Result<(), LimitsError> {
        if per_replica == 0 {
            return Ok(());
        }
        let pool = lock(&self.gpus);
        let own = pool.held_by(service);
        let free = pool.free();
        let available = free.len() + if live { own } else { 0 };
        let needed = u64::from(per_replica) * u64::from(replicas);
        if needed <= available as u64 {
            return Ok(());
        }
        Err(LimitsError::Unschedulable(gpus::unschedulable_message(
            service,
            per_replica,
            replicas,
            &free,
            &pool.configured(),
            (!live).then_some(own),
        )))
    }

    /// GPU assignments of `service` (`r<rev>/<index>=<ids>`).
    pub fn gpu_assignments(&self, service: &str) -> Vec<String> {
        lock(&self.gpus).assignments(service)
    }

    /// Whether the server has GPUs configured.
    pub fn has_gpus(&self) -> bool {
        !lock(&self.gpus).configured().is_empty()
    }

    /// The last replica of `service` killed for going over a limit.
    pub fn last_kill(&self, service: &str) -> Option<LimitKill> {
        lock(&self.kills).get(service).cloned()
    }

    /// Forgets a deleted service's kill record.
    pub fn forget(&self, service: &str) {
        lock(&self.kills).remove(service);
    }

    fn spread_cpus(&self, cores: f64) -> Vec<u32> {
        let n = self.cpus.len().max(1);
        let k = (cores.ceil() as usize).clamp(1, n);
        let start = self.next_cpu.fetch_add(k, Ordering::Relaxed);
        (0..k)
            .filter_map(|i| self.cpus.get((start + i) % n).copied())
            .collect()
    }

    /// Makes the group, assigns GPUs and computes the worker's variables for one replica,
    /// with the default process limit.
    pub fn prepare(
        self: &Arc<Self>,
        service: &str,
        revision: u32,
        index: u32,
        req: &ContainerResourceRequirements,
    ) -> Result<Arc<ReplicaLimits>, LimitsError> {
        self.prepare_with(
            service,
            revision,
            index,
            req,
            berth_api::deployment::DEFAULT_MAX_PROCESSES,
        )
    }

    /// [`Self::prepare`] with `maxProcessesPerContainer` (`pids.max` where cgroups offer it).
    pub fn prepare_with(
        self: &Arc<Self>,
        service: &str,
        revision: u32,
        index: u32,
        req: &ContainerResourceRequirements,
        max_processes: u32,
    ) -> Result<Arc<ReplicaLimits>, LimitsError> {
        let owner = GpuOwner {
            service: service.to_owned(),
            revision,
            index,
        };
        let mut env = Vec::new();
        let gpus = {
            let mut pool = lock(&self.gpus);
            let configured = pool.configured();
            let taken = if req.gpu > 0 {
                let free = pool.free();
                pool.allocate(req.gpu as usize, &owner).ok_or_else(|| {
                    LimitsError::Unschedulable(gpus::unschedulable_message(
                        service,
                        req.gpu,
                        1,
                        &free,
                        &configured,
                        None,
                    ))
                })?
            } else {
                Vec::new()
            };
            // With GPUs on the server, CPU services see none (as on Kubernetes).
            if !configured.is_empty() {
                env.push(("CUDA_VISIBLE_DEVICES".to_owned(), taken.join(",")));
                let nvidia = if taken.is_empty() {
                    "none".to_owned()
                } else {
                    taken.join(",")
                };
                env.push(("NVIDIA_VISIBLE_DEVICES".to_owned(), nvidia));
            }
            taken
        };
        let memory_limit = req.memory_in_gb_limit.map(gb_to_bytes);
        let settings = GroupSettings {
            cpu: req.cpu,
            cpu_limit: req.cpu_limit,
            memory: gb_to_bytes(req.memory_in_gb),
            memory_limit,
            pids_max: Some(u64::from(max_processes)),
        };
        let mut group = None;
        let mut watchdog_limit = None;
        match (&self.layout, self.mode) {
            (Some(layout), ResourceEnforcement::CgroupV1 | ResourceEnforcement::CgroupV2) => {
                let leaf = format!("r{revision}-{index}");
                let made = Group::create(layout, service, &leaf, &settings).inspect_err(|_| {
                    lock(&self.gpus).release(&gpus, &owner);
                })?;
                let files: Vec<String> = made
                    .procs_files()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                env.push((CGROUP_PROCS_VAR.to_owned(), files.join(":")));
                group = Some(made);
            }
            (_, ResourceEnforcement::Rlimit) => {
                if let Some(limit) = req.cpu_limit {
                    let cpus: Vec<String> =
                        self.spread_cpus(limit).iter().map(u32::to_string).collect();
                    env.push(("BERTH_CPU_AFFINITY".to_owned(), cpus.join(",")));
                }
                if let Some(limit) = memory_limit {
                    watchdog_limit = Some(limit);
                    // A far backstop for growth the watchdog cannot see in time (init());
                    // CUDA reserves huge address ranges, so not with GPUs.
                    if gpus.is_empty() {
                        let backstop = limit.saturating_mul(4).saturating_add(1 << 30);
                        env.push(("BERTH_RLIMIT_AS_BYTES".to_owned(), backstop.to_string()));
                    }
                }
            }
            _ => {}
        }
        let (settled, _) = watch::channel(None);
        Ok(Arc::new(ReplicaLimits {
            manager: self.clone(),
            owner,
            group,
            gpus,
            env,
            memory_limit,
            watchdog_limit,
            kill_reason: Mutex::new(None),
            settled,
            pid: std::sync::OnceLock::new(),
        }))
    }
}

/// One replica's share: its group, GPUs, worker variables, and why it was
/// killed (once its process is gone).
#[derive(Debug)]
pub struct ReplicaLimits {
    manager: Arc<ResourceManager>,
    owner: GpuOwner,
    group: Option<Group>,
    gpus: Vec<String>,
    env: Vec<(String, String)>,
    memory_limit: Option<u64>,
    watchdog_limit: Option<u64>,
    kill_reason: Mutex<Option<String>>,
    /// None until settled; then the kill reason, if it was killed for a limit.
    settled: watch::Sender<Option<Option<String>>>,
    /// The worker's pid (its process group) once it runs.
    pid: std::sync::OnceLock<u32>,
}

impl ReplicaLimits {
    /// Records the worker's pid (also its process group id).
    pub fn set_pid(&self, pid: u32) {
        let _ = self.pid.set(pid);
    }

    /// Whether `pids.max` applies to the replica.
    pub fn limits_processes(&self) -> bool {
        self.group.as_ref().is_some_and(Group::limits_pids)
    }

    /// Variables for the worker.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The `cgroup.procs` files of the replica's groups (empty without cgroups).
    pub fn cgroup_procs(&self) -> Vec<PathBuf> {
        self.group
            .as_ref()
            .map(Group::procs_files)
            .unwrap_or_default()
    }

    /// GPU ids assigned.
    pub fn gpus(&self) -> &[String] {
        &self.gpus
    }

    /// In `rlimit` mode with a memory limit: the hook that starts the memory
    /// watchdog on the worker's process as soon as it runs, so `init()` is
    /// watched too.
    pub fn on_started(self: &Arc<Self>) -> Option<berth_worker::OnStarted> {
        let limit = self.watchdog_limit?;
        let limits = self.clone();
        Some(berth_worker::OnStarted(Arc::new(move |pid| {
            tokio::spawn(watchdog::run(pid, limits.clone(), limit));
        })))
    }

    fn set_kill_reason(&self, reason: String) {
        *lock(&self.kill_reason) = Some(reason);
    }

    /// Why the replica was killed for a resource limit, once its process is
    /// gone and this was worked out (None while running, or when it exited
    /// for another reason).
    pub fn killed_reason(&self) -> Option<String> {
        self.settled.borrow().clone().flatten()
    }

    /// Waits until the process is gone and its end was accounted for, then
    /// returns why it was killed for a resource limit (None: some other exit).
    pub async fn exit_reason(&self) -> Option<String> {
        let mut rx = self.settled.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(value) => value.clone().flatten(),
            Err(_) => None,
        }
    }

    /// The reason when the kernel killed the process for memory.
    fn oom_reason(&self, status: Option<std::process::ExitStatus>) -> Option<String> {
        use std::os::unix::process::ExitStatusExt;
        let group = self.group.as_ref()?;
        let sigkill = status.is_none_or(|s| s.signal() == Some(9));
        if !sigkill || !group.oom_killed() {
            return None;
        }
        let mode = self.manager.mode.as_str();
        Some(format!(
            "killed for exceeding its memory limit: memoryInGBLimit {} MiB ({mode} mode: the kernel's OOM killer ended the process)",
            self.memory_limit.unwrap_or(0) >> 20
        ))
    }

    /// After the process is gone: works out a limit kill, reports it, removes
    /// the group and frees the GPUs. Returns the kill reason.
    async fn settle(
        &self,
        status: Option<std::process::ExitStatus>,
        logs: Option<&berth_worker::LogTail>,
    ) -> Option<String> {
        let reason = lock(&self.kill_reason)
            .clone()
            .or_else(|| self.oom_reason(status));
        if let Some(reason) = &reason {
            let o = &self.owner;
            tracing::warn!(service = %o.service, revision = o.revision, replica = o.index, %reason, "replica killed for its resource limit");
            if let Some(logs) = logs {
                logs.push(berth_worker::Stream::Stderr, format!("berth: {reason}"));
            }
            lock(&self.manager.kills).insert(
                o.service.clone(),
                LimitKill {
                    revision: o.revision,
                    replica: o.index,
                    time: crate::now_rfc3339(),
                    reason: reason.clone(),
                },
            );
        }
        // A replica is every process it started: none may outlive it (nor keep its GPUs).
        let o = &self.owner;
        if let Some(group) = &self.group {
            let left = group.kill_all().await;
            if left > 0 {
                tracing::info!(service = %o.service, revision = o.revision, replica = o.index, processes = left, "ended the processes the replica left behind");
            }
            group.remove().await;
        } else if let Some(&pid) = self.pid.get() {
            descendants::kill_group(pid).await;
        }
        lock(&self.manager.gpus).release(&self.gpus, &self.owner);
        self.settled.send_replace(Some(reason.clone()));
        reason
    }

    /// After a failed start: the limit kill reason if the kernel killed the
    /// worker for memory during init; frees everything.
    pub async fn start_failed(&self, exit: Option<std::process::ExitStatus>) -> Option<String> {
        self.settle(exit, None).await
    }
}

/// Watches a started replica: once its process is gone settles its limits
/// (report, group, GPUs). The `rlimit` memory watchdog runs from the process's
/// start ([`ReplicaLimits::on_started`]).
pub fn supervise(replica: &Arc<Replica>) {
    let replica = replica.clone();
    tokio::spawn(async move {
        let status = replica.exited().await;
        let logs = replica.logs().clone();
        let limits = replica.limits.clone();
        // Do not keep the replica (and its process handle) alive while settling.
        drop(replica);
        if let Some(limits) = limits {
            limits.settle(status, Some(&logs)).await;
        }
    });
}

#[cfg(test)]
mod tests;
