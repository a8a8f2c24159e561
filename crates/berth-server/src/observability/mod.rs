//! What the gateway records about each scoring request: metrics (always),
//! request-log lines (`appInsightsEnabled`) and data-collection samples
//! (`dataCollection.storageEnabled`).
//!
//! [`Observability`] (one per server) owns the two background writers; each
//! route gets an [`RouteObservability`] built for its revision's settings, so
//! the hot path reads two booleans and bumps atomics. Lines and samples go to
//! the writers through bounded queues with `try_send`: when a queue is full the
//! item is dropped and counted, and the request is never slowed. The writers
//! poll their queues (every [`WRITER_POLL`] when idle) rather than park on
//! them, so a send is a push and never a thread wake-up.

mod data_collection;
mod request_log;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use berth_api::ServiceSpec;
use bytes::Bytes;
use tokio::sync::mpsc;

pub use request_log::{RotatingFile, read_tail};

use crate::metrics::{Metrics, ServiceMetrics};

/// Items a writer queue holds before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 10_000;
/// A request log rotates when it would grow past this.
pub const REQUEST_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// How often an idle writer looks for new items (and flushes what it wrote).
pub const WRITER_POLL: Duration = Duration::from_millis(20);
/// Rotated request logs kept besides the current one (`requests.log.1` …).
pub const REQUEST_LOG_KEEP: usize = 4;
/// A data-collection file rotates when it would grow past this.
pub const DATA_COLLECTION_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Rotated data-collection files kept per day besides the current one (`data.jsonl.1` …).
pub const DATA_COLLECTION_KEEP: usize = 16;

/// One request-log line, formatted by the writer.
#[derive(Debug)]
struct RequestRecord {
    service: Arc<str>,
    revision: u32,
    at: SystemTime,
    request_id: String,
    method: String,
    status: u16,
    queued_us: u64,
    run_us: u64,
    overhead_us: u64,
    total_us: u64,
    request_bytes: usize,
    response_bytes: usize,
    replica: Option<u32>,
    request_body: Option<Bytes>,
    response_body: Option<Bytes>,
}

/// One data-collection sample, formatted by the writer.
#[derive(Debug)]
struct DataSample {
    service: Arc<str>,
    revision: u32,
    models: Arc<[String]>,
    at: SystemTime,
    request_id: String,
    status: u16,
    input: Bytes,
    output: Option<Bytes>,
}

/// The server's writers and metrics registry.
pub struct Observability {
    metrics: Arc<Metrics>,
    data_dir: PathBuf,
    request_log: mpsc::Sender<RequestRecord>,
    data: mpsc::Sender<DataSample>,
}

/// What one scoring request did, as the gateway saw it.
#[derive(Debug)]
pub struct Exchange<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Status answered.
    pub status: u16,
    /// Gateway receipt to response.
    pub total: Duration,
    /// Waiting for an admission slot.
    pub queued: Duration,
    /// Inside `run()`.
    pub run: Duration,
    /// Request body size (declared when it was not read).
    pub request_bytes: usize,
    /// Response body size.
    pub response_bytes: usize,
    /// The replica that served it.
    pub replica: Option<u32>,
    /// The request body, when it was read and [`RouteObservability::wants_bodies`].
    pub request_body: Option<Bytes>,
    /// The worker's response body, when it answered and bodies are wanted.
    pub response_body: Option<Bytes>,
    /// 503 for want of an admission slot.
    pub capacity_rejected: bool,
    /// 504 for a `run()` over `scoringTimeoutMs`.
    pub timed_out: bool,
}

/// Per-route recording: the revision's metrics and which writers it feeds.
pub struct RouteObservability {
    /// The (service, revision) series.
    pub metrics: Arc<ServiceMetrics>,
    service: Arc<str>,
    revision: u32,
    models: Arc<[String]>,
    request_log: bool,
    log_bodies: bool,
    collect: bool,
    sinks: Option<(mpsc::Sender<RequestRecord>, mpsc::Sender<DataSample>)>,
}

impl Observability {
    /// Starts the request-log and data-collection writers (threads) under `data_dir`.
    pub fn start(data_dir: &Path, metrics: Arc<Metrics>) -> Arc<Self> {
        let (log_tx, log_rx) = mpsc::channel(QUEUE_CAPACITY);
        let (data_tx, data_rx) = mpsc::channel(QUEUE_CAPACITY);
        let logs_root = data_dir.join("logs");
        let spawned = std::thread::Builder::new()
            .name("berth-request-log".into())
            .spawn(move || request_log::run_writer(&logs_root, log_rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the request-log writer; request logs are off");
        }
        let data_root = data_dir.join("datacollection");
        let spawned = std::thread::Builder::new()
            .name("berth-datacollection".into())
            .spawn(move || data_collection::run_writer(&data_root, data_rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the data-collection writer; data collection is off");
        }
        Arc::new(Self {
            metrics,
            data_dir: data_dir.to_owned(),
            request_log: log_tx,
            data: data_tx,
        })
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The recording of a route serving `revision` of `service` with `spec`'s settings.
    pub fn route(
        &self,
        service: &str,
        revision: Option<u32>,
        spec: &ServiceSpec,
    ) -> Arc<RouteObservability> {
        let d = &spec.deployment;
        Arc::new(RouteObservability {
            metrics: self.metrics.service_metrics(service, revision),
            service: service.into(),
            revision: revision.unwrap_or(0),
            models: spec.models.clone().into(),
            request_log: revision.is_some() && d.app_insights_enabled,
            log_bodies: d.request_log_bodies,
            collect: revision.is_some() && d.data_collection.storage_enabled,
            sinks: Some((self.request_log.clone(), self.data.clone())),
        })
    }

    /// `<data>/logs/<service>/requests.log`.
    pub fn request_log_path(&self, service: &str) -> PathBuf {
        request_log::path(&self.data_dir.join("logs"), service)
    }
}

impl RouteObservability {
    /// Recording that only keeps metrics, registered nowhere.
    pub fn detached(service: &str) -> Arc<Self> {
        Arc::new(Self {
            metrics: ServiceMetrics::detached(service, None),
            service: service.into(),
            revision: 0,
            models: Arc::from(Vec::new()),
            request_log: false,
            log_bodies: false,
            collect: false,
            sinks: None,
        })
    }

    /// Whether the gateway should keep the request and response bodies
    /// (a refcount each) for [`RouteObservability::finish`].
    pub fn wants_bodies(&self) -> bool {
        self.collect || (self.request_log && self.log_bodies)
    }

    /// Records one answered request: metrics, then (when on) a request-log line
    /// and a data-collection sample, each dropped and counted if its queue is full.
    pub fn finish(&self, ex: Exchange<'_>) {
        let m = &self.metrics;
        let total_us = ex.total.as_micros() as u64;
        let queued_us = ex.queued.as_micros() as u64;
        let run_us = ex.run.as_micros() as u64;
        let overhead_us = total_us.saturating_sub(queued_us).saturating_sub(run_us);
        m.count_status(ex.status);
        m.total.observe_us(total_us);
        m.queued.observe_us(queued_us);
        m.run.observe_us(run_us);
        m.overhead.observe_us(overhead_us);
        if ex.capacity_rejected {
            m.capacity_rejections.fetch_add(1, Ordering::Relaxed);
        }
        if ex.timed_out {
            m.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        if !(self.request_log || self.collect) {
            return;
        }
        let Some((log_tx, data_tx)) = &self.sinks else {
            return;
        };
        let at = SystemTime::now()
            .checked_sub(ex.total)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if self.collect
            && let Some(input) = &ex.request_body
        {
            let sample = DataSample {
                service: self.service.clone(),
                revision: self.revision,
                models: self.models.clone(),
                at,
                request_id: ex.request_id.to_owned(),
                status: ex.status,
                input: input.clone(),
                output: ex.response_body.clone(),
            };
            if data_tx.try_send(sample).is_err() {
                m.counters
                    .datacollection_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.request_log {
            let record = RequestRecord {
                service: self.service.clone(),
                revision: self.revision,
                at,
                request_id: ex.request_id.to_owned(),
                method: ex.method.to_owned(),
                status: ex.status,
                queued_us,
                run_us,
                overhead_us,
                total_us,
                request_bytes: ex.request_bytes,
                response_bytes: ex.response_bytes,
                replica: ex.replica,
                request_body: ex.request_body.filter(|_| self.log_bodies),
                response_body: ex.response_body.filter(|_| self.log_bodies),
            };
            if log_tx.try_send(record).is_err() {
                m.counters
                    .request_log_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A request or response body inside a JSON line: the JSON itself when the
/// body is compact JSON (embedded as it came, not re-encoded), re-encoded
/// JSON when it is JSON spread over lines, else the text as a string.
enum BodyJson<'a> {
    Raw(&'a serde_json::value::RawValue),
    Parsed(serde_json::Value),
    Text(std::borrow::Cow<'a, str>),
}

/// Most bytes of a request or response body kept in one log or data line;
/// a longer body is cut there and marked (see [`truncated`]).
pub const MAX_BODY_IN_LINE: usize = 64 * 1024;

/// The head of a body longer than [`MAX_BODY_IN_LINE`], with the marker
/// `…[truncated by berth: N bytes in all, first K kept]`.
fn truncated(bytes: &[u8]) -> String {
    let head = String::from_utf8_lossy(&bytes[..MAX_BODY_IN_LINE]);
    // A character cut in two shows as U+FFFD at the end; drop it.
    let head = head.trim_end_matches('\u{fffd}');
    format!(
        "{head}…[truncated by berth: {} bytes in all, first {MAX_BODY_IN_LINE} kept]",
        bytes.len()
    )
}

fn body_json(bytes: &[u8]) -> BodyJson<'_> {
    if bytes.len() > MAX_BODY_IN_LINE {
        return BodyJson::Text(std::borrow::Cow::Owned(truncated(bytes)));
    }
    match serde_json::from_slice::<&serde_json::value::RawValue>(bytes) {
        Ok(raw) if !raw.get().contains(['\n', '\r']) => BodyJson::Raw(raw),
        Ok(_) => serde_json::from_slice(bytes)
            .map(BodyJson::Parsed)
            .unwrap_or_else(|_| BodyJson::Text(String::from_utf8_lossy(bytes))),
        Err(_) => BodyJson::Text(String::from_utf8_lossy(bytes)),
    }
}

impl serde::Serialize for BodyJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Raw(raw) => raw.serialize(serializer),
            Self::Parsed(value) => value.serialize(serializer),
            Self::Text(text) => serializer.serialize_str(text),
        }
    }
}

/// RFC 3339 UTC with milliseconds.
fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(body: &[u8]) -> String {
        serde_json::to_string(&body_json(body)).unwrap()
    }

    #[test]
    fn bodies_stay_on_one_line_as_json_or_text() {
        assert_eq!(line(br#"{"data": [1.5, 2]}"#), r#"{"data": [1.5, 2]}"#);
        assert_eq!(line(b"{\n  \"a\": 1\n}"), r#"{"a":1}"#);
        assert_eq!(line(b"plain text\n"), r#""plain text\n""#);
        assert_eq!(line(b"\xff"), "\"\u{fffd}\"");
        assert_eq!(line(b""), r#""""#);
    }

    #[test]
    fn a_large_body_is_cut_with_a_marker() {
        let body = vec![b'a'; 50 << 20];
        let text = line(&body);
        assert!(text.len() < MAX_BODY_IN_LINE + 200, "{}", text.len());
        assert!(
            text.ends_with("…[truncated by berth: 52428800 bytes in all, first 65536 kept]\""),
            "{}",
            &text[text.len() - 100..]
        );
        assert!(!text.contains('\n'));
    }
}
