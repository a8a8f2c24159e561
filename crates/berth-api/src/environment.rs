//! Environments: the Python interpreter and packages a service's workers run in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/environments`. At most one of `pipRequirements`, `condaFile` and
/// `azureEnvironment` is given; none means an environment with no packages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterEnvironmentRequest {
    /// Environment name; the registry assigns the version.
    pub name: String,
    /// Python `major.minor` (for example `3.11`); the server's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    /// The text of a `requirements.txt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pip_requirements: Option<String>,
    /// The text of a conda environment file (YAML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conda_file: Option<String>,
    /// An Azure ML v1 Environment JSON object (`Environment.save_to_directory`,
    /// `inferenceconfig.json`'s `environment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub azure_environment: Option<serde_json::Value>,
    /// Variables set for the workers (added to the Azure JSON's, overriding them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment_variables: BTreeMap<String, String>,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The normalised, buildable form of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSpec {
    /// Python `major.minor`, or `None` for the server's default interpreter.
    pub python_version: Option<String>,
    /// The exact version asked for when the spec names a patch level
    /// (`3.8.13`): used when installed, else another patch of `pythonVersion`
    /// with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_python_version: Option<String>,
    /// pip requirement lines (options such as `--no-index` included), in order.
    pub requirements: Vec<String>,
    /// Variables set for the workers.
    pub environment_variables: BTreeMap<String, String>,
    /// An existing interpreter to use as is (Azure `userManagedDependencies`).
    pub interpreter_path: Option<String>,
}

/// State of an environment's build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum BuildState {
    /// Never built on this server.
    NotStarted,
    /// Being built now.
    Running,
    /// Built and usable.
    Succeeded,
    /// The last attempt failed; the next use builds again.
    Failed,
}

/// What the server knows about building a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentBuild {
    /// The state.
    pub state: BuildState,
    /// The hash of the build-relevant spec; environments with equal hashes share a build.
    pub build_hash: String,
    /// The interpreter workers run, once built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_path: Option<String>,
    /// The exact Python version, once built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_full_version: Option<String>,
    /// The interpreter the environment was made from (the Python it resolved
    /// to), once built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_python: Option<String>,
    /// Set when the Python found differs from the one asked for in its patch level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_warning: Option<String>,
    /// `uv` or `pip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installer: Option<String>,
    /// Build time in milliseconds, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last lines of the build log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    /// Where the full build log is kept on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_path: Option<String>,
}

/// A registered environment version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    /// `name:version`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Version, from 1.
    pub version: u32,
    /// The normalised spec.
    pub spec: EnvironmentSpec,
    /// Description.
    pub description: Option<String>,
    /// RFC 3339 registration time.
    pub created_time: String,
    /// Everything the server changed or did not use from what was sent.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Build state on this server.
    pub build: EnvironmentBuild,
}

/// Answer of `POST /v1/environments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterEnvironmentResponse {
    /// `false` when the spec equals the newest version's, which is returned.
    pub created: bool,
    /// The environment version.
    pub environment: Environment,
}

/// `GET /v1/environments` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentList {
    /// Matching versions, newest registration first.
    pub value: Vec<Environment>,
}
