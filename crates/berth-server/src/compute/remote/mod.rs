//! Remote replicas: `berth replica` processes (or pods running it) reached over
//! TLS-over-TCP.
//!
//! - [`credentials`]: bundle tokens and the per-revision TLS identity and secret;
//! - [`wire`]: the connection's TLS configurations (pinning) and AUTH frame;
//! - [`connect`]: dial a replica and get a [`crate::compute::Replica`];
//! - [`serve`]: the replica's side, multiplexing gateways onto its one worker.

pub mod connect;
pub mod credentials;
pub mod serve;
pub mod wire;

pub use connect::{CONNECT_TIMEOUT, ConnectError, RevisionCredentials, connect, connect_with};
pub use credentials::{BUNDLE_TOKEN_LIFETIME, BundleGrant, ReplicaKeys};
