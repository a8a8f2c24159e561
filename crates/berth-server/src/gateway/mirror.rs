//! Shadow traffic: a copy of a share of a service's scoring requests goes to
//! another revision after the primary answered, and the two answers are
//! compared. The client only ever gets the primary's answer.
//!
//! The request path only decides and enqueues: [`Mirror::sample`] picks
//! exactly `percent` of every 100 requests (a counter, no randomness), and
//! [`Mirror::offer`] puts the copy on a bounded queue without waiting (a full
//! queue drops the copy and counts it). A fixed number of tasks take copies
//! off the queue and send them through a [`ShadowSender`] (supplied by whoever
//! owns the shadow's replicas) within the scoring timeout. Answers are equal
//! when the statuses are and the bodies are JSON-equal (both parse: the values
//! are compared, so key order and whitespace do not matter) or, when either is
//! not JSON, byte-equal. The first [`MAX_DIFFS`] differing pairs are kept,
//! later ones only counted. A shadow that fails to answer (send error,
//! timeout) counts as a shadow error, not as a difference.
//!
//! [`Mirror::stop`] (or dropping the [`Mirror`]) ends the tasks; copies still
//! queued are discarded.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_api::{MirrorDiff, MirrorSide, MirrorStatus};
use berth_worker::{ScoreRequest, WorkerConn};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::window::{Tally, WindowStats};
use crate::metrics::ServiceCounters;

/// Differing pairs kept for `berth service mirror --diffs`.
pub const MAX_DIFFS: usize = 100;
/// Bytes of a request or answer body kept in a [`MirrorDiff`].
pub const MAX_DIFF_BODY: usize = 4096;
/// Copies waiting for a shadow task, by default.
pub const DEFAULT_QUEUE: usize = 64;
/// Shadow tasks, by default.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Sends one request to the shadow revision and returns its status and body,
/// or why it could not. The mirror applies the timeout.
pub trait ShadowSender: Send + Sync + 'static {
    /// Sends `request` to a replica of the shadow revision.
    fn send(&self, request: ScoreRequest) -> BoxFuture<'static, Result<(u16, Bytes), String>>;
}

impl<F> ShadowSender for F
where
    F: Fn(ScoreRequest) -> BoxFuture<'static, Result<(u16, Bytes), String>> + Send + Sync + 'static,
{
    fn send(&self, request: ScoreRequest) -> BoxFuture<'static, Result<(u16, Bytes), String>> {
        self(request)
    }
}

/// Scores `request` on one worker connection, for a [`ShadowSender`] over a
/// replica: answers longer than `max_response` bytes fail.
pub async fn score_via(
    conn: &WorkerConn,
    request: ScoreRequest,
    max_response: u64,
) -> Result<(u16, Bytes), String> {
    conn.score_within(request, max_response)
        .await
        .map(|result| (result.status, result.body))
        .map_err(|e| e.to_string())
}

/// What a mirror copies where.
#[derive(Debug, Clone)]
pub struct MirrorSettings {
    /// The service (for logs).
    pub service: String,
    /// The revision reported as the primary side (the service's stable revision).
    pub primary_revision: u32,
    /// The shadow revision.
    pub revision: u32,
    /// Share of requests copied, 1–100.
    pub percent: u32,
    /// How long the shadow may take (the service's scoring timeout).
    pub timeout: Duration,
    /// Copies waiting for a task at most; more are dropped.
    pub queue: usize,
    /// Tasks sending copies.
    pub concurrency: usize,
    /// The service's counters (`berth_mirror_requests_total`).
    pub counters: Arc<ServiceCounters>,
}

impl MirrorSettings {
    /// Settings with the default queue and concurrency.
    pub fn new(
        service: &str,
        primary_revision: u32,
        revision: u32,
        percent: u32,
        timeout: Duration,
        counters: Arc<ServiceCounters>,
    ) -> Self {
        Self {
            service: service.to_owned(),
            primary_revision,
            revision,
            percent,
            timeout,
            queue: DEFAULT_QUEUE,
            concurrency: DEFAULT_CONCURRENCY,
            counters,
        }
    }
}

/// Why a mirror cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// `percent` outside 1–100.
    #[error(
        "mirror percent {0} is out of range: give 1–100 (to stop mirroring, stop the mirror instead of starting one at 0)"
    )]
    Percent(u32),
    /// Not called inside a Tokio runtime.
    #[error("the mirror's shadow tasks need a Tokio runtime: start the mirror from async code")]
    NoRuntime,
}

/// One copy on its way to the shadow.
struct Job {
    request: ScoreRequest,
    primary_status: u16,
    primary_body: Bytes,
    primary_latency: Duration,
}

/// What the request path and the shadow tasks share.
struct Shared {
    service: String,
    primary_revision: u32,
    revision: u32,
    timeout: Duration,
    mirrored: AtomicU64,
    dropped: AtomicU64,
    differing: AtomicU64,
    /// The primary's answers to the copies the shadow answered or failed.
    primary: Tally,
    /// The shadow's answers (failures as 502, timeouts as 504).
    shadow: Tally,
    diffs: Mutex<Vec<MirrorDiff>>,
    counters: Arc<ServiceCounters>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Copies a share of requests to a shadow revision: see the module documentation.
pub struct Mirror {
    shared: Arc<Shared>,
    percent: u32,
    /// Requests sampled so far (drives the counter-based choice).
    seen: AtomicU64,
    stopped: AtomicBool,
    queue: mpsc::Sender<Job>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("service", &self.shared.service)
            .field("revision", &self.shared.revision)
            .field("percent", &self.percent)
            .finish_non_exhaustive()
    }
}

impl Mirror {
    /// Starts the shadow tasks; call from inside a Tokio runtime.
    pub fn start(
        settings: MirrorSettings,
        sender: Arc<dyn ShadowSender>,
    ) -> Result<Mirror, MirrorError> {
        if !(1..=100).contains(&settings.percent) {
            return Err(MirrorError::Percent(settings.percent));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MirrorError::NoRuntime)?;
        let (queue, receiver) = mpsc::channel(settings.queue.max(1));
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let shared = Arc::new(Shared {
            service: settings.service,
            primary_revision: settings.primary_revision,
            revision: settings.revision,
            timeout: settings.timeout,
            mirrored: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            differing: AtomicU64::new(0),
            primary: Tally::default(),
            shadow: Tally::default(),
            diffs: Mutex::new(Vec::new()),
            counters: settings.counters,
        });
        let tasks = (0..settings.concurrency.max(1))
            .map(|_| {
                runtime.spawn(shadow_task(
                    shared.clone(),
                    receiver.clone(),
                    sender.clone(),
                ))
            })
            .collect();
        Ok(Mirror {
            shared,
            percent: settings.percent,
            seen: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            queue,
            tasks: Mutex::new(tasks),
        })
    }

    /// The shadow revision.
    pub fn revision(&self) -> u32 {
        self.shared.revision
    }

    /// Share of requests copied, percent.
    pub fn percent(&self) -> u32 {
        self.percent
    }

    /// Whether this request is copied: exactly `percent` of every 100
    /// consecutive calls say yes, spread evenly (20 % is every 5th). Call it
    /// before the primary's request is sent, so that only a chosen request is
    /// cloned, then hand the clone to [`Mirror::offer_sampled`].
    pub fn sample(&self) -> bool {
        if self.stopped.load(Ordering::Relaxed) {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) % 100;
        let p = u64::from(self.percent);
        (n + 1) * p / 100 > n * p / 100
    }

    /// Samples and, when chosen, copies `request` (its body is shared, not
    /// copied) after the primary answered `primary_status` and `primary_body`
    /// in `primary_latency`. Never waits.
    pub fn offer(
        &self,
        request: &ScoreRequest,
        primary_status: u16,
        primary_body: &Bytes,
        primary_latency: Duration,
    ) {
        if self.sample() {
            self.offer_sampled(
                request.clone(),
                primary_status,
                primary_body,
                primary_latency,
            );
        }
    }

    /// Queues a copy already chosen by [`Mirror::sample`]. Never waits: a full
    /// queue drops the copy and counts it.
    pub fn offer_sampled(
        &self,
        request: ScoreRequest,
        primary_status: u16,
        primary_body: &Bytes,
        primary_latency: Duration,
    ) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let job = Job {
            request,
            primary_status,
            primary_body: primary_body.clone(),
            primary_latency,
        };
        let counters = &self.shared.counters;
        match self.queue.try_send(job) {
            Ok(()) => {
                self.shared.mirrored.fetch_add(1, Ordering::Relaxed);
                counters.mirror_copied.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                counters.mirror_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts and figures so far.
    pub fn status(&self) -> MirrorStatus {
        let s = &self.shared;
        MirrorStatus {
            revision: s.revision,
            percent: self.percent,
            mirrored: s.mirrored.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            differing: s.differing.load(Ordering::Relaxed),
            primary: side(s.primary_revision, s.primary.totals()),
            shadow: side(s.revision, s.shadow.totals()),
        }
    }

    /// The first [`MAX_DIFFS`] differing pairs, oldest first.
    pub fn diffs(&self) -> Vec<MirrorDiff> {
        lock(&self.shared.diffs).clone()
    }

    /// Ends the shadow tasks (a copy in flight is abandoned) and ignores later offers.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop();
    }
}

fn side(revision: u32, stats: WindowStats) -> MirrorSide {
    MirrorSide {
        revision,
        requests: stats.requests,
        errors: stats.errors,
        p50_ms: stats.p50_ms,
        p99_ms: stats.p99_ms,
    }
}

async fn shadow_task(
    shared: Arc<Shared>,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    sender: Arc<dyn ShadowSender>,
) {
    loop {
        let job = receiver.lock().await.recv().await;
        let Some(job) = job else {
            return;
        };
        shared.send(job, sender.as_ref()).await;
    }
}

impl Shared {
    async fn send(&self, job: Job, sender: &dyn ShadowSender) {
        let request_id = job.request.request_id.clone();
        let request_body = job.request.body.clone();
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, sender.send(job.request)).await;
        let elapsed = started.elapsed();
        self.primary.record(job.primary_status, job.primary_latency);
        let (status, body) = match outcome {
            Ok(Ok(answer)) => answer,
            Ok(Err(reason)) => {
                tracing::debug!(service = %self.service, revision = self.revision, %reason, "shadow request failed");
                self.shadow_failed(502, elapsed);
                return;
            }
            Err(_) => {
                tracing::debug!(service = %self.service, revision = self.revision, timeout_ms = self.timeout.as_millis() as u64, "shadow request timed out");
                self.shadow_failed(504, elapsed);
                return;
            }
        };
        self.shadow.record(status, elapsed);
        if status >= 500 {
            self.counters.mirror_errors.fetch_add(1, Ordering::Relaxed);
        }
        if same_answer(job.primary_status, &job.primary_body, status, &body) {
            return;
        }
        self.counters
            .mirror_differing
            .fetch_add(1, Ordering::Relaxed);
        let earlier = self.differing.fetch_add(1, Ordering::Relaxed);
        if earlier >= MAX_DIFFS as u64 {
            return;
        }
        let diff = MirrorDiff {
            time: crate::now_rfc3339(),
            request_id,
            request: text(&request_body),
            primary_status: job.primary_status,
            primary_body: text(&job.primary_body),
            shadow_status: status,
            shadow_body: text(&body),
        };
        let mut diffs = lock(&self.diffs);
        if diffs.len() < MAX_DIFFS {
            diffs.push(diff);
        }
    }

    fn shadow_failed(&self, status: u16, elapsed: Duration) {
        self.shadow.record(status, elapsed);
        self.counters.mirror_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether two answers are the same: equal statuses and JSON-equal bodies
/// (byte-equal when either body is not JSON).
pub fn same_answer(status_a: u16, body_a: &[u8], status_b: u16, body_b: &[u8]) -> bool {
    if status_a != status_b {
        return false;
    }
    if body_a == body_b {
        return true;
    }
    match (
        serde_json::from_slice::<serde_json::Value>(body_a),
        serde_json::from_slice::<serde_json::Value>(body_b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// At most [`MAX_DIFF_BODY`] bytes of `body`, as lossy UTF-8.
fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(MAX_DIFF_BODY)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, body: &'static [u8]) -> ScoreRequest {
        ScoreRequest {
            method: "POST".to_owned(),
            request_id: id.to_owned(),
            query: Bytes::new(),
            headers: vec![(
                "content-type".to_owned(),
                Bytes::from_static(b"application/json"),
            )],
            body: Bytes::from_static(body),
        }
    }

    fn settings(percent: u32) -> MirrorSettings {
        MirrorSettings {
            queue: 1_000,
            ..MirrorSettings::new(
                "svc",
                3,
                4,
                percent,
                Duration::from_secs(30),
                Arc::default(),
            )
        }
    }

    /// A sender answering every request with `status` and `body`.
    fn answering(status: u16, body: &'static str) -> Arc<dyn ShadowSender> {
        Arc::new(
            move |_request: ScoreRequest| -> BoxFuture<'static, Result<(u16, Bytes), String>> {
                Box::pin(async move { Ok((status, Bytes::from_static(body.as_bytes()))) })
            },
        )
    }

    /// Yields (at most 10 s) until `done` holds.
    async fn yield_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "not within 10 s: {what}");
            tokio::task::yield_now().await;
        }
    }

    /// Waits (at most 10 s) until `done` holds.
    async fn until(mirror: &Mirror, done: impl Fn(&MirrorStatus) -> bool) -> MirrorStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = mirror.status();
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the mirror did not get there in 10 s: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn sampling_is_exact_and_even() {
        let mirror = Mirror::start(settings(20), answering(200, "{}")).expect("mirror");
        let chosen: Vec<usize> = (0..1000).filter(|_| mirror.sample()).collect();
        assert_eq!(chosen.len(), 200);
        assert!(chosen.iter().all(|i| i % 5 == 4), "every 5th: {chosen:?}");
        for (percent, per_100) in [(1, 1), (33, 33), (99, 99), (100, 100)] {
            let m = Mirror::start(settings(percent), answering(200, "{}")).expect("mirror");
            assert_eq!((0..1000).filter(|_| m.sample()).count(), per_100 * 10);
        }
    }

    #[tokio::test]
    async fn offers_copy_the_sampled_share_and_compare_answers() {
        let mirror = Mirror::start(settings(20), answering(200, "{\"b\": [1, 2], \"a\": 1}"))
            .expect("mirror");
        let primary = Bytes::from_static(b"{\"a\":1,\"b\":[1,2]}");
        for i in 0..1000 {
            let r = request(&format!("r{i}"), b"{\"data\": 1}");
            mirror.offer(&r, 200, &primary, Duration::from_millis(3));
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let status = until(&mirror, |s| s.shadow.requests == 200).await;
        assert_eq!(status.mirrored, 200);
        assert_eq!(status.dropped, 0);
        assert_eq!(status.differing, 0, "key order and whitespace differ only");
        assert_eq!(status.revision, 4);
        assert_eq!(status.percent, 20);
        assert_eq!(status.primary.revision, 3);
        assert_eq!(status.primary.requests, 200);
        assert_eq!(status.primary.errors, 0);
        let p50 = status.primary.p50_ms.expect("primary latency");
        assert!((p50 - 3.0).abs() <= 0.375, "{p50}");
        assert_eq!(status.shadow.revision, 4);
        assert_eq!(status.shadow.errors, 0);
        assert!(status.shadow.p99_ms.is_some());
        assert!(mirror.diffs().is_empty());
    }

    #[tokio::test]
    async fn a_slow_shadow_never_blocks_the_offer_and_drops_are_counted() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let sender = {
            let gate = gate.clone();
            Arc::new(
                move |_request: ScoreRequest| -> BoxFuture<'static, Result<(u16, Bytes), String>> {
                    let gate = gate.clone();
                    Box::pin(async move {
                        let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                        Ok((200, Bytes::from_static(b"ok")))
                    })
                },
            )
        };
        let counters = Arc::new(ServiceCounters::default());
        let settings = MirrorSettings {
            queue: 4,
            concurrency: 2,
            counters: counters.clone(),
            ..settings(100)
        };
        let mirror = Mirror::start(settings, sender).expect("mirror");
        let body = Bytes::from_static(b"ok");
        // The test runs on a current-thread runtime and does not yield: the
        // shadow tasks have not taken anything yet, so the queue holds 4.
        for i in 0..20 {
            mirror.offer(
                &request(&format!("r{i}"), b"x"),
                200,
                &body,
                Duration::from_millis(1),
            );
        }
        let status = mirror.status();
        assert_eq!(status.mirrored, 4);
        assert_eq!(status.dropped, 16);
        assert_eq!(counters.mirror_dropped.load(Ordering::Relaxed), 16);
        assert_eq!(counters.mirror_copied.load(Ordering::Relaxed), 4);
        // The tasks take two and wait on the shadow; offers still return at once.
        tokio::task::yield_now().await;
        for i in 20..40 {
            mirror.offer(
                &request(&format!("r{i}"), b"x"),
                200,
                &body,
                Duration::from_millis(1),
            );
        }
        let status = mirror.status();
        assert_eq!(status.mirrored + status.dropped, 40);
        assert!(status.dropped >= 40 - 4 - 4 - 2, "{status:?}");
        assert_eq!(status.shadow.requests, 0, "the shadow answered nothing yet");
        gate.add_permits(1_000);
        let status = until(&mirror, |s| s.shadow.requests == s.mirrored).await;
        assert_eq!(status.shadow.errors, 0);
        assert_eq!(status.differing, 0);
    }

    #[tokio::test]
    async fn shadow_errors_failures_and_timeouts_are_counted() {
        let sender = Arc::new(
            |request: ScoreRequest| -> BoxFuture<'static, Result<(u16, Bytes), String>> {
                Box::pin(async move {
                    match request.request_id.as_str() {
                        "fail" => Err("connection closed".to_owned()),
                        "hang" => futures_util::future::pending().await,
                        "5xx" => Ok((503, Bytes::from_static(b"{\"message\": \"busy\"}"))),
                        _ => Ok((200, Bytes::from_static(b"same"))),
                    }
                })
            },
        );
        let counters = Arc::new(ServiceCounters::default());
        let settings = MirrorSettings {
            timeout: Duration::from_millis(20),
            counters: counters.clone(),
            ..settings(100)
        };
        let mirror = Mirror::start(settings, sender).expect("mirror");
        let body = Bytes::from_static(b"same");
        for id in ["ok", "fail", "hang", "5xx", "ok", "fail"] {
            mirror.offer(&request(id, b"{}"), 200, &body, Duration::from_millis(1));
        }
        let status = until(&mirror, |s| s.shadow.requests == 6).await;
        assert_eq!(status.shadow.errors, 4, "{status:?}");
        assert_eq!(status.primary.errors, 0);
        assert_eq!(status.primary.requests, 6);
        // A failure to answer is an error, not a difference; a 503 is both.
        assert_eq!(status.differing, 1);
        let diffs = mirror.diffs();
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].request_id, "5xx");
        assert_eq!(diffs[0].shadow_status, 503);
        assert_eq!(diffs[0].primary_status, 200);
        assert_eq!(counters.mirror_errors.load(Ordering::Relaxed), 4);
        assert_eq!(counters.mirror_differing.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn the_first_hundred_differing_pairs_are_kept() {
        let long = "é".repeat(3_000); // 6,000 bytes of UTF-8
        let long: &'static str = Box::leak(long.into_boxed_str());
        let mirror = Mirror::start(settings(100), answering(200, long)).expect("mirror");
        let primary = Bytes::from_static(b"{\"label\": 1}");
        for i in 0..150 {
            mirror.offer(
                &request(&format!("r{i}"), b"{\"x\": 1}"),
                200,
                &primary,
                Duration::from_millis(1),
            );
        }
        let status = until(&mirror, |s| s.shadow.requests == 150).await;
        assert_eq!(status.differing, 150);
        let diffs = mirror.diffs();
        assert_eq!(diffs.len(), MAX_DIFFS);
        let mut ids: Vec<u32> = diffs
            .iter()
            .map(|d| d.request_id[1..].parse().expect("id"))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), MAX_DIFFS);
        let d = &diffs[0];
        assert_eq!(d.request, "{\"x\": 1}");
        assert_eq!(d.primary_body, "{\"label\": 1}");
        assert_eq!(d.primary_status, 200);
        assert_eq!(d.shadow_status, 200);
        // 4 KiB of the shadow's body: 2,048 two-byte characters.
        assert_eq!(d.shadow_body, "é".repeat(2_048));
        humantime::parse_rfc3339(&d.time).expect("RFC 3339 time");
    }

    #[test]
    fn answers_compare_as_json_when_both_parse() {
        /// Primary status and body, shadow status and body, whether the same.
        type Case = (u16, &'static [u8], u16, &'static [u8], bool);
        let cases: [Case; 8] = [
            (
                200,
                b"{\"a\":1,\"b\":2}",
                200,
                b"{ \"b\": 2,\n \"a\": 1 }",
                true,
            ),
            (200, b"[1, 2]", 200, b"[2, 1]", false),
            (200, b"{\"a\":1}", 500, b"{\"a\":1}", false),
            (200, b"{\"a\":1}", 200, b"{\"a\":2}", false),
            (200, b"plain text", 200, b"plain text", true),
            (200, b"plain text", 200, b"plain  text", false),
            (200, b"{\"a\":1}", 200, b"{\"a\":1", false),
            (404, b"", 404, b"", true),
        ];
        for (sa, a, sb, b, want) in cases {
            assert_eq!(
                same_answer(sa, a, sb, b),
                want,
                "{sa} {:?} vs {sb} {:?}",
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            );
        }
    }

    #[tokio::test]
    async fn stop_and_drop_end_the_tasks() {
        // The sender's future holds `alive` until it ends or is dropped.
        let alive = Arc::new(());
        let sender = {
            let alive = alive.clone();
            Arc::new(
                move |_request: ScoreRequest| -> BoxFuture<'static, Result<(u16, Bytes), String>> {
                    let alive = alive.clone();
                    Box::pin(async move {
                        let _held = alive;
                        futures_util::future::pending().await
                    })
                },
            )
        };
        let mirror = Mirror::start(settings(100), sender).expect("mirror");
        let body = Bytes::new();
        mirror.offer(&request("a", b""), 200, &body, Duration::ZERO);
        // The sender closure holds one clone; the task in flight one more.
        yield_until("a copy in flight", || Arc::strong_count(&alive) == 3).await;
        mirror.stop();
        mirror.offer(&request("b", b""), 200, &body, Duration::ZERO);
        assert!(!mirror.sample());
        assert_eq!(mirror.status().mirrored, 1, "offers after stop are ignored");
        // Aborted tasks drop their futures and the sender (the closure's clone).
        yield_until("stopped tasks end", || Arc::strong_count(&alive) == 1).await;
        drop(mirror);

        // Dropping a running mirror ends its tasks too.
        let alive = Arc::new(());
        let sender = {
            let alive = alive.clone();
            Arc::new(
                move |_request: ScoreRequest| -> BoxFuture<'static, Result<(u16, Bytes), String>> {
                    let alive = alive.clone();
                    Box::pin(async move {
                        let _held = alive;
                        futures_util::future::pending().await
                    })
                },
            )
        };
        let mirror = Mirror::start(settings(100), sender).expect("mirror");
        mirror.offer(&request("a", b""), 200, &body, Duration::ZERO);
        yield_until("a copy in flight", || Arc::strong_count(&alive) == 3).await;
        drop(mirror);
        yield_until("dropped tasks end", || Arc::strong_count(&alive) == 1).await;
    }

    #[test]
    fn starting_checks_percent_and_runtime() {
        let err = Mirror::start(settings(0), answering(200, "")).expect_err("0 %");
        assert!(matches!(err, MirrorError::Percent(0)), "{err}");
        assert!(err.to_string().contains("1–100"), "{err}");
        let err = Mirror::start(settings(101), answering(200, "")).expect_err("101 %");
        assert!(matches!(err, MirrorError::Percent(101)), "{err}");
        let err = Mirror::start(settings(20), answering(200, "")).expect_err("no runtime");
        assert!(matches!(err, MirrorError::NoRuntime), "{err}");
    }
}
