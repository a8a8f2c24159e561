//! The local-process compute target: each replica is a Python worker process on
//! this machine, in its sandbox ([`sandbox`]), under its resource limits and
//! GPUs ([`limits`]), with its revision laid out on disk ([`materialise`],
//! collected by [`layouts`]) and its liveness probed ([`probes`]).

pub mod layouts;
pub mod limits;
pub mod materialise;
pub mod probes;
pub mod remote_child;
pub mod replicas;
pub mod sandbox;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use limits::{ReplicaLimits, ResourceManager};
pub use materialise::revision_root;
pub use remote_child::{ChildLaunch, ReplicaTransport};
pub use replicas::{LaunchPlan, StartError, StartFailure};

use super::{ComputeTarget, Replica};

/// Worker processes on this machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalTarget;

#[async_trait]
impl ComputeTarget for LocalTarget {
    type Plan = LaunchPlan;
    type StartError = StartFailure;

    async fn start(&self, plan: &LaunchPlan, index: u32) -> Result<Arc<Replica>, StartFailure> {
        replicas::start_replica(plan, index).await
    }

    async fn stop(&self, replicas: Vec<Arc<Replica>>, grace: Duration) {
        replicas::stop_all(replicas, grace).await;
    }

    async fn exited(&self, replica: &Replica) -> Option<std::process::ExitStatus> {
        replica.exited().await
    }
}
