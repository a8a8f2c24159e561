//! Remote replicas: `berth replica` processes (or pods running it) reached over
//! TLS-over-TCP. [`credentials`] derives bundle tokens and the per-revision TLS
//! identity and secret.

pub mod credentials;

pub use credentials::{BUNDLE_TOKEN_LIFETIME, BundleGrant, ReplicaKeys};
