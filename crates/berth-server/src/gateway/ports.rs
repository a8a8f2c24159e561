//! Per-service listeners: a local service deployed with `port` (v1's
//! `LocalWebservice.deploy_configuration(port=N)`) is also served on
//! `127.0.0.1:N` at `/score` and `/swagger.json` (and `GET /` answers
//! `Healthy`, like azmlinfsrv), so its `scoring_uri` is
//! `http://localhost:N/score` as in v1. A listener is bound when the service is
//! created (a taken port is refused then) and stopped when the service is
//! deleted or drops the port; requests go through the same gateway handler as
//! `/api/v1/service/{name}/score`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::{any, get};
use tokio::sync::oneshot;

use super::GatewayState;

/// A port that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Another service of this server has it.
    #[error(
        "port {port} is already the port of service `{service}`: pick another `port`, or leave it unset to use the gateway's address"
    )]
    UsedBy {
        /// The port.
        port: u16,
        /// The service holding it.
        service: String,
    },
    /// The operating system refused it (another program has it, or it needs privileges).
    #[error(
        "port {port} on 127.0.0.1 cannot be used: {reason}; pick another `port` (a free one above 1024), or leave it unset to use the gateway's address"
    )]
    Taken {
        /// The port.
        port: u16,
        /// Why.
        reason: String,
    },
}

struct Bound {
    port: u16,
    /// Dropping it stops the listener.
    _stop: oneshot::Sender<()>,
}

/// The running per-service listeners.
pub struct PortListeners {
    gateway: GatewayState,
    limits: crate::tls::Limits,
    bound: Mutex<HashMap<String, Bound>>,
}

#[derive(Clone)]
struct PortState {
    gateway: GatewayState,
    service: Arc<str>,
}

async fn score(
    State(s): State<PortState>,
    query: RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    super::score::score(
        State(s.gateway),
        Path(s.service.to_string()),
        query,
        method,
        headers,
        body,
    )
    .await
}

async fn swagger(State(s): State<PortState>, query: RawQuery, headers: HeaderMap) -> Response {
    super::score::swagger(
        State(s.gateway),
        Path(s.service.to_string()),
        query,
        headers,
    )
    .await
}

async fn liveness() -> &'static str {
    "Healthy"
}

impl PortListeners {
    /// Listeners that answer through `gateway`.
    pub fn new(gateway: GatewayState, limits: crate::tls::Limits) -> Self {
        Self {
            gateway,
            limits,
            bound: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bound>> {
        match self.bound.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The port `service` is served on, if any.
    pub fn port_of(&self, service: &str) -> Option<u16> {
        self.lock().get(service).map(|b| b.port)
    }

    /// Checks that `port` could be given to `service` now, without keeping it.
    pub fn check(&self, service: &str, port: u16) -> Result<(), PortError> {
        {
            let bound = self.lock();
            if bound.get(service).is_some_and(|b| b.port == port) {
                return Ok(());
            }
            if let Some((other, _)) = bound.iter().find(|(_, b)| b.port == port) {
                return Err(PortError::UsedBy {
                    port,
                    service: other.clone(),
                });
            }
        }
        std::net::TcpListener::bind(("127.0.0.1", port))
            .map(drop)
            .map_err(|e| PortError::Taken {
                port,
                reason: e.to_string(),
            })
    }

    /// Serves `service` on `127.0.0.1:port` (replacing its listener on another
    /// port); `Ok(true)` when a listener was started, `Ok(false)` when it runs already.
    pub async fn bind(&self, service: &str, port: u16) -> Result<bool, PortError> {
        self.check(service, port)?;
        if self.port_of(service) == Some(port) {
            return Ok(false);
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| PortError::Taken {
                port,
                reason: e.to_string(),
            })?;
        let state = PortState {
            gateway: self.gateway.clone(),
            service: Arc::from(service),
        };
        let app = Router::new()
            .route("/score", any(score))
            .route("/swagger.json", get(swagger))
            .route("/", get(liveness))
            .with_state(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let limits = self.limits;
        let name = service.to_owned();
        tokio::spawn(async move {
            crate::tls::serve(listener, app, None, limits, async move {
                let _ = stopped.await;
            })
            .await;
            tracing::info!(service = %name, port, "service listener stopped");
        });
        tracing::info!(service, port, "serving the service on its own port");
        self.lock()
            .insert(service.to_owned(), Bound { port, _stop: stop });
        Ok(true)
    }

    /// Stops the listener of `service`, if any.
    pub fn release(&self, service: &str) {
        self.lock().remove(service);
    }
}
