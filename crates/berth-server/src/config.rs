//! Server settings: flags, `BERTH_*` variables and defaults, checked before any
//! port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::env;

/// Default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// Default upload limit: 16 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 16 << 30;
/// Subscription id reported when none is set: there is no Azure subscription.
pub const DEFAULT_SUBSCRIPTION_ID: &str = "00000000-0000-0000-0000-000000000000";
/// Default limit on files in one folder upload.
pub const DEFAULT_MAX_UPLOAD_FILES: u64 = 100_000;

/// `berth server` flags.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Data directory: database, blobs, environments, logs [default: ~/.berth]
    #[arg(long, env = env::BERTH_DATA, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free port
    #[arg(long, env = env::BERTH_ADDR, default_value = DEFAULT_ADDR, value_name = "HOST:PORT")]
    pub addr: SocketAddr,

    /// Workspace name, written into model metadata files
    #[arg(long, env = env::BERTH_WORKSPACE_NAME, default_value = "default")]
    pub workspace_name: String,

    /// Resource group the workspace reports (Azure ML v1 `Workspace.resource_group`)
    #[arg(long, env = env::BERTH_WORKSPACE_RESOURCE_GROUP, default_value = "berth")]
    pub workspace_resource_group: String,

    /// Location the workspace reports (Azure ML v1 `Workspace.location`)
    #[arg(long, env = env::BERTH_WORKSPACE_LOCATION, default_value = "local")]
    pub workspace_location: String,

    /// Subscription id the workspace reports (Azure ML v1 `Workspace.subscription_id`)
    #[arg(long, env = env::BERTH_WORKSPACE_SUBSCRIPTION_ID, default_value = DEFAULT_SUBSCRIPTION_ID)]
    pub workspace_subscription_id: String,

    /// Largest upload accepted, in bytes (larger ones get 413)
    #[arg(long, env = env::BERTH_MAX_UPLOAD_BYTES, default_value_t = DEFAULT_MAX_UPLOAD_BYTES)]
    pub max_upload_bytes: u64,

    /// Largest number of files accepted in one uploaded folder
    #[arg(long, env = env::BERTH_MAX_UPLOAD_FILES, default_value_t = DEFAULT_MAX_UPLOAD_FILES)]
    pub max_upload_files: u64,

    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM
    #[arg(long, env = env::BERTH_SHUTDOWN_GRACE_SECS, default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// Default Python interpreter for environments
    #[arg(long, env = env::BERTH_PYTHON, default_value = "python3", value_name = "PATH")]
    pub python: PathBuf,

    /// Where else to look for the Python versions environments ask for: interpreters,
    /// folders holding them, or folders of installs (e.g. ~/.pyenv/versions); `:`-separated
    #[arg(long, env = env::BERTH_PYTHON_SEARCH_PATH, value_delimiter = ':', value_name = "DIRS")]
    pub python_search_path: Vec<PathBuf>,

    /// `uv` to build environments with, or `none` for venv + pip [default: `uv` on PATH, else venv + pip]
    #[arg(long, env = env::BERTH_UV, value_name = "PATH|none")]
    pub uv: Option<PathBuf>,

    /// Longest an environment build may take, in seconds
    #[arg(long, env = env::BERTH_ENV_BUILD_TIMEOUT_SECS, default_value_t = 1800)]
    pub env_build_timeout_secs: u64,

    /// Seconds an autoscaled service's load must stay low before it scales down
    #[arg(long, env = env::BERTH_SCALE_DOWN_STABILIZATION_SECS, default_value_t = 60)]
    pub scale_down_stabilization_secs: u64,

    /// Largest source snapshot accepted, in bytes
    #[arg(long, env = env::BERTH_MAX_SNAPSHOT_BYTES, default_value_t = DEFAULT_MAX_SNAPSHOT_BYTES)]
    pub max_snapshot_bytes: u64,

    /// Largest number of files in one source snapshot
    #[arg(long, env = env::BERTH_MAX_SNAPSHOT_FILES, default_value_t = DEFAULT_MAX_SNAPSHOT_FILES)]
    pub max_snapshot_files: u64,

    /// Largest scoring request body accepted, in bytes (larger ones get 413)
    #[arg(long, env = env::BERTH_MAX_REQUEST_BYTES, default_value_t = 100 << 20)]
    pub max_request_bytes: u64,

    /// Serve over TLS with this certificate chain (PEM); needs `--tls-key`
    #[arg(long, env = env::BERTH_TLS_CERT, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) for `--tls-cert`
    #[arg(long, env = env::BERTH_TLS_KEY, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,

    /// Seconds a client gets for the TLS handshake and for each request's headers
    /// (an idle keep-alive connection is closed after this long too)
    #[arg(long, env = env::BERTH_HEADER_READ_TIMEOUT_SECS, default_value_t = 75)]
    pub header_read_timeout_secs: u64,

    /// Seconds a request body may stall between two chunks
    #[arg(long, env = env::BERTH_BODY_READ_TIMEOUT_SECS, default_value_t = 60)]
    pub body_read_timeout_secs: u64,

    /// Seconds a whole scoring request body may take to arrive
    #[arg(long, env = env::BERTH_REQUEST_BODY_DEADLINE_SECS, default_value_t = 300)]
    pub request_body_deadline_secs: u64,

    /// Slowest average rate, in bytes per second, at which a scoring body may
    /// arrive after its first 10 seconds (0: no minimum)
    #[arg(long, env = env::BERTH_REQUEST_BODY_MIN_RATE, default_value_t = 1024)]
    pub request_body_min_rate: u64,

    /// Largest answer from a worker passed on, in bytes (larger ones get 502)
    #[arg(long, env = env::BERTH_MAX_RESPONSE_BYTES, default_value_t = 100 << 20)]
    pub max_response_bytes: u64,

    /// Let webhooks reach loopback, private, link-local and metadata addresses
    #[arg(long, env = env::BERTH_WEBHOOK_ALLOW_PRIVATE)]
    pub webhook_allow_private: bool,

    /// SQLite `synchronous` mode: `full` (every commit survives a power cut) or
    /// `normal` (faster; the last commits may be lost on a power cut, never corrupted)
    #[arg(long, env = env::BERTH_SQLITE_SYNCHRONOUS, value_enum, default_value = "full")]
    pub sqlite_synchronous: crate::store::Synchronous,

    /// Lay-outs (`services/<name>/r<N>/`) of revisions that no longer serve kept
    /// per service; older ones are removed and laid out again on rollback
    #[arg(long, env = env::BERTH_KEEP_REVISION_LAYOUTS, default_value_t = 3)]
    pub keep_revision_layouts: u32,

    /// How replica resources are enforced: `auto` takes cgroup-v2, else cgroup-v1,
    /// else rlimit (CPU affinity + a memory watchdog)
    #[arg(long, env = env::BERTH_RESOURCE_ENFORCEMENT, value_enum, default_value = "auto")]
    pub resource_enforcement: crate::compute::local::limits::EnforcementChoice,

    /// GPU ids replicas may be given (as CUDA_VISIBLE_DEVICES), e.g. `0,1` [default: none]
    #[arg(long, env = env::BERTH_GPUS, value_delimiter = ',', value_name = "IDS")]
    pub gpus: Vec<String>,

    /// How workers are sandboxed: `best-effort` applies everything the kernel offers and warns
    /// naming what is missing; `strict` refuses to start replicas without all of it
    #[arg(long, env = env::BERTH_WORKER_ISOLATION, value_enum, default_value = "best-effort")]
    pub worker_isolation: crate::compute::local::sandbox::IsolationChoice,

    /// User workers run as when the server runs as root [default: `berth-worker` if it exists, else `nobody`]
    #[arg(long, env = env::BERTH_WORKER_USER, value_name = "NAME")]
    pub worker_user: Option<String>,

    /// How the local target reaches its replicas: `uds` runs each worker under this server on a
    /// Unix socket; `tcp` runs each as a `berth replica` child process reached over TLS on loopback
    /// (the remote-replica path, as a cluster runs it)
    #[arg(long, env = env::BERTH_REPLICA_TRANSPORT, value_enum, default_value = "uds")]
    pub replica_transport: crate::compute::local::ReplicaTransport,

    /// Log filter (`info`, `berth_server=debug`, ...)
    #[arg(long, env = env::BERTH_LOG, default_value = "info")]
    pub log: String,
}

/// Default snapshot limit: 1 GiB.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 1 << 30;
/// Default limit on files in one snapshot.
pub const DEFAULT_MAX_SNAPSHOT_FILES: u64 = 20_000;

/// Settings after defaults are resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen address.
    pub addr: SocketAddr,
    /// Workspace name.
    pub workspace_name: String,
    /// Resource group, location and subscription id the workspace reports.
    pub workspace_identity: WorkspaceIdentity,
    /// Upload limit in bytes.
    pub max_upload_bytes: u64,
    /// Upload limit in files.
    pub max_upload_files: u64,
    /// Shutdown grace period.
    pub shutdown_grace: std::time::Duration,
    /// Default interpreter.
    pub python: PathBuf,
    /// `uv`, if any.
    pub uv: Option<PathBuf>,
    /// Extra places to find interpreters by version.
    pub python_search_path: Vec<PathBuf>,
    /// Build time limit.
    pub env_build_timeout: std::time::Duration,
    /// How long an autoscaled service's load must stay low before it scales down.
    pub scale_down_stabilization: std::time::Duration,
    /// Snapshot limit in bytes.
    pub max_snapshot_bytes: u64,
    /// Snapshot limit in files.
    pub max_snapshot_files: u64,
    /// Scoring body limit.
    pub max_request_bytes: u64,
    /// Certificate and key files, when serving TLS.
    pub tls: Option<TlsFiles>,
    /// Slow-client limit on the handshake and headers.
    pub header_read_timeout: std::time::Duration,
    /// Slow-client limit on request bodies.
    pub body_read_timeout: std::time::Duration,
    /// Longest a whole scoring body may take.
    pub request_body_deadline: std::time::Duration,
    /// Slowest scoring body rate after the grace period, bytes/s (0: none).
    pub request_body_min_rate: u64,
    /// Largest worker answer passed on.
    pub max_response_bytes: u64,
    /// Whether webhooks may reach private addresses.
    pub webhook_allow_private: bool,
    /// SQLite `synchronous` mode.
    pub sqlite_synchronous: crate::store::Synchronous,
    /// Lay-outs of non-serving revisions kept per service.
    pub keep_revision_layouts: u32,
    /// Resource enforcement asked for.
    pub resource_enforcement: crate::compute::local::limits::EnforcementChoice,
    /// GPU ids replicas may be given.
    pub gpus: Vec<String>,
    /// Worker sandbox mode.
    pub worker_isolation: crate::compute::local::sandbox::IsolationChoice,
    /// User workers run as (when the server runs as root).
    pub worker_user: Option<String>,
    /// How the local target reaches its replicas.
    pub replica_transport: crate::compute::local::ReplicaTransport,
}

/// The Azure-style identity strings of the workspace (informational only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceIdentity {
    /// `Workspace.resource_group`.
    pub resource_group: String,
    /// `Workspace.location`.
    pub location: String,
    /// `Workspace.subscription_id`.
    pub subscription_id: String,
}

/// Checks one identity string: 1 to 90 printable characters, no spaces around.
fn identity_value(flag: &'static str, value: &str) -> Result<String, ConfigError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.len() > 90 || trimmed.chars().any(char::is_control) {
        return Err(ConfigError::OutOfRange {
            flag,
            value: format!("`{value}`"),
            rule: "it must have 1 to 90 printable characters",
        });
    }
    Ok(trimmed.to_owned())
}

/// The server certificate and key files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No data directory given and no home directory to put the default in.
    #[error(
        "no data directory: pass `--data DIR` or set {}, or set HOME",
        env::BERTH_DATA
    )]
    NoDataDir,
    /// One of `--tls-cert` / `--tls-key` without the other.
    #[error("`--tls-cert` and `--tls-key` go together: `{0}` is missing")]
    TlsIncomplete(&'static str),
    /// A value out of range.
    #[error("`{flag}` is {value}: {rule}")]
    OutOfRange {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
}

/// The default data directory, `~/.berth`.
pub fn default_data_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".berth"))
}

impl ServerArgs {
    /// Resolves defaults and checks ranges.
    pub fn resolve(self) -> Result<ServerConfig, ConfigError> {
        let data_dir = match self.data {
            Some(dir) => dir,
            None => default_data_dir().ok_or(ConfigError::NoDataDir)?,
        };
        if self.max_upload_bytes == 0 {
            return Err(ConfigError::OutOfRange {
                flag: "--max-upload-bytes",
                value: "0".into(),
                rule: "it must be at least 1",
            });
        }
        if self.max_upload_files == 0 {
            return Err(ConfigError::OutOfRange {
                flag: "--max-upload-files",
                value: "0".into(),
                rule: "it must be at least 1",
            });
        }
        let name = self.workspace_name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(ConfigError::OutOfRange {
                flag: "--workspace-name",
                value: format!("`{}`", self.workspace_name),
                rule: "it must have 1 to 64 characters",
            });
        }
        let workspace_identity = WorkspaceIdentity {
            resource_group: identity_value(
                "--workspace-resource-group",
                &self.workspace_resource_group,
            )?,
            location: identity_value("--workspace-location", &self.workspace_location)?,
            subscription_id: identity_value(
                "--workspace-subscription-id",
                &self.workspace_subscription_id,
            )?,
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::TlsIncomplete("--tls-key")),
            (None, Some(_)) => return Err(ConfigError::TlsIncomplete("--tls-cert")),
        };
        let gpus: Vec<String> = self
            .gpus
            .iter()
            .map(|g| g.trim().to_owned())
            .filter(|g| !g.is_empty())
            .collect();
        if let Some(bad) = gpus
            .iter()
            .find(|g| !g.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(ConfigError::OutOfRange {
                flag: "--gpus",
                value: format!("`{bad}`"),
                rule: "GPU ids are device indexes or UUIDs (letters, digits, `-`), comma-separated, e.g. `--gpus 0,1`",
            });
        }
        Ok(ServerConfig {
            data_dir,
            addr: self.addr,
            workspace_name: name.to_owned(),
            workspace_identity,
            max_upload_bytes: self.max_upload_bytes,
            max_upload_files: self.max_upload_files,
            shutdown_grace: std::time::Duration::from_secs(self.shutdown_grace_secs),
            uv: resolve_uv(self.uv)?,
            python: self.python,
            python_search_path: self
                .python_search_path
                .into_iter()
                .filter(|p| !p.as_os_str().is_empty())
                .collect(),
            env_build_timeout: std::time::Duration::from_secs(self.env_build_timeout_secs.max(1)),
            scale_down_stabilization: std::time::Duration::from_secs(
                self.scale_down_stabilization_secs,
            ),
            max_snapshot_bytes: self.max_snapshot_bytes.max(1),
            max_snapshot_files: self.max_snapshot_files.max(1),
            max_request_bytes: self.max_request_bytes.max(1),
            tls,
            header_read_timeout: std::time::Duration::from_secs(
                self.header_read_timeout_secs.max(1),
            ),
            body_read_timeout: std::time::Duration::from_secs(self.body_read_timeout_secs.max(1)),
            request_body_deadline: std::time::Duration::from_secs(
                self.request_body_deadline_secs.max(1),
            ),
            request_body_min_rate: self.request_body_min_rate,
            max_response_bytes: self.max_response_bytes.max(1),
            webhook_allow_private: self.webhook_allow_private,
            sqlite_synchronous: self.sqlite_synchronous,
            keep_revision_layouts: self.keep_revision_layouts,
            resource_enforcement: self.resource_enforcement,
            gpus,
            worker_isolation: self.worker_isolation,
            worker_user: self.worker_user,
            replica_transport: self.replica_transport,
        })
    }
}

/// `--uv`: `none` turns uv off, a path must be an executable file, no flag takes `uv` from `PATH`.
pub(crate) fn resolve_uv(flag: Option<PathBuf>) -> Result<Option<PathBuf>, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = flag else {
        return Ok(find_on_path("uv"));
    };
    if path.as_os_str() == "none" {
        return Ok(None);
    }
    let resolved = if path.components().count() == 1 {
        find_on_path(&path.to_string_lossy())
    } else {
        Some(path.clone())
    };
    match resolved {
        Some(found)
            if std::fs::metadata(&found)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) =>
        {
            Ok(Some(found))
        }
        _ => Err(ConfigError::OutOfRange {
            flag: "--uv",
            value: format!("`{}`", path.display()),
            rule: "it is not an executable file (nor on PATH); give uv's path, or `none` to build environments with venv + pip",
        }),
    }
}

/// The first executable called `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::resolve_uv;

    #[test]
    fn uv_none_turns_uv_off_and_a_path_must_be_an_executable() {
        assert_eq!(resolve_uv(Some(PathBuf::from("none"))).ok(), Some(None));
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("uv");
        let err = resolve_uv(Some(missing.clone()))
            .expect_err("a missing uv is refused")
            .to_string();
        assert!(err.contains("--uv"), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(err.contains("`none`"), "{err}");
        std::fs::write(&missing, "#!/bin/sh\n").expect("write");
        assert!(resolve_uv(Some(missing.clone())).is_err(), "not executable");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&missing, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(resolve_uv(Some(missing.clone())).ok(), Some(Some(missing)));
    }
}
