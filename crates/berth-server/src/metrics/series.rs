//! A short in-memory time series per service for the console's sparklines and
//! charts: every [`INTERVAL_SECS`] the server samples the live route gauges
//! (the same atomics `/metrics` renders) and keeps the last [`WINDOW_SECS`].
//!
//! Counters are cumulative per (service, revision) handle, so a sample is the
//! difference from the previous sample of the same handle; a handle that is new
//! since the last sample counts from zero, one that went away stops counting.
//! Latency quantiles come from the difference of the duration histograms'
//! buckets, interpolated linearly inside the bucket (like Prometheus'
//! `histogram_quantile`). Sampling is pure given the gauges and the time.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use berth_api::{SeriesPoint, ServiceSeries};

use super::RouteGauge;

/// Seconds between samples.
pub const INTERVAL_SECS: u64 = 5;
/// Seconds of history kept.
pub const WINDOW_SECS: u64 = 15 * 60;
const MAX_POINTS: usize = (WINDOW_SECS / INTERVAL_SECS) as usize;

/// The cumulative counts of one (service, revision) handle at a sample.
#[derive(Debug, Clone, Default)]
struct Cumulative {
    classes: [u64; 5],
    buckets: Vec<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Previous sample time, epoch ms.
    last_ms: Option<u64>,
    /// Previous counts per (service, revision).
    previous: HashMap<(String, Option<u32>), Cumulative>,
    /// Samples per service.
    series: HashMap<String, VecDeque<SeriesPoint>>,
}

/// The series of every service.
#[derive(Debug, Default)]
pub struct SeriesStore {
    inner: Mutex<Inner>,
}

/// The `q` quantile (0–1) of `buckets` (per-bucket counts, last one `+Inf`) with
/// upper `bounds` in µs, in ms; `None` without observations.
pub fn quantile_ms(buckets: &[u64], bounds: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, count) in buckets.iter().enumerate() {
        let before = seen;
        seen += count;
        if (seen as f64) >= rank && *count > 0 {
            let lower = if i == 0 { 0 } else { bounds[i - 1] } as f64;
            let Some(&upper) = bounds.get(i) else {
                // The +Inf bucket: the largest finite bound is all we know.
                return Some(lower / 1000.0);
            };
            let within = (rank - before as f64) / *count as f64;
            return Some((lower + (upper as f64 - lower) * within.clamp(0.0, 1.0)) / 1000.0);
        }
    }
    bounds.last().map(|b| *b as f64 / 1000.0)
}

impl SeriesStore {
    /// Takes one sample at `now_ms` from the route gauges.
    pub fn sample(&self, now_ms: u64, gauges: &[RouteGauge]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed_s = inner
            .last_ms
            .map(|last| now_ms.saturating_sub(last) as f64 / 1000.0)
            .filter(|s| *s > 0.0)
            .unwrap_or(INTERVAL_SECS as f64);
        inner.last_ms = Some(now_ms);

        struct Sum {
            classes: [u64; 5],
            buckets: Vec<u64>,
            bounds: &'static [u64],
            queue: u64,
            in_flight: u64,
            ready: u32,
            desired: u32,
        }
        let mut sums: HashMap<String, Sum> = HashMap::new();
        let mut current = HashMap::new();
        for gauge in gauges {
            let m = &gauge.metrics;
            let (buckets, bounds) = m.total.snapshot();
            let now = Cumulative {
                classes: std::array::from_fn(|i| m.requests(i + 1)),
                buckets,
            };
            let key = (m.service.clone(), m.revision);
            let before = inner.previous.get(&key).cloned().unwrap_or_default();
            let sum = sums.entry(m.service.clone()).or_insert_with(|| Sum {
                classes: [0; 5],
                buckets: vec![0; now.buckets.len()],
                bounds,
                queue: 0,
                in_flight: 0,
                ready: 0,
                desired: 0,
            });
            for (i, c) in now.classes.iter().enumerate() {
                sum.classes[i] += c.saturating_sub(before.classes[i]);
            }
            for (i, b) in now.buckets.iter().enumerate() {
                let prior = before.buckets.get(i).copied().unwrap_or(0);
                if let Some(slot) = sum.buckets.get_mut(i) {
                    *slot += b.saturating_sub(prior);
                }
            }
            sum.queue += m.queue_depth.load(std::sync::atomic::Ordering::Relaxed) as u64;
            sum.in_flight += gauge.in_flight as u64;
            sum.ready += gauge.ready;
            // Desired is per service; every route of it reports the same number.
            sum.desired = sum.desired.max(gauge.desired);
            current.insert(key, now);
        }
        inner.previous = current;
        for (service, sum) in sums {
            let total: u64 = sum.classes.iter().sum();
            let point = SeriesPoint {
                time: now_ms,
                rps: total as f64 / elapsed_s,
                rate2xx: sum.classes[1] as f64 / elapsed_s,
                rate4xx: sum.classes[3] as f64 / elapsed_s,
                rate5xx: sum.classes[4] as f64 / elapsed_s,
                error_rate: (total > 0).then(|| sum.classes[4] as f64 / total as f64),
                p50_ms: quantile_ms(&sum.buckets, sum.bounds, 0.50),
                p90_ms: quantile_ms(&sum.buckets, sum.bounds, 0.90),
                p99_ms: quantile_ms(&sum.buckets, sum.bounds, 0.99),
                queue_depth: sum.queue,
                in_flight: sum.in_flight,
                replicas_ready: sum.ready,
                replicas_desired: sum.desired,
            };
            let points = inner.series.entry(service).or_default();
            points.push_back(point);
            while points.len() > MAX_POINTS {
                points.pop_front();
            }
        }
        // Services without a route (deleted) keep their history until it ages out.
        let oldest = now_ms.saturating_sub(WINDOW_SECS * 1000);
        inner.series.retain(|_, points| {
            while points.front().is_some_and(|p| p.time < oldest) {
                points.pop_front();
            }
            !points.is_empty()
        });
    }

    /// The samples of `service` (empty when it has none).
    pub fn service(&self, service: &str) -> ServiceSeries {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        ServiceSeries {
            service: service.to_owned(),
            interval_seconds: INTERVAL_SECS,
            points: inner
                .series
                .get(service)
                .map(|p| p.iter().cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// Every service's samples, by name.
    pub fn all(&self) -> Vec<ServiceSeries> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&String> = inner.series.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|name| ServiceSeries {
                service: name.clone(),
                interval_seconds: INTERVAL_SECS,
                points: inner.series[name].iter().cloned().collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::ServiceMetrics;
    use super::*;

    fn gauge(m: &std::sync::Arc<ServiceMetrics>, ready: u32) -> RouteGauge {
        RouteGauge {
            metrics: m.clone(),
            ready,
            desired: 2,
            in_flight: 1,
        }
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let bounds = &[1_000, 2_000, 4_000];
        // 10 observations in (1 ms, 2 ms].
        assert_eq!(quantile_ms(&[0, 10, 0, 0], bounds, 0.5), Some(1.5));
        assert_eq!(quantile_ms(&[0, 10, 0, 0], bounds, 1.0), Some(2.0));
        assert_eq!(quantile_ms(&[0, 0, 0, 0], bounds, 0.5), None);
        // Everything beyond the last bound: the last bound.
        assert_eq!(quantile_ms(&[0, 0, 0, 3], bounds, 0.99), Some(4.0));
        // 99 fast, 1 slow: p50 fast, p99 at the fast bucket's top, p100 slow.
        let q = quantile_ms(&[99, 0, 1, 0], bounds, 0.5).expect("observations");
        assert!(q < 1.0, "{q}");
    }

    #[test]
    fn samples_are_rates_over_the_interval_summed_over_revisions() {
        let store = SeriesStore::default();
        let r1 = ServiceMetrics::detached("svc", Some(1));
        let r2 = ServiceMetrics::detached("svc", Some(2));
        for _ in 0..10 {
            r1.count_status(200);
            r1.total.observe_us(2_000);
        }
        store.sample(1_000, &[gauge(&r1, 1)]);
        for _ in 0..10 {
            r1.count_status(200);
            r1.total.observe_us(2_000);
        }
        for _ in 0..10 {
            r2.count_status(503);
            r2.total.observe_us(30_000);
        }
        store.sample(6_000, &[gauge(&r1, 1), gauge(&r2, 1)]);
        let series = store.service("svc");
        assert_eq!(series.points.len(), 2);
        let last = &series.points[1];
        assert_eq!(last.time, 6_000);
        assert_eq!(last.rps, 4.0, "20 requests over 5 s");
        assert_eq!(last.rate2xx, 2.0);
        assert_eq!(last.rate5xx, 2.0);
        assert_eq!(last.error_rate, Some(0.5));
        assert_eq!(last.replicas_ready, 2);
        assert_eq!(last.replicas_desired, 2);
        assert_eq!(last.in_flight, 2);
        let p99 = last.p99_ms.expect("latency");
        assert!(p99 > 25.0 && p99 <= 50.0, "{p99}");
        let p50 = last.p50_ms.expect("latency");
        assert!(p50 <= 2.5, "{p50}");
        // No traffic in the next interval: zero rates, no quantiles.
        store.sample(11_000, &[gauge(&r1, 1), gauge(&r2, 1)]);
        let quiet = store.service("svc").points[2].clone();
        assert_eq!(quiet.rps, 0.0);
        assert_eq!(quiet.error_rate, None);
        assert_eq!(quiet.p99_ms, None);
        assert!(store.service("other").points.is_empty());
        assert_eq!(store.all().len(), 1);
    }

    #[test]
    fn history_is_bounded_to_the_window() {
        let store = SeriesStore::default();
        let m = ServiceMetrics::detached("svc", Some(1));
        for i in 0..(MAX_POINTS as u64 + 20) {
            store.sample(i * INTERVAL_SECS * 1000, &[gauge(&m, 1)]);
        }
        let points = store.service("svc").points;
        assert!(points.len() <= MAX_POINTS, "{}", points.len());
        // A service whose routes went away ages out.
        store.sample(10_000_000, &[]);
        assert!(store.all().is_empty());
    }
}
