//! Every `BERTH_*` environment variable the server reads, in one place.
//!
//! Each server flag has one; the flag wins over the variable, the variable over the
//! default.

/// Data directory (`--data`).
pub const BERTH_DATA: &str = "BERTH_DATA";
/// Listen address (`--addr`).
pub const BERTH_ADDR: &str = "BERTH_ADDR";
/// Workspace name (`--workspace-name`).
pub const BERTH_WORKSPACE_NAME: &str = "BERTH_WORKSPACE_NAME";
/// Resource group `GET /v1/workspace` reports (`--workspace-resource-group`).
pub const BERTH_WORKSPACE_RESOURCE_GROUP: &str = "BERTH_WORKSPACE_RESOURCE_GROUP";
/// Location `GET /v1/workspace` reports (`--workspace-location`).
pub const BERTH_WORKSPACE_LOCATION: &str = "BERTH_WORKSPACE_LOCATION";
/// Subscription id `GET /v1/workspace` reports (`--workspace-subscription-id`).
pub const BERTH_WORKSPACE_SUBSCRIPTION_ID: &str = "BERTH_WORKSPACE_SUBSCRIPTION_ID";
/// Largest accepted upload in bytes (`--max-upload-bytes`).
pub const BERTH_MAX_UPLOAD_BYTES: &str = "BERTH_MAX_UPLOAD_BYTES";
/// Largest number of files in one uploaded folder (`--max-upload-files`).
pub const BERTH_MAX_UPLOAD_FILES: &str = "BERTH_MAX_UPLOAD_FILES";
/// Seconds in-flight requests get to finish after SIGINT/SIGTERM (`--shutdown-grace-secs`).
pub const BERTH_SHUTDOWN_GRACE_SECS: &str = "BERTH_SHUTDOWN_GRACE_SECS";
/// `--scale-down-stabilization-secs`.
pub const BERTH_SCALE_DOWN_STABILIZATION_SECS: &str = "BERTH_SCALE_DOWN_STABILIZATION_SECS";
/// Resource enforcement: auto, cgroup-v2, cgroup-v1, rlimit, off (`--resource-enforcement`).
pub const BERTH_RESOURCE_ENFORCEMENT: &str = "BERTH_RESOURCE_ENFORCEMENT";
/// GPU ids replicas may be given, comma-separated (`--gpus`).
pub const BERTH_GPUS: &str = "BERTH_GPUS";
/// `--worker-isolation`.
pub const BERTH_WORKER_ISOLATION: &str = "BERTH_WORKER_ISOLATION";
/// `--replica-transport`.
pub const BERTH_REPLICA_TRANSPORT: &str = "BERTH_REPLICA_TRANSPORT";
/// `--worker-user`.
pub const BERTH_WORKER_USER: &str = "BERTH_WORKER_USER";
/// Log filter, `tracing` syntax (`--log`).
pub const BERTH_LOG: &str = "BERTH_LOG";
/// Default Python interpreter for environments (`--python`).
pub const BERTH_PYTHON: &str = "BERTH_PYTHON";
/// Extra places to find interpreters by version, `:`-separated (`--python-search-path`).
pub const BERTH_PYTHON_SEARCH_PATH: &str = "BERTH_PYTHON_SEARCH_PATH";
/// Path of `uv` (`--uv`); found on `PATH` when unset.
pub const BERTH_UV: &str = "BERTH_UV";
/// Longest an environment build may take, in seconds (`--env-build-timeout-secs`).
pub const BERTH_ENV_BUILD_TIMEOUT_SECS: &str = "BERTH_ENV_BUILD_TIMEOUT_SECS";
/// Largest source snapshot in bytes (`--max-snapshot-bytes`).
pub const BERTH_MAX_SNAPSHOT_BYTES: &str = "BERTH_MAX_SNAPSHOT_BYTES";
/// Largest number of files in a source snapshot (`--max-snapshot-files`).
pub const BERTH_MAX_SNAPSHOT_FILES: &str = "BERTH_MAX_SNAPSHOT_FILES";
/// Largest scoring request body in bytes (`--max-request-bytes`).
pub const BERTH_MAX_REQUEST_BYTES: &str = "BERTH_MAX_REQUEST_BYTES";
/// Server certificate chain, PEM (`--tls-cert`).
pub const BERTH_TLS_CERT: &str = "BERTH_TLS_CERT";
/// Server private key, PEM (`--tls-key`).
pub const BERTH_TLS_KEY: &str = "BERTH_TLS_KEY";
/// Seconds a client gets for the TLS handshake and each request's headers (`--header-read-timeout-secs`).
pub const BERTH_HEADER_READ_TIMEOUT_SECS: &str = "BERTH_HEADER_READ_TIMEOUT_SECS";
/// Seconds a request body may stall between chunks (`--body-read-timeout-secs`).
pub const BERTH_BODY_READ_TIMEOUT_SECS: &str = "BERTH_BODY_READ_TIMEOUT_SECS";
/// Longest a whole scoring body may take, in seconds (`--request-body-deadline-secs`).
pub const BERTH_REQUEST_BODY_DEADLINE_SECS: &str = "BERTH_REQUEST_BODY_DEADLINE_SECS";
/// Slowest scoring body rate accepted after the grace period, bytes/s (`--request-body-min-rate`).
pub const BERTH_REQUEST_BODY_MIN_RATE: &str = "BERTH_REQUEST_BODY_MIN_RATE";
/// Largest worker answer passed on, in bytes (`--max-response-bytes`).
pub const BERTH_MAX_RESPONSE_BYTES: &str = "BERTH_MAX_RESPONSE_BYTES";
/// Let webhooks reach loopback, private and link-local addresses (`--webhook-allow-private`).
pub const BERTH_WEBHOOK_ALLOW_PRIVATE: &str = "BERTH_WEBHOOK_ALLOW_PRIVATE";
/// SQLite `synchronous` mode: `full` or `normal` (`--sqlite-synchronous`).
pub const BERTH_SQLITE_SYNCHRONOUS: &str = "BERTH_SQLITE_SYNCHRONOUS";
/// Lay-outs of non-serving revisions kept per service (`--keep-revision-layouts`).
pub const BERTH_KEEP_REVISION_LAYOUTS: &str = "BERTH_KEEP_REVISION_LAYOUTS";
