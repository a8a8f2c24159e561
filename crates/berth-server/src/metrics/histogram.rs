//! Fixed-bucket histograms over atomics: observing is a bucket search and
//! three relaxed atomic adds, rendering writes Prometheus `_bucket`, `_sum`
//! and `_count` lines.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Request latency bounds, µs: log-spaced from 50 µs to 60 s.
pub const LATENCY_BOUNDS_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Environment build bounds, µs: from 1 s to 30 min.
pub const BUILD_BOUNDS_US: &[u64] = &[
    1_000_000,
    5_000_000,
    15_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
    600_000_000,
    1_800_000_000,
];

/// A histogram of durations with fixed upper bounds (µs).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// An empty histogram with `bounds` (ascending, µs).
    pub fn new(bounds: &'static [u64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one duration of `us` microseconds.
    pub fn observe_us(&self, us: u64) {
        let index = self.bounds.partition_point(|&bound| bound < us);
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Observations per bucket (not cumulative; the last is `+Inf`) and the bounds (µs).
    pub fn snapshot(&self) -> (Vec<u64>, &'static [u64]) {
        (
            self.buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            self.bounds,
        )
    }

    /// Writes the `name_bucket`, `name_sum` and `name_count` lines; `labels` is
    /// the rendered label list without braces (may be empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match self.bounds.get(i) {
                Some(bound) => {
                    let le = *bound as f64 / 1e6;
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
                    );
                }
            }
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        // The count is the +Inf bucket so that the two always agree in one scrape.
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_at_or_above_them() {
        let h = Histogram::new(LATENCY_BOUNDS_US);
        h.observe_us(10); // ≤ 50 µs
        h.observe_us(50); // ≤ 50 µs (le is inclusive)
        h.observe_us(51); // ≤ 100 µs
        h.observe_us(2_000_000); // ≤ 2.5 s
        h.observe_us(90_000_000); // +Inf
        assert_eq!(h.count(), 5);
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "service=\"a\"");
        assert!(
            out.contains("x_seconds_bucket{service=\"a\",le=\"0.00005\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{service=\"a\",le=\"0.0001\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{service=\"a\",le=\"1\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{service=\"a\",le=\"2.5\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{service=\"a\",le=\"60\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{service=\"a\",le=\"+Inf\"} 5\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{service=\"a\"} 5\n"), "{out}");
        assert!(
            out.contains("x_seconds_sum{service=\"a\"} 92.000111\n"),
            "{out}"
        );
    }

    #[test]
    fn renders_without_labels() {
        let h = Histogram::new(BUILD_BOUNDS_US);
        h.observe_us(3_000_000);
        let mut out = String::new();
        h.render(&mut out, "b", "");
        assert!(out.contains("b_bucket{le=\"5\"} 1\n"), "{out}");
        assert!(out.contains("b_count 1\n"), "{out}");
        assert_eq!(out.lines().count(), BUILD_BOUNDS_US.len() + 3);
    }
}
