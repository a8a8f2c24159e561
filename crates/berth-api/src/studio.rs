//! Wire types the web console (Berth Studio) reads beyond the other resources:
//! the short in-memory time series the server keeps per service, and the
//! one-time sign-in links `berth studio login` prints.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One sample of a service's traffic, summed over its live revisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeriesPoint {
    /// When the sample was taken, epoch milliseconds.
    pub time: u64,
    /// Requests answered per second over the interval, all classes.
    pub rps: f64,
    /// 2xx answers per second.
    pub rate2xx: f64,
    /// 4xx answers per second.
    pub rate4xx: f64,
    /// 5xx answers per second.
    pub rate5xx: f64,
    /// Share of answers that were 5xx (0 to 1); absent without requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Median latency (gateway receipt to response) over the interval, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// 90th percentile latency, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90_ms: Option<f64>,
    /// 99th percentile latency, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Requests waiting for admission at the sample.
    pub queue_depth: u64,
    /// Requests in `run()` at the sample.
    pub in_flight: u64,
    /// Ready replicas at the sample.
    pub replicas_ready: u32,
    /// Desired replicas at the sample.
    pub replicas_desired: u32,
}

/// The recent samples of one service, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSeries {
    /// Service name.
    pub service: String,
    /// Seconds between samples.
    pub interval_seconds: u64,
    /// Samples, oldest first (at most 15 minutes' worth).
    pub points: Vec<SeriesPoint>,
}

/// Every service's recent samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeriesList {
    /// One entry per service that served in the window.
    pub value: Vec<ServiceSeries>,
}

/// A one-time console sign-in link (`POST /v1/studio/codes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StudioCode {
    /// Open this in a browser to sign in; it works once.
    pub url: String,
    /// Epoch seconds after which the link is refused.
    pub expires_on: u64,
    /// Seconds a session started from the link lasts.
    pub session_seconds: u64,
}
