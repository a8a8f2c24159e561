//! What `berth service show` says about resources: the mode, what each setting
//! is mapped to, the GPUs assigned and the last limit kill.

use berth_api::deployment::ContainerResourceRequirements;
use berth_api::service::{ResourceEnforcement, ResourceStatus};

use super::cgroup::{CFS_PERIOD_US, cfs_quota, cpu_shares, cpu_weight};
use super::gb_to_bytes;

const NO_CAP: &str = "no limit set: not capped";

/// The mapping of `req` under `mode` (no GPU ids, no kill).
pub fn describe(
    mode: ResourceEnforcement,
    req: &ContainerResourceRequirements,
    has_gpus: bool,
) -> ResourceStatus {
    use ResourceEnforcement as E;
    let memory = gb_to_bytes(req.memory_in_gb);
    let memory_limit = req.memory_in_gb_limit.map(gb_to_bytes);
    let (cpu, cpu_limit, memory_text, memory_limit_text) = match mode {
        E::CgroupV2 => (
            format!("cpu.weight {} (share under contention)", cpu_weight(req.cpu)),
            req.cpu_limit.map(|l| {
                format!("cpu.max {} {CFS_PERIOD_US} ({l} cores)", cfs_quota(l))
            }),
            format!("memory.low {memory} bytes (protected from reclaim)"),
            memory_limit.map(|l| {
                format!("memory.max {l} bytes, memory.swap.max 0; over it the kernel kills the replica")
            }),
        ),
        E::CgroupV1 => (
            format!("cpu.shares {} (share under contention)", cpu_shares(req.cpu)),
            req.cpu_limit.map(|l| {
                format!(
                    "cpu.cfs_quota_us {} per {CFS_PERIOD_US} µs ({l} cores)",
                    cfs_quota(l)
                )
            }),
            format!("memory.soft_limit_in_bytes {memory} (reclaimed last)"),
            memory_limit.map(|l| {
                format!("memory.limit_in_bytes {l} (and memsw where swap is accounted); over it the kernel kills the replica")
            }),
        ),
        E::Rlimit => (
            "not enforced (no cgroups): scheduling only".to_owned(),
            req.cpu_limit.map(|l| {
                format!(
                    "CPU affinity to {} core(s), replicas spread across cores",
                    (l.ceil() as u64).max(1)
                )
            }),
            "not enforced (no cgroups)".to_owned(),
            memory_limit.map(|l| {
                format!("server watchdog: resident memory over {l} bytes → SIGKILL (sampled every 100 ms)")
            }),
        ),
        E::Off => (
            "not enforced (--resource-enforcement off)".to_owned(),
            req.cpu_limit.map(|_| "not enforced (--resource-enforcement off)".to_owned()),
            "not enforced (--resource-enforcement off)".to_owned(),
            memory_limit.map(|_| "not enforced (--resource-enforcement off)".to_owned()),
        ),
    };
    let gpu = match (req.gpu, has_gpus) {
        (0, true) => "none: CUDA_VISIBLE_DEVICES is empty".to_owned(),
        (0, false) => "none".to_owned(),
        (n, _) => format!("{n} per replica from the server's --gpus list, as CUDA_VISIBLE_DEVICES"),
    };
    ResourceStatus {
        enforcement: mode,
        cpu,
        cpu_limit: cpu_limit.unwrap_or_else(|| NO_CAP.to_owned()),
        memory: memory_text,
        memory_limit: memory_limit_text.unwrap_or_else(|| NO_CAP.to_owned()),
        gpu,
        gpu_ids: Vec::new(),
        last_limit_kill: None,
        isolation: String::new(),
        processes: String::new(),
    }
}
