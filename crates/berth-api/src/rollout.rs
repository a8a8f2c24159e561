//! Progressive delivery on the wire: a revision's `rollout` settings, the
//! traffic split of a service, the gate figures of a running rollout and the
//! shadow (mirror) report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How traffic moves from the serving revision to a new one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum RolloutStrategy {
    /// All traffic at once when the new replicas are ready (no bake, no gates).
    #[default]
    Rolling,
    /// `canaryPercent` % for `bakeSeconds`, then 100 %.
    Canary,
    /// `steps` equal steps, each baked for `bakeSeconds`.
    Linear,
    /// The new revision fully up, traffic switched at once, the old one kept
    /// warm for `bakeSeconds` (instant rollback), then drained.
    BlueGreen,
}

impl RolloutStrategy {
    /// The name as written in configs and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rolling => "rolling",
            Self::Canary => "canary",
            Self::Linear => "linear",
            Self::BlueGreen => "blueGreen",
        }
    }

    /// Parses a name (`blue-green` and `bluegreen` are accepted for `blueGreen`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "rolling" => Some(Self::Rolling),
            "canary" => Some(Self::Canary),
            "linear" => Some(Self::Linear),
            "bluegreen" | "blue-green" | "blue_green" => Some(Self::BlueGreen),
            _ => None,
        }
    }
}

/// Copy a share of live requests to another revision (`rollout.shadow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShadowSettings {
    /// The revision that gets the copies; absent in a `rollout` block: the
    /// candidate of the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    /// Share of requests copied, 1–100.
    pub percent: u32,
}

/// A revision's `rollout` settings, defaults resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSettings {
    /// Strategy.
    pub strategy: RolloutStrategy,
    /// `canary`: share of traffic on the candidate during the bake, 1–99.
    pub canary_percent: u32,
    /// `linear`: number of equal steps, 2–20.
    pub steps: u32,
    /// Seconds each bake lasts (canary, each linear step, blue-green warm time).
    pub bake_seconds: u64,
    /// Gate: the candidate's 5xx rate (percent of its requests) may exceed the
    /// baseline's by at most this many points.
    pub max_error_rate: f64,
    /// Gate: the candidate's p99 latency, ms (absent: no latency gate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<u64>,
    /// Nothing is judged before the candidate answered this many requests.
    pub min_requests: u64,
    /// Roll back by itself when a gate fails.
    pub auto_rollback: bool,
    /// Mirror a share of the requests to the candidate before it takes any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSettings>,
}

/// Default `canaryPercent`.
pub const DEFAULT_CANARY_PERCENT: u32 = 10;
/// Default `steps`.
pub const DEFAULT_STEPS: u32 = 4;
/// Default `bakeSeconds`.
pub const DEFAULT_BAKE_SECONDS: u64 = 60;
/// Default `maxErrorRate` (points of 5xx rate above the baseline's).
pub const DEFAULT_MAX_ERROR_RATE: f64 = 1.0;
/// Default `minRequests`.
pub const DEFAULT_MIN_REQUESTS: u64 = 20;

impl Default for RolloutSettings {
    fn default() -> Self {
        Self {
            strategy: RolloutStrategy::Rolling,
            canary_percent: DEFAULT_CANARY_PERCENT,
            steps: DEFAULT_STEPS,
            bake_seconds: DEFAULT_BAKE_SECONDS,
            max_error_rate: DEFAULT_MAX_ERROR_RATE,
            max_p99_ms: None,
            min_requests: DEFAULT_MIN_REQUESTS,
            auto_rollback: true,
            shadow: None,
        }
    }
}

impl RolloutSettings {
    /// Whether this is today's all-at-once switch with nothing to bake.
    pub fn is_rolling(&self) -> bool {
        self.strategy == RolloutStrategy::Rolling
    }
}

/// A gate: what is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum GateKind {
    /// 5xx rate of the candidate, percent, against `maxErrorRate` above the baseline's.
    ErrorRate,
    /// p99 latency of the candidate, ms, against `maxP99Ms`.
    P99Latency,
}

/// One gate's figures during (or at the end of) a bake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateFigure {
    /// The gate.
    pub gate: GateKind,
    /// Its limit (percent points or ms). For `errorRate` this is the baseline's
    /// rate plus `maxErrorRate`.
    pub threshold: f64,
    /// What the candidate measured so far (`None` before its first request).
    pub measured: Option<f64>,
    /// The baseline's figure over the same window, when there is a baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// Candidate requests in the window.
    pub requests: u64,
    /// `pending` (fewer than `minRequests`), `passing` or `failed`.
    pub verdict: GateVerdict,
}

/// A gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum GateVerdict {
    /// Not judged yet: fewer than `minRequests`.
    Pending,
    /// Within its threshold.
    Passing,
    /// Over its threshold.
    Failed,
}

/// A running (or the last) rollout of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The operation that owns it.
    pub operation_id: String,
    /// Strategy.
    pub strategy: RolloutStrategy,
    /// The revision being rolled out.
    pub candidate: u32,
    /// The revision it replaces.
    pub baseline: Option<u32>,
    /// Step, from 1 (`0` while the candidate starts).
    pub step: u32,
    /// Steps in all.
    pub steps: u32,
    /// `starting`, `baking`, `promoting`, `rollingBack`, `done`.
    pub phase: String,
    /// Revision → weight now.
    pub weights: BTreeMap<String, u32>,
    /// RFC 3339: when the current bake ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_ends: Option<String>,
    /// The gates as measured so far in this bake.
    #[serde(default)]
    pub gates: Vec<GateFigure>,
}

/// Live figures of one serving revision over the last minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionFigures {
    /// Requests per second.
    pub requests_per_second: f64,
    /// 5xx answers, percent of requests.
    pub error_rate: f64,
    /// Median latency, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<f64>,
    /// Requests counted.
    pub requests: u64,
}

/// One revision in a service's traffic split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficEntry {
    /// Revision.
    pub revision: u32,
    /// The revision's name (v1 `AksEndpoint` version name), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Share of requests, percent.
    pub weight: u32,
    /// Replicas ready.
    pub ready_replicas: u32,
    /// Replicas wanted.
    pub desired_replicas: u32,
    /// Last minute's figures.
    pub figures: RevisionFigures,
}

/// `GET /v1/services/{name}/traffic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Traffic {
    /// Service.
    pub service: String,
    /// Serving revisions with their weights (they sum to 100).
    pub revisions: Vec<TrafficEntry>,
    /// The running rollout, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// The shadow, if requests are mirrored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorStatus>,
}

/// One serving revision's share, as `GET /v1/services/{name}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficShare {
    /// Revision.
    pub revision: u32,
    /// Percent of requests.
    pub weight: u32,
    /// `stable` (the revision the service falls back to), `candidate` (a
    /// rollout's new revision) or `split` (set by hand).
    pub role: String,
    /// The revision's name (v1 `AksEndpoint` version name), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `PUT /v1/services/{name}/traffic`: revision → weight, summing to 100.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetTrafficRequest {
    /// Revision number (as a string key) → percent.
    pub weights: BTreeMap<String, u32>,
    /// Names for revisions (v1 `AksEndpoint` version names), optional.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, String>,
}

/// `PUT /v1/services/{name}/mirror`: start (or with `percent` 0, stop) mirroring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetMirrorRequest {
    /// The revision that gets the copies.
    pub revision: u32,
    /// Share of requests copied, 0–100 (0 stops mirroring).
    pub percent: u32,
}

/// Latency and error figures of one side of a mirror.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorSide {
    /// Revision.
    pub revision: u32,
    /// Requests answered.
    pub requests: u64,
    /// 5xx answers (and, for the shadow, failures to answer).
    pub errors: u64,
    /// Median latency, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<f64>,
}

/// What mirroring measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorStatus {
    /// The shadow revision.
    pub revision: u32,
    /// Share copied, percent.
    pub percent: u32,
    /// Requests copied to the shadow.
    pub mirrored: u64,
    /// Copies dropped because the shadow's queue was full (it never slows the primary).
    pub dropped: u64,
    /// Answers that differed from the primary's (JSON-equal comparison).
    pub differing: u64,
    /// The primary's figures for the mirrored requests.
    pub primary: MirrorSide,
    /// The shadow's figures.
    pub shadow: MirrorSide,
}

/// One pair of differing answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorDiff {
    /// RFC 3339.
    pub time: String,
    /// The request id.
    pub request_id: String,
    /// The request body (UTF-8, lossy, at most 4 KiB).
    pub request: String,
    /// Primary status and body (at most 4 KiB).
    pub primary_status: u16,
    /// Primary body.
    pub primary_body: String,
    /// Shadow status.
    pub shadow_status: u16,
    /// Shadow body.
    pub shadow_body: String,
}

/// `GET /v1/services/{name}/mirror/diffs`: the first 100 differing pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorDiffList {
    /// Pairs, oldest first.
    pub value: Vec<MirrorDiff>,
}
