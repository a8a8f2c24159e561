//! Routes on every server's gateway. The leader publishes each service's
//! route to the store whenever its route table changes ([`publish`]):
//! revisions, weights and the addresses of remote replicas (no secrets, no
//! process handles). Followers read what was published after the last version
//! they saw every [`FOLLOW_EVERY`] ([`follow`]), dial the replicas themselves
//! with [`connect`] (the connection credentials are derived from the shared
//! token-signing key, as the leader derives them; the service's keys are read
//! from the store), keep the connections of replicas that did not change, and
//! install the route in their own table. A route whose replicas could not all
//! be reached is tried again on the next round.
//!
//! Replicas of the local Unix-socket transport cannot be reached from another
//! server and are not published; a mirror is not passed on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_api::ServiceSpec;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedReceiver;

use super::Leadership;
use crate::compute::Replica;
use crate::compute::Runner;
use crate::compute::remote::{ReplicaKeys, RevisionCredentials, connect};
use crate::gateway::{Route, RouteTable};
use crate::reconciler::Runtime;
use crate::store::{ClusterStore, ServiceStore};

/// How often a follower reads newly published routes.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// A route as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteDoc {
    /// The pools, the stable revision first.
    pub pools: Vec<PoolDoc>,
}

/// One pool of a published route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolDoc {
    /// The revision.
    pub revision: u32,
    /// Percent of requests.
    pub weight: u32,
    /// Its reachable replicas.
    pub replicas: Vec<ReplicaDoc>,
}

/// One replica of a published pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDoc {
    /// Its index in the revision.
    pub index: u32,
    /// Where it serves the worker protocol.
    pub addr: SocketAddr,
}

fn remote_addr(replica: &Replica) -> Option<SocketAddr> {
    match &replica.runner {
        Runner::Remote { runner, .. } => Some(runner.addr),
        Runner::Local(_) => None,
    }
}

/// What `route` publishes.
pub fn describe(route: &Route) -> RouteDoc {
    RouteDoc {
        pools: route
            .pools
            .iter()
            .map(|pool| PoolDoc {
                revision: pool.revision,
                weight: pool.weight,
                replicas: pool
                    .replicas
                    .iter()
                    .filter_map(|r| {
                        remote_addr(r).map(|addr| ReplicaDoc {
                            index: r.index,
                            addr,
                        })
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The leader's side: publishes every route its table changes, for as long
/// as the table is observed. Publications while this server does not lead
/// are skipped (and would be refused by the fence).
pub async fn publish(
    mut changes: UnboundedReceiver<String>,
    table: Arc<RouteTable>,
    cluster: Arc<dyn ClusterStore>,
    leadership: Arc<Leadership>,
) {
    while let Some(first) = changes.recv().await {
        let mut pending = BTreeSet::from([first]);
        while let Ok(next) = changes.try_recv() {
            pending.insert(next);
        }
        if !leadership.is_leader() {
            continue;
        }
        let fence = leadership.fence();
        for service in pending {
            let doc = table.get(&service).map(|route| describe(&route));
            let text = match doc.as_ref().map(serde_json::to_string).transpose() {
                Ok(text) => text,
                Err(e) => {
                    tracing::warn!(service, error = %e, "cannot serialise a route");
                    continue;
                }
            };
            if let Err(e) = cluster
                .publish_route(&fence, &service, text.as_deref())
                .await
            {
                tracing::warn!(service, error = %e, "cannot publish a route to the other servers");
            }
        }
    }
}

/// What a follower needs to build routes.
pub struct Follower {
    /// The store's routes.
    pub cluster: Arc<dyn ClusterStore>,
    /// Keys and revision specs.
    pub services: Arc<dyn ServiceStore>,
    /// Where routes are installed.
    pub runtime: Arc<Runtime>,
    /// Derives replica connection credentials.
    pub keys: ReplicaKeys,
    /// Stops following once this server leads.
    pub leadership: Arc<Leadership>,
}

/// The follower's side: runs until this server leads.
pub async fn follow(follower: Follower) {
    let mut after = 0;
    let mut dirty: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut specs: HashMap<(String, u32), Arc<ServiceSpec>> = HashMap::new();
    while !follower.leadership.is_leader() {
        match follower.cluster.routes_since(after).await {
            Ok(published) => {
                for route in published {
                    after = after.max(route.version);
                    dirty.insert(route.service, route.route);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the published routes"),
        }
        let mut done = Vec::new();
        for (service, text) in &dirty {
            match apply(&follower, &mut specs, service, text.as_deref()).await {
                Ok(()) => done.push(service.clone()),
                Err(e) => {
                    tracing::warn!(service, error = %e, "cannot follow the leader's route yet")
                }
            }
        }
        for service in done {
            dirty.remove(&service);
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

async fn apply(
    follower: &Follower,
    specs: &mut HashMap<(String, u32), Arc<ServiceSpec>>,
    service: &str,
    text: Option<&str>,
) -> Result<(), String> {
    let Some(text) = text else {
        follower.runtime.install_empty_followed(service);
        return Ok(());
    };
    let doc: RouteDoc = serde_json::from_str(text).map_err(|e| format!("bad route: {e}"))?;
    let keys = follower
        .services
        .service(service)
        .await
        .map_err(|e| e.to_string())?
        .keys;
    let current = follower.runtime.route(service);
    let mut pools = Vec::new();
    let mut missing = Vec::new();
    for pool in doc.pools {
        let key = (service.to_owned(), pool.revision);
        let spec = match specs.get(&key) {
            Some(spec) => spec.clone(),
            None => {
                let spec = Arc::new(
                    follower
                        .services
                        .revision(service, pool.revision)
                        .await
                        .map_err(|e| e.to_string())?,
                );
                specs.insert(key, spec.clone());
                spec
            }
        };
        let credentials = RevisionCredentials::derive(&follower.keys, service, pool.revision)
            .map_err(|e| e.to_string())?;
        let mut replicas = Vec::new();
        for wanted in &pool.replicas {
            let kept = current
                .as_ref()
                .and_then(|r| r.pool(pool.revision))
                .and_then(|p| {
                    p.replicas
                        .iter()
                        .find(|r| {
                            r.index == wanted.index
                                && remote_addr(r) == Some(wanted.addr)
                                && r.is_ready()
                        })
                        .cloned()
                });
            match kept {
                Some(replica) => replicas.push(replica),
                None => match connect(wanted.addr, &credentials, wanted.index, None).await {
                    Ok(replica) => replicas.push(replica),
                    Err(e) => missing.push(format!("{} ({e})", wanted.addr)),
                },
            }
        }
        pools.push((pool.revision, pool.weight, spec, replicas));
    }
    follower.runtime.install_followed(service, &keys, pools);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("replicas not reached: {}", missing.join(", ")))
    }
}
