//! Present-state gauges of every published route, read by `GET /metrics`.

use super::Runtime;
use crate::metrics::RouteGauge;

impl Runtime {
    /// Ready and desired replicas and requests in flight of every route.
    pub fn route_gauges(&self) -> Vec<RouteGauge> {
        self.deps
            .table
            .all()
            .into_iter()
            .map(|route| {
                let (_, desired) = self.replica_counts(&route.service);
                RouteGauge {
                    metrics: route.primary().map_or_else(
                        || route.observability.metrics.clone(),
                        |p| p.observability.metrics.clone(),
                    ),
                    ready: route.ready_count() as u32,
                    desired,
                    in_flight: route.in_flight(),
                }
            })
            .collect()
    }

    /// The metrics registry, request-log and data-collection writers.
    pub fn observability(&self) -> &std::sync::Arc<crate::observability::Observability> {
        &self.deps.observability
    }
}
