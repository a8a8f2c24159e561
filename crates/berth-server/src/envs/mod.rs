//! Environments: normalising specs (requirements files, conda files, Azure ML
//! Environment JSON) and building them into virtual environments.
//!
//! Builds are cached under `<data>/envs/<build hash>/` and shared by every
//! environment version and revision whose build-relevant spec is equal. At most
//! one build of a hash runs at a time; a failed build is never used, and its log
//! is kept under `<data>/envs/failed/`.

mod builder;
pub mod conda;
pub mod curated;
pub mod python;
pub mod spec;

pub use builder::{BuildError, BuiltEnv, EnvBuilder, EnvBuilderConfig, probe_version};
