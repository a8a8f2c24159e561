//! The Kubernetes compute target: one Deployment per revision whose pods run
//! `berth replica`, with the revision's bundle token in a Secret.
//!
//! [`manifests`] builds the objects (pure); [`classify`] says why a pod does
//! not serve, in the v1 vocabulary (pure).

pub mod classify;
pub mod manifests;
