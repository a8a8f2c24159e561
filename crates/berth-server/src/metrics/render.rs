//! The Prometheus text exposition (version 0.0.4): one `# HELP` and `# TYPE`
//! per family, then its series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{DeliverySeries, Histogram, RouteGauge, ServiceCounters, ServiceMetrics};

/// A label value with `\`, `"` and newlines escaped.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A histogram family: name, help, and the histogram of a series.
type HistogramFamily = (
    &'static str,
    &'static str,
    fn(&ServiceMetrics) -> &Histogram,
);
/// A gauge family: name, help, and the value of a route.
type GaugeFamily = (&'static str, &'static str, fn(&RouteGauge) -> u64);

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Per (service, revision): requests, rejections, latency histograms, queue depth.
pub fn service_series(out: &mut String, live: &[Arc<ServiceMetrics>]) {
    family(
        out,
        "berth_requests_total",
        "counter",
        "Scoring requests answered, by status class.",
    );
    for m in live {
        for (i, class) in CLASSES.iter().enumerate() {
            let n = m.requests(i + 1);
            if n > 0 || *class == "2xx" {
                let _ = writeln!(
                    out,
                    "berth_requests_total{{{},code=\"{class}\"}} {n}",
                    m.labels
                );
            }
        }
    }
    family(
        out,
        "berth_capacity_rejections_total",
        "counter",
        "503s: no admission slot within maxQueueWaitMs.",
    );
    for m in live {
        let n = m.capacity_rejections.load(Ordering::Relaxed);
        let _ = writeln!(out, "berth_capacity_rejections_total{{{}}} {n}", m.labels);
    }
    family(
        out,
        "berth_scoring_timeouts_total",
        "counter",
        "504s: run() exceeded scoringTimeoutMs.",
    );
    for m in live {
        let n = m.timeouts.load(Ordering::Relaxed);
        let _ = writeln!(out, "berth_scoring_timeouts_total{{{}}} {n}", m.labels);
    }
    let histograms: [HistogramFamily; 4] = [
        (
            "berth_request_queued_seconds",
            "Time a scoring request waited for an admission slot.",
            |m| &m.queued,
        ),
        (
            "berth_request_run_seconds",
            "Time inside the model's run(), as the worker measured it.",
            |m| &m.run,
        ),
        (
            "berth_request_overhead_seconds",
            "Gateway overhead: total minus queued minus run().",
            |m| &m.overhead,
        ),
        (
            "berth_request_duration_seconds",
            "Scoring request time in the gateway, receipt to response.",
            |m| &m.total,
        ),
    ];
    for (name, help, pick) in histograms {
        family(out, name, "histogram", help);
        for m in live {
            pick(m).render(out, name, &m.labels);
        }
    }
    family(
        out,
        "berth_queue_depth",
        "gauge",
        "Scoring requests waiting for an admission slot now.",
    );
    for m in live {
        let n = m.queue_depth.load(Ordering::Relaxed);
        let _ = writeln!(out, "berth_queue_depth{{{}}} {n}", m.labels);
    }
}

/// Per serving route: ready and desired replicas, requests in flight.
pub fn route_gauges(out: &mut String, gauges: &[RouteGauge]) {
    let rows: [GaugeFamily; 3] = [
        ("berth_replicas_ready", "Replicas taking requests.", |g| {
            u64::from(g.ready)
        }),
        (
            "berth_replicas_desired",
            "Replicas the service should run.",
            |g| u64::from(g.desired),
        ),
        (
            "berth_requests_in_flight",
            "Requests sent to a replica and not yet answered.",
            |g| g.in_flight as u64,
        ),
    ];
    for (name, help, value) in rows {
        family(out, name, "gauge", help);
        for g in gauges {
            let _ = writeln!(out, "{name}{{{}}} {}", g.metrics.labels, value(g));
        }
    }
}

/// Per service: restarts, scaling decisions, dropped log lines and samples.
pub fn service_counters(out: &mut String, services: &[(String, Arc<ServiceCounters>)]) {
    family(
        out,
        "berth_replica_restarts_total",
        "counter",
        "Replicas restarted after an unexpected exit.",
    );
    for (name, c) in services {
        let n = c.restarts.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "berth_replica_restarts_total{{service=\"{}\"}} {n}",
            escape(name)
        );
    }
    family(
        out,
        "berth_scaling_decisions_total",
        "counter",
        "Autoscaler decisions, by direction.",
    );
    for (name, c) in services {
        for (direction, counter) in [("up", &c.scaled_up), ("down", &c.scaled_down)] {
            let _ = writeln!(
                out,
                "berth_scaling_decisions_total{{service=\"{}\",direction=\"{direction}\"}} {}",
                escape(name),
                counter.load(Ordering::Relaxed)
            );
        }
    }
    family(
        out,
        "berth_request_log_dropped_total",
        "counter",
        "Request-log lines dropped: the writer's queue was full.",
    );
    for (name, c) in services {
        let n = c.request_log_dropped.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "berth_request_log_dropped_total{{service=\"{}\"}} {n}",
            escape(name)
        );
    }
    family(
        out,
        "berth_datacollection_dropped_total",
        "counter",
        "Data-collection samples dropped: the writer's queue was full.",
    );
    for (name, c) in services {
        let n = c.datacollection_dropped.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "berth_datacollection_dropped_total{{service=\"{}\"}} {n}",
            escape(name)
        );
    }
}

/// Workspace operations by type and outcome.
pub fn operations(out: &mut String, operations: &BTreeMap<(String, String), u64>) {
    family(
        out,
        "berth_operations_total",
        "counter",
        "Operations finished, by type and outcome.",
    );
    for ((kind, outcome), n) in operations {
        let _ = writeln!(
            out,
            "berth_operations_total{{type=\"{}\",outcome=\"{}\"}} {n}",
            escape(kind),
            escape(outcome)
        );
    }
}

/// Environment build durations by outcome.
pub fn env_builds(out: &mut String, builds: &BTreeMap<String, Histogram>) {
    let name = "berth_environment_build_duration_seconds";
    family(
        out,
        name,
        "histogram",
        "Environment builds (for a rollout or asked for through the API), by outcome.",
    );
    for (outcome, h) in builds {
        h.render(out, name, &format!("outcome=\"{}\"", escape(outcome)));
    }
}

/// Progressive delivery: traffic weights, rollouts, gate evaluations and mirrored requests.
pub fn delivery(
    out: &mut String,
    delivery: &DeliverySeries,
    services: &[(String, Arc<ServiceCounters>)],
) {
    family(
        out,
        "berth_revision_traffic_weight",
        "gauge",
        "Share of a service's scoring requests routed to a revision, percent.",
    );
    for ((service, revision), weight) in &delivery.weights {
        let _ = writeln!(
            out,
            "berth_revision_traffic_weight{{service=\"{}\",revision=\"{revision}\"}} {weight}",
            escape(service)
        );
    }
    family(
        out,
        "berth_rollouts_total",
        "counter",
        "Rollouts finished, by strategy and outcome.",
    );
    for ((strategy, outcome), n) in &delivery.rollouts {
        let _ = writeln!(
            out,
            "berth_rollouts_total{{strategy=\"{}\",outcome=\"{}\"}} {n}",
            escape(strategy),
            escape(outcome)
        );
    }
    family(
        out,
        "berth_gate_evaluations_total",
        "counter",
        "Rollout gate evaluations, by gate and verdict.",
    );
    for ((service, gate, verdict), n) in &delivery.gates {
        let _ = writeln!(
            out,
            "berth_gate_evaluations_total{{service=\"{}\",gate=\"{}\",verdict=\"{}\"}} {n}",
            escape(service),
            escape(gate),
            escape(verdict)
        );
    }
    family(
        out,
        "berth_mirror_requests_total",
        "counter",
        "Requests copied to a shadow revision, by outcome: copied, dropped (queue full), differing, shadow_error.",
    );
    for (name, c) in services {
        let rows = [
            ("copied", &c.mirror_copied),
            ("dropped", &c.mirror_dropped),
            ("differing", &c.mirror_differing),
            ("shadow_error", &c.mirror_errors),
        ];
        if rows.iter().all(|(_, n)| n.load(Ordering::Relaxed) == 0) {
            continue;
        }
        for (outcome, counter) in rows {
            let _ = writeln!(
                out,
                "berth_mirror_requests_total{{service=\"{}\",outcome=\"{outcome}\"}} {}",
                escape(name),
                counter.load(Ordering::Relaxed)
            );
        }
    }
}
