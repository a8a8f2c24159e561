//! Clap definitions of the client commands and their global flags.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// Flags every client command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Management API endpoint, e.g. `http://127.0.0.1:8080` [default: from config.json]
    #[arg(long, env = "BERTH_ENDPOINT", global = true, value_name = "URL")]
    pub endpoint: Option<String>,

    /// Workspace token [default: from config.json]
    #[arg(long, env = "BERTH_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,

    /// PEM file of the CA that signed the server's TLS certificate (for `https://` endpoints)
    #[arg(long, env = "BERTH_CA_CERT", global = true, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// Path of a workspace config.json written by `berth server`
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Output format
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// A usage mistake found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: Option<String>,
}

/// Client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register, list, show, download, update and delete models
    #[command(subcommand)]
    Model(Box<ModelCommand>),
    /// Register, list, show and build environments
    #[command(subcommand, visible_alias = "env")]
    Environment(EnvironmentCommand),
    /// Show, follow, score and delete services
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Show the workspace the CLI talks to
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// List, show, attach and detach compute targets (`local`, Kubernetes clusters, AKS targets made by v1 code)
    #[command(subcommand)]
    Compute(ComputeCommand),
    /// List or follow the workspace's events (operations, state changes, registrations)
    Events(EventsArgs),
    /// Add, list and remove webhooks that receive events
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// The web console (Berth Studio) served by `berth server` at `/`
    #[command(subcommand)]
    Studio(StudioCommand),
}

/// `berth studio ...`
#[derive(Debug, Subcommand)]
pub enum StudioCommand {
    /// Print a one-time link that signs a browser in to the console (valid 5 minutes, once)
    Login,
}

/// `-n SERVICE`.
#[derive(Debug, Args)]
pub struct ServiceName {
    /// Service name
    #[arg(short = 'n', long)]
    pub name: String,
}

/// `berth service ...`
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// List services
    List,
    /// Show a service: state, serving revision, scoring URI, settings
    Show(ShowServiceArgs),
    /// Print the replicas' output
    Logs(LogsArgs),
    /// Follow the running (or last) operation until it ends
    Wait(ServiceName),
    /// Send a scoring request
    Run(RunArgs),
    /// Show the scoring keys
    Keys(ServiceName),
    /// Replace the primary or secondary key (an operation; the other key keeps working)
    RegenKey(RegenKeyArgs),
    /// Get a scoring token (services with token auth)
    Token(ServiceName),
    /// Delete a service (drains and stops its replicas)
    Delete(DeleteServiceArgs),
    /// Change a service in place (new revision; zero downtime; old revision kept on failure)
    Update(Box<UpdateServiceArgs>),
    /// List a service's revisions
    Revisions(ServiceName),
    /// Show what changed between two revisions
    Diff(DiffArgs),
    /// Serve an earlier revision again
    Rollback(RollbackArgs),
    /// Start fresh replicas of the serving revision
    Redeploy(WaitableName),
    /// Show each serving revision's weight and live figures, the running rollout and the mirror;
    /// with `--set 3=90,4=10`, split traffic by hand (an operation)
    Traffic(TrafficArgs),
    /// Skip the rest of the running rollout's bake: the candidate takes all traffic now
    Promote(ServiceName),
    /// Roll the running rollout back at once: traffic returns to the previous revision
    Abort(ServiceName),
    /// Copy a share of live requests to a revision (answers compared, never returned);
    /// `--off` stops, `--diffs` lists differing answers, no flag shows the figures
    Mirror(MirrorArgs),
    /// Write a new revision with the same flags as `update`, without serving it
    /// (give it traffic with `service traffic --set`)
    Stage(Box<UpdateServiceArgs>),
}

/// `berth service traffic`
#[derive(Debug, Args)]
pub struct TrafficArgs {
    /// Service name
    #[arg(short = 'n', long)]
    pub name: String,
    /// New split, `REVISION=PERCENT,...` summing to 100, e.g. `3=90,4=10`
    #[arg(long, value_name = "REV=PERCENT,...", value_parser = weights_list)]
    pub set: Option<std::collections::BTreeMap<String, u32>>,
    /// Names for revisions, `REVISION=NAME,...` (v1 AksEndpoint version names; needs --set)
    #[arg(long = "names", visible_alias = "revision-names", value_name = "REV=NAME,...", value_parser = names_list, requires = "set")]
    pub names: Option<std::collections::BTreeMap<String, String>>,
    /// Return once the change is accepted
    #[arg(long, requires = "set")]
    pub no_wait: bool,
}

/// `berth service mirror`
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Service name
    #[arg(short = 'n', long)]
    pub name: String,
    /// The revision that gets the copies
    #[arg(long, requires = "percent", conflicts_with_all = ["off", "diffs"])]
    pub revision: Option<u32>,
    /// Share of requests copied, 1-100
    #[arg(long, requires = "revision", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub percent: Option<u32>,
    /// Stop mirroring
    #[arg(long, conflicts_with = "diffs")]
    pub off: bool,
    /// List the pairs of answers that differed (the first 100)
    #[arg(long)]
    pub diffs: bool,
}

fn weights_list(text: &str) -> Result<std::collections::BTreeMap<String, u32>, String> {
    let weights = berth_api::traffic_split::parse_weights(text)?;
    let problems = berth_api::traffic_split::check_weights(&weights);
    if problems.is_empty() {
        Ok(weights)
    } else {
        Err(problems.join("; "))
    }
}

fn names_list(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let names = berth_api::traffic_split::parse_names(text)?;
    let problems = berth_api::traffic_split::check_names(&names);
    if problems.is_empty() {
        Ok(names)
    } else {
        Err(problems.join("; "))
    }
}

/// How traffic moves to the new revision (Berth's `rollout` block of the deployment config).
#[derive(Debug, Default, Args)]
pub struct RolloutFlags {
    /// rolling (all at once, the default), canary, linear or blueGreen
    #[arg(long, value_parser = strategy_name, value_name = "STRATEGY")]
    pub strategy: Option<berth_api::RolloutStrategy>,
    /// canary: percent of traffic on the new revision during the bake, 1-99
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=99), value_name = "PERCENT")]
    pub canary_percent: Option<u32>,
    /// linear: number of equal steps, 2-20
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=20))]
    pub steps: Option<u32>,
    /// How long each step bakes, e.g. `15s`, `2m`, `1h` (at most 24h)
    #[arg(long, value_parser = bake_duration, value_name = "DURATION")]
    pub bake: Option<u64>,
    /// Gate: the new revision's 5xx rate may exceed the old one's by this many percent points (0-100)
    #[arg(long, value_parser = percent_points, value_name = "POINTS")]
    pub max_error_rate: Option<f64>,
    /// Gate: the new revision's p99 latency limit, ms
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), value_name = "MS")]
    pub max_p99_ms: Option<u64>,
    /// Gates judge nothing before the new revision answered this many requests
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    pub min_requests: Option<u64>,
    /// Roll back by itself when a gate fails (default true)
    #[arg(long, value_parser = flag_bool, value_name = "BOOL")]
    pub auto_rollback: Option<bool>,
}

fn strategy_name(text: &str) -> Result<berth_api::RolloutStrategy, String> {
    berth_api::RolloutStrategy::parse(text).ok_or_else(|| {
        format!("`{text}` is not a strategy: use rolling, canary, linear or blueGreen")
    })
}

fn bake_duration(text: &str) -> Result<u64, String> {
    let seconds = berth_api::duration::parse_seconds(text)?;
    if seconds > 24 * 3600 {
        return Err(format!(
            "`{text}` is longer than 24h: a bake lasts at most 24h"
        ));
    }
    Ok(seconds)
}

fn percent_points(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{text}` is not percent points from 0 to 100 (e.g. 1 or 0.5)"
        )),
    }
}

/// `-n SERVICE [--no-wait]`.
#[derive(Debug, Args)]
pub struct WaitableName {
    /// Service name
    #[arg(short = 'n', long)]
    pub name: String,
    /// Return once the operation is accepted
    #[arg(long)]
    pub no_wait: bool,
}

/// `berth service regen-key`
#[derive(Debug, Args)]
pub struct RegenKeyArgs {
    /// Service name
    #[arg(short = 'n', long)]
    pub name: String,
    /// Which key: Primary or Secondary
    #[arg(short = 'k', long = "key")]
    pub key: String,
    /// The new key [default: random]
    #[arg(short = 's', long = "value", visible_alias = "set-key")]
    pub value: Option<String>,
    /// Return once the change is accepted
    #[arg(long)]
    pub no_wait: bool,
}

/// `berth service diff`
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Service name
    #[arg(short = 'n', long)]
    pub name: String,
    /// Older revision
    pub from: u32,
    /// Newer revision
    pub to: u32,
}

/// `berth service rollback`
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Service name
    #[arg(short = 'n', long)]
    pub name: String,
    /// Revision to serve again
    #[arg(long = "to", value_name = "REVISION")]
    pub to: u32,
    /// Return once the rollback is accepted
    #[arg(long)]
    pub no_wait: bool,
}

fn flag_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("`{text}` is not `true` or `false`")),
    }
}

/// `berth service update`: the reference's flags.
#[derive(Debug, Args)]
pub struct UpdateServiceArgs {
    /// Service name
    #[arg(short = 'n', long)]
    pub name: String,
    /// Models, code, environment and settings to change
    #[command(flatten)]
    pub source: ServiceSourceArgs,
    /// Tag to add or change, `key=value` (repeatable)
    #[arg(long = "add-tag", value_parser = key_value, value_name = "KEY=VALUE")]
    pub add_tags: Vec<(String, String)>,
    /// Tag key to remove (repeatable)
    #[arg(long = "remove-tag", value_name = "KEY")]
    pub remove_tags: Vec<String>,
    /// Property to add, `key=value` (repeatable; add-only)
    #[arg(long = "add-property", value_parser = key_value, value_name = "KEY=VALUE")]
    pub add_properties: Vec<(String, String)>,
    /// Description
    #[arg(short = 'd', long)]
    pub description: Option<String>,
    /// Key auth on or off
    #[arg(long = "ae", visible_alias = "auth-enabled", value_parser = flag_bool, value_name = "BOOL")]
    pub auth_enabled: Option<bool>,
    /// Token auth on or off
    #[arg(long = "token-auth-enabled", value_parser = flag_bool, value_name = "BOOL")]
    pub token_auth_enabled: Option<bool>,
    /// Primary key
    #[arg(long = "kp", visible_alias = "primary-key")]
    pub primary_key: Option<String>,
    /// Secondary key
    #[arg(long = "ks", visible_alias = "secondary-key")]
    pub secondary_key: Option<String>,
    /// Autoscaling on or off
    #[arg(long = "as", visible_alias = "autoscale-enabled", value_parser = flag_bool, value_name = "BOOL")]
    pub autoscale_enabled: Option<bool>,
    /// Autoscale minimum replicas
    #[arg(long = "mi", visible_alias = "autoscale-min-replicas")]
    pub autoscale_min_replicas: Option<u32>,
    /// Autoscale maximum replicas
    #[arg(long = "ma", visible_alias = "autoscale-max-replicas")]
    pub autoscale_max_replicas: Option<u32>,
    /// Autoscale refresh period, seconds
    #[arg(long = "ar", visible_alias = "autoscale-refresh-seconds")]
    pub autoscale_refresh_seconds: Option<u32>,
    /// Autoscale target utilisation, percent
    #[arg(long = "at", visible_alias = "autoscale-target-utilization")]
    pub autoscale_target_utilization: Option<u32>,
    /// Replicas
    #[arg(long = "nr", visible_alias = "num-replicas")]
    pub num_replicas: Option<u32>,
    /// CPU cores per replica
    #[arg(long = "cc", visible_alias = "cpu-cores")]
    pub cpu_cores: Option<f64>,
    /// CPU cores limit per replica
    #[arg(long = "ccl", visible_alias = "cpu-cores-limit")]
    pub cpu_cores_limit: Option<f64>,
    /// Memory per replica, GB
    #[arg(long = "gb", visible_alias = "memory-gb")]
    pub memory_gb: Option<f64>,
    /// Memory limit per replica, GB
    #[arg(long = "gbl", visible_alias = "memory-gb-limit")]
    pub memory_gb_limit: Option<f64>,
    /// GPUs per replica
    #[arg(long = "gc", visible_alias = "gpu-cores")]
    pub gpu_cores: Option<u32>,
    /// Scoring timeout, ms
    #[arg(long = "tm", visible_alias = "scoring-timeout-ms")]
    pub scoring_timeout_ms: Option<u64>,
    /// Requests one replica works on at once
    #[arg(long = "rm", visible_alias = "replica-max-concurrent-requests")]
    pub replica_max_concurrent_requests: Option<u32>,
    /// Longest a request waits for a replica, ms
    #[arg(long = "mr", visible_alias = "max-request-wait-time")]
    pub max_request_wait_time: Option<u64>,
    /// Liveness probe period, seconds
    #[arg(long = "ps", visible_alias = "period-seconds")]
    pub period_seconds: Option<u32>,
    /// Liveness probe initial delay, seconds
    #[arg(long = "id", visible_alias = "initial-delay-seconds")]
    pub initial_delay_seconds: Option<u32>,
    /// Liveness probe timeout, seconds
    #[arg(long = "ts", visible_alias = "timeout-seconds")]
    pub timeout_seconds: Option<u32>,
    /// Liveness probe success threshold
    #[arg(long = "st", visible_alias = "success-threshold")]
    pub success_threshold: Option<u32>,
    /// Liveness probe failure threshold
    #[arg(long = "ft", visible_alias = "failure-threshold")]
    pub failure_threshold: Option<u32>,
    /// Model data collection on or off
    #[arg(long = "md", visible_alias = "collect-model-data", value_parser = flag_bool, value_name = "BOOL")]
    pub collect_model_data: Option<bool>,
    /// Application Insights on or off
    #[arg(long = "ai", visible_alias = "enable-app-insights", value_parser = flag_bool, value_name = "BOOL")]
    pub enable_app_insights: Option<bool>,
    /// Request and response bodies in the request log on or off
    #[arg(long = "request-log-bodies", value_parser = flag_bool, value_name = "BOOL")]
    pub request_log_bodies: Option<bool>,
    /// Apply what the followed aliases (`-m NAME@ALIAS`) point at now
    #[arg(long, conflicts_with_all = ["models", "model_metadata_files"])]
    pub follow: bool,
    /// What the service does when a followed alias moves: `auto` or `manual`
    #[arg(long = "follow-policy", value_parser = ["auto", "manual"])]
    pub follow_policy: Option<String>,
    /// How traffic moves to the new revision
    #[command(flatten)]
    pub rollout: RolloutFlags,
    /// Return once the update is accepted
    #[arg(long)]
    pub no_wait: bool,
}

/// `berth service show`
#[derive(Debug, Args)]
pub struct ShowServiceArgs {
    /// Service name
    #[arg(short = 'n', long)]
    pub name: String,
    /// Show this revision's spec instead
    #[arg(long)]
    pub revision: Option<u32>,
}

/// `berth service logs`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Service name
    #[arg(short = 'n', long)]
    pub name: String,
    /// Lines to print
    #[arg(
        short = 'l',
        long = "tail",
        visible_alias = "num-lines",
        default_value_t = 5000
    )]
    pub tail: usize,
    /// The output of the last failed start (init) instead
    #[arg(short = 'i', long)]
    pub init: bool,
    /// Keep printing new lines
    #[arg(long, conflicts_with_all = ["init", "requests"])]
    pub follow: bool,
    /// The request log instead (one JSON line per scoring request; needs `--ai true`)
    #[arg(long, conflicts_with = "init")]
    pub requests: bool,
}

/// `berth service run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Service name
    #[arg(short = 'n', long)]
    pub name: String,
    /// Input: JSON text, or `@file`
    #[arg(short = 'd', long = "input-data", value_name = "JSON|@FILE")]
    pub data: String,
}

/// `berth service delete`
#[derive(Debug, Args)]
pub struct DeleteServiceArgs {
    /// Service name
    #[arg(short = 'n', long)]
    pub name: String,
    /// Return once the delete is accepted
    #[arg(long)]
    pub no_wait: bool,
}

/// `berth environment ...`
#[derive(Debug, Subcommand)]
pub enum EnvironmentCommand {
    /// Register an environment (an unchanged spec returns the existing version)
    Register(RegisterEnvironmentArgs),
    /// List environment versions, newest first
    List(ListEnvironmentsArgs),
    /// Show an environment version and its build
    Show(EnvironmentRef),
    /// Build an environment now instead of at its first deployment
    Build(EnvironmentRef),
}

/// `berth environment register`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("spec").args(["pip_requirements", "conda_file", "file"])))]
pub struct RegisterEnvironmentArgs {
    /// Environment name
    #[arg(short = 'n', long)]
    pub name: String,
    /// A requirements.txt
    #[arg(long, value_name = "FILE")]
    pub pip_requirements: Option<PathBuf>,
    /// A conda environment file (its `pip:` section is used; other packages go through pip)
    #[arg(long, value_name = "FILE")]
    pub conda_file: Option<PathBuf>,
    /// An Azure ML Environment JSON (`azureml_environment.json`)
    #[arg(short = 'f', long, value_name = "ENV.json")]
    pub file: Option<PathBuf>,
    /// Python version, e.g. 3.11 [default: the server's python3]
    #[arg(long, value_name = "VERSION")]
    pub python: Option<String>,
    /// Environment variable for the workers, `KEY=VALUE` (repeatable)
    #[arg(long = "env", value_parser = key_value, value_name = "KEY=VALUE")]
    pub env: Vec<(String, String)>,
    /// Description
    #[arg(short = 'd', long)]
    pub description: Option<String>,
}

/// `berth environment list`
#[derive(Debug, Args)]
pub struct ListEnvironmentsArgs {
    /// Only this name
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Only the newest version of each name
    #[arg(long)]
    pub latest: bool,
    /// Include the curated environments (`AzureML-sklearn-1.0`, ...)
    #[arg(long)]
    pub curated: bool,
}

/// `NAME[:VERSION]` of an environment.
#[derive(Debug, Args)]
pub struct EnvironmentRef {
    /// `name` (newest version) or `name:version`
    #[arg(value_name = "NAME[:VERSION]")]
    pub reference: String,
}

/// `berth compute ...`
#[derive(Debug, Subcommand)]
pub enum ComputeCommand {
    /// List the compute targets
    List,
    /// Show one compute target
    Show {
        /// Compute target name
        #[arg(short = 'n', long)]
        name: String,
    },
    /// Attach a Kubernetes cluster: services deployed with `computeTargetName`
    /// set to this name run there as Deployments
    Attach {
        /// Compute target name
        #[arg(short = 'n', long)]
        name: String,
        /// Kind of target
        #[arg(long, value_enum)]
        kind: ComputeKind,
        /// Kubeconfig file with the cluster's address and credentials (stored
        /// as a secret on the server, never shown)
        #[arg(long, value_name = "FILE", conflicts_with = "in_cluster")]
        kubeconfig: Option<std::path::PathBuf>,
        /// Use the service account of the pod the Berth server runs in
        #[arg(long)]
        in_cluster: bool,
        /// Namespace of the revisions' Deployments and Secrets
        #[arg(long)]
        namespace: String,
        /// Container image of the replicas (runs `berth replica`)
        #[arg(long)]
        image: String,
        /// URL at which pods reach this Berth server (bundle downloads)
        #[arg(long, value_name = "URL")]
        server_url: Option<String>,
    },
    /// Detach (or delete) a compute target; refused while services run there
    Detach {
        /// Compute target name
        #[arg(short = 'n', long)]
        name: String,
    },
}

/// Kinds of compute target `berth compute attach` attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ComputeKind {
    /// A Kubernetes cluster (AKS or any other)
    Kubernetes,
}

/// `berth workspace ...`
#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Show the endpoint, workspace name and server version
    Show,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    berth_api::names::parse_key_value(text, false)
}

fn key_or_key_value(text: &str) -> Result<String, String> {
    berth_api::names::parse_key_value(text, true).map(|_| text.to_owned())
}

/// `berth model ...`
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Register a file or folder as a new model version
    Register(RegisterArgs),
    /// List model versions, newest first
    List(ListArgs),
    /// Show one model version and its files
    Show(ModelSelector),
    /// Download a model version into a folder
    Download(DownloadArgs),
    /// Change description and tags, add properties
    Update(UpdateArgs),
    /// Delete a model version no service uses and no alias points at
    Delete(IdArg),
    /// Set, move, remove and list aliases (`NAME@ALIAS` in `-m` follows them)
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Deploy models as a new scoring service
    Deploy(DeployArgs),
}

/// `berth model alias ...`
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Point an alias at a version (services following `NAME@ALIAS` move with it)
    Set {
        /// Model name
        name: String,
        /// Alias name (model-name rules; `latest` is reserved)
        alias: String,
        /// Version it points at
        version: u32,
    },
    /// Remove an alias (followers keep serving their version)
    Remove {
        /// Model name
        name: String,
        /// Alias name
        alias: String,
    },
    /// List the aliases of one model, or of all
    List {
        /// Model name
        name: Option<String>,
    },
}

/// What a deploy or an update names: models, entry script and source, environment,
/// deployment config (the reference's `-m/-f/--ic/--dc/--es/--sd/-e/--ev`).
#[derive(Debug, Args)]
pub struct ServiceSourceArgs {
    /// Model `name:version`, `name:latest`, or `name@alias` / `name@latest` (the
    /// service then follows it); repeatable (replaces the model list on update)
    #[arg(short = 'm', long = "model", value_name = "NAME:VERSION")]
    pub models: Vec<String>,
    /// Model metadata file written by `model register -t`; repeatable
    #[arg(short = 'f', long = "model-metadata-file", value_name = "FILE")]
    pub model_metadata_files: Vec<PathBuf>,
    /// inferenceconfig.json (entryScript, sourceDirectory, environment)
    #[arg(
        long = "ic",
        visible_alias = "inference-config-file",
        value_name = "FILE"
    )]
    pub inference_config: Option<PathBuf>,
    /// deploymentconfig.json (computeType, replicas, resources, auth, timeouts, ...)
    #[arg(long = "dc", visible_alias = "deploy-config-file", value_name = "FILE")]
    pub deploy_config: Option<PathBuf>,
    /// Entry script (instead of --ic)
    #[arg(long = "es", visible_alias = "entry-script", value_name = "FILE")]
    pub entry_script: Option<String>,
    /// Source directory (instead of --ic)
    #[arg(long = "sd", visible_alias = "source-directory", value_name = "DIR")]
    pub source_directory: Option<PathBuf>,
    /// Registered environment name (instead of --ic's environment)
    #[arg(short = 'e', long = "environment-name")]
    pub environment_name: Option<String>,
    /// Registered environment version [default: latest]
    #[arg(
        long = "ev",
        visible_alias = "environment-version",
        requires = "environment_name"
    )]
    pub environment_version: Option<u32>,
}

/// `berth model deploy`
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Service name (3-32: lowercase letters, digits, '-')
    #[arg(short = 'n', long)]
    pub name: String,
    /// Models, code, environment and settings
    #[command(flatten)]
    pub source: ServiceSourceArgs,
    /// Service description
    #[arg(short = 'd', long)]
    pub description: Option<String>,
    /// Tag `key=value` (repeatable)
    #[arg(long = "tag", value_parser = key_value, value_name = "KEY=VALUE")]
    pub tags: Vec<(String, String)>,
    /// Property `key=value` (repeatable)
    #[arg(long = "property", value_parser = key_value, value_name = "KEY=VALUE")]
    pub properties: Vec<(String, String)>,
    /// Replace an existing service of this name (rolls it to a new revision)
    #[arg(long)]
    pub overwrite: bool,
    /// How traffic moves to a new revision (on --overwrite, and the default for later updates)
    #[command(flatten)]
    pub rollout: RolloutFlags,
    /// Return once the deployment is accepted
    #[arg(long)]
    pub no_wait: bool,
}

/// `berth model register`
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Model name (letters, digits, `-`, `.`, `_`; up to 255)
    #[arg(short = 'n', long)]
    pub name: String,
    /// File or folder to register
    #[arg(
        short = 'p',
        long = "asset-path",
        visible_alias = "model-path",
        value_name = "PATH"
    )]
    pub asset_path: PathBuf,
    /// Tag `key=value` (repeatable)
    #[arg(long = "tag", value_parser = key_value, value_name = "KEY=VALUE")]
    pub tags: Vec<(String, String)>,
    /// Property `key=value` (repeatable; properties cannot change later)
    #[arg(long = "property", value_parser = key_value, value_name = "KEY=VALUE")]
    pub properties: Vec<(String, String)>,
    /// Description
    #[arg(short = 'd', long)]
    pub description: Option<String>,
    /// Framework, e.g. ScikitLearn, PyTorch, TensorFlow, Onnx, Custom
    #[arg(long = "model-framework")]
    pub framework: Option<String>,
    /// Framework version (needs --model-framework)
    #[arg(long = "model-framework-version")]
    pub framework_version: Option<String>,
    /// Experiment the model came from
    #[arg(long = "experiment-name")]
    pub experiment_name: Option<String>,
    /// Run the model came from
    #[arg(short = 'r', long = "run-id")]
    pub run_id: Option<String>,
    /// Write `{"modelId": "name:version", ...}` here for `service update -f`
    #[arg(short = 't', long = "output-metadata-file", value_name = "FILE")]
    pub output_metadata_file: Option<PathBuf>,
}

/// `berth model list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this model name
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Tag `key` or `key=value` that must be present (repeatable)
    #[arg(long = "tag", value_parser = key_or_key_value, value_name = "KEY[=VALUE]")]
    pub tags: Vec<String>,
    /// Property `key` or `key=value` that must be present (repeatable)
    #[arg(long = "property", value_parser = key_or_key_value, value_name = "KEY[=VALUE]")]
    pub properties: Vec<String>,
    /// Only this framework
    #[arg(long = "model-framework")]
    pub framework: Option<String>,
    /// Only the newest matching version of each name
    #[arg(long)]
    pub latest: bool,
}

/// Selects a model version: `-i name:version`, or `-n name [--version V]`.
#[derive(Debug, Args)]
pub struct ModelSelector {
    /// `name:version` (or `name` for the newest)
    #[arg(short = 'i', long = "model-id", conflicts_with_all = ["name", "version"], required_unless_present = "name")]
    pub id: Option<String>,
    /// Model name (newest version unless --version)
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Version, with --name
    #[arg(long, requires = "name")]
    pub version: Option<u32>,
}

/// `-i name:version`.
#[derive(Debug, Args)]
pub struct IdArg {
    /// `name:version`
    #[arg(short = 'i', long = "model-id")]
    pub id: String,
}

/// `berth model download`
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// `name:version` (or `name` for the newest)
    #[arg(short = 'i', long = "model-id")]
    pub id: String,
    /// Folder to download into (created if needed)
    #[arg(short = 't', long = "target-dir", default_value = ".")]
    pub target_dir: PathBuf,
    /// Replace files that exist already
    #[arg(long)]
    pub overwrite: bool,
}

/// `berth model update`
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// `name:version`
    #[arg(short = 'i', long = "model-id")]
    pub id: String,
    /// Tag to add or change, `key=value` (repeatable)
    #[arg(long = "add-tag", value_parser = key_value, value_name = "KEY=VALUE")]
    pub add_tags: Vec<(String, String)>,
    /// Tag key to remove (repeatable)
    #[arg(long = "remove-tag", value_name = "KEY")]
    pub remove_tags: Vec<String>,
    /// Property to add, `key=value` (repeatable; existing keys are refused)
    #[arg(long = "add-property", value_parser = key_value, value_name = "KEY=VALUE")]
    pub add_properties: Vec<(String, String)>,
    /// New description (empty clears it)
    #[arg(short = 'd', long)]
    pub description: Option<String>,
}

/// `berth events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this service's events
    #[arg(long, short = 'n', value_name = "SERVICE")]
    pub service: Option<String>,
    /// Only this event type, e.g. `operation.failed`
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only events after this id
    #[arg(long, value_name = "ID")]
    pub after: Option<u64>,
    /// At most this many (1..=1000)
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Keep printing new events as they happen (one JSON object per line with `-o json`)
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// `berth webhook ...`
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register a URL that receives events as signed POSTs; prints the secret once
    Add(AddWebhookArgs),
    /// List webhooks with their delivery status
    List,
    /// Remove a webhook
    #[command(visible_alias = "rm")]
    Remove(WebhookId),
}

/// `berth webhook add`.
#[derive(Debug, Args)]
pub struct AddWebhookArgs {
    /// `http://` or `https://` URL events are POSTed to
    pub url: String,
    /// Event type to send (repeatable; default: all)
    #[arg(long = "event", short = 'e', value_name = "TYPE")]
    pub events: Vec<String>,
    /// Signing secret (16 to 256 characters) [default: generated]
    #[arg(long, env = "BERTH_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
}

/// A webhook id.
#[derive(Debug, Args)]
pub struct WebhookId {
    /// Webhook id (`wh-...`)
    pub id: String,
}
