//! The routing table the gateway reads on every request and the reconciler
//! publishes on every switch: per service, weighted per-revision pools and an
//! optional mirror. Readers clone an `Arc` under a read lock held for
//! nanoseconds, never across an await; writers swap a whole new map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A revision's own time limits (auth is the route's, service-wide).
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// 504 after this long.
    pub scoring_timeout: std::time::Duration,
    /// 503 after waiting this long for a slot.
    pub max_queue_wait: std::time::Duration,
}

/// The replicas of one revision and the share of requests they get.
pub struct Pool {
    /// The revision its replicas serve.
    pub revision: u32,
    /// Percent of requests routed here (0: reachable only by pinning).
    pub weight: u32,
    /// Its replicas.
    pub replicas: Vec<Arc<Replica>>,
    /// Scoring timeout and queue wait of this revision.
    pub limits: PoolLimits,
    /// Admission: replicas × maxConcurrentRequestsPerContainer slots, plus one per replica
    /// when `pipelined`.
    pub admission: Arc<Semaphore>,
    /// Whether each replica also holds one request queued behind the one it runs, with a
    /// start-by deadline ([`pipelines`]).
    pub pipelined: bool,
    /// Metrics, request log and data collection of this revision. Carry it
    /// over (`pool.observability.clone()`) when rebuilding a pool of the same revision.
    pub observability: Arc<crate::observability::RouteObservability>,
    /// Live figures and gate windows of this revision (carried over like
    /// `observability`).
    pub window: Arc<super::window::RevisionWindow>,
}

impl Pool {
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

    /// Requests written to a replica and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.replicas.iter().map(|r| r.in_flight()).sum()
    }

    /// The same pool with `replicas` and `per_replica` admission slots each
    /// (a fresh semaphore: requests admitted before keep their permits).
    pub fn with_replicas(&self, replicas: Vec<Arc<Replica>>, per_replica: u32) -> Pool {
        let pipelined = pipelines(&replicas, per_replica);
        Pool {
            revision: self.revision,
            weight: self.weight,
            admission: Arc::new(admission_for(replicas.len(), per_replica, pipelined)),
            pipelined,
            replicas,
            limits: self.limits,
            observability: self.observability.clone(),
            window: self.window.clone(),
        }
    }

    /// The same pool with another weight.
    pub fn with_weight(&self, weight: u32) -> Pool {
        Pool {
            revision: self.revision,
            weight,
            replicas: self.replicas.clone(),
            limits: self.limits,
            admission: self.admission.clone(),
            pipelined: self.pipelined,
            observability: self.observability.clone(),
            window: self.window.clone(),
        }
    }
}

/// Why a request pinned to a revision (`x-berth-revision: N`) cannot go there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotServing {
    /// The revision asked for.
    pub asked: u32,
    /// The revisions that serve.
    pub serving: Vec<u32>,
}

/// Where a service's requests go: weighted per-revision pools, the first being
/// the stable revision (the one traffic falls back to), and an optional mirror.
pub struct Route {
    /// Service name.
    pub service: String,
    /// Auth (service-wide) and the stable revision's timeouts.
    pub settings: RouteSettings,
    /// The pools; weights of all pools sum to 100 when any serves.
    pub pools: Vec<Arc<Pool>>,
    /// Metrics of the service before any revision serves (empty routes).
    pub observability: Arc<crate::observability::RouteObservability>,
    /// Copies of a share of the requests go here after the primary answered.
    pub mirror: Option<Arc<super::mirror::Mirror>>,
    /// Requests routed so far, for the weighted choice.
    turn: AtomicU64,
}

/// A stride coprime with 100: `turn × STRIDE mod 100` visits every slot of
/// 0..100 once per 100 requests, spread out (not 90 in a row then 10).
const STRIDE: u64 = 37;

impl Route {
    /// A route over `pools`.
    pub fn new(
        service: String,
        settings: RouteSettings,
        pools: Vec<Arc<Pool>>,
        observability: Arc<crate::observability::RouteObservability>,
    ) -> Self {
        Self {
            service,
            settings,
            pools,
            observability,
            mirror: None,
            turn: AtomicU64::new(0),
        }
    }

    /// The same route copying a share of its requests to `mirror` (or none).
    pub fn with_mirror(mut self, mirror: Option<Arc<super::mirror::Mirror>>) -> Self {
        self.mirror = mirror;
        self
    }

    /// The stable pool.
    pub fn primary(&self) -> Option<&Arc<Pool>> {
        self.pools.first()
    }

    /// The stable revision, if any serves.
    pub fn revision(&self) -> Option<u32> {
        self.primary().map(|p| p.revision)
    }

    /// The pool of `revision`.
    pub fn pool(&self, revision: u32) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|p| p.revision == revision)
    }

    /// Every replica of every pool.
    pub fn replicas(&self) -> impl Iterator<Item = &Arc<Replica>> {
        self.pools.iter().flat_map(|p| p.replicas.iter())
    }

    /// The pool the next request goes to: `pin` when given (it must serve),
    /// else by weight among pools with a ready replica (a pool with none
    /// gives its share to the others).
    pub fn choose(&self, pin: Option<u32>) -> Result<Option<&Arc<Pool>>, NotServing> {
        if let Some(asked) = pin {
            return self.pool(asked).map(Some).ok_or_else(|| NotServing {
                asked,
                serving: self.pools.iter().map(|p| p.revision).collect(),
            });
        }
        if self.pools.len() == 1 {
            return Ok(self.pools.first());
        }
        let weights = self
            .pools
            .iter()
            .map(|p| if p.ready_count() > 0 { p.weight } else { 0 });
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        Ok(match weighted_choice(weights, turn) {
            Some(i) => self.pools.get(i),
            None => self
                .pools
                .iter()
                .find(|p| p.ready_count() > 0)
                .or(self.pools.first()),
        })
    }

    /// Ready replicas over all pools.
    pub fn ready_count(&self) -> usize {
        self.pools.iter().map(|p| p.ready_count()).sum()
    }

    /// Requests waiting for an admission slot now.
    pub fn queued(&self) -> usize {
        let pools: usize = self
            .pools
            .iter()
            .map(|p| p.observability.metrics.queue_depth.load(Ordering::Relaxed))
            .sum();
        if self.pools.is_empty() {
            self.observability
                .metrics
                .queue_depth
                .load(Ordering::Relaxed)
        } else {
            pools
        }
    }

    /// Requests written to a replica and not yet answered, over all pools.
    pub fn in_flight(&self) -> usize {
        self.pools.iter().map(|p| p.in_flight()).sum()
    }

    /// The same route with `revision`'s pool replaced by `pool` (or added),
    /// keeping the mirror and the weighted turn.
    pub fn with_pool(&self, pool: Pool) -> Route {
        let pool = Arc::new(pool);
        let mut pools = self.pools.clone();
        match pools.iter_mut().find(|p| p.revision == pool.revision) {
            Some(slot) => *slot = pool,
            None => pools.push(pool),
        }
        self.with_pools(pools)
    }

    /// The same route over other pools, keeping the mirror and the weighted turn.
    pub fn with_pools(&self, pools: Vec<Arc<Pool>>) -> Route {
        Route {
            service: self.service.clone(),
            settings: self.settings.clone(),
            pools,
            observability: self.observability.clone(),
            mirror: self.mirror.clone(),
            turn: AtomicU64::new(self.turn.load(Ordering::Relaxed)),
        }
    }

    /// The same route with other service-wide settings (keys).
    pub fn with_settings(&self, settings: RouteSettings) -> Route {
        Route {
            settings,
            ..self.with_pools(self.pools.clone())
        }
    }
}

/// The index among `weights` that request number `turn` goes to, `None` when
/// all are 0. Over every 100 consecutive turns each index gets exactly its
/// share of `sum(weights)` (to rounding), spread out rather than in runs.
pub fn weighted_choice(weights: impl Iterator<Item = u32> + Clone, turn: u64) -> Option<usize> {
    let total: u64 = weights.clone().map(u64::from).sum();
    if total == 0 {
        return None;
    }
    let slot = (turn.wrapping_mul(STRIDE) % 100) * total / 100;
    let mut end = 0u64;
    let mut last = None;
    for (i, w) in weights.enumerate() {
        end += u64::from(w);
        if slot < end {
            return Some(i);
        }
        if w > 0 {
            last = Some(i);
        }
    }
    last
}

/// Whether a pool of `replicas` queues a request in each worker behind the one it runs: with
/// `maxConcurrentRequestsPerContainer` 1 (the worker runs one request at a time, so the frame
/// behind it starts exactly when the answer before it is written), and every replica on a
/// local Unix socket (the worker checks the start-by deadline on the gateway's clock). The
/// worker then goes from one request to the next without waiting for the gateway.
pub fn pipelines(replicas: &[Arc<Replica>], per_replica: u32) -> bool {
    per_replica == 1 && !replicas.is_empty() && replicas.iter().all(|r| r.conn().can_start_by())
}

/// A semaphore with `replicas × per_replica` slots (at least one replica's worth), plus one
/// per replica for the queued request of a `pipelined` pool.
pub fn admission_for(replicas: usize, per_replica: u32, pipelined: bool) -> Semaphore {
    let per_replica = per_replica.max(1) as usize + usize::from(pipelined);
    let slots = replicas.max(1).saturating_mul(per_replica);
    Semaphore::new(slots.min(Semaphore::MAX_PERMITS))
}

/// Service name → route.
#[derive(Default)]
pub struct RouteTable {
    routes: RwLock<Arc<HashMap<String, Arc<Route>>>>,
    /// Told the service name of every publication (several servers: the
    /// leader passes its routes on to the other servers' gateways).
    observer: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl RouteTable {
    /// From now on, every publication sends its service name to the receiver
    /// returned (`None` when something observes already).
    pub fn observe(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.observer.set(tx).ok().map(|()| rx)
    }

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
        drop(guard);
        if let Some(observer) = self.observer.get() {
            let _ = observer.send(service.to_owned());
        }
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

#[cfg(test)]
mod tests {
    use super::weighted_choice;

    fn counts(weights: &[u32], turns: u64) -> Vec<u64> {
        let mut out = vec![0u64; weights.len()];
        for turn in 0..turns {
            if let Some(i) = weighted_choice(weights.iter().copied(), turn) {
                out[i] += 1;
            }
        }
        out
    }

    #[test]
    fn every_hundred_turns_give_each_pool_exactly_its_weight() {
        assert_eq!(counts(&[90, 10], 100), vec![90, 10]);
        assert_eq!(counts(&[90, 10], 10_000), vec![9_000, 1_000]);
        assert_eq!(counts(&[33, 33, 34], 100), vec![33, 33, 34]);
        assert_eq!(counts(&[0, 100], 100), vec![0, 100]);
        assert_eq!(counts(&[1, 99], 100), vec![1, 99]);
    }

    #[test]
    fn the_minority_share_is_spread_out_not_in_a_run() {
        let picks: Vec<usize> = (0..100)
            .map(|t| weighted_choice([90, 10].into_iter(), t).unwrap_or(9))
            .collect();
        let longest_run = picks
            .split(|&i| i == 1)
            .map(<[usize]>::len)
            .max()
            .unwrap_or(0);
        assert!(
            longest_run <= 12,
            "runs of the 90 % pool up to {longest_run}"
        );
    }

    #[test]
    fn a_pool_without_ready_replicas_gives_its_share_to_the_others() {
        // The reconciler passes 0 for a pool with no ready replica.
        assert_eq!(counts(&[90, 0], 100), vec![100, 0]);
        assert_eq!(counts(&[0, 0], 100), vec![0, 0]);
        assert_eq!(weighted_choice(std::iter::empty(), 3), None);
    }
}
