//! Several servers on one store (`--cluster`): who leads, and what every
//! server shares.
//!
//! [`Leadership`] is this server's view of the leader lease
//! ([`crate::store::ClusterStore`]): [`Leadership::elect`] tries to take it
//! every second while following and renews it every two seconds while leading
//! (a lease lasts [`LEASE_TTL`], so a successor takes over within
//! `LEASE_TTL + TRY_EVERY` of a leader's death). Only the leader runs
//! operations and the reconciler; the reconciler writes through a store handle
//! fenced with the lease's fencing number, so the database refuses a paused
//! old leader's writes. A leader whose renewal fails (the lease expired or was
//! taken) reports it through [`Leadership::lost`] and the server stops:
//! whatever supervises it starts it again, as a follower.
//!
//! Without `--cluster` the server leads alone ([`Leadership::single`]): no
//! lease, no fence, the behaviour of one server on its own store.
//!
//! [`credentials`] keeps the workspace token and the token-signing key in a
//! PostgreSQL store, so every server accepts the same credentials.

pub mod credentials;
pub mod pickup;
pub mod routes;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::store::{ClusterStore, Fence, LEADER_LEASE};

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(7);
/// How often the leader renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How often a follower tries to take the lease.
pub const TRY_EVERY: Duration = Duration::from_secs(1);
/// A leader whose renewals fail with errors (not with a refusal) keeps trying
/// this often until its lease would have expired.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// This server's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The only server of its store (no `--cluster`).
    Single,
    /// Holds the leader lease: runs operations and the reconciler.
    Leader,
    /// Serves the API and the gateway; the leader runs operations.
    Follower,
}

/// What `/readyz` reports about leadership.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeadershipView {
    /// This server's role.
    pub role: Role,
    /// This server's holder id.
    pub server: String,
    /// The leader's holder id, when one holds the lease.
    pub leader: Option<String>,
    /// The lease's fencing number (0 without `--cluster`).
    pub fence: u64,
}

/// This server's view of the leader lease.
pub struct Leadership {
    id: String,
    clustered: bool,
    fence: Arc<Fence>,
    view: Mutex<LeadershipView>,
    lost: Notify,
}

impl Leadership {
    /// A server leading alone (no `--cluster`).
    pub fn single(id: String) -> Arc<Self> {
        Arc::new(Self {
            view: Mutex::new(LeadershipView {
                role: Role::Single,
                server: id.clone(),
                leader: Some(id.clone()),
                fence: 0,
            }),
            id,
            clustered: false,
            fence: Fence::new(LEADER_LEASE),
            lost: Notify::new(),
        })
    }

    /// A server of a cluster, following until [`Self::elect`] takes the lease.
    pub fn clustered(id: String) -> Arc<Self> {
        Arc::new(Self {
            view: Mutex::new(LeadershipView {
                role: Role::Follower,
                server: id.clone(),
                leader: None,
                fence: 0,
            }),
            id,
            clustered: true,
            fence: Fence::new(LEADER_LEASE),
            lost: Notify::new(),
        })
    }

    /// A holder id for this process: host, port and a random part.
    pub fn new_id(port: u16) -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "berth".to_owned());
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!("{host}:{port}:{}", &random[..8])
    }

    /// Whether this server runs operations and the reconciler now.
    pub fn is_leader(&self) -> bool {
        !self.clustered || self.view().role == Role::Leader
    }

    /// Whether this server is one of several (`--cluster`).
    pub fn clustered_mode(&self) -> bool {
        self.clustered
    }

    /// The fence the reconciler's store handle writes with.
    pub fn fence(&self) -> Arc<Fence> {
        self.fence.clone()
    }

    /// The current view.
    pub fn view(&self) -> LeadershipView {
        match self.view.lock() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_view(&self, view: LeadershipView) {
        match self.view.lock() {
            Ok(mut v) => *v = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
    }

    /// Resolves when this server lost the lease it held.
    pub async fn lost(&self) {
        self.lost.notified().await;
    }

    fn step_down(&self, why: &str) {
        self.fence.set(0);
        self.set_view(LeadershipView {
            role: Role::Follower,
            server: self.id.clone(),
            leader: None,
            fence: 0,
        });
        tracing::error!(server = %self.id, "{why}; stopping, so that only the new leader runs operations");
        self.lost.notify_one();
    }

    /// Follows until the lease is free, takes it, starts `on_lead` with the
    /// fencing number, then renews until a renewal fails (then notifies
    /// [`Self::lost`] and returns).
    pub async fn elect<F, Fut>(self: Arc<Self>, store: Arc<dyn ClusterStore>, on_lead: F)
    where
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let fence = loop {
            match store.try_acquire(LEADER_LEASE, &self.id, LEASE_TTL).await {
                Ok(lease) if lease.held_by(&self.id) => break lease.fence,
                Ok(lease) => self.set_view(LeadershipView {
                    role: Role::Follower,
                    server: self.id.clone(),
                    leader: (lease.expires_in_ms > 0).then_some(lease.holder),
                    fence: lease.fence,
                }),
                Err(e) => tracing::warn!(error = %e, "cannot reach the leader lease"),
            }
            tokio::time::sleep(TRY_EVERY).await;
        };
        self.fence.set(fence);
        self.set_view(LeadershipView {
            role: Role::Leader,
            server: self.id.clone(),
            leader: Some(self.id.clone()),
            fence,
        });
        tracing::info!(server = %self.id, fence, "took the leader lease: this server runs operations and the reconciler");
        // Restoring may take longer than a lease: renewals go on meanwhile.
        tokio::spawn(on_lead(fence));
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            loop {
                match store.renew(LEADER_LEASE, &self.id, fence, LEASE_TTL).await {
                    Ok(true) => {
                        renewed = Instant::now();
                        break;
                    }
                    Ok(false) => {
                        self.step_down("the leader lease was lost (expired or taken)");
                        return;
                    }
                    Err(e) if renewed.elapsed() + RETRY_EVERY < LEASE_TTL => {
                        tracing::warn!(error = %e, "cannot renew the leader lease; retrying");
                        tokio::time::sleep(RETRY_EVERY).await;
                    }
                    Err(e) => {
                        self.step_down(&format!(
                            "the leader lease could not be renewed before it expired ({e})"
                        ));
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up (at shutdown), so a successor takes it at once.
    pub async fn release(&self, store: &dyn ClusterStore) {
        let view = self.view();
        if view.role != Role::Leader {
            return;
        }
        self.fence.set(0);
        if let Err(e) = store.release(LEADER_LEASE, &self.id, view.fence).await {
            tracing::warn!(error = %e, "could not release the leader lease");
        }
    }
}

/// Why the local compute target is refused with `--cluster`.
pub const LOCAL_REFUSED: &str = "the local compute target runs replicas as processes of one server, and with `--cluster` \
     replicas must not belong to one server's process tree (the gateway of every server sends them requests, \
     and they must outlive the server that started them); attach a Kubernetes compute target \
     (`berth compute attach`) and set `computeTargetName` to it, or run a single server without `--cluster`";
