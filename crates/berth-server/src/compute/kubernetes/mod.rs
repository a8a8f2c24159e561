//! The Kubernetes compute target: one Deployment per revision whose pods run
//! `berth replica`, with the revision's bundle token in a Secret.
//!
//! [`manifests`] builds the objects (pure); [`classify`] says why a pod does
//! not serve, in the v1 vocabulary (pure); [`cluster`] applies, scales, retires
//! and adopts them and watches the pods through kube-rs; [`target`] turns
//! ready pods into replicas and gives them back.

pub mod classify;
pub mod cluster;
pub mod manifests;
pub mod target;
