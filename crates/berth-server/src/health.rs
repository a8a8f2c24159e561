//! `/livez` and `/readyz`, outside authentication: liveness says the process
//! answers; readiness says it accepts work (false while shutting down) and
//! reports leadership — this server's role (`single`, `leader` or
//! `follower`), the leader's id and the lease's fencing number — with the
//! metadata store's and the blob store's health.
//!
//! The blob probe is cached for a few seconds. Neither an unavailable blob
//! store nor an unavailable metadata store makes the server unready: scoring
//! reads neither (routes are in memory), so the gateway keeps serving while
//! registrations and changes fail with their own errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;

use crate::blobs::BlobStore;
use crate::cluster::Leadership;
use crate::store::ClusterStore;

/// Longest a readiness probe waits for the metadata store.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` looks at.
#[derive(Clone)]
pub struct Readiness {
    /// False while shutting down.
    pub ready: Arc<AtomicBool>,
    /// The leader lease as this server sees it.
    pub leadership: Arc<Leadership>,
    /// The metadata store (pinged).
    pub store: Arc<dyn ClusterStore>,
    /// The blob store (its cached probe).
    pub blobs: BlobStore,
}

/// One dependency's health.
#[derive(serde::Serialize)]
struct Probe {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Probe {
    fn of(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => Self {
                ok: true,
                error: None,
            },
            Err(e) => Self {
                ok: false,
                error: Some(e),
            },
        }
    }
}

async fn readyz(r: Readiness) -> impl IntoResponse {
    let store = Probe::of(
        match tokio::time::timeout(PROBE_TIMEOUT, r.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{e}")),
            Err(_) => Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
        },
    );
    let blobs = Probe::of(r.blobs.health().await);
    let (code, status) = if r.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    };
    let view = r.leadership.view();
    (
        code,
        Json(serde_json::json!({
            "status": status,
            "role": view.role,
            "server": view.server,
            "leader": view.leader,
            "fence": view.fence,
            "store": store,
            "blobs": blobs,
        })),
    )
}

/// Health routes.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(move || readyz(readiness.clone())))
}
