//! What several servers on one store share: settings created once by whichever
//! server starts first (the workspace token, the token-signing key) and the
//! leader lease with its fencing number: the `ClusterStore` trait.
//!
//! The lease is one row per name: its holder, a fencing number that grows on
//! every change of holder, and an expiry on the database's clock (never a
//! server's). A holder renews before the expiry; once it has passed, renewing
//! fails and any server may take the lease with the next fencing number.
//! Writes made through [`ClusterStore::fenced_services`] check, inside their
//! own transaction, that their fencing number still holds the lease, so a
//! paused old leader can never write after losing it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{Result, ServiceStore};

/// The name of the lease whose holder runs the reconciler.
pub const LEADER_LEASE: &str = "leader";

/// The fencing number a store handle writes with (0: none held, every fenced
/// write is refused).
#[derive(Debug)]
pub struct Fence {
    lease: &'static str,
    number: AtomicU64,
}

impl Fence {
    /// A fence on `lease`, holding nothing yet.
    pub fn new(lease: &'static str) -> Arc<Self> {
        Arc::new(Self {
            lease,
            number: AtomicU64::new(0),
        })
    }

    /// The lease it fences on.
    pub fn lease(&self) -> &'static str {
        self.lease
    }

    /// The fencing number writes carry now.
    pub fn number(&self) -> u64 {
        self.number.load(Ordering::Acquire)
    }

    /// Writes carry `number` from now on (0 refuses them all).
    pub fn set(&self, number: u64) {
        self.number.store(number, Ordering::Release);
    }
}

/// A lease as the database sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// Who holds (or last held) it.
    pub holder: String,
    /// Its fencing number.
    pub fence: u64,
    /// Milliseconds until it expires on the database's clock (≤ 0: expired).
    pub expires_in_ms: i64,
}

impl LeaseView {
    /// Whether `holder` holds it now.
    pub fn held_by(&self, holder: &str) -> bool {
        self.holder == holder && self.expires_in_ms > 0
    }
}

/// Shared settings and the leader lease.
#[async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// Stores `value` under `key` unless a value is there (atomically, so the
    /// first of several servers wins); returns the stored value.
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String>;
    /// Takes `lease` for `holder` for `ttl` when it is free or expired (the
    /// fencing number then grows by one) or already `holder`'s (renewed, same
    /// number); returns the lease as it is after the attempt.
    async fn try_acquire(&self, lease: &str, holder: &str, ttl: Duration) -> Result<LeaseView>;
    /// Extends `lease` by `ttl` if `holder` still holds it with `fence`, not
    /// expired; `false` when it was lost (expired or taken).
    async fn renew(&self, lease: &str, holder: &str, fence: u64, ttl: Duration) -> Result<bool>;
    /// Ends `holder`'s tenure at once (the next holder takes it without waiting).
    async fn release(&self, lease: &str, holder: &str, fence: u64) -> Result<()>;
    /// The lease, if anyone ever took it.
    async fn lease(&self, lease: &str) -> Result<Option<LeaseView>>;
    /// The ids of the operations not ended yet, oldest first.
    async fn in_flight_operations(&self) -> Result<Vec<String>>;
    /// A service store whose reconciler writes (operation logs, ends, rollout
    /// state, observed service states, interrupted operations) are refused
    /// unless `fence` holds its lease when they commit.
    fn fenced_services(&self, fence: Arc<Fence>) -> Arc<dyn ServiceStore>;
    /// A round trip to the database.
    async fn ping(&self) -> Result<()>;
    /// Publishes `service`'s route (`None`: it serves nothing) with the next
    /// version, refused unless `fence` holds its lease; returns the version.
    async fn publish_route(&self, fence: &Fence, service: &str, route: Option<&str>)
    -> Result<u64>;
    /// The routes published after version `after`, in version order.
    async fn routes_since(&self, after: u64) -> Result<Vec<PublishedRoute>>;
}

/// A route as the leader published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRoute {
    /// The service.
    pub service: String,
    /// The route, serialised (`None`: the service serves nothing).
    pub route: Option<String>,
    /// Its version (grows with every publication).
    pub version: u64,
}

/// `ttl` in whole milliseconds, as stored.
pub(super) fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}
