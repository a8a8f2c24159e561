//! Prometheus metrics, hand-rolled: atomic counters and fixed-bucket
//! histograms, rendered in the text exposition format by `GET /metrics`.
//!
//! [`Metrics`] is the registry (one per server, created in `lib.rs`). The
//! gateway never touches the registry: each published route holds an
//! `Arc<ServiceMetrics>` for its (service, revision) and bumps atomics on it.
//! The registry keeps only weak references to those, so the series of a
//! revision disappear once no route (and no request in flight) holds it any
//! more: cardinality stays at services × live revisions. Gauges that describe
//! the present (ready and desired replicas, in flight) are read at scrape time
//! from the route table, handed in as [`RouteGauge`]s.

mod histogram;
mod render;
pub mod series;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

pub use histogram::{BUILD_BOUNDS_US, Histogram, LATENCY_BOUNDS_US};

/// Counters of a service that outlive its revisions (restarts, scaling, drops).
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Replicas restarted after an unexpected exit.
    pub restarts: AtomicU64,
    /// Scale-ups decided.
    pub scaled_up: AtomicU64,
    /// Scale-downs decided.
    pub scaled_down: AtomicU64,
    /// Request-log lines dropped because the writer's queue was full.
    pub request_log_dropped: AtomicU64,
    /// Data-collection samples dropped because the writer's queue was full.
    pub datacollection_dropped: AtomicU64,
    /// Requests copied to a shadow revision (queued for it).
    pub mirror_copied: AtomicU64,
    /// Copies dropped because the shadow's queue was full.
    pub mirror_dropped: AtomicU64,
    /// Shadow answers that differed from the primary's.
    pub mirror_differing: AtomicU64,
    /// Shadow 5xx answers, failures to answer and timeouts.
    pub mirror_errors: AtomicU64,
}

/// The series of one (service, revision): what the gateway records per request.
#[derive(Debug)]
pub struct ServiceMetrics {
    /// Service name.
    pub service: String,
    /// Revision (`None` for a service that serves nothing yet).
    pub revision: Option<u32>,
    /// `service="..",revision=".."`, rendered once.
    labels: String,
    /// Requests answered, by status class (1xx … 5xx).
    requests: [AtomicU64; 5],
    /// 503s because no admission slot freed up within `maxQueueWaitMs`.
    pub capacity_rejections: AtomicU64,
    /// 504s because `run()` exceeded `scoringTimeoutMs`.
    pub timeouts: AtomicU64,
    /// Time waiting for an admission slot.
    pub queued: Histogram,
    /// Time inside `run()` (the worker's own measure).
    pub run: Histogram,
    /// Total minus queued minus run: the platform's own cost.
    pub overhead: Histogram,
    /// Gateway receipt to response.
    pub total: Histogram,
    /// Requests waiting for admission now.
    pub queue_depth: AtomicUsize,
    /// The service's revision-independent counters.
    pub counters: Arc<ServiceCounters>,
}

impl ServiceMetrics {
    fn new(service: &str, revision: Option<u32>, counters: Arc<ServiceCounters>) -> Self {
        let revision_label = revision.map_or_else(|| "none".to_owned(), |r| r.to_string());
        Self {
            service: service.to_owned(),
            revision,
            labels: format!(
                "service=\"{}\",revision=\"{revision_label}\"",
                render::escape(service)
            ),
            requests: Default::default(),
            capacity_rejections: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            queued: Histogram::new(LATENCY_BOUNDS_US),
            run: Histogram::new(LATENCY_BOUNDS_US),
            overhead: Histogram::new(LATENCY_BOUNDS_US),
            total: Histogram::new(LATENCY_BOUNDS_US),
            queue_depth: AtomicUsize::new(0),
            counters,
        }
    }

    /// A standalone handle registered nowhere (for routes built outside the runtime).
    pub fn detached(service: &str, revision: Option<u32>) -> Arc<Self> {
        Arc::new(Self::new(service, revision, Arc::default()))
    }

    /// Counts one answered request with `status`.
    pub fn count_status(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered with status class `class` (1 to 5) so far.
    pub fn requests(&self, class: usize) -> u64 {
        self.requests
            .get(class.wrapping_sub(1))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Present-state gauges of one route, read at scrape time.
#[derive(Debug, Clone)]
pub struct RouteGauge {
    /// The route's series.
    pub metrics: Arc<ServiceMetrics>,
    /// Ready replicas.
    pub ready: u32,
    /// Desired replicas.
    pub desired: u32,
    /// Requests written to a replica and not yet answered.
    pub in_flight: usize,
}

/// (service, revision) → its series while a route holds it.
type RevisionSeries = HashMap<(String, Option<u32>), Weak<ServiceMetrics>>;

/// Progressive-delivery series: traffic weights, rollouts, gate evaluations.
#[derive(Debug, Default)]
pub struct DeliverySeries {
    /// (service, revision) → percent of traffic, while the revision serves.
    pub weights: BTreeMap<(String, u32), u32>,
    /// (strategy, outcome) → rollouts finished.
    pub rollouts: BTreeMap<(String, String), u64>,
    /// (service, gate, verdict) → evaluations.
    pub gates: BTreeMap<(String, String, String), u64>,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Metrics {
    revisions: Mutex<RevisionSeries>,
    services: Mutex<HashMap<String, Arc<ServiceCounters>>>,
    operations: Mutex<BTreeMap<(String, String), u64>>,
    env_builds: Mutex<BTreeMap<String, Histogram>>,
    delivery: Mutex<DeliverySeries>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counters of `service`, created on first use.
    pub fn service_counters(&self, service: &str) -> Arc<ServiceCounters> {
        lock(&self.services)
            .entry(service.to_owned())
            .or_default()
            .clone()
    }

    /// The series of (`service`, `revision`): the live handle if a route still
    /// holds one, else a new one. Call when building a route.
    pub fn service_metrics(&self, service: &str, revision: Option<u32>) -> Arc<ServiceMetrics> {
        let counters = self.service_counters(service);
        let mut revisions = lock(&self.revisions);
        let key = (service.to_owned(), revision);
        if let Some(live) = revisions.get(&key).and_then(Weak::upgrade) {
            return live;
        }
        revisions.retain(|_, weak| weak.strong_count() > 0);
        let fresh = Arc::new(ServiceMetrics::new(service, revision, counters));
        revisions.insert(key, Arc::downgrade(&fresh));
        fresh
    }

    /// A replica of `service` was restarted after an unexpected exit.
    pub fn replica_restarted(&self, service: &str) {
        self.service_counters(service)
            .restarts
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The autoscaler decided to scale `service`; `direction` is `up` or `down`
    /// (anything else is ignored, so the label set stays bounded).
    pub fn scaled(&self, service: &str, direction: &str) {
        let counters = self.service_counters(service);
        match direction {
            "up" => counters.scaled_up.fetch_add(1, Ordering::Relaxed),
            "down" => counters.scaled_down.fetch_add(1, Ordering::Relaxed),
            other => {
                tracing::debug!(direction = other, "unknown scaling direction not counted");
                0
            }
        };
    }

    /// A workspace operation ended; `kind` is its type (`Create`, `Update`, …),
    /// `outcome` `Succeeded`, `Failed` or `Deleted`.
    pub fn operation_finished(&self, kind: &str, outcome: &str) {
        *lock(&self.operations)
            .entry((kind.to_owned(), outcome.to_owned()))
            .or_default() += 1;
    }

    /// An environment build ended after `seconds` with `outcome`
    /// (`succeeded` or `failed`).
    pub fn environment_built(&self, seconds: f64, outcome: &str) {
        let us = (seconds.max(0.0) * 1e6) as u64;
        lock(&self.env_builds)
            .entry(outcome.to_owned())
            .or_insert_with(|| Histogram::new(BUILD_BOUNDS_US))
            .observe_us(us);
    }

    /// Sets the share of `service`'s traffic that `revision` gets, percent
    /// (`berth_revision_traffic_weight`).
    pub fn set_traffic_weight(&self, service: &str, revision: u32, weight: u32) {
        lock(&self.delivery)
            .weights
            .insert((service.to_owned(), revision), weight);
    }

    /// `revision` of `service` serves no more: its weight series goes away.
    pub fn forget_revision(&self, service: &str, revision: u32) {
        lock(&self.delivery)
            .weights
            .remove(&(service.to_owned(), revision));
    }

    /// A rollout ended; `strategy` as written in configs (`canary`, …),
    /// `outcome` its operation's state (`Succeeded`, `RolledBack`, `Failed`, …).
    pub fn rollout_finished(&self, strategy: &str, outcome: &str) {
        *lock(&self.delivery)
            .rollouts
            .entry((strategy.to_owned(), outcome.to_owned()))
            .or_default() += 1;
    }

    /// A gate of a rollout of `service` was judged; `gate` and `verdict` as on
    /// the wire (`errorRate`, `p99Latency`; `pending`, `passing`, `failed`).
    pub fn gate_evaluated(&self, service: &str, gate: &str, verdict: &str) {
        *lock(&self.delivery)
            .gates
            .entry((service.to_owned(), gate.to_owned(), verdict.to_owned()))
            .or_default() += 1;
    }

    /// Forgets a deleted service's revision-independent counters, traffic
    /// weights and gate evaluations.
    pub fn service_deleted(&self, service: &str) {
        lock(&self.services).remove(service);
        let mut delivery = lock(&self.delivery);
        delivery.weights.retain(|(s, _), _| s != service);
        delivery.gates.retain(|(s, _, _), _| s != service);
    }

    /// Every live (service, revision) series, sorted.
    fn live(&self) -> Vec<Arc<ServiceMetrics>> {
        let mut revisions = lock(&self.revisions);
        revisions.retain(|_, weak| weak.strong_count() > 0);
        let mut live: Vec<Arc<ServiceMetrics>> =
            revisions.values().filter_map(Weak::upgrade).collect();
        drop(revisions);
        live.sort_by(|a, b| (&a.service, a.revision).cmp(&(&b.service, b.revision)));
        live
    }

    /// The Prometheus text exposition of everything, with `gauges` read from
    /// the route table just before.
    pub fn render(&self, gauges: &[RouteGauge]) -> String {
        let live = self.live();
        let services: Vec<(String, Arc<ServiceCounters>)> = {
            let mut v: Vec<_> = lock(&self.services)
                .iter()
                .map(|(k, c)| (k.clone(), c.clone()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let operations = lock(&self.operations).clone();
        let mut out = String::with_capacity(4096 + live.len() * 8192);
        render::service_series(&mut out, &live);
        render::route_gauges(&mut out, gauges);
        render::service_counters(&mut out, &services);
        render::operations(&mut out, &operations);
        render::env_builds(&mut out, &lock(&self.env_builds));
        render::delivery(&mut out, &lock(&self.delivery), &services);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_series_lives_as_long_as_a_holder() {
        let m = Metrics::new();
        let a = m.service_metrics("svc", Some(1));
        let again = m.service_metrics("svc", Some(1));
        assert!(Arc::ptr_eq(&a, &again));
        a.count_status(200);
        a.count_status(503);
        a.total.observe_us(1_000);
        let text = m.render(&[]);
        assert!(
            text.contains("berth_requests_total{service=\"svc\",revision=\"1\",code=\"2xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("berth_requests_total{service=\"svc\",revision=\"1\",code=\"5xx\"} 1\n"),
            "{text}"
        );
        drop((a, again));
        let text = m.render(&[]);
        assert!(!text.contains("revision=\"1\""), "{text}");
    }

    #[test]
    fn workspace_series_render_with_help_and_type() {
        let m = Metrics::new();
        m.operation_finished("Create", "Succeeded");
        m.operation_finished("Create", "Succeeded");
        m.environment_built(12.0, "succeeded");
        m.replica_restarted("svc");
        m.scaled("svc", "up");
        m.scaled("svc", "sideways");
        let text = m.render(&[]);
        assert!(
            text.contains("# TYPE berth_operations_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("berth_operations_total{type=\"Create\",outcome=\"Succeeded\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "berth_environment_build_duration_seconds_bucket{outcome=\"succeeded\",le=\"15\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("berth_replica_restarts_total{service=\"svc\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("berth_scaling_decisions_total{service=\"svc\",direction=\"up\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("berth_scaling_decisions_total{service=\"svc\",direction=\"down\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn delivery_series_render_and_go_away() {
        let m = Metrics::new();
        m.set_traffic_weight("svc", 3, 90);
        m.set_traffic_weight("svc", 4, 10);
        m.set_traffic_weight("other", 1, 100);
        m.rollout_finished("canary", "RolledBack");
        m.rollout_finished("canary", "RolledBack");
        m.rollout_finished("linear", "Succeeded");
        m.gate_evaluated("svc", "errorRate", "failed");
        m.gate_evaluated("svc", "p99Latency", "passing");
        m.gate_evaluated("svc", "p99Latency", "passing");
        let counters = m.service_counters("svc");
        counters.mirror_copied.fetch_add(5, Ordering::Relaxed);
        counters.mirror_dropped.fetch_add(2, Ordering::Relaxed);
        counters.mirror_differing.fetch_add(1, Ordering::Relaxed);
        m.service_counters("quiet");
        let text = m.render(&[]);
        for line in [
            "# TYPE berth_revision_traffic_weight gauge\n",
            "berth_revision_traffic_weight{service=\"svc\",revision=\"3\"} 90\n",
            "berth_revision_traffic_weight{service=\"svc\",revision=\"4\"} 10\n",
            "berth_revision_traffic_weight{service=\"other\",revision=\"1\"} 100\n",
            "# TYPE berth_rollouts_total counter\n",
            "berth_rollouts_total{strategy=\"canary\",outcome=\"RolledBack\"} 2\n",
            "berth_rollouts_total{strategy=\"linear\",outcome=\"Succeeded\"} 1\n",
            "# TYPE berth_gate_evaluations_total counter\n",
            "berth_gate_evaluations_total{service=\"svc\",gate=\"errorRate\",verdict=\"failed\"} 1\n",
            "berth_gate_evaluations_total{service=\"svc\",gate=\"p99Latency\",verdict=\"passing\"} 2\n",
            "# TYPE berth_mirror_requests_total counter\n",
            "berth_mirror_requests_total{service=\"svc\",outcome=\"copied\"} 5\n",
            "berth_mirror_requests_total{service=\"svc\",outcome=\"dropped\"} 2\n",
            "berth_mirror_requests_total{service=\"svc\",outcome=\"differing\"} 1\n",
            "berth_mirror_requests_total{service=\"svc\",outcome=\"shadow_error\"} 0\n",
        ] {
            assert!(text.contains(line), "{line}in\n{text}");
        }
        // A service that never mirrored has no mirror series.
        assert!(
            !text.contains("berth_mirror_requests_total{service=\"quiet\""),
            "{text}"
        );
        // A revision that stops serving loses its weight; a deleted service everything.
        m.forget_revision("svc", 4);
        let text = m.render(&[]);
        assert!(!text.contains("revision=\"4\"} 10"), "{text}");
        assert!(text.contains("revision=\"3\"} 90\n"), "{text}");
        m.service_deleted("svc");
        let text = m.render(&[]);
        assert!(!text.contains("service=\"svc\""), "{text}");
        assert!(
            text.contains("berth_revision_traffic_weight{service=\"other\",revision=\"1\"} 100\n"),
            "{text}"
        );
        // Rollouts are counted per strategy, not per service: they stay.
        assert!(
            text.contains("berth_rollouts_total{strategy=\"canary\",outcome=\"RolledBack\"} 2\n"),
            "{text}"
        );
    }
}
