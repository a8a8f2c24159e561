//! Remote replicas: the revision bundle and its scoped token, `berth replica`
//! processes reached over TLS on loopback (`--replica-transport tcp`), and the
//! connection's authentication and certificate pinning.

use std::time::Duration;

use berth_server::compute::remote::{ConnectError, ReplicaKeys, RevisionCredentials, connect};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestServer, json_of};

const SCRIPT: &[u8] = br#"
import os

def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read().strip()

def run(raw):
    return {"model": model, "pid": os.getpid()}
"#;

/// The remote-replica keys of a server's workspace (from its signing key).
fn keys_of(server: &TestServer) -> ReplicaKeys {
    let text = std::fs::read_to_string(server.data_dir().join("token-signing-key")).unwrap();
    let text = text.trim();
    let key: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect();
    ReplicaKeys::derive(&key)
}

async fn deploy(server: &TestServer, name: &str, model: &[u8]) {
    server
        .register_file("weights", "model.txt", model.to_vec(), json!({}))
        .await;
    server
        .deploy(name, &[("score.py", SCRIPT)], &["weights:1"], json!({}))
        .await;
}

fn bundle_path(service: &str, revision: u32) -> String {
    format!("/v1/services/{service}/revisions/{revision}/bundle")
}

async fn get_with(server: &TestServer, path: &str, token: &str) -> reqwest::Response {
    server
        .http
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn remote_replica_bundle_lists_the_revision_and_serves_its_blobs_by_digest() {
    let server = TestServer::start().await;
    deploy(&server, "bundled", b"weights-v1").await;
    let token = keys_of(&server).mint_bundle_token("bundled", 1, Duration::from_secs(60));
    let (status, bundle) =
        json_of(get_with(&server, &bundle_path("bundled", 1), &token).await).await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["service"], "bundled");
    assert_eq!(bundle["revision"], 1);
    assert_eq!(bundle["entryScript"], "src/score.py");
    assert!(
        bundle["credentials"]["certificatePem"]
            .as_str()
            .unwrap()
            .contains("CERTIFICATE")
    );
    assert_eq!(bundle["credentials"]["secret"].as_str().unwrap().len(), 64);
    let settings = &bundle["settings"];
    assert!(settings["initTimeoutMs"].as_u64().unwrap() > 0);
    assert!(
        settings["environmentVariables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|kv| kv[0] == "AZUREML_ENTRY_SCRIPT" && kv[1] == "src/score.py"),
        "{settings}"
    );
    let model = &bundle["models"][0];
    assert_eq!(model["name"], "weights");
    let file = &model["files"][0];
    assert_eq!(file["size"], 10);
    let digest = file["digest"].as_str().unwrap();
    let blob = get_with(
        &server,
        &format!("{}/blobs/{digest}", bundle_path("bundled", 1)),
        &token,
    )
    .await;
    assert_eq!(blob.status(), 200);
    assert_eq!(blob.bytes().await.unwrap().as_ref(), b"weights-v1");
    let source = bundle["source"].as_array().unwrap();
    assert!(source.iter().any(|f| f["path"] == "score.py"), "{bundle}");
    // A digest that is not in the bundle is not served, even when stored.
    let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let response = get_with(
        &server,
        &format!("{}/blobs/{other}", bundle_path("bundled", 1)),
        &token,
    )
    .await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn remote_replica_bundle_token_opens_its_revision_only_and_the_workspace_token_opens_no_bundle()
 {
    let server = TestServer::start().await;
    deploy(&server, "scoped", b"v1").await;
    server
        .deploy(
            "neighbour",
            &[("score.py", SCRIPT)],
            &["weights:1"],
            json!({}),
        )
        .await;
    let keys = keys_of(&server);
    let token = keys.mint_bundle_token("scoped", 1, Duration::from_secs(60));
    // Another revision, another service: refused.
    for path in [bundle_path("scoped", 2), bundle_path("neighbour", 1)] {
        let (status, body) = json_of(get_with(&server, &path, &token).await).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("scoped` revision 1 only"),
            "{body}"
        );
    }
    // The management API: refused (the bundle token is not the workspace token).
    for path in ["/v1/services", "/v1/services/scoped", "/v1/models"] {
        let response = get_with(&server, path, &token).await;
        assert_eq!(response.status(), 401, "{path}");
    }
    let response = server
        .http
        .request(Method::DELETE, server.url("/v1/services/scoped"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // The workspace token, no token, an expired or forged token: no bundle.
    let expired = keys.mint_bundle_token("scoped", 1, Duration::ZERO);
    let forged = format!("{}00", &token[..token.len() - 2]);
    for credential in [server.token.as_str(), expired.as_str(), forged.as_str()] {
        let response = get_with(&server, &bundle_path("scoped", 1), credential).await;
        assert_eq!(response.status(), 401);
        let text = response.text().await.unwrap();
        assert!(!text.contains(credential), "the credential is not echoed");
    }
    let response = server
        .http
        .get(server.url(&bundle_path("scoped", 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // The workspace's own API still works with its token.
    let (status, _): (u16, Value) = server.get_json("/v1/services/scoped").await;
    assert_eq!(status, 200);
    assert!(
        !server.log().contains(&token),
        "bundle tokens are never logged"
    );
}

/// A `berth replica` started by the test (not by the server).
struct ReplicaProcess {
    child: std::process::Child,
    listen: std::net::SocketAddr,
    health: std::net::SocketAddr,
    stderr: std::path::PathBuf,
    _cache: tempfile::TempDir,
}

impl ReplicaProcess {
    /// Starts one for `service` revision `revision` and waits until it is ready.
    async fn start(server: &TestServer, service: &str, revision: u32) -> ReplicaProcess {
        Self::spawn(server, service, revision, false).await
    }

    /// Like [`ReplicaProcess::start`]; with `as_child`, the way a server starts one: with
    /// `--exit-with-stdin`, its standard input and error piped to this process.
    async fn spawn(
        server: &TestServer,
        service: &str,
        revision: u32,
        as_child: bool,
    ) -> ReplicaProcess {
        use std::io::BufRead;
        let cache = tempfile::tempdir().unwrap();
        let stderr = cache.path().join("stderr.log");
        let token = keys_of(server).mint_bundle_token(service, revision, Duration::from_secs(300));
        let mut child = std::process::Command::new(crate::harness::berth_bin())
            .args([
                "replica",
                "--server",
                &server.endpoint,
                "--service",
                service,
            ])
            .args(["--revision", &revision.to_string()])
            .args(["--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"])
            .arg("--cache")
            .arg(cache.path().join("c"))
            .args(["--uv", "none"])
            .args(as_child.then_some("--exit-with-stdin"))
            .env("BERTH_REPLICA_TOKEN", token)
            .stdin(if as_child {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(if as_child {
                std::process::Stdio::piped()
            } else {
                std::fs::File::create(&stderr).unwrap().into()
            })
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .unwrap();
            line
        })
        .await
        .unwrap();
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "replica did not become ready: {line}\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            )
        });
        ReplicaProcess {
            child,
            listen: ready["listen"].as_str().unwrap().parse().unwrap(),
            health: ready["health"].as_str().unwrap().parse().unwrap(),
            stderr,
            _cache: cache,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post(body: &'static str) -> berth_worker::ScoreRequest {
    berth_worker::ScoreRequest {
        method: "POST".into(),
        body: body.as_bytes().to_vec().into(),
        ..berth_worker::ScoreRequest::default()
    }
}

fn credentials(server: &TestServer, service: &str, revision: u32) -> RevisionCredentials {
    RevisionCredentials::derive(&keys_of(server), service, revision).unwrap()
}

#[tokio::test]
async fn remote_replica_serves_several_gateways_over_pinned_tls_with_probes() {
    let server = TestServer::start().await;
    deploy(&server, "far", b"far-model").await;
    let replica = ReplicaProcess::start(&server, "far", 1).await;
    let http = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        let response = http
            .get(format!("http://{}{path}", replica.health))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let creds = credentials(&server, "far", 1);
    // Two gateways (as two servers would) share the replica's one worker.
    let a = connect(replica.listen, &creds, 0, None).await.unwrap();
    let b = connect(replica.listen, &creds, 0, None).await.unwrap();
    assert!(a.is_ready() && b.is_ready());
    assert!(a.init().init_ms < 60_000);
    let mut calls = Vec::new();
    for i in 0..40 {
        let gateway = if i % 2 == 0 { a.clone() } else { b.clone() };
        calls.push(tokio::spawn(async move {
            gateway.conn().score(post("{}")).await.unwrap()
        }));
    }
    let mut pids = std::collections::BTreeSet::new();
    for call in calls {
        let result = call.await.unwrap();
        assert_eq!(result.status, 200);
        let body: Value = serde_json::from_slice(&result.body).unwrap();
        assert_eq!(body["model"], "far-model");
        pids.insert(body["pid"].as_u64().unwrap());
    }
    assert_eq!(pids.len(), 1, "one worker behind both gateways");
    assert!(a.conn().ping().await.is_ok());
    assert!(a.conn().swagger("").await.is_ok());
    // One gateway leaving does not disturb the other.
    a.shutdown(Duration::from_secs(5)).await;
    assert_eq!(b.conn().score(post("{}")).await.unwrap().status, 200);
}

#[tokio::test]
async fn remote_replica_refuses_connections_without_the_secret_and_the_gateway_refuses_a_wrong_certificate()
 {
    let server = TestServer::start().await;
    deploy(&server, "guarded", b"m").await;
    update_model(&server, "guarded").await;
    let replica = ReplicaProcess::start(&server, "guarded", 1).await;
    let right = credentials(&server, "guarded", 1);
    let other_revision = credentials(&server, "guarded", 2);
    // Another revision's secret with the right certificate: the replica closes the connection.
    let wrong_secret = RevisionCredentials {
        secret: other_revision.secret.clone(),
        ..right.clone()
    };
    let refused = connect(replica.listen, &wrong_secret, 0, None).await;
    assert!(
        matches!(refused, Err(ConnectError::Handshake { .. })),
        "{refused:?}"
    );
    // Another revision's certificate pinned: the gateway refuses the replica's.
    let refused = connect(replica.listen, &other_revision, 0, None).await;
    match refused {
        Err(ConnectError::Tls { source, .. }) => {
            assert!(
                source.to_string().contains("not the one minted"),
                "{source}"
            )
        }
        other => panic!("expected a TLS refusal, got {other:?}"),
    }
    // A connection that sends a worker frame first (no AUTH) gets nothing and is closed.
    assert!(raw_score_without_auth(replica.listen, &right).await);
    // The right credentials still work.
    let ok = connect(replica.listen, &right, 0, None).await.unwrap();
    assert_eq!(ok.conn().score(post("{}")).await.unwrap().status, 200);
}

/// Sends a SCORE frame instead of AUTH; true when the replica closes without answering.
async fn raw_score_without_auth(addr: std::net::SocketAddr, creds: &RevisionCredentials) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let config =
        berth_server::compute::remote::wire::client_config(creds.certificate.clone()).unwrap();
    let name = rustls_pki_types::ServerName::try_from(
        berth_server::compute::remote::credentials::server_name(&creds.service, creds.revision),
    )
    .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    let frame =
        berth_worker::protocol::encode_gateway(&berth_worker::protocol::GatewayMessage::Score {
            seq: 1,
            request: post("{}"),
        })
        .unwrap()
        .to_bytes();
    tls.write_all(&frame).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

async fn update_model(server: &TestServer, service: &str) {
    server
        .register_file("weights", "model.txt", b"v2".to_vec(), json!({}))
        .await;
    let op = crate::harness::update(server, service, json!({"models": ["weights:2"]})).await;
    assert_eq!(op["state"], "Succeeded", "{op}");
}

#[tokio::test]
async fn remote_replica_started_as_a_child_stops_when_its_parent_is_gone() {
    let server = TestServer::start().await;
    deploy(&server, "orphaned", b"m").await;
    let mut replica = ReplicaProcess::spawn(&server, "orphaned", 1, true).await;
    // The parent is gone: its end of stdin closes, and so does the reading end of stderr
    // (writing the farewell line then fails with a broken pipe).
    drop(replica.child.stderr.take());
    drop(replica.child.stdin.take());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = replica.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replica outlived its parent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(1));
}

#[tokio::test]
async fn remote_replica_exits_non_zero_with_the_workers_last_output_when_it_crashes() {
    const CRASHING: &[u8] = br#"
import os, sys

def init():
    pass

def run(raw):
    print("last words before the crash", flush=True)
    os._exit(7)
"#;
    let server = TestServer::start().await;
    server
        .register_file("weights", "model.txt", b"m".to_vec(), json!({}))
        .await;
    server
        .deploy(
            "crashy",
            &[("score.py", CRASHING)],
            &["weights:1"],
            json!({}),
        )
        .await;
    let mut replica = ReplicaProcess::start(&server, "crashy", 1).await;
    let gateway = connect(replica.listen, &credentials(&server, "crashy", 1), 0, None)
        .await
        .unwrap();
    assert!(gateway.conn().score(post("{}")).await.is_err());
    let status = tokio::task::spawn_blocking(move || {
        let status = replica.child.wait().unwrap();
        (status, replica)
    })
    .await
    .unwrap();
    let (status, replica) = status;
    assert_eq!(status.code(), Some(1), "{}", replica.stderr());
    let stderr = replica.stderr();
    assert!(stderr.contains("exited"), "{stderr}");
    assert!(stderr.contains("last words before the crash"), "{stderr}");
    gateway.exited().await;
    assert!(!gateway.is_ready());
}

// ---- `berth server --replica-transport tcp`: the local target runs `berth replica` children.

const TCP: &[&str] = &["--replica-transport", "tcp"];

const LOUD: &[u8] = br#"
import os

def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read().strip()
    print("init done in a remote replica", flush=True)

def run(raw):
    return {"model": model, "pid": os.getpid()}
"#;

async fn deploy_tcp(server: &TestServer, name: &str, replicas: u32) {
    server
        .register_file("weights", "model.txt", b"v1".to_vec(), json!({}))
        .await;
    server
        .deploy(
            name,
            &[("score.py", LOUD)],
            &["weights:1"],
            json!({"computeType": "local", "numReplicas": replicas, "maxQueueWaitMs": 10000}),
        )
        .await;
}

async fn score_json(server: &TestServer, name: &str) -> Value {
    let response = server.score(name, "{}").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The worker pids answering, from concurrent requests.
async fn worker_pids(
    server: &TestServer,
    name: &str,
    replicas: usize,
) -> std::collections::BTreeSet<u64> {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let round = (0..replicas * 2).map(|_| score_json(server, name));
        for body in futures_util::future::join_all(round).await {
            seen.insert(body["pid"].as_u64().unwrap());
        }
        if seen.len() >= replicas {
            break;
        }
    }
    seen
}

/// The parent of `pid` (the `berth replica` running a worker).
fn parent_of(pid: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn command_of(pid: u64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .replace('\0', " ")
}

async fn ready_replicas(server: &TestServer, name: &str) -> u64 {
    let (_, body) = server.get_json(&format!("/v1/services/{name}")).await;
    body["deploymentStatus"]["availableReplicas"]
        .as_u64()
        .unwrap_or(0)
}

async fn until_ready(server: &TestServer, name: &str, want: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ready_replicas(server, name).await != want {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never had {want} ready replicas: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn remote_replica_tcp_transport_deploys_scores_and_shows_the_replica_output() {
    let server = TestServer::start_with(TCP).await;
    deploy_tcp(&server, "tcp-one", 1).await;
    let body = score_json(&server, "tcp-one").await;
    assert_eq!(body["model"], "v1");
    // The worker runs under a `berth replica` child of the server, not under the server.
    let worker = body["pid"].as_u64().unwrap();
    let replica = parent_of(worker);
    assert!(
        command_of(replica).contains(" replica "),
        "{}",
        command_of(replica)
    );
    assert!(command_of(replica).contains("--service tcp-one"));
    let (_, logs) = server.get_json("/v1/services/tcp-one/logs").await;
    let text = logs["content"].as_str().unwrap();
    assert!(text.contains("init done in a remote replica"), "{text}");
    // Its credentials never reach the server's log.
    let token_free = !server.log().contains("b1.");
    assert!(token_free, "a bundle token was logged");
}

#[tokio::test]
async fn remote_replica_tcp_update_under_load_fails_no_request_and_a_failed_update_keeps_serving() {
    let server = TestServer::start_with(TCP).await;
    deploy_tcp(&server, "tcp-roll", 1).await;
    server
        .register_file("weights", "model.txt", b"v2".to_vec(), json!({}))
        .await;
    let load = crate::harness::Load::start(&server, "tcp-roll", "{}", 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let op = crate::harness::update(&server, "tcp-roll", json!({"models": ["weights:2"]})).await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.finish().await;
    assert!(
        report.failures.is_empty(),
        "failed requests: {:?}",
        report.failures
    );
    assert!(report.ok > 10, "the load ran: {}", report.ok);
    let response = server.score("tcp-roll", "{}").await;
    assert_eq!(response.headers()["x-berth-revision"], "2");

    // An entry script whose init() raises: the update fails, revision 2 keeps serving.
    const BROKEN: &[u8] =
        b"def init():\n    raise RuntimeError('no model for you')\n\ndef run(raw):\n    return 1\n";
    let load = crate::harness::Load::start(&server, "tcp-roll", "{}", 2);
    let snapshot = upload_snapshot(&server, &[("score.py", BROKEN)]).await;
    let failed = crate::harness::update(
        &server,
        "tcp-roll",
        json!({"inferenceConfig": {"sourceSnapshot": snapshot}}),
    )
    .await;
    assert_eq!(failed["state"], "Failed", "{failed}");
    let message = failed["error"].to_string();
    assert!(message.contains("no model for you"), "{message}");
    let report = load.finish().await;
    assert!(
        report.failures.is_empty(),
        "failed requests: {:?}",
        report.failures
    );
    let response = server.score("tcp-roll", "{}").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-berth-revision"], "2");
}

async fn upload_snapshot(server: &TestServer, files: &[(&str, &[u8])]) -> String {
    let response = server
        .request(Method::POST, "/v1/snapshots")
        .header("content-type", "application/x-tar")
        .body(crate::harness::tar_of(files))
        .send()
        .await
        .unwrap();
    let (_, body) = json_of(response).await;
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn remote_replica_tcp_a_killed_replica_is_replaced_and_requests_keep_succeeding() {
    let server = TestServer::start_with(TCP).await;
    deploy_tcp(&server, "tcp-kill", 2).await;
    let before = worker_pids(&server, "tcp-kill", 2).await;
    assert_eq!(before.len(), 2);
    let victim = parent_of(*before.iter().next().unwrap());
    assert!(command_of(victim).contains(" replica "));
    let load = crate::harness::Load::start(&server, "tcp-kill", "{}", 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = server.get_json("/v1/services/tcp-kill").await;
        if body["deploymentStatus"]["restarts"] == 1
            && ready_replicas(&server, "tcp-kill").await == 2
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not replaced: {body:#}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.finish().await;
    // Only requests in flight on the killed replica may fail.
    assert!(report.failures.len() <= 4, "{:?}", report.failures);
    assert!(report.ok > 0);
    let after = worker_pids(&server, "tcp-kill", 2).await;
    assert_eq!(after.len(), 2);
    let parents: Vec<u64> = after.iter().map(|p| parent_of(*p)).collect();
    assert!(!parents.contains(&victim), "{parents:?}");
    let (_, logs) = server.get_json("/v1/services/tcp-kill/logs").await;
    assert!(logs["content"].as_str().unwrap().contains("started again"));
}

#[tokio::test]
async fn remote_replica_tcp_scales_up_and_down() {
    let server = TestServer::start_with(TCP).await;
    deploy_tcp(&server, "tcp-scale", 1).await;
    let first = worker_pids(&server, "tcp-scale", 1).await;
    let op = crate::harness::update(&server, "tcp-scale", json!({"numReplicas": 3})).await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    until_ready(&server, "tcp-scale", 3).await;
    let three = worker_pids(&server, "tcp-scale", 3).await;
    assert_eq!(three.len(), 3);
    assert!(three.is_superset(&first), "{first:?} → {three:?}");
    let op = crate::harness::update(&server, "tcp-scale", json!({"numReplicas": 1})).await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    until_ready(&server, "tcp-scale", 1).await;
    let one = worker_pids(&server, "tcp-scale", 1).await;
    assert_eq!(one.len(), 1);
    // The stopped replicas' processes are gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for pid in three.difference(&one) {
        while std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "worker {pid} outlived its replica"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn remote_replica_tcp_a_scoring_timeout_recycles_the_replica_and_a_hung_one_is_replaced() {
    const NAPS: &[u8] = br#"
import os, time

def init():
    pass

def run(raw):
    if "slow" in raw:
        time.sleep(30)
    return {"pid": os.getpid()}
"#;
    let server = TestServer::start_with(TCP).await;
    server
        .deploy(
            "tcp-naps",
            &[("score.py", NAPS)],
            &[],
            json!({"computeType": "local", "numReplicas": 1, "scoringTimeoutMs": 1000,
                   "livenessProbeRequirements": {"periodSeconds": 1, "timeoutSeconds": 1,
                       "failureThreshold": 3, "successThreshold": 1, "initialDelaySeconds": 30}}),
        )
        .await;
    let first = score_json(&server, "tcp-naps").await["pid"]
        .as_u64()
        .unwrap();
    let slow = server.score("tcp-naps", r#"{"slow": true}"#).await;
    assert_eq!(slow.status(), 504);
    // Recycled: a new replica (another worker) answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let second = loop {
        let response = server.score("tcp-naps", "{}").await;
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            let pid = body["pid"].as_u64().unwrap();
            if pid != first {
                break pid;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not recycled: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A worker that stops answering (SIGSTOP) fails its liveness probes and is replaced.
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &second.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let response = server.score("tcp-naps", "{}").await;
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            if body["pid"].as_u64() != Some(second) {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not replaced: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, logs) = server.get_json("/v1/services/tcp-naps/logs").await;
    let text = logs["content"].as_str().unwrap();
    // Each was killed with its reason (the hung one by whichever came first: a
    // request's scoringTimeoutMs or the liveness probe) and started again.
    assert!(
        text.contains("recycled after a request passed scoringTimeoutMs"),
        "{text}"
    );
    assert!(text.matches("was killed").count() >= 2, "{text}");
    assert!(text.matches("started again").count() >= 2, "{text}");
}
