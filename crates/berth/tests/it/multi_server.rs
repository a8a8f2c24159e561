//! Several `berth server --cluster` processes on one PostgreSQL database:
//! shared credentials, one leader at a time (`/readyz`), operations written on
//! a follower run by the leader, the 409 rule across servers, a paused leader
//! stepping down, and a `kill -9` of the leader taken over within 10 s while
//! the surviving server keeps answering; routes changed on the leader served
//! by the other gateway; and a `kill -9` of the leader mid-update with
//! Kubernetes replicas (the test API server) and blobs in the test S3 server.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestServer, berth_bin, json_of, patch};
use crate::pg_store::fresh_database;

const SCORE: &[u8] = b"def init():\n    pass\n\ndef run(raw):\n    return raw\n";

/// Time the issue gives a successor to take over after the leader dies.
const TAKEOVER: Duration = Duration::from_secs(10);

async fn start_cluster(url: &str, count: usize) -> Vec<TestServer> {
    let mut servers = Vec::new();
    for _ in 0..count {
        servers.push(TestServer::start_with(&["--store", url, "--cluster"]).await);
    }
    servers
}

/// `count` servers of one cluster whose blobs are in `bucket` of the test S3 server.
async fn start_cluster_on_s3(url: &str, bucket: &str, count: usize) -> Vec<TestServer> {
    use berth_server::blobs::test_s3;
    let endpoint = test_s3::endpoint();
    let blobs = format!("s3://{bucket}/berth?path_style=true");
    let mut servers = Vec::new();
    for _ in 0..count {
        servers.push(
            TestServer::start_with_env(
                &["--store", url, "--cluster", "--blobs", &blobs],
                &[
                    ("AWS_ENDPOINT_URL", endpoint.as_str()),
                    ("AWS_ALLOW_HTTP", "true"),
                    ("AWS_REGION", test_s3::REGION),
                    ("AWS_ACCESS_KEY_ID", test_s3::ACCESS_KEY_ID),
                    ("AWS_SECRET_ACCESS_KEY", test_s3::SECRET_ACCESS_KEY),
                ],
            )
            .await,
        );
    }
    servers
}

async fn readyz(server: &TestServer) -> Value {
    let response = server
        .http
        .get(server.url("/readyz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .expect("readyz");
    json_of(response).await.1
}

/// Waits until every server in `live` agrees on one leader among them;
/// returns its index and the fencing number.
async fn agreed_leader(live: &[&TestServer], within: Duration) -> (usize, u64) {
    let deadline = Instant::now() + within;
    loop {
        let mut views = Vec::new();
        for server in live {
            views.push(readyz(server).await);
        }
        let leaders: Vec<usize> = views
            .iter()
            .enumerate()
            .filter(|(_, v)| v["role"] == "leader")
            .map(|(i, _)| i)
            .collect();
        if let [leader] = leaders[..] {
            let id = &views[leader]["server"];
            let fence = views[leader]["fence"].as_u64().unwrap_or_default();
            if views
                .iter()
                .all(|v| &v["leader"] == id && v["fence"].as_u64() == Some(fence))
            {
                for (i, v) in views.iter().enumerate() {
                    let role = if i == leader { "leader" } else { "follower" };
                    assert_eq!(v["role"], role, "{v}");
                    assert_eq!(v["store"]["ok"], true, "{v}");
                    assert_eq!(v["blobs"]["ok"], true, "{v}");
                }
                return (leader, fence);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no single leader everyone agrees on within {within:?}: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls operation `id` on `server` until it ends (or `within` passes).
async fn ended(server: &TestServer, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, op) = server.get_json(&format!("/v1/operations/{id}")).await;
        assert_eq!(status, 200, "{op}");
        if !matches!(op["state"].as_str(), Some("NotStarted" | "Running")) {
            return op;
        }
        assert!(
            Instant::now() < deadline,
            "operation still in flight after {within:?}: {op}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signal(server: &TestServer, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test]
async fn multi_server_cluster_is_refused_without_a_shared_store() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(berth_bin())
        .args(["server", "--addr", "127.0.0.1:0", "--cluster", "--data"])
        .arg(data.path())
        .env_remove("BERTH_STORE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`--cluster` needs a store every server reaches")
            && err.contains("--store postgres://"),
        "{err}"
    );
}

#[tokio::test]
async fn multi_server_shared_credentials_intent_and_409_across_servers() {
    let url = fresh_database("multi").await;
    let mut servers = start_cluster(&url, 3).await;

    // One token, stored by the first server; every server wrote its own config.json.
    assert!(servers.iter().all(|s| s.token == servers[0].token));
    assert!(
        servers
            .iter()
            .all(|s| s.data_dir().join("config.json").exists())
    );
    assert!(
        servers
            .iter()
            .all(|s| !s.data_dir().join("berth.db").exists()),
        "no SQLite file with a PostgreSQL store"
    );
    let (status, model) = servers[1]
        .register_file("m", "model.txt", b"v1".to_vec(), json!({}))
        .await;
    assert_eq!(status, 201, "{model}");
    for server in &servers {
        let (status, list) = server.get_json("/v1/models?name=m").await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["value"][0]["version"], 1, "{list}");
    }

    let (leader, fence) = agreed_leader(&servers.iter().collect::<Vec<_>>(), TAKEOVER).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (f1, f2) = (followers[0], followers[1]);

    // A change written on a follower is run by the leader: with --cluster the
    // local target is refused, saying why and what to use instead.
    let (status, accepted) = servers[f1]
        .create_service("web", &[("score.py", SCORE)], &[], json!({}))
        .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["operation"]["id"].as_str().unwrap().to_owned();
    let op = ended(&servers[f2], &id, Duration::from_secs(10)).await;
    assert_eq!(op["state"], "Failed", "{op}");
    let message = op["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("must not belong to one server's process tree")
            && message.contains("Kubernetes compute target"),
        "{op}"
    );
    assert!(
        servers[leader]
            .log()
            .contains("picked up an operation written on another server"),
        "{}",
        servers[leader].log()
    );

    // With the leader paused nothing runs the next operation: a change on
    // another follower meets the 409 rule of the database.
    signal(&servers[leader], "-STOP");
    let (status, accepted) = servers[f1]
        .create_service("api", &[("score.py", SCORE)], &[], json!({}))
        .await;
    assert_eq!(status, 202, "{accepted}");
    let cut_off = accepted["operation"]["id"].as_str().unwrap().to_owned();
    let refused = patch(&servers[f2], "api", json!({"description": "x"})).await;
    assert_eq!(refused.0, 409, "{}", refused.1);
    assert!(
        refused.1.to_string().contains(&cut_off),
        "the 409 names the operation in flight: {}",
        refused.1
    );

    // A follower takes over; the operation written meanwhile ends (never
    // stuck `Running`).
    let (new_leader, new_fence) = agreed_leader(
        &[&servers[f1], &servers[f2]],
        TAKEOVER + Duration::from_secs(2),
    )
    .await;
    assert!(new_fence > fence, "{new_fence} after {fence}");
    let op = ended(
        &servers[followers[new_leader]],
        &cut_off,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(op["state"], "Failed", "{op}");

    // The old leader, resumed, finds its lease lost and stops.
    signal(&servers[leader], "-CONT");
    let waited = tokio::time::timeout(Duration::from_secs(15), servers[leader].wait_exit())
        .await
        .expect("the old leader stops after losing its lease");
    assert!(!waited.success(), "{waited}");
    assert!(
        servers[leader].log().contains("lost the leader lease"),
        "{}",
        servers[leader].log()
    );
    // Started again, it follows.
    servers[leader].start_again().await;
    let view = readyz(&servers[leader]).await;
    assert_eq!(view["role"], "follower", "{view}");

    // A server without --cluster does not join a store a cluster leads.
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(berth_bin())
        .args(["server", "--addr", "127.0.0.1:0", "--store", &url, "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("servers started with `--cluster` lead this store")
            && err.contains("start this server with `--cluster` too"),
        "{err}"
    );
}

#[tokio::test]
async fn multi_server_leader_kill9_is_taken_over_while_the_survivor_serves() {
    let url = fresh_database("failover").await;
    let mut servers = start_cluster(&url, 2).await;
    let (leader, fence) = agreed_leader(&[&servers[0], &servers[1]], TAKEOVER).await;
    let survivor = 1 - leader;
    let (status, model) = servers[survivor]
        .register_file("m", "model.txt", b"v1".to_vec(), json!({}))
        .await;
    assert_eq!(status, 201, "{model}");

    // The survivor's API is used without a pause through the failover.
    let failures = Arc::new(AtomicU32::new(0));
    let answered = Arc::new(AtomicU32::new(0));
    let load = {
        let (http, base, token) = (
            servers[survivor].http.clone(),
            servers[survivor].endpoint.clone(),
            servers[survivor].token.clone(),
        );
        let (failures, answered) = (failures.clone(), answered.clone());
        tokio::spawn(async move {
            loop {
                let ok = http
                    .request(Method::GET, format!("{base}/v1/models?name=m"))
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                let counter = if ok { &answered } else { &failures };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    servers[leader].kill9().await;
    let killed = Instant::now();
    let deadline = killed + TAKEOVER;
    loop {
        let view = readyz(&servers[survivor]).await;
        if view["role"] == "leader" {
            assert!(view["fence"].as_u64().unwrap() > fence, "{view}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no takeover within {TAKEOVER:?} of the kill: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    load.abort();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed on the survivor"
    );
    assert!(answered.load(Ordering::Relaxed) > 0);

    // The killed server comes back as a follower of the survivor.
    servers[leader].start_again().await;
    let (now, _) = agreed_leader(&[&servers[0], &servers[1]], TAKEOVER).await;
    assert_eq!(now, survivor);
}

/// `berth replica` children of the leader every server on this machine reaches.
const TCP_CLUSTER: &[&str] = &[
    "--cluster",
    "--cluster-local-replicas",
    "--replica-transport",
    "tcp",
];

const ECHO_MODEL: &[u8] = br#"
import os

def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read().strip()

def run(raw):
    return {"model": model}
"#;

/// Scores `service` on `server` until it answers with `model`; returns how
/// long that took.
async fn until_served(server: &TestServer, service: &str, model: &str) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    loop {
        let response = server.score(service, "{}").await;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if status == 200 && body["model"] == model {
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "`{service}` not served with model {model}: {status} {body}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn multi_server_routes_changed_through_the_leader_are_served_by_the_other_gateway() {
    let url = fresh_database("routes").await;
    let mut args = vec!["--store", url.as_str()];
    args.extend_from_slice(TCP_CLUSTER);
    let servers = [
        TestServer::start_with(&args).await,
        TestServer::start_with(&args).await,
    ];
    let (leader, _) = agreed_leader(&[&servers[0], &servers[1]], TAKEOVER).await;
    let (lead, other) = (&servers[leader], &servers[1 - leader]);
    let (status, model) = lead
        .register_file("weights", "model.txt", b"v1".to_vec(), json!({}))
        .await;
    assert_eq!(status, 201, "{model}");
    lead.deploy(
        "shared",
        &[("score.py", ECHO_MODEL)],
        &["weights:1"],
        json!({"computeType": "local", "numReplicas": 2, "maxQueueWaitMs": 10000}),
    )
    .await;
    // The other gateway dials the leader's replicas itself.
    let first = until_served(other, "shared", "v1").await;
    eprintln!("a new service served by the other gateway {first:?} after its create ended");

    lead.register_file("weights", "model.txt", b"v2".to_vec(), json!({}))
        .await;
    let load = crate::harness::Load::start(other, "shared", "{}", 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let op = crate::harness::update(lead, "shared", json!({"models": ["weights:2"]})).await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    let changed = until_served(other, "shared", "v2").await;
    eprintln!("the route change served by the other gateway {changed:?} after the update ended");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.finish().await;
    assert!(
        report.failures.is_empty(),
        "requests failed on the other gateway during the update: {:?}",
        report.failures
    );
    assert!(report.ok > 10, "the load ran: {}", report.ok);
    let response = other.score("shared", "{}").await;
    assert_eq!(response.headers()["x-berth-revision"], "2");
}

const KUBE_SCORE: &[u8] =
    b"import os\n\ndef init():\n    pass\n\ndef run(raw):\n    return {'echo': raw, 'pid': os.getpid()}\n";

#[tokio::test]
async fn multi_server_leader_kill9_mid_update_with_kube_replicas_fails_no_request_on_the_survivor()
{
    use crate::kube_fake::KubeFake;
    use crate::kube_fake::kubelet::berth_replica;

    let fake = KubeFake::start(berth_replica()).await;
    let url = fresh_database("kill").await;
    // One PostgreSQL and one object store (the test S3 server) for both servers.
    let bucket = berth_server::blobs::test_s3::bucket("it-multi-kill").await;
    let mut servers = start_cluster_on_s3(&url, &bucket, 2).await;
    let (leader, fence) = agreed_leader(&[&servers[0], &servers[1]], TAKEOVER).await;
    let survivor = 1 - leader;
    let lead = &servers[leader];
    // Pods fetch their revision bundle from the leader.
    let body = json!({"computeType": "AKS", "attach": true, "kubernetes": {
        "kubeconfig": std::fs::read_to_string(&fake.kubeconfig).unwrap(),
        "namespace": "ml", "image": "berth", "serverUrl": lead.endpoint}});
    let (status, target) = json_of(
        lead.request(Method::PUT, "/v1/computes/aks1")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{target}");
    for content in [b"one".to_vec(), b"two".to_vec()] {
        let (status, model) = lead
            .register_file("weights", "model.txt", content, json!({}))
            .await;
        assert_eq!(status, 201, "{model}");
    }
    lead.deploy(
        "ha-svc",
        &[("score.py", KUBE_SCORE)],
        &["weights:1"],
        json!({"computeType": "aks", "computeTargetName": "aks1", "numReplicas": 2,
               "authEnabled": false, "maxQueueWaitMs": 20000}),
    )
    .await;
    // The survivor's gateway serves the pods it dialled itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    while servers[survivor].score("ha-svc", "1").await.status() != 200 {
        assert!(Instant::now() < deadline, "{}", servers[survivor].log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let load = crate::harness::Load::start(&servers[survivor], "ha-svc", "1", 3);
    let (status, accepted) = patch(lead, "ha-svc", json!({"models": ["weights:2"]})).await;
    assert_eq!(status, 202, "{accepted}");
    let cut_off = accepted["operation"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    servers[leader].kill9().await;
    let killed = Instant::now();

    loop {
        let view = readyz(&servers[survivor]).await;
        if view["role"] == "leader" {
            assert!(view["fence"].as_u64().unwrap() > fence, "{view}");
            break;
        }
        assert!(
            killed.elapsed() < TAKEOVER,
            "no takeover within {TAKEOVER:?}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("the survivor leads {:?} after the kill", killed.elapsed());
    let op = ended(&servers[survivor], &cut_off, Duration::from_secs(60)).await;
    assert!(
        matches!(
            op["state"].as_str(),
            Some("Failed" | "RolledBack" | "Succeeded")
        ),
        "{op}"
    );
    eprintln!("the cut-off update ended {}: {}", op["state"], op["error"]);
    // The new leader restores the service on the pods it adopts (the route
    // its gateway followed serves meanwhile); revision 1 serves on.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !servers[survivor].log().contains("service restored") {
        assert!(Instant::now() < deadline, "{}", servers[survivor].log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, service) = servers[survivor].get_json("/v1/services/ha-svc").await;
    assert_eq!(service["servingRevision"], 1, "{service}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.finish().await;
    assert!(
        report.failures.is_empty(),
        "requests failed on the survivor: {:?}\n{}",
        report.failures,
        servers[survivor].log()
    );
    assert!(report.ok > 10, "the load ran: {}", report.ok);
    assert_eq!(servers[survivor].score("ha-svc", "2").await.status(), 200);
}
