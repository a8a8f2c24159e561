//! Integration tests: the real `berth` binary on `127.0.0.1:0` with a temporary
//! data directory, driven over HTTP and through the CLI. One test binary, one
//! module per area.

#![allow(clippy::unwrap_used)]

mod harness;

mod aliases;
mod auth;
mod cli;
mod cli_rollout;
mod containment;
mod environments;
mod events;
mod kube_attach;
#[cfg(feature = "kubernetes")]
mod kube_cluster;
#[cfg(feature = "kubernetes")]
mod kube_deploy;
#[cfg(feature = "kubernetes")]
mod kube_fake;
#[cfg(feature = "kubernetes")]
mod kube_fake_api;
#[cfg(not(feature = "kubernetes"))]
mod kube_missing;
#[cfg(feature = "kubernetes")]
mod kube_rollout;
mod lifecycle;
mod multi_server;
mod observability;
mod pg_store;
mod pipelined;
mod registry;
mod remote_replica;
mod resources;
mod rollouts;
mod s3_blobs;
mod scaling;
mod scoring_auth;
mod services;
mod snapshots;
mod studio;
mod tls;
mod updates;
mod uploads;

mod contain_bodies;
mod contain_misc;
mod contain_state;
mod contain_validation;
mod v1_compat;
mod v1_runtime;
