//! What `berth service show` says about a service's resources, from the local
//! target's resource manager and sandbox.

use berth_api::deployment::ContainerResourceRequirements;
use berth_api::service::ResourceStatus;

use super::Runtime;
use crate::compute::local::limits::{ResourceManager, describe};

impl Runtime {
    /// The resource manager (GPU checks, mode).
    pub fn resource_manager(&self) -> &std::sync::Arc<ResourceManager> {
        &self.deps.resources
    }

    /// What `service`'s resource settings `req` are mapped to, its GPUs and its
    /// last limit kill.
    pub fn resources(&self, service: &str, req: &ContainerResourceRequirements) -> ResourceStatus {
        let manager = &self.deps.resources;
        let mut status = describe(manager.mode(), req, manager.has_gpus());
        status.gpu_ids = manager.gpu_assignments(service);
        status.last_limit_kill = manager.last_kill(service);
        status.isolation = self.deps.isolation.describe();
        status.processes = match manager.mode() {
            berth_api::service::ResourceEnforcement::CgroupV1
            | berth_api::service::ResourceEnforcement::CgroupV2
                if manager.limits_processes() =>
            {
                "pids.max per replica".to_owned()
            }
            _ => "not enforced (needs the cgroup pids controller); a stopped replica's process group is ended".to_owned(),
        };
        status
    }
}
