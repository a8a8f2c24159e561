//! The scoring gateway (data plane): `POST|GET /api/v1/service/{name}/score` and
//! `GET /api/v1/service/{name}/swagger.json`.
//!
//! A request is authenticated (key auth, per service), its body read whole
//! (size, total deadline and minimum rate: see [`body`]), then admitted (at most
//! replicas × `maxConcurrentRequestsPerContainer` in flight; a wait longer than
//! `maxQueueWaitMs` gets 503), sent as one frame to the ready replica with the
//! fewest requests in flight, and answered with the reference server's headers.
//! `scoringTimeoutMs` exceeded → 504 and the replica is recycled. The route is
//! read from memory; the database is never touched here.

pub mod body;
pub mod gates;
pub mod mirror;
pub mod ports;
mod score;
pub mod table;
pub mod window;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get};

pub use body::BodyLimits;
pub use ports::{PortError, PortListeners};
pub use table::{Route, RouteSettings, RouteTable};

/// What the gateway routes need.
#[derive(Clone)]
pub struct GatewayState {
    /// Routes.
    pub table: Arc<RouteTable>,
    /// Limits on request bodies, read before admission.
    pub body: BodyLimits,
    /// Largest worker answer passed on, bytes.
    pub max_response: u64,
    /// Checks scoring tokens.
    pub signer: crate::tokens::TokenSigner,
}

/// The data-plane routes.
pub fn router(state: GatewayState) -> Router {
    Router::new()
        .route("/api/v1/service/{name}/score", any(score::score))
        .route("/api/v1/service/{name}/swagger.json", get(score::swagger))
        .with_state(state)
}
