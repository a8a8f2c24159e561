//! The routing table the gateway reads on every request and the runtime
//! publishes on every switch. Readers clone an `Arc` under a read lock held for
//! nanoseconds, never across an await; writers swap a whole new map.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use berth_api::ServiceKeys;

use crate::compute::Replica;
use tokio::sync::Semaphore;

/// Per-service settings the gateway applies.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    /// 504 after this long.
    pub scoring_timeout: std::time::Duration,
    /// 503 after waiting this long for a slot.
    pub max_queue_wait: std::time::Duration,
    /// Keys, when key auth is on.
    pub keys: Option<ServiceKeys>,
    /// Whether token auth is on.
    pub token_auth: bool,
}

/// Where a service's requests go.
pub struct Route {
    /// Service name.
    pub service: String,
    /// Serving revision, if any.
    pub revision: Option<u32>,
    /// Its replicas.
    pub replicas: Vec<Arc<Replica>>,
    /// Settings.
    pub settings: RouteSettings,
    /// Admission: replicas × maxConcurrentRequestsPerContainer slots.
    pub admission: Arc<Semaphore>,
    /// Metrics, request log and data collection of the serving revision.
    /// Carry it over (`route.observability.clone()`) when rebuilding a route
    /// of the same revision.
    pub observability: Arc<crate::observability::RouteObservability>,
}

impl Route {
    /// The ready replica with the fewest requests in flight.
    pub fn pick(&self) -> Option<&Arc<Replica>> {
        self.replicas
            .iter()
            .filter(|r| r.is_ready())
            .min_by_key(|r| r.in_flight())
    }

    /// Ready replicas.
    pub fn ready_count(&self) -> usize {
        self.replicas.iter().filter(|r| r.is_ready()).count()
    }

    /// Requests waiting for an admission slot now.
    pub fn queued(&self) -> usize {
        self.observability
            .metrics
            .queue_depth
            .load(Ordering::Relaxed)
    }

    /// Requests written to a replica and not yet answered, over all replicas.
    pub fn in_flight(&self) -> usize {
        self.replicas.iter().map(|r| r.in_flight()).sum()
    }

    /// The same route serving `replicas`, with `per_replica` admission slots
    /// each (a fresh semaphore: requests admitted before keep their permits).
    pub fn with_replicas(&self, replicas: Vec<Arc<Replica>>, per_replica: u32) -> Route {
        Route {
            service: self.service.clone(),
            revision: self.revision,
            admission: Arc::new(admission_for(replicas.len(), per_replica)),
            replicas,
            settings: self.settings.clone(),
            observability: self.observability.clone(),
        }
    }
}

/// A semaphore with `replicas × per_replica` slots (at least one replica's worth).
pub fn admission_for(replicas: usize, per_replica: u32) -> Semaphore {
    let slots = replicas.max(1).saturating_mul(per_replica.max(1) as usize);
    Semaphore::new(slots.min(Semaphore::MAX_PERMITS))
}

/// Service name → route.
#[derive(Default)]
pub struct RouteTable {
    routes: RwLock<Arc<HashMap<String, Arc<Route>>>>,
}

impl RouteTable {
    /// The route of `service`.
    pub fn get(&self, service: &str) -> Option<Arc<Route>> {
        let map = match self.routes.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        map.get(service).cloned()
    }

    /// Installs (or with `None` removes) the route of `service`.
    pub fn publish(&self, service: &str, route: Option<Arc<Route>>) {
        let mut guard = match self.routes.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut next: HashMap<String, Arc<Route>> = guard.as_ref().clone();
        match route {
            Some(route) => {
                next.insert(service.to_owned(), route);
            }
            None => {
                next.remove(service);
            }
        }
        *guard = Arc::new(next);
    }

    /// Every route.
    pub fn all(&self) -> Vec<Arc<Route>> {
        let map = match self.routes.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        map.values().cloned().collect()
    }
}
