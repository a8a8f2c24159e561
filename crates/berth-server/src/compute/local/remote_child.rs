//! `--replica-transport tcp`: the local target runs each replica as a
//! `berth replica` child process on loopback, which fetches its bundle from
//! this server with a bundle token, and reaches it over TLS through
//! [`crate::compute::remote::connect`], exactly as a cluster's replicas are
//! reached. The child's stdout gives its addresses once ready; its stderr (the
//! worker's output and its own messages) is the replica's log.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_worker::{LogTail, Stream};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};

use super::limits::descendants;
use super::replicas::{LaunchPlan, StartError, StartFailure};
use crate::compute::remote::{
    BUNDLE_TOKEN_LIFETIME, ReplicaKeys, RevisionCredentials, connect_with,
};
use crate::compute::{RemoteOwner, RemoteRunner, Replica};

/// How the local target reaches its replicas (`--replica-transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReplicaTransport {
    /// Workers under this server, on Unix sockets.
    #[default]
    Uds,
    /// `berth replica` children over TLS on loopback.
    Tcp,
}

/// What starting `berth replica` children needs (set on a [`LaunchPlan`]).
#[derive(Debug, Clone)]
pub struct ChildLaunch {
    /// The `berth` binary.
    pub program: PathBuf,
    /// This server's URL.
    pub server: String,
    /// Mints bundle tokens and derives credentials.
    pub keys: ReplicaKeys,
    /// Where each child's cache goes (`<root>/<service>-<index>`).
    pub cache_root: PathBuf,
    /// Flags passed on (`--python`, `--uv`, `--worker-isolation`, ...).
    pub args: Vec<String>,
}

/// Lines of the child's output kept.
const LOG_LINES: usize = 5000;
const LOG_BYTES: usize = 4 << 20;
/// Longest a child may take to fetch, build and lay out before `init()`'s own limit starts.
const PREPARE_LIMIT: Duration = Duration::from_secs(600);

/// The child process of one replica: kill switch and exit watch.
#[derive(Debug)]
struct ChildOwner {
    pid: u32,
    kill_tx: mpsc::UnboundedSender<bool>,
    exit_rx: watch::Receiver<Option<Option<ExitStatus>>>,
}

/// Ends `pid` and everything it started (the worker leads its own process group).
fn kill_tree(pid: u32) {
    let mut all = descendants::descendants_of(pid);
    all.push(pid);
    for p in all {
        if let Some(p) = rustix::process::Pid::from_raw(p as i32) {
            let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

impl ChildOwner {
    /// Owns `child`: reaps it, kills it (and its worker) on request.
    fn start(mut child: Child, stdin: Option<ChildStdin>) -> Arc<ChildOwner> {
        let pid = child.id().unwrap_or(0);
        let (kill_tx, mut kill_rx) = mpsc::unbounded_channel::<bool>();
        let (exit_tx, exit_rx) = watch::channel(None);
        tokio::spawn(async move {
            // Held open while the child runs: it stops when this server is gone.
            let _stdin = stdin;
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status.ok(),
                    order = kill_rx.recv() => match order {
                        Some(true) | None => kill_tree(pid),
                        Some(false) => {
                            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                                let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
                            }
                        }
                    },
                }
            };
            // Nothing the replica started may outlive it.
            kill_tree(pid);
            exit_tx.send_replace(Some(status));
        });
        Arc::new(ChildOwner {
            pid,
            kill_tx,
            exit_rx,
        })
    }
}

#[async_trait]
impl RemoteOwner for ChildOwner {
    fn kill(&self) {
        let _ = self.kill_tx.send(true);
    }

    async fn exited(&self) -> Option<ExitStatus> {
        let mut rx = self.exit_rx.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(status) => status.flatten(),
            Err(_) => None,
        }
    }

    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    async fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        let _ = self.kill_tx.send(false);
        match tokio::time::timeout(grace, self.exited()).await {
            Ok(status) => status,
            Err(_) => {
                self.kill();
                self.exited().await
            }
        }
    }
}

/// Starts replica `index` of `plan` as a `berth replica` child and connects to it.
pub async fn start(
    plan: &LaunchPlan,
    launch: &ChildLaunch,
    index: u32,
) -> Result<Arc<Replica>, StartFailure> {
    let fail = |error: StartError| StartFailure { index, error };
    let credentials = RevisionCredentials::derive(&launch.keys, &plan.service, plan.revision)
        .map_err(|e| fail(StartError::Isolation(e.to_string())))?;
    let token = launch
        .keys
        .mint_bundle_token(&plan.service, plan.revision, BUNDLE_TOKEN_LIFETIME);
    let cache = launch.cache_root.join(format!("{}-{index}", plan.service));
    let mut child = Command::new(&launch.program)
        .arg("replica")
        .args(["--server", &launch.server, "--service", &plan.service])
        .args(["--revision", &plan.revision.to_string()])
        .args(["--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"])
        .arg("--cache")
        .arg(&cache)
        .arg("--exit-with-stdin")
        .args(&launch.args)
        .env("BERTH_REPLICA_TOKEN", token)
        .env("BERTH_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(|e| {
            fail(StartError::Isolation(format!(
                "starting `{} replica`: {e}",
                launch.program.display()
            )))
        })?;
    let logs = LogTail::new(LOG_LINES, LOG_BYTES);
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(berth_worker::logs::pump(
            stderr,
            Stream::Stderr,
            logs.clone(),
        ));
    }
    let stdout = child.stdout.take();
    let stdin = child.stdin.take();
    let owner = ChildOwner::start(child, stdin);
    let ready = async {
        let stdout = stdout?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await.ok()?;
        let value: serde_json::Value = serde_json::from_str(&line).ok()?;
        value["listen"]
            .as_str()?
            .parse::<std::net::SocketAddr>()
            .ok()
    };
    let limit = PREPARE_LIMIT + plan.init_timeout;
    let listen = tokio::select! {
        addr = tokio::time::timeout(limit, ready) => addr.ok().flatten(),
        _ = owner.exited() => None,
    };
    let Some(listen) = listen else {
        owner.kill();
        let status = owner.exited().await;
        // Let the pump pass on the last lines.
        tokio::time::sleep(Duration::from_millis(50)).await;
        return Err(fail(StartError::Replica {
            status,
            output: logs.tail_text(200),
        }));
    };
    let owner: Arc<dyn RemoteOwner> = owner;
    let runner = RemoteRunner {
        addr: listen,
        logs: logs.clone(),
        owner: Some(owner.clone()),
    };
    match connect_with(runner, &credentials, index).await {
        Ok(replica) => Ok(replica),
        Err(e) => {
            owner.kill();
            Err(fail(StartError::Replica {
                status: None,
                output: format!("{e}\n{}", logs.tail_text(200)),
            }))
        }
    }
}
