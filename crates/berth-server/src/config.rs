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

    /// `uv` to build environments with [default: `uv` on PATH, else venv + pip]
    #[arg(long, env = env::BERTH_UV, value_name = "PATH")]
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

    /// How replica resources are enforced: `auto` takes cgroup-v2, else cgroup-v1,
    /// else rlimit (CPU affinity + a memory watchdog)
    #[arg(long, env = env::BERTH_RESOURCE_ENFORCEMENT, value_enum, default_value = "auto")]
    pub resource_enforcement: crate::runtime::limits::EnforcementChoice,

    /// GPU ids replicas may be given (as CUDA_VISIBLE_DEVICES), e.g. `0,1` [default: none]
    #[arg(long, env = env::BERTH_GPUS, value_delimiter = ',', value_name = "IDS")]
    pub gpus: Vec<String>,

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
    /// Resource enforcement asked for.
    pub resource_enforcement: crate::runtime::limits::EnforcementChoice,
    /// GPU ids replicas may be given.
    pub gpus: Vec<String>,
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
            max_upload_bytes: self.max_upload_bytes,
            max_upload_files: self.max_upload_files,
            shutdown_grace: std::time::Duration::from_secs(self.shutdown_grace_secs),
            uv: self.uv.or_else(|| find_on_path("uv")),
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
            resource_enforcement: self.resource_enforcement,
            gpus,
        })
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
