//! How operations written on any server reach the leader: the leader reads
//! the operations not ended yet every [`PICKUP_EVERY`] and runs the ones it is
//! not running. Polling one indexed query keeps no connection aside (LISTEN
//! needs one outside the pool) and misses nothing: an operation written while
//! no one led is picked up by the next leader's first read.

use std::sync::Arc;
use std::time::Duration;

use super::Leadership;
use crate::reconciler::Runtime;
use crate::store::{ClusterStore, ServiceStore};

/// How often the leader looks for new operations.
pub const PICKUP_EVERY: Duration = Duration::from_millis(400);

/// Runs on the leader until it stops leading.
pub async fn run(
    leadership: Arc<Leadership>,
    cluster: Arc<dyn ClusterStore>,
    services: Arc<dyn ServiceStore>,
    runtime: Arc<Runtime>,
) {
    while leadership.is_leader() {
        match cluster.in_flight_operations().await {
            Ok(ids) => {
                for id in ids {
                    if runtime.is_running_operation(&id) {
                        continue;
                    }
                    match services.operation(&id, 0).await {
                        Ok(op) => {
                            tracing::info!(operation = %id, service = %op.service, "picked up an operation written on another server");
                            runtime.run_operation(op);
                        }
                        Err(e) => {
                            tracing::warn!(operation = %id, error = %e, "cannot read an operation to run")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list the operations in flight"),
        }
        tokio::time::sleep(PICKUP_EVERY).await;
    }
}
