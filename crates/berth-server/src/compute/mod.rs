//! Compute targets: where a revision's replicas run.
//!
//! A [`ComputeTarget`] starts replicas of a revision (each resolves once its
//! worker passed `init()`), stops them, and lets the caller observe their exits
//! through the [`Replica`] handle. The reconciler decides what should run; the
//! gateway sends requests to the handles it is given. Nothing here imports the
//! reconciler, the gateway or the API.
//!
//! The local-process target ([`local`]) is the first implementation: sandboxed
//! Python workers under resource limits on this machine.

pub mod local;
pub mod remote;
mod replica;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use replica::{RemoteOwner, RemoteRunner, Replica, Runner};

/// Where replicas run.
#[async_trait]
pub trait ComputeTarget: Send + Sync + 'static {
    /// What describes one revision's replicas to this target.
    type Plan: Send + Sync;
    /// Why a replica did not start.
    type StartError: std::error::Error + Send + Sync;

    /// Starts replica `index` of the revision `plan` describes; resolves once
    /// it is ready to score (its `init()` returned).
    async fn start(&self, plan: &Self::Plan, index: u32) -> Result<Arc<Replica>, Self::StartError>;

    /// Stops `replicas`: asks each to finish, kills what is left after `grace`.
    async fn stop(&self, replicas: Vec<Arc<Replica>>, grace: Duration);

    /// Resolves when `replica` has exited, with its exit status when known.
    async fn exited(&self, replica: &Replica) -> Option<std::process::ExitStatus>;
}
