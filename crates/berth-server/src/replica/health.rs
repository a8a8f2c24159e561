//! The replica's plain-HTTP probes: `GET /healthz` (the process is up and its
//! worker, once started, is still connected) and `GET /readyz` (`init()` done
//! and the worker connected). Kubernetes probes use these exact paths.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

/// Where the replica is.
#[derive(Debug, Default)]
pub struct Health {
    state: AtomicU8,
}

const STARTING: u8 = 0;
const READY: u8 = 1;
const GONE: u8 = 2;

impl Health {
    /// The worker passed `init()` and the listener is open.
    pub fn set_ready(&self) {
        self.state.store(READY, Ordering::Release);
    }

    /// The worker is gone.
    pub fn set_gone(&self) {
        self.state.store(GONE, Ordering::Release);
    }

    fn get(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }
}

/// The probe routes.
pub fn router(health: Arc<Health>) -> Router {
    let live = health.clone();
    Router::new()
        .route(
            "/healthz",
            get(move || {
                let health = live.clone();
                async move {
                    match health.get() {
                        GONE => (StatusCode::SERVICE_UNAVAILABLE, "worker gone\n"),
                        STARTING => (StatusCode::OK, "starting\n"),
                        _ => (StatusCode::OK, "ok\n"),
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let health = health.clone();
                async move {
                    match health.get() {
                        READY => (StatusCode::OK, "ready\n"),
                        GONE => (StatusCode::SERVICE_UNAVAILABLE, "worker gone\n"),
                        _ => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
                    }
                }
            }),
        )
}
