//! `/livez` and `/readyz`, outside authentication: liveness says the process
//! answers; readiness says it accepts work (false while shutting down, or
//! while the metadata store or the blob store does not answer) and reports
//! leadership: this server's role (`single`, `leader` or `follower`), the
//! leader's id and the lease's fencing number, with the store's and the blob
//! store's health.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;

use crate::cluster::Leadership;
use crate::store::ClusterStore;

/// Longest a readiness probe waits for the store.
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
    /// The local blob folder (must be a directory).
    pub blobs: PathBuf,
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
    let blobs = Probe::of(match tokio::fs::metadata(&r.blobs).await {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!("`{}` is not a directory", r.blobs.display())),
        Err(e) => Err(format!("`{}`: {e}", r.blobs.display())),
    });
    let accepting = r.ready.load(Ordering::Acquire);
    let status = match (accepting, store.ok && blobs.ok) {
        (false, _) => "shutting down",
        (true, false) => "unavailable",
        (true, true) => "ready",
    };
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
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
