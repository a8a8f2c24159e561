//! Live figures of one serving revision, recorded on every scoring request.
//!
//! A [`RevisionWindow`] keeps two things, both over atomics (recording takes
//! no lock and allocates nothing):
//! - a [`Tally`]: cumulative request and 5xx counters and a cumulative latency
//!   histogram. A gate's window ("since the bake started") is the difference
//!   of two snapshots ([`RevisionWindow::mark`], [`RevisionWindow::since`]):
//!   exact for counts, bucket-accurate for percentiles;
//! - a ring of [`SLOTS`] slots of [`SLOT_SECS`] seconds each for the last
//!   minute's requests/s, 5xx rate and p50/p99 ([`RevisionWindow::figures_last_minute`]).
//!
//! Latency buckets are log-linear: exact below 8 µs, then 8 buckets per power
//! of two up to 2^26 µs (67.1 s); anything longer lands in one overflow bucket.
//! A bucket is found with a few bit operations. Quantiles are interpolated
//! linearly inside the bucket that holds the rank ([`crate::metrics::series::quantile_ms`]),
//! so a reported percentile lies in the same bucket as the true one: the error
//! is below 12.5 % of the value (a bucket is at most 1/8 as wide as its lower
//! bound), at most 1 µs below 8 µs, and a rank in the overflow bucket reads as
//! 67.1 s.
//!
//! Time comes in through a seam: the `*_at` functions take `now`, the others
//! read [`tokio::time::Instant::now`] (the paused clock in tests that pause it).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use berth_api::RevisionFigures;
use tokio::time::Instant;

use crate::metrics::series::quantile_ms;

/// Sub-buckets per power of two.
const SUB: usize = 8;
/// log2([`SUB`]).
const SUB_BITS: u32 = 3;
/// Values at or above `2^LIMIT_BITS` µs land in the overflow bucket.
const LIMIT_BITS: u32 = 26;
/// Latency buckets, the last one the overflow.
pub const BUCKETS: usize = SUB + (LIMIT_BITS - SUB_BITS) as usize * SUB + 1;
/// Upper (exclusive) bound of every bucket but the overflow, µs.
pub const BOUNDS_US: [u64; BUCKETS - 1] = bounds();

/// The lower bound of bucket `index`, µs.
const fn lower_us(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    let octave = (index / SUB) as u32 - 1 + SUB_BITS; // the value's top bit
    let sub = (index % SUB) as u64;
    (SUB as u64 + sub) << (octave - SUB_BITS)
}

const fn bounds() -> [u64; BUCKETS - 1] {
    let mut out = [0u64; BUCKETS - 1];
    let mut i = 0;
    while i < BUCKETS - 1 {
        out[i] = lower_us(i + 1);
        i += 1;
    }
    out
}

/// The bucket of a latency of `us` microseconds.
pub fn bucket_of(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let top = 63 - us.leading_zeros();
    if top >= LIMIT_BITS {
        return BUCKETS - 1;
    }
    let sub = ((us >> (top - SUB_BITS)) as usize) & (SUB - 1);
    (top - SUB_BITS + 1) as usize * SUB + sub
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)
}

fn is_error(status: u16) -> bool {
    status >= 500
}

/// Cumulative counts: requests, 5xx answers and a latency histogram.
#[derive(Debug)]
pub struct Tally {
    errors: AtomicU64,
    /// Requests per latency bucket; their sum is the request count.
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            errors: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Tally {
    /// Counts one answer: `status` ≥ 500 is an error (a timeout is recorded as 504).
    pub fn record(&self, status: u16, latency: Duration) {
        self.buckets[bucket_of(micros(latency))].fetch_add(1, Ordering::Relaxed);
        if is_error(status) {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts now.
    pub fn mark(&self) -> WindowMark {
        let errors = self.errors.load(Ordering::Relaxed);
        WindowMark {
            errors,
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
        }
    }

    /// What was recorded after `mark` was taken.
    pub fn since(&self, mark: &WindowMark) -> WindowStats {
        self.mark().minus(mark)
    }

    /// Everything recorded so far.
    pub fn totals(&self) -> WindowStats {
        self.mark().minus(&WindowMark::zero())
    }
}

/// A snapshot of a [`Tally`]: where a gate window starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowMark {
    errors: u64,
    buckets: [u64; BUCKETS],
}

impl WindowMark {
    /// Nothing recorded (the start of time).
    pub fn zero() -> Self {
        Self {
            errors: 0,
            buckets: [0; BUCKETS],
        }
    }

    /// Requests counted at the mark.
    pub fn requests(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn minus(&self, earlier: &WindowMark) -> WindowStats {
        let buckets: [u64; BUCKETS] =
            std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i]));
        let requests: u64 = buckets.iter().sum();
        // The error counter and the buckets are read one after the other: a
        // request recorded in between must not count as an error only.
        let errors = self.errors.saturating_sub(earlier.errors).min(requests);
        WindowStats::from_counts(requests, errors, &buckets)
    }
}

/// Requests, errors and latency over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowStats {
    /// Requests answered (including errors).
    pub requests: u64,
    /// 5xx answers (timeouts included).
    pub errors: u64,
    /// `errors` as a percentage of `requests` (0 without requests).
    pub error_rate_percent: f64,
    /// 99th percentile latency, ms (`None` without requests).
    pub p99_ms: Option<f64>,
    /// Median latency, ms (`None` without requests).
    pub p50_ms: Option<f64>,
}

impl WindowStats {
    fn from_counts(requests: u64, errors: u64, buckets: &[u64; BUCKETS]) -> Self {
        Self {
            requests,
            errors,
            error_rate_percent: percent(errors, requests),
            p99_ms: quantile_ms(buckets, &BOUNDS_US, 0.99),
            p50_ms: quantile_ms(buckets, &BOUNDS_US, 0.50),
        }
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Seconds one ring slot covers.
pub const SLOT_SECS: u64 = 5;
/// Slots in the ring: the last minute is the current slot and the 11 before it.
pub const SLOTS: usize = 12;

/// A slot no request went into yet.
const EMPTY: u64 = u64::MAX;
/// A slot being cleared for a new period by one recorder.
const CLEARING: u64 = u64::MAX - 1;

/// Counts of one [`SLOT_SECS`] period.
#[derive(Debug)]
struct Slot {
    /// The period (seconds since the window's origin / [`SLOT_SECS`]), or
    /// [`EMPTY`] / [`CLEARING`].
    period: AtomicU64,
    errors: AtomicU32,
    buckets: [AtomicU32; BUCKETS],
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            period: AtomicU64::new(EMPTY),
            errors: AtomicU32::new(0),
            buckets: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl Slot {
    /// Makes this slot count `period`; false when it already counts a later
    /// one (the caller is late by a whole ring: the request is left out of
    /// the ring).
    fn claim(&self, period: u64) -> bool {
        let mut spins = 0u32;
        loop {
            let seen = self.period.load(Ordering::Acquire);
            if seen == period {
                return true;
            }
            if seen == CLEARING {
                // Another recorder clears the slot (tens of atomic stores,
                // once per slot turn): wait for it.
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            if seen != EMPTY && seen > period {
                return false;
            }
            if self
                .period
                .compare_exchange(seen, CLEARING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                self.errors.store(0, Ordering::Relaxed);
                for bucket in &self.buckets {
                    bucket.store(0, Ordering::Relaxed);
                }
                self.period.store(period, Ordering::Release);
                return true;
            }
        }
    }
}

/// Live figures of one revision: see the module documentation.
#[derive(Debug)]
pub struct RevisionWindow {
    origin: Instant,
    total: Tally,
    ring: [Slot; SLOTS],
}

impl Default for RevisionWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl RevisionWindow {
    /// An empty window starting now.
    pub fn new() -> Self {
        Self::starting_at(Instant::now())
    }

    /// An empty window starting at `origin`.
    pub fn starting_at(origin: Instant) -> Self {
        Self {
            origin,
            total: Tally::default(),
            ring: std::array::from_fn(|_| Slot::default()),
        }
    }

    fn period(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs() / SLOT_SECS
    }

    /// Counts one answered request: `status` ≥ 500 is an error (4xx is not;
    /// the caller records a scoring timeout as 504), `latency` receipt to answer.
    pub fn record(&self, status: u16, latency: Duration) {
        self.record_at(Instant::now(), status, latency);
    }

    /// [`RevisionWindow::record`] at `now`.
    pub fn record_at(&self, now: Instant, status: u16, latency: Duration) {
        self.total.record(status, latency);
        let period = self.period(now);
        let slot = &self.ring[(period % SLOTS as u64) as usize];
        if slot.claim(period) {
            slot.buckets[bucket_of(micros(latency))].fetch_add(1, Ordering::Relaxed);
            if is_error(status) {
                slot.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Requests/s, 5xx rate and p50/p99 over the last minute (the current
    /// [`SLOT_SECS`] period and the [`SLOTS`]` - 1` before it: 55–60 s, less
    /// while the window is younger).
    pub fn figures_last_minute(&self) -> RevisionFigures {
        self.figures_last_minute_at(Instant::now())
    }

    /// [`RevisionWindow::figures_last_minute`] at `now`.
    pub fn figures_last_minute_at(&self, now: Instant) -> RevisionFigures {
        let current = self.period(now);
        let first = current.saturating_sub(SLOTS as u64 - 1);
        let mut buckets = [0u64; BUCKETS];
        let mut errors = 0u64;
        for slot in &self.ring {
            let period = slot.period.load(Ordering::Acquire);
            if period == EMPTY || period == CLEARING || period < first || period > current {
                continue;
            }
            let mut counted = [0u64; BUCKETS];
            for (into, bucket) in counted.iter_mut().zip(&slot.buckets) {
                *into = u64::from(bucket.load(Ordering::Relaxed));
            }
            let slot_errors = u64::from(slot.errors.load(Ordering::Relaxed));
            // Cleared for a new period while being read: not part of the window.
            if slot.period.load(Ordering::Acquire) != period {
                continue;
            }
            for (into, n) in buckets.iter_mut().zip(counted) {
                *into += n;
            }
            errors += slot_errors;
        }
        let requests: u64 = buckets.iter().sum();
        let start = self.origin + Duration::from_secs(first * SLOT_SECS);
        let covered = now
            .saturating_duration_since(start)
            .max(Duration::from_secs(1));
        RevisionFigures {
            requests_per_second: requests as f64 / covered.as_secs_f64(),
            error_rate: percent(errors.min(requests), requests),
            p50_ms: quantile_ms(&buckets, &BOUNDS_US, 0.50),
            p99_ms: quantile_ms(&buckets, &BOUNDS_US, 0.99),
            requests,
        }
    }

    /// Where a gate window starts: the cumulative counts now.
    pub fn mark(&self) -> WindowMark {
        self.total.mark()
    }

    /// What was recorded after `mark`: exact counts, percentiles to the bucket
    /// (see the module documentation for the bound).
    pub fn since(&self, mark: &WindowMark) -> WindowStats {
        self.total.since(mark)
    }

    /// Everything recorded since the window was created.
    pub fn totals(&self) -> WindowStats {
        self.total.totals()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn buckets_are_contiguous_and_match_their_bounds() {
        assert_eq!(BUCKETS, 193);
        assert_eq!(BOUNDS_US[0], 1);
        assert_eq!(BOUNDS_US[BUCKETS - 2], 1 << LIMIT_BITS);
        for pair in BOUNDS_US.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        // Every value lands in the bucket whose bounds hold it.
        let mut us = 0u64;
        while us < (1 << LIMIT_BITS) + 10 {
            let i = bucket_of(us);
            let lower = if i == 0 { 0 } else { BOUNDS_US[i - 1] };
            assert!(lower <= us, "{us} in bucket {i} from {lower}");
            if let Some(&upper) = BOUNDS_US.get(i) {
                assert!(us < upper, "{us} in bucket {i} below {upper}");
                // The stated bound: a bucket is at most 1/8 as wide as its lower bound.
                if lower >= 8 {
                    assert!((upper - lower) * 8 <= lower, "bucket {i}: {lower}..{upper}");
                }
            }
            us = us + 1 + us / 64;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(1 << LIMIT_BITS), BUCKETS - 1);
        assert_eq!(bucket_of((1 << LIMIT_BITS) - 1), BUCKETS - 2);
    }

    #[test]
    fn percentiles_are_within_the_stated_bound() {
        for value_us in [3u64, 9, 150, 1_234, 48_000, 250_000, 3_100_000, 59_000_000] {
            let tally = Tally::default();
            for _ in 0..100 {
                tally.record(200, Duration::from_micros(value_us));
            }
            let stats = tally.totals();
            let exact_ms = value_us as f64 / 1000.0;
            for q in [stats.p50_ms, stats.p99_ms] {
                let q = q.expect("observations");
                let error = (q - exact_ms).abs();
                assert!(
                    error <= exact_ms * 0.125 + 0.001,
                    "{value_us} µs read as {q} ms"
                );
            }
        }
    }

    #[test]
    fn five_hundreds_are_errors_four_hundreds_are_not() {
        let w = RevisionWindow::new();
        for status in [200, 201, 400, 404, 429, 500, 502, 503, 504] {
            w.record(status, ms(1));
        }
        let t = w.totals();
        assert_eq!(t.requests, 9);
        assert_eq!(t.errors, 4);
        assert!((t.error_rate_percent - 400.0 / 9.0).abs() < 1e-9);
    }

    #[test]
    fn since_a_mark_is_a_subtraction() {
        let w = RevisionWindow::new();
        for _ in 0..50 {
            w.record(500, ms(900));
        }
        let mark = w.mark();
        assert_eq!(mark.requests(), 50);
        let empty = w.since(&mark);
        assert_eq!(empty.requests, 0);
        assert_eq!(empty.errors, 0);
        assert_eq!(empty.error_rate_percent, 0.0);
        assert_eq!(empty.p99_ms, None);
        assert_eq!(empty.p50_ms, None);
        for _ in 0..98 {
            w.record(200, ms(10));
        }
        w.record(503, ms(10));
        w.record(200, ms(400));
        let s = w.since(&mark);
        assert_eq!(s.requests, 100);
        assert_eq!(s.errors, 1);
        assert_eq!(s.error_rate_percent, 1.0);
        let p50 = s.p50_ms.expect("latency");
        assert!((p50 - 10.0).abs() <= 1.25, "{p50}");
        // 99 answers at 10 ms and one at 400 ms: p99 is still in the 10 ms bucket.
        let p99 = s.p99_ms.expect("latency");
        assert!((p99 - 10.0).abs() <= 1.25, "{p99}");
        // The 900 ms errors before the mark are not in the window, but in the totals.
        let all = w.totals();
        assert_eq!(all.requests, 150);
        assert_eq!(all.errors, 51);
        let p99 = all.p99_ms.expect("latency");
        assert!((p99 - 900.0).abs() <= 112.5, "{p99}");
    }

    #[test]
    fn the_last_minute_counts_the_last_twelve_periods() {
        let t0 = Instant::now();
        let w = RevisionWindow::starting_at(t0);
        // 10 s in: 20 requests, 5 of them 5xx.
        for i in 0..20 {
            let status = if i % 4 == 0 { 500 } else { 200 };
            w.record_at(t0 + ms(i * 500), status, ms(20));
        }
        let f = w.figures_last_minute_at(t0 + Duration::from_secs(10));
        assert_eq!(f.requests, 20);
        assert_eq!(f.requests_per_second, 2.0, "20 requests over 10 s");
        assert_eq!(f.error_rate, 25.0);
        let p50 = f.p50_ms.expect("latency");
        assert!((p50 - 20.0).abs() <= 2.5, "{p50}");
        // 62 s in: the periods from 5 s on are in the window (0..5 s is not).
        let f = w.figures_last_minute_at(t0 + Duration::from_secs(62));
        assert_eq!(f.requests, 10);
        assert_eq!(f.error_rate, 20.0);
        assert_eq!(f.requests_per_second, 10.0 / 57.0);
        // Two minutes later nothing is left, and a new request reuses a slot.
        let later = t0 + Duration::from_secs(180);
        let f = w.figures_last_minute_at(later);
        assert_eq!(f.requests, 0);
        assert_eq!(f.requests_per_second, 0.0);
        assert_eq!(f.error_rate, 0.0);
        assert_eq!(f.p99_ms, None);
        w.record_at(later, 504, ms(3_000));
        let f = w.figures_last_minute_at(later + ms(500));
        assert_eq!(f.requests, 1);
        assert_eq!(f.error_rate, 100.0);
        let p99 = f.p99_ms.expect("latency");
        assert!((p99 - 3_000.0).abs() <= 375.0, "{p99}");
        // The cumulative totals keep everything.
        assert_eq!(w.totals().requests, 21);
    }

    #[test]
    fn a_young_window_divides_by_at_least_a_second() {
        let t0 = Instant::now();
        let w = RevisionWindow::starting_at(t0);
        w.record_at(t0 + ms(100), 200, ms(1));
        w.record_at(t0 + ms(200), 200, ms(1));
        let f = w.figures_last_minute_at(t0 + ms(300));
        assert_eq!(f.requests_per_second, 2.0);
        let f = w.figures_last_minute_at(t0 + Duration::from_secs(4));
        assert_eq!(f.requests_per_second, 0.5);
    }

    #[test]
    fn a_recorder_late_by_a_whole_ring_is_left_out_of_the_ring_only() {
        let t0 = Instant::now();
        let w = RevisionWindow::starting_at(t0);
        let now = t0 + Duration::from_secs(100);
        w.record_at(now, 200, ms(1));
        // Measured before the slot turned, recorded after: its period is gone.
        w.record_at(
            now - Duration::from_secs(SLOT_SECS * SLOTS as u64),
            200,
            ms(1),
        );
        assert_eq!(w.figures_last_minute_at(now).requests, 1);
        assert_eq!(w.totals().requests, 2);
    }

    #[test]
    fn concurrent_recorders_lose_nothing() {
        let w = std::sync::Arc::new(RevisionWindow::new());
        let mark = w.mark();
        let mut threads = Vec::new();
        for t in 0..4u64 {
            let w = w.clone();
            threads.push(std::thread::spawn(move || {
                let t0 = w.origin;
                for i in 0..10_000u64 {
                    // Every thread crosses slot boundaries at its own pace.
                    let now = t0 + Duration::from_millis(i * (t + 1));
                    w.record_at(now, if i % 10 == 0 { 500 } else { 200 }, ms(i % 50));
                }
            }));
        }
        for t in threads {
            t.join().expect("recorder thread");
        }
        let s = w.since(&mark);
        assert_eq!(s.requests, 40_000);
        assert_eq!(s.errors, 4_000);
        assert_eq!(s.error_rate_percent, 10.0);
        // The fastest-moving thread ends at 40 s: every request is inside the last minute.
        let f = w.figures_last_minute_at(w.origin + Duration::from_secs(40));
        assert_eq!(f.requests, 40_000);
        assert_eq!(f.error_rate, 10.0);
    }
}
