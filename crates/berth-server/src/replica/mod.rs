//! `berth replica`: one replica of one service revision, anywhere.
//!
//! Given the server's URL, the revision and a bundle token (in
//! `BERTH_REPLICA_TOKEN`, never a flag), it fetches the revision bundle
//! ([`fetch`], every digest checked), builds or reuses the environment in its
//! cache (`<cache>/envs`, uv when available), lays the revision out
//! (`<cache>/services/...`, as the server does), starts the Python worker with
//! the local target's supervisor, sandbox and limits, and once `init()`
//! returned serves the worker protocol to gateways over TLS
//! ([`crate::compute::remote::serve`]). Probes on `--health-listen`
//! ([`health`]). When ready it prints one JSON line on stdout with the
//! addresses it listens on (`{"listen": ..., "health": ...}`).
//!
//! Exit codes: 0 after SIGTERM/SIGINT (the worker finished what it had), 3 when
//! the entry script failed to load or `init()` raised, 1 for anything else
//! (bundle, environment, the worker exiting while serving: its last lines of
//! output are printed on stderr).

pub mod fetch;
pub mod health;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::compute::local::limits::EnforcementChoice;
use crate::compute::local::sandbox::{Isolation, IsolationChoice};
use crate::compute::local::{LaunchPlan, ResourceManager};
use crate::compute::remote::serve::{Upstream, serve};
use crate::compute::remote::wire;

/// The variable holding the bundle token.
pub const TOKEN_VAR: &str = "BERTH_REPLICA_TOKEN";
/// Exit code when the entry script failed to load or `init()` raised.
pub const EXIT_INIT_FAILED: u8 = 3;
/// Lines of the worker's output printed when it exits.
const EXIT_OUTPUT_LINES: usize = 50;

/// `berth replica` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicaArgs {
    /// The Berth server's URL (the bundle is fetched from it)
    #[arg(long, env = "BERTH_REPLICA_SERVER", value_name = "URL")]
    pub server: String,
    /// The service
    #[arg(long, env = "BERTH_REPLICA_SERVICE", value_name = "NAME")]
    pub service: String,
    /// The revision number
    #[arg(long, env = "BERTH_REPLICA_REVISION", value_name = "N")]
    pub revision: u32,
    /// Where gateways connect (TLS, worker protocol)
    #[arg(long, env = "BERTH_REPLICA_LISTEN", default_value = "0.0.0.0:9000")]
    pub listen: SocketAddr,
    /// Where the probes listen (plain HTTP: /healthz, /readyz)
    #[arg(
        long,
        env = "BERTH_REPLICA_HEALTH_LISTEN",
        default_value = "0.0.0.0:9001"
    )]
    pub health_listen: SocketAddr,
    /// Cache of blobs, environments and lay-outs (reused across restarts)
    #[arg(
        long,
        env = "BERTH_REPLICA_CACHE",
        default_value = "berth-replica-cache",
        value_name = "DIR"
    )]
    pub cache: PathBuf,
    /// A PEM CA certificate to trust for an https server URL (besides none: the system roots are not used)
    #[arg(long, env = "BERTH_REPLICA_SERVER_CA", value_name = "PEM")]
    pub server_ca: Option<PathBuf>,
    /// Default Python interpreter for the environment
    #[arg(
        long,
        env = "BERTH_PYTHON",
        default_value = "python3",
        value_name = "PATH"
    )]
    pub python: PathBuf,
    /// `uv` to build the environment with, or `none` for venv + pip [default: `uv` on PATH]
    #[arg(long, env = "BERTH_UV", value_name = "PATH|none")]
    pub uv: Option<PathBuf>,
    /// How the replica's resources are enforced
    #[arg(
        long,
        env = "BERTH_RESOURCE_ENFORCEMENT",
        value_enum,
        default_value = "auto"
    )]
    pub resource_enforcement: EnforcementChoice,
    /// How the worker is sandboxed
    #[arg(
        long,
        env = "BERTH_WORKER_ISOLATION",
        value_enum,
        default_value = "best-effort"
    )]
    pub worker_isolation: IsolationChoice,
    /// User the worker runs as when the replica runs as root
    #[arg(long, env = "BERTH_WORKER_USER", value_name = "NAME")]
    pub worker_user: Option<String>,
    /// Seconds the worker gets to finish after SIGTERM
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// Stop when standard input closes (set by a parent `berth server`)
    #[arg(long, hide = true)]
    pub exit_with_stdin: bool,
    /// Log filter
    #[arg(long, env = "BERTH_LOG", default_value = "info")]
    pub log: String,
}

/// Why the replica stopped before serving.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
}

fn setup(what: &str) -> impl FnOnce(String) -> StartError + '_ {
    move |reason| StartError::Setup(format!("{what}: {reason}"))
}

/// Runs the replica until it is stopped or its worker exits; returns the exit code.
pub async fn run(args: ReplicaArgs) -> u8 {
    let token = match std::env::var(TOKEN_VAR) {
        Ok(token) if !token.trim().is_empty() => token.trim().to_owned(),
        _ => {
            eprintln!(
                "error: `berth replica` needs its bundle token in {TOKEN_VAR}\nhint: the server mints it for the revision (a Kubernetes Secret, or the local target sets it)"
            );
            return 2;
        }
    };
    let health = Arc::new(health::Health::default());
    let health_listener = match tokio::net::TcpListener::bind(args.health_listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: --health-listen {}: {e}", args.health_listen);
            return 2;
        }
    };
    let health_addr = health_listener.local_addr().ok();
    tokio::spawn({
        let router = health::router(health.clone());
        async move {
            let _ = axum::serve(health_listener, router).await;
        }
    });
    if args.exit_with_stdin {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            // Not eprintln!: with the parent gone stderr is a broken pipe, and a panic here
            // would end this thread instead of the process.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"error: standard input closed: the parent server is gone; stopping\n",
            );
            std::process::exit(1);
        });
    }
    let started = match start(&args, token).await {
        Ok(started) => started,
        Err((e, code)) => {
            eprintln!("error: {e}");
            return code;
        }
    };
    let (replica, listener, tls, secret) = started;
    let listen = listener.local_addr().ok();
    let upstream = Upstream {
        conn: replica.conn().clone(),
        hello: replica.hello().clone(),
        init: *replica.init(),
    };
    tokio::spawn(serve(listener, tls, secret, upstream));
    health.set_ready();
    println!(
        "{}",
        serde_json::json!({
            "listen": listen.map(|a| a.to_string()),
            "health": health_addr.map(|a| a.to_string()),
            "pid": replica.pid(),
        })
    );
    tracing::info!(service = %args.service, revision = args.revision, ?listen, "replica ready");
    tokio::select! {
        status = replica.exited() => {
            health.set_gone();
            // Give the output pumps a moment to pass on the last lines.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let how = status.map_or("with an unknown status".to_owned(), |s| s.to_string());
            eprintln!(
                "error: the worker of {} revision {} exited {how}; its last output:\n{}",
                args.service,
                args.revision,
                replica.logs().tail_text(EXIT_OUTPUT_LINES)
            );
            1
        }
        () = crate::shutdown::signal() => {
            replica.retiring.store(true, std::sync::atomic::Ordering::Release);
            replica.shutdown(Duration::from_secs(args.shutdown_grace_secs)).await;
            0
        }
    }
}

type Started = (
    Arc<crate::compute::Replica>,
    tokio::net::TcpListener,
    Arc<rustls::ServerConfig>,
    Arc<str>,
);

/// Fetch, build, lay out, start the worker, bind the listener.
async fn start(args: &ReplicaArgs, token: String) -> Result<Started, (StartError, u8)> {
    let fail = |e: StartError| (e, 1u8);
    let cache = std::path::absolute(&args.cache).map_err(|e| {
        fail(StartError::Setup(format!(
            "--cache {}: {e}",
            args.cache.display()
        )))
    })?;
    std::fs::create_dir_all(&cache).map_err(|e| {
        fail(setup("creating the cache")(format!(
            "{}: {e}",
            cache.display()
        )))
    })?;
    let http = http_client(args.server_ca.as_deref()).map_err(fail)?;
    let client = fetch::BundleClient::new(http, &args.server, &args.service, args.revision, token);
    let bundle = client
        .bundle(&args.service, args.revision)
        .await
        .map_err(|e| fail(e.into()))?;
    let blobs = crate::blobs::BlobStore::open(&cache.join("blobs"))
        .await
        .map_err(|e| fail(setup("opening the blob cache")(e.to_string())))?;
    let pins = client
        .blobs(&bundle, &blobs)
        .await
        .map_err(|e| fail(e.into()))?;
    tracing::info!(files = bundle.digests().len(), "bundle fetched and checked");

    let uv = crate::config::resolve_uv(args.uv.clone())
        .map_err(|e| fail(setup("--uv")(e.to_string())))?;
    let envs = crate::envs::EnvBuilder::new(crate::envs::EnvBuilderConfig {
        root: cache.join("envs"),
        default_python: args.python.clone(),
        uv,
        python_search_path: Vec::new(),
        timeout: Duration::from_secs(1800),
        metrics: None,
    });
    let built = envs.ensure(&bundle.environment).await.map_err(|e| {
        fail(StartError::Setup(format!(
            "building the environment ({}): {}\n{}",
            e.step,
            e.message,
            e.log_tail.join("\n")
        )))
    })?;

    let isolation = Arc::new(
        Isolation::start(
            args.worker_isolation,
            args.worker_user.as_deref(),
            &cache,
            &built.python,
        )
        .map_err(|e| fail(setup("setting up the worker sandbox")(e.to_string())))?,
    );
    let root = crate::compute::local::revision_root(&cache, &bundle.service, bundle.revision);
    let content = fetch::content(&bundle);
    let spec = bundle.spec.clone();
    let link = isolation.protects_models();
    let layout_blobs = blobs.clone();
    let dir = tokio::task::spawn_blocking(move || {
        crate::compute::local::materialise::materialise(&root, &spec, &content, &layout_blobs, link)
    })
    .await
    .map_err(|e| fail(setup("laying out the revision")(e.to_string())))?
    .map_err(|e| fail(setup("laying out the revision")(e.to_string())))?;
    drop(pins);
    for path in isolation.writable_source(&dir.app) {
        isolation
            .give(&path)
            .map_err(|e| fail(setup("giving the source to the worker user")(e.to_string())))?;
    }
    let resources = Arc::new(
        ResourceManager::start(args.resource_enforcement, &[])
            .map_err(|e| fail(setup("setting up resource limits")(e.to_string())))?,
    );
    let mut env = bundle.settings.environment_variables.clone();
    env.extend(crate::compute::local::materialise::layout_variables(&dir));
    let run = cache.join("run");
    let plan = LaunchPlan {
        service: bundle.service.clone(),
        revision: bundle.revision,
        python: built.python.clone(),
        runtime_dir: run.clone(),
        socket_dir: run.join("s"),
        app: dir.app.clone(),
        env,
        init_timeout: Duration::from_millis(bundle.settings.init_timeout_ms),
        requirements: bundle
            .spec
            .deployment
            .container_resource_requirements
            .clone(),
        resources,
        max_processes: bundle.spec.deployment.max_processes_per_container,
        isolation,
        scratch_root: run.join("w"),
        child: None,
    };
    let replica = match crate::compute::local::replicas::start_replica(&plan, 0).await {
        Ok(replica) => replica,
        Err(failure) => {
            let code = if failure.error.init_stage().is_some() {
                EXIT_INIT_FAILED
            } else {
                1
            };
            return Err((
                StartError::Setup(format!(
                    "the worker did not start: {}\n{}",
                    failure.error,
                    failure.error.output()
                )),
                code,
            ));
        }
    };
    // Pass the worker's output on (a pod's log, the parent server's capture).
    let (so_far, mut lines) = replica.logs().follow();
    for line in so_far {
        eprintln!("{}", line.text);
    }
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match lines.recv().await {
                Ok(line) => eprintln!("{}", line.text),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
    let tls = wire::server_config(
        &bundle.credentials.certificate_pem,
        &bundle.credentials.private_key_pem,
    )
    .map_err(|e| fail(StartError::Setup(e.to_string())))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| fail(StartError::Setup(format!("--listen {}: {e}", args.listen))))?;
    Ok((
        replica,
        listener,
        tls,
        Arc::from(bundle.credentials.secret.as_str()),
    ))
}

fn http_client(server_ca: Option<&std::path::Path>) -> Result<reqwest::Client, StartError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(10));
    if let Some(path) = server_ca {
        let pem = std::fs::read(path)
            .map_err(|e| StartError::Setup(format!("--server-ca {}: {e}", path.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| StartError::Setup(format!("--server-ca {}: {e}", path.display())))?;
        builder = builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| StartError::Setup(format!("the HTTP client: {e}")))
}
