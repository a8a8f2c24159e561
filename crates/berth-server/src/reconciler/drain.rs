//! Taking replicas out of service: wait until no request holds the route they
//! were published in and none is in flight on them, then stop them. With
//! several servers, first wait until the other servers' gateways have the
//! route that no longer holds them ([`set_propagation_delay`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::compute::ComputeTarget;
use crate::compute::Replica;
use crate::compute::local::LocalTarget;
use crate::gateway::Route;

/// How long other servers' gateways may take to install a new route, in
/// milliseconds (0: this server is the only gateway).
static PROPAGATION_MS: AtomicU64 = AtomicU64::new(0);

/// With several servers: replicas leaving a route are stopped only after
/// `delay`, once every gateway routes by the new route.
pub fn set_propagation_delay(delay: Duration) {
    PROPAGATION_MS.store(
        u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        Ordering::Release,
    );
}

/// Waits until no request holds `route` (every request that was routed to it
/// has been answered), at most `limit`, then stops its replicas.
pub async fn drain(route: Arc<Route>, limit: Duration, grace: Duration) {
    let replicas = route.replicas().cloned().collect();
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
        replica.retiring.store(true, Ordering::Release);
    }
    let propagation = PROPAGATION_MS.load(Ordering::Acquire);
    if propagation > 0 {
        tokio::time::sleep(Duration::from_millis(propagation)).await;
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
    LocalTarget.stop(retired, grace).await;
}
