//! The Berth workspace server, run by `berth server`.
//!
//! One process holds the management API (`/v1`, authenticated with the workspace
//! token), health routes, the metadata store (SQLite, WAL, embedded migrations)
//! and the content-addressed blob store, all under one data directory:
//!
//! ```text
//! <data>/berth.db           metadata
//! <data>/blobs/sha256/..    model files and snapshots, by digest
//! <data>/workspace-token    the token (0600)
//! <data>/config.json        endpoint + token for the CLI and SDK (0600)
//! <data>/logs/<service>/requests.log   request logs (appInsightsEnabled), rotated
//! <data>/datacollection/<service>/..   collected inputs and outputs (collectModelData)
//! ```
//!
//! `/` serves the web console (see [`studio`]), which uses `/v1` with a session cookie.
//!
//! Startup order: resolve settings, prepare the data directory, open the store
//! (migrating it), open the blob store and sweep unreferenced blobs, load the
//! TLS certificate and key (if any, see [`tls`]), bind, write `config.json`
//! (`https://` endpoint with TLS), serve. Shutdown: on SIGINT/SIGTERM readiness
//! turns false, the listener stops accepting, in-flight requests finish within
//! the grace period.

pub mod admin;
pub mod api;
pub mod archive;
pub mod blobs;
pub mod compute;
pub mod config;
pub mod deploy_config;
pub mod disk;
pub mod domain;
pub mod env;
pub mod envs;
pub mod error;
pub mod events;
pub mod follow;
pub mod gateway;
pub mod health;
pub mod metrics;
pub mod nocode;
pub mod observability;
pub mod reconciler;
pub mod replica;
pub mod shutdown;
pub mod store;
pub mod studio;
pub mod tls;
pub mod tokens;
pub mod workspace_files;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use berth_api::ClientConfig;

pub use berth_worker::sandbox::LAUNCHER_COMMAND as WORKER_LAUNCHER_COMMAND;
pub use config::{ServerArgs, ServerConfig};

/// The worker launcher (`berth sandbox-exec`): applies the sandbox and execs the worker; returns
/// only with the reason it could not.
pub fn launch_worker(args: Vec<std::ffi::OsString>) -> String {
    berth_worker::sandbox::launch(args)
}

/// The current time as RFC 3339 UTC with milliseconds, the form every stored time takes.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is unusable.
    #[error("invalid settings")]
    Config(#[from] config::ConfigError),
    /// The data directory, token or client config could not be prepared.
    #[error("cannot prepare the data directory")]
    DataDir(#[from] workspace_files::FileError),
    /// The metadata store failed to open.
    #[error("cannot open the metadata store")]
    Store(#[from] store::StoreError),
    /// The metadata store contradicts the data directory (see [`store::trust`]).
    #[error("the metadata store cannot be trusted: {source}. {recovery}")]
    Untrusted {
        /// What is inconsistent.
        source: store::trust::TrustError,
        /// What to do.
        recovery: String,
    },
    /// The blob store failed to open.
    #[error("cannot open the blob store")]
    Blobs(#[from] blobs::BlobError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error("cannot set up TLS")]
    Tls(#[from] tls::TlsError),
    /// The asked-for resource enforcement cannot be used.
    #[error("cannot set up resource enforcement")]
    Resources(#[from] compute::local::limits::LimitsError),
    /// The worker sandbox cannot be set up.
    #[error("cannot set up worker isolation")]
    Isolation(#[from] compute::local::sandbox::IsolationError),
    /// Serving failed.
    #[error("the server stopped with an error")]
    Serve(#[source] std::io::Error),
}

/// Runs the server until `shutdown` resolves, then drains.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let mut config = config;
    workspace_files::prepare_data_dir(&config.data_dir)?;
    // Absolute, so that paths handed to worker processes and builds hold from any directory.
    config.data_dir = workspace_files::absolute(&config.data_dir)?;
    let token = workspace_files::load_or_create_token(&config.data_dir)?;
    let db_path = config.data_dir.join("berth.db");
    let untrusted = |source| ServerError::Untrusted {
        source,
        recovery: store::trust::TrustError::recovery(&config.data_dir),
    };
    store::trust::check_wal(&db_path).map_err(untrusted)?;
    let store = Arc::new(store::SqliteStore::open_with(&db_path, config.sqlite_synchronous).await?);
    {
        let (data, db) = (config.data_dir.clone(), db_path.clone());
        tokio::task::spawn_blocking(move || store::trust::check(&data, &db))
            .await
            .map_err(|e| ServerError::Serve(std::io::Error::other(e.to_string())))?
            .map_err(untrusted)?;
    }
    let blobs = blobs::BlobStore::open(&config.data_dir.join("blobs")).await?;
    let swept = blobs.sweep(store.as_ref()).await?;
    if swept > 0 {
        tracing::info!(blobs = swept, "removed blobs no model references");
    }

    let tls = match &config.tls {
        Some(files) => Some(tls::Tls::new(tls::load_files(&files.cert, &files.key)?)?),
        None => None,
    };

    match envs::probe_version(&config.python).await {
        Ok(version) => {
            tracing::info!(python = %config.python.display(), %version, uv = ?config.uv, "environment builder ready")
        }
        Err(e) => {
            tracing::warn!(error = %e, "the default Python does not run; environments without `--python` will fail to build")
        }
    }
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;
    let local = listener.local_addr().map_err(ServerError::Serve)?;
    let endpoint = workspace_files::endpoint_for(local, tls.is_some());
    let client_config = workspace_files::write_client_config(
        &config.data_dir,
        &ClientConfig {
            endpoint: endpoint.clone(),
            token: token.clone(),
            workspace_name: Some(config.workspace_name.clone()),
        },
    )?;

    let ready = Arc::new(AtomicBool::new(true));
    let grace = config.shutdown_grace;
    let metrics = metrics::Metrics::new();
    let envs = Arc::new(envs::EnvBuilder::new(envs::EnvBuilderConfig {
        root: config.data_dir.join("envs"),
        default_python: config.python.clone(),
        uv: config.uv.clone(),
        python_search_path: config.python_search_path.clone(),
        timeout: config.env_build_timeout,
        metrics: Some(metrics.clone()),
    }));
    let leftovers = envs.clean_leftovers();
    if leftovers > 0 {
        tracing::info!(
            leftovers,
            "removed what interrupted environment builds left"
        );
    }
    let signer = tokens::TokenSigner::load_or_create(&config.data_dir).map_err(|source| {
        ServerError::Bind {
            addr: config.addr,
            source,
        }
    })?;
    let config = Arc::new(config);
    let table = Arc::new(gateway::RouteTable::default());
    let events = events::EventBus::start(
        store.clone(),
        config.webhook_allow_private,
        Some(Arc::new(store::trust::Watermark::new(&config.data_dir))),
    )
    .await;
    let resources = Arc::new(compute::local::ResourceManager::start(
        config.resource_enforcement,
        &config.gpus,
    )?);
    let isolation = Arc::new(compute::local::sandbox::Isolation::start(
        config.worker_isolation,
        config.worker_user.as_deref(),
        &config.data_dir,
        &config.python,
    )?);
    let observability = observability::Observability::start(&config.data_dir, metrics);
    let gateway_state = gateway::GatewayState {
        table: table.clone(),
        body: gateway::BodyLimits {
            max_bytes: usize::try_from(config.max_request_bytes).unwrap_or(usize::MAX),
            deadline: config.request_body_deadline,
            min_rate: config.request_body_min_rate,
            grace: gateway::body::RATE_GRACE,
        },
        max_response: config.max_response_bytes,
        signer: signer.clone(),
    };
    let limits = tls::Limits {
        header_read_timeout: config.header_read_timeout,
        body_read_timeout: config.body_read_timeout,
    };
    let ports = Arc::new(gateway::PortListeners::new(gateway_state.clone(), limits));
    let follow = follow::Follow::new(store.clone(), store.clone(), events.clone());
    let runtime = reconciler::Runtime::new(reconciler::RuntimeDeps {
        store: store.clone(),
        services: store.clone(),
        blobs: blobs.clone(),
        envs: envs.clone(),
        table: table.clone(),
        config: config.clone(),
        certs: tls.as_ref().map(|t| t.resolver.clone()),
        events: events.clone(),
        resources,
        isolation,
        observability,
        ports,
        follow: follow.clone(),
        replica_keys: signer.replica_keys(),
        child_launch: child_launch(&config, &endpoint, &signer)?,
    });
    runtime.restore().await;
    let studio = Arc::new(studio::Studio::default());
    studio::start_sampler(studio.clone(), runtime.clone());
    let studio_routes = studio::router(studio::StudioState {
        studio: studio.clone(),
        token: token.clone().into(),
        tls: tls.is_some(),
        workspace_name: config.workspace_name.clone().into(),
    });
    let state = api::AppState {
        store: store.clone(),
        services: store,
        blobs,
        config: config.clone(),
        token: token.into(),
        ready: ready.clone(),
        envs: envs.clone(),
        runtime: runtime.clone(),
        endpoint: endpoint.clone().into(),
        signer: signer.clone(),
        events,
        studio,
        follow: follow.clone(),
    };
    follow.set_submitter(Arc::new(api::updates::FollowSubmitter(state.clone())));
    follow.resume().await;
    let state_envs = envs;
    let app = api::router(state)
        .merge(gateway::router(gateway_state))
        .merge(health::router(ready.clone()))
        .merge(studio_routes)
        .layer(tower_http::trace::TraceLayer::new_for_http());

    tracing::info!(
        %endpoint,
        config = %client_config.display(),
        "listening; the CLI finds the workspace through config.json"
    );

    let stopping = Arc::new(tokio::sync::Notify::new());
    let stop_signal = stopping.clone();
    let drain = async move {
        shutdown.await;
        ready.store(false, Ordering::Release);
        tracing::info!("shutting down: finishing in-flight requests");
        stop_signal.notify_one();
    };
    let serve = tls::serve(listener, app, tls.map(|t| t.acceptor), limits, drain);
    let deadline = async move {
        stopping.notified().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = serve => {}
        () = deadline => tracing::warn!(grace_secs = grace.as_secs(), "grace period over; stopping with requests still in flight"),
    }
    state_envs.stop_builds();
    runtime.stop().await;
    runtime.resource_manager().remove_groups();
    tracing::info!("stopped");
    Ok(())
}

/// With `--replica-transport tcp`: how the local target starts `berth replica`
/// children (this binary, this server's URL, the flags they share with it).
fn child_launch(
    config: &ServerConfig,
    endpoint: &str,
    signer: &tokens::TokenSigner,
) -> Result<Option<compute::local::ChildLaunch>, ServerError> {
    use clap::ValueEnum;
    if config.replica_transport != compute::local::ReplicaTransport::Tcp {
        return Ok(None);
    }
    let program = std::env::current_exe().map_err(ServerError::Serve)?;
    let name = |v: Option<clap::builder::PossibleValue>| {
        v.map(|v| v.get_name().to_owned()).unwrap_or_default()
    };
    let mut args = vec![
        "--python".to_owned(),
        config.python.display().to_string(),
        "--uv".to_owned(),
        config
            .uv
            .as_ref()
            .map_or_else(|| "none".to_owned(), |uv| uv.display().to_string()),
        "--resource-enforcement".to_owned(),
        name(config.resource_enforcement.to_possible_value()),
        "--worker-isolation".to_owned(),
        name(config.worker_isolation.to_possible_value()),
    ];
    if let Some(user) = &config.worker_user {
        args.extend(["--worker-user".to_owned(), user.clone()]);
    }
    Ok(Some(compute::local::ChildLaunch {
        program,
        server: endpoint.to_owned(),
        keys: signer.replica_keys(),
        cache_root: config.data_dir.join("run").join("r"),
        args,
    }))
}
