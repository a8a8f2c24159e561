//! `/livez` and `/readyz`, outside authentication: liveness says the process
//! answers; readiness says it accepts work (false while shutting down).
//!
//! `/readyz` also reports the blob store (`blobs: ok` or `blobs: unavailable: <why>`, from a
//! probe cached for a few seconds). An unavailable blob store does not make the server unready:
//! scoring never reads blobs, so the gateway keeps serving while registrations and new
//! revisions fail with their own errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

use crate::blobs::BlobStore;

/// Health routes.
pub fn router(ready: Arc<AtomicBool>, blobs: BlobStore) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                let blobs = blobs.clone();
                async move {
                    let blob_line = match blobs.health().await {
                        Ok(()) => "blobs: ok".to_owned(),
                        Err(why) => format!("blobs: unavailable: {why}"),
                    };
                    if ready.load(Ordering::Acquire) {
                        (StatusCode::OK, format!("ready\n{blob_line}\n"))
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("shutting down\n{blob_line}\n"),
                        )
                    }
                }
            }),
        )
}
