//! Progressive delivery with real workers: canary promotion with zero failed
//! requests, automatic rollback on the error-rate and p99 gates with failures
//! limited to the candidate, promote and abort, a 409 naming the rollout, a
//! `kill -9` mid-bake, hand-set splits honoured over 10,000 requests, pinning a
//! revision, and shadow traffic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::harness::{TestServer, json_of, patch};

/// Answers with its revision; `BEHAVIOUR` in the model file picks a failure mode.
const SCRIPT: &[u8] = br#"
import os, time

def init():
    global behaviour, count
    count = 0
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        behaviour = f.read().strip()

def run(raw):
    global count
    count += 1
    if behaviour == "flaky" and count % 10 < 3:
        raise ValueError("flaky candidate")
    if behaviour == "slow":
        time.sleep(0.2)
    return {"behaviour": behaviour, "revision": os.environ["SERVICE_VERSION"]}
"#;

/// What a load saw, by revision (`x-berth-revision`).
#[derive(Debug, Default)]
struct Seen {
    ok: BTreeMap<u32, u64>,
    failed: BTreeMap<u32, u64>,
    /// Failures with no revision header (the gateway's own refusals).
    unrouted: Vec<String>,
}

impl Seen {
    fn total_ok(&self) -> u64 {
        self.ok.values().sum()
    }
}

/// Clients scoring in a loop until stopped.
struct RevisionLoad {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Seen>>,
}

impl RevisionLoad {
    fn start(server: &TestServer, service: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let url = server.url(&format!("/api/v1/service/{service}/score"));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, url) = (stop.clone(), url.clone());
                let http = reqwest::Client::new();
                tokio::spawn(async move {
                    let mut seen = Seen::default();
                    let deadline = Instant::now() + Duration::from_secs(90);
                    while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                        match http.post(&url).body("{}").send().await {
                            Ok(r) => {
                                let revision = r
                                    .headers()
                                    .get("x-berth-revision")
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.parse::<u32>().ok());
                                let status = r.status().as_u16();
                                match (status, revision) {
                                    (200, Some(rev)) => *seen.ok.entry(rev).or_default() += 1,
                                    (_, Some(rev)) => *seen.failed.entry(rev).or_default() += 1,
                                    (_, None) => seen.unrouted.push(format!(
                                        "{status}: {}",
                                        r.text().await.unwrap_or_default()
                                    )),
                                }
                            }
                            Err(e) => seen.unrouted.push(format!("no answer: {e}")),
                        }
                    }
                    seen
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Release);
        let mut all = Seen::default();
        for task in self.tasks {
            let seen = task.await.expect("load task");
            for (rev, n) in seen.ok {
                *all.ok.entry(rev).or_default() += n;
            }
            for (rev, n) in seen.failed {
                *all.failed.entry(rev).or_default() += n;
            }
            all.unrouted.extend(seen.unrouted);
        }
        all
    }
}

/// Deploys `name` with the well-behaved model (`weights:1`).
async fn deploy_good(server: &TestServer, name: &str) {
    server
        .register_file("weights", "model.txt", b"good".to_vec(), json!({}))
        .await;
    server
        .deploy(
            name,
            &[("score.py", SCRIPT)],
            &["weights:1"],
            json!({"computeType": "local", "numReplicas": 1, "maxConcurrentRequestsPerContainer": 4}),
        )
        .await;
}

/// Registers another version of `weights` that behaves as `behaviour`; its number.
async fn register(server: &TestServer, behaviour: &str) -> u32 {
    let (status, model) = server
        .register_file(
            "weights",
            "model.txt",
            behaviour.as_bytes().to_vec(),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{model}");
    model["version"].as_u64().expect("version") as u32
}

/// Starts an update; returns its operation id.
async fn start_update(server: &TestServer, service: &str, body: Value) -> String {
    let (status, accepted) = patch(server, service, body).await;
    assert_eq!(status, 202, "{accepted}");
    accepted["operation"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until the service shows a running rollout in `phase`.
async fn wait_for_phase(server: &TestServer, service: &str, phase: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, shown) = server.get_json(&format!("/v1/services/{service}")).await;
        if shown["rolloutStatus"]["phase"] == phase {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "no rollout in phase {phase}: {shown}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs to a rollout control route (`promote`, `abort`); status and body.
async fn control(server: &TestServer, service: &str, verb: &str) -> (u16, Value) {
    json_of(
        server
            .request(
                Method::POST,
                &format!("/v1/services/{service}/rollout/{verb}"),
            )
            .send()
            .await
            .expect("send"),
    )
    .await
}

/// Starts a 10-minute canary of `weights:{version}` on `service` and waits
/// for its bake; returns the operation id.
async fn start_long_canary(server: &TestServer, service: &str, version: u32) -> String {
    let op = start_update(
        server,
        service,
        json!({"models": [format!("weights:{version}")], "rollout": canary("10m")}),
    )
    .await;
    wait_for_phase(server, service, "baking").await;
    op
}

fn canary(bake: &str) -> Value {
    json!({"strategy": "canary", "canaryPercent": 30, "bake": bake, "minRequests": 20, "maxErrorRate": 2})
}

#[tokio::test]
async fn a_good_canary_is_promoted_after_its_bake_with_zero_failed_requests() {
    let server = TestServer::start().await;
    deploy_good(&server, "cgood").await;
    let v2 = register(&server, "good").await;
    let load = RevisionLoad::start(&server, "cgood", 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let op = start_update(
        &server,
        "cgood",
        json!({"models": [format!("weights:{v2}")], "rollout": canary("3s")}),
    )
    .await;
    let shown = wait_for_phase(&server, "cgood", "baking").await;
    assert_eq!(
        shown["servingRevision"], 1,
        "the stable revision serves: {shown}"
    );
    assert_eq!(shown["rolloutStatus"]["strategy"], "canary");
    assert_eq!(shown["rolloutStatus"]["weights"], json!({"1": 70, "2": 30}));
    let traffic: Vec<(u64, u64, String)> = shown["traffic"]
        .as_array()
        .expect("traffic")
        .iter()
        .map(|t| {
            (
                t["revision"].as_u64().unwrap_or(0),
                t["weight"].as_u64().unwrap_or(0),
                t["role"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        traffic,
        vec![
            (1, 70, "stable".to_owned()),
            (2, 30, "candidate".to_owned())
        ]
    );
    // The running rollout owns the service: another change is refused, naming it.
    let (status, refused) = patch(&server, "cgood", json!({"scoringTimeoutMs": 9000})).await;
    assert_eq!(status, 409, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("canary rollout of revision 2"),
        "{refused}"
    );
    let (_, during) = server.get_json(&format!("/v1/operations/{op}")).await;
    assert_eq!(during["state"], "Running");
    assert_eq!(during["rollout"]["phase"], "baking", "{during}");
    assert_eq!(
        during["rollout"]["gates"][0]["gate"], "errorRate",
        "live gate figures: {during}"
    );
    let ended = server.wait_operation(&op).await;
    assert_eq!(ended["state"], "Succeeded", "{ended}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = load.finish().await;
    assert!(
        seen.failed.is_empty() && seen.unrouted.is_empty(),
        "failed requests: {seen:?}"
    );
    assert!(
        seen.ok.get(&1).copied().unwrap_or(0) > 10 && seen.ok.get(&2).copied().unwrap_or(0) > 10,
        "both revisions answered: {seen:?}"
    );
    let (_, after) = server.get_json("/v1/services/cgood").await;
    assert_eq!(after["servingRevision"], 2);
    assert_eq!(after["state"], "Healthy");
    assert_eq!(
        after["traffic"],
        json!([{"revision": 2, "weight": 100, "role": "stable"}])
    );
    assert!(after.get("rolloutStatus").is_none(), "{after}");
    let log: Vec<String> = ended["events"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|l| l["message"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        log.iter()
            .any(|l| l.contains("Step 1 of 1: revision 2 at 30 %")),
        "{log:#?}"
    );
}

#[tokio::test]
async fn a_canary_failing_30_percent_of_requests_is_rolled_back_and_only_its_requests_fail() {
    let server = TestServer::start().await;
    deploy_good(&server, "cflaky").await;
    let bad = register(&server, "flaky").await;
    let load = RevisionLoad::start(&server, "cflaky", 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let op = start_update(
        &server,
        "cflaky",
        json!({"models": [format!("weights:{bad}")], "rollout": canary("60s")}),
    )
    .await;
    let started = Instant::now();
    let ended = server.wait_operation(&op).await;
    // Rolled back by the gate long before the 60 s bake would have ended.
    assert!(started.elapsed() < Duration::from_secs(50));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = load.finish().await;
    assert_eq!(ended["state"], "RolledBack", "{ended}");
    assert_eq!(ended["error"]["code"], "GateFailed");
    let message = ended["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("errorRate") && message.contains("threshold"),
        "names gate, measured value and threshold: {message}"
    );
    assert!(seen.unrouted.is_empty(), "{:?}", seen.unrouted);
    assert_eq!(
        seen.failed.keys().copied().collect::<Vec<_>>(),
        vec![2],
        "only the candidate's requests failed: {seen:?}"
    );
    let (_, shown) = server.get_json("/v1/services/cflaky").await;
    assert_eq!(shown["state"], "Healthy", "{shown}");
    assert_eq!(shown["servingRevision"], 1);
    assert_eq!(
        shown["traffic"],
        json!([{"revision": 1, "weight": 100, "role": "stable"}])
    );
    // After the rollback every answer comes from revision 1.
    for _ in 0..20 {
        let response = server.score("cflaky", "{}").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-berth-revision"], "1");
    }
    let (_, events) = server
        .get_json("/v1/events?service=cflaky&type=operation.rolled_back")
        .await;
    let found = events["events"]
        .as_array()
        .map(|v| v.iter().any(|e| e["operation"] == op.as_str()))
        .unwrap_or(false);
    assert!(found, "an operation.rolled_back event: {events}");
    let metrics = server
        .request(Method::GET, "/metrics")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    for line in [
        "berth_rollouts_total{strategy=\"canary\",outcome=\"rolledBack\"} 1",
        "berth_revision_traffic_weight{service=\"cflaky\",revision=\"1\"} 100",
        "berth_gate_evaluations_total{service=\"cflaky\",gate=\"errorRate\",verdict=\"failed\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    assert!(
        !metrics.contains("berth_revision_traffic_weight{service=\"cflaky\",revision=\"2\"}"),
        "the rolled-back revision has no weight any more"
    );
}

#[tokio::test]
async fn a_slow_candidate_fails_the_p99_gate_and_is_rolled_back() {
    let server = TestServer::start().await;
    deploy_good(&server, "cslow").await;
    let slow = register(&server, "slow").await;
    let load = RevisionLoad::start(&server, "cslow", 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let op = start_update(
        &server,
        "cslow",
        json!({
            "models": [format!("weights:{slow}")],
            "rollout": {"strategy": "canary", "canaryPercent": 50, "bake": "60s", "minRequests": 5, "maxP99Ms": 100}
        }),
    )
    .await;
    let ended = server.wait_operation(&op).await;
    let seen = load.finish().await;
    assert_eq!(ended["state"], "RolledBack", "{ended}");
    let message = ended["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("p99Latency"), "{message}");
    assert!(seen.failed.is_empty(), "slow is not failed: {seen:?}");
    let (_, shown) = server.get_json("/v1/services/cslow").await;
    assert_eq!(shown["servingRevision"], 1);
    assert_eq!(shown["state"], "Healthy");
}

#[tokio::test]
async fn promote_skips_the_bake_and_abort_rolls_back_at_once() {
    let server = TestServer::start().await;
    deploy_good(&server, "cctl").await;
    let v2 = register(&server, "good").await;
    let (status, body) = control(&server, "cctl", "promote").await;
    assert_eq!(status, 409, "no rollout runs: {body}");
    let op = start_long_canary(&server, "cctl", v2).await;
    let (status, body) = control(&server, "cctl", "abort").await;
    assert_eq!(status, 200, "{body}");
    let ended = server.wait_operation(&op).await;
    assert_eq!(ended["state"], "RolledBack", "{ended}");
    assert_eq!(ended["error"]["code"], "RolloutAborted");
    let (_, shown) = server.get_json("/v1/services/cctl").await;
    assert_eq!(shown["servingRevision"], 1);

    let op = start_long_canary(&server, "cctl", v2).await;
    let (status, _) = control(&server, "cctl", "promote").await;
    assert_eq!(status, 200);
    let ended = server.wait_operation(&op).await;
    assert_eq!(ended["state"], "Succeeded", "{ended}");
    let (_, shown) = server.get_json("/v1/services/cctl").await;
    assert_eq!(shown["servingRevision"], 3, "{shown}");

    // A rollback is an emergency: it switches at once even to a revision
    // whose own rollout is a 10-minute canary.
    let (status, accepted) = json_of(
        server
            .request(Method::POST, "/v1/services/cctl/rollback")
            .json(&json!({"revision": 2}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let started = Instant::now();
    let ended = server
        .wait_operation(accepted["operation"]["id"].as_str().unwrap_or_default())
        .await;
    assert_eq!(ended["state"], "Succeeded", "{ended}");
    assert!(started.elapsed() < Duration::from_secs(60), "no bake");
    assert!(ended.get("rollout").is_none(), "{ended}");
    let (_, shown) = server.get_json("/v1/services/cctl").await;
    assert_eq!(shown["servingRevision"], 2, "{shown}");
}

#[tokio::test]
async fn kill_9_during_a_bake_rolls_the_rollout_back_after_the_restart() {
    let mut server = TestServer::start().await;
    deploy_good(&server, "ckill").await;
    let v2 = register(&server, "good").await;
    let op = start_long_canary(&server, "ckill", v2).await;
    server.kill9().await;
    server.start_again().await;
    let (_, ended) = server.get_json(&format!("/v1/operations/{op}")).await;
    assert_eq!(ended["state"], "RolledBack", "{ended}");
    assert_eq!(ended["error"]["code"], "RolloutInterrupted");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = server.score("ckill", "{}").await;
        if response.status() == 200 {
            assert_eq!(response.headers()["x-berth-revision"], "1");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing serves: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, shown) = server.get_json("/v1/services/ckill").await;
    assert_eq!(shown["servingRevision"], 1);
    assert_eq!(shown["state"], "Healthy", "{shown}");
    // Nothing owns a split any more: a new change is accepted.
    let (status, _) = patch(&server, "ckill", json!({"scoringTimeoutMs": 9000})).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_hand_set_split_is_honoured_within_two_points_over_10000_requests_and_pins_work() {
    let server = TestServer::start().await;
    deploy_good(&server, "split").await;
    let v2 = register(&server, "good").await;
    let op = start_update(
        &server,
        "split",
        json!({"models": [format!("weights:{v2}")]}),
    )
    .await;
    assert_eq!(server.wait_operation(&op).await["state"], "Succeeded");
    // Revision 1 no longer runs: the split starts it again.
    let (status, accepted) = json_of(
        server
            .request(Method::PUT, "/v1/services/split/traffic")
            .json(&json!({"weights": {"1": 90, "2": 10}, "names": {"1": "blue"}}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let op = server
        .wait_operation(accepted["operation"]["id"].as_str().unwrap_or_default())
        .await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    let (_, traffic) = server.get_json("/v1/services/split/traffic").await;
    let entries = traffic["revisions"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 2, "{traffic}");
    assert_eq!(entries[0]["revision"], 1);
    assert_eq!(entries[0]["weight"], 90);
    assert_eq!(entries[0]["name"], "blue");
    assert_eq!(entries[1]["weight"], 10);

    let http = reqwest::Client::new();
    let url = server.url("/api/v1/service/split/score");
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut batches = Vec::new();
    for _ in 0..8 {
        let (http, url) = (http.clone(), url.clone());
        batches.push(tokio::spawn(async move {
            let mut mine: BTreeMap<String, u64> = BTreeMap::new();
            for _ in 0..1250 {
                let response = http.post(&url).body("{}").send().await.expect("score");
                assert_eq!(response.status(), 200);
                let revision = response.headers()["x-berth-revision"]
                    .to_str()
                    .unwrap_or("")
                    .to_owned();
                *mine.entry(revision).or_default() += 1;
            }
            mine
        }));
    }
    for batch in batches {
        for (rev, n) in batch.await.expect("batch") {
            *counts.entry(rev).or_default() += n;
        }
    }
    let total: u64 = counts.values().sum();
    assert_eq!(total, 10_000);
    let share_2 = counts.get("2").copied().unwrap_or(0) as f64 / total as f64 * 100.0;
    assert!(
        (8.0..=12.0).contains(&share_2),
        "revision 2 got {share_2:.2} %: {counts:?}"
    );
    let (_, traffic) = server.get_json("/v1/services/split/traffic").await;
    assert!(
        traffic["revisions"][0]["figures"]["requests"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "live figures: {traffic}"
    );

    // A pinned request goes to its revision; an unknown pin gets the list.
    for revision in ["1", "2"] {
        let response = http
            .post(&url)
            .header("x-berth-revision", revision)
            .body("{}")
            .send()
            .await
            .expect("pinned");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-berth-revision"], revision);
    }
    let response = http
        .post(&url)
        .header("x-berth-revision", "7")
        .body("{}")
        .send()
        .await
        .expect("pinned");
    assert_eq!(response.status(), 404);
    let text = response.text().await.unwrap_or_default();
    assert!(text.contains("serving: [1, 2]"), "{text}");

    // Bad splits name the fix.
    let (status, body) = json_of(
        server
            .request(Method::PUT, "/v1/services/split/traffic")
            .json(&json!({"weights": {"1": 90, "2": 20}}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("sum to 110"), "{body}");
}

#[tokio::test]
async fn shadow_traffic_copies_requests_without_changing_answers_and_records_diffs() {
    let server = TestServer::start().await;
    deploy_good(&server, "shadow").await;
    let other = register(&server, "other").await;
    // Revision 2 is staged, not served.
    let (status, staged) = json_of(
        server
            .request(Method::POST, "/v1/services/shadow/revisions")
            .json(&json!({"models": [format!("weights:{other}")]}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 201, "{staged}");
    assert_eq!(staged["revision"], 2);
    assert_eq!(staged["serving"], false);
    let (status, started) = json_of(
        server
            .request(Method::PUT, "/v1/services/shadow/mirror")
            .json(&json!({"revision": 2, "percent": 50}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 200, "{started}\n{}", server.log());
    for _ in 0..100 {
        let response = server.score("shadow", "{}").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-berth-revision"], "1");
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            body["behaviour"], "good",
            "clients get the primary's answer"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let shown = loop {
        let (_, shown) = server.get_json("/v1/services/shadow").await;
        if shown["mirror"]["differing"].as_u64().unwrap_or(0) >= 50 {
            break shown;
        }
        assert!(Instant::now() < deadline, "mirror figures: {shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(shown["mirror"]["revision"], 2);
    assert_eq!(shown["mirror"]["mirrored"], 50, "{shown}");
    assert_eq!(shown["mirror"]["shadow"]["errors"], 0);
    let (_, diffs) = server.get_json("/v1/services/shadow/mirror/diffs").await;
    let first = &diffs["value"][0];
    assert!(
        first["shadowBody"].as_str().unwrap_or("").contains("other")
            && first["primaryBody"].as_str().unwrap_or("").contains("good"),
        "{diffs}"
    );
    let response = server
        .request(Method::DELETE, "/v1/services/shadow/mirror")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 204);
    let (_, shown) = server.get_json("/v1/services/shadow").await;
    assert!(shown.get("mirror").is_none(), "{shown}");
}

#[tokio::test]
async fn a_linear_rollout_with_a_shadow_phase_walks_its_steps_to_promotion() {
    let server = TestServer::start().await;
    deploy_good(&server, "linear").await;
    let v2 = register(&server, "good").await;
    let load = RevisionLoad::start(&server, "linear", 2);
    let op = start_update(
        &server,
        "linear",
        json!({
            "models": [format!("weights:{v2}")],
            "rollout": {"strategy": "linear", "steps": 2, "bake": "1s", "minRequests": 1, "shadow": {"percent": 50}}
        }),
    )
    .await;
    let ended = server.wait_operation(&op).await;
    let seen = load.finish().await;
    assert_eq!(ended["state"], "Succeeded", "{ended}");
    assert!(
        seen.failed.is_empty() && seen.unrouted.is_empty(),
        "{seen:?}"
    );
    assert!(seen.total_ok() > 0);
    let log: Vec<String> = ended["events"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|l| l["message"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let steps: Vec<&String> = log.iter().filter(|l| l.starts_with("Step ")).collect();
    assert_eq!(steps.len(), 2, "shadow, then 50 %: {log:#?}");
    assert!(steps[0].contains("mirroring 50 %"), "{steps:?}");
    assert!(steps[1].contains("revision 2 at 50 %"), "{steps:?}");
}

#[tokio::test]
async fn blue_green_switches_everything_and_keeps_the_old_revision_warm_through_the_bake() {
    let server = TestServer::start().await;
    deploy_good(&server, "bluegreen").await;
    let v2 = register(&server, "good").await;
    let load = RevisionLoad::start(&server, "bluegreen", 2);
    let op = start_update(
        &server,
        "bluegreen",
        json!({"models": [format!("weights:{v2}")], "rollout": {"strategy": "blueGreen", "bake": "2s"}}),
    )
    .await;
    let shown = wait_for_phase(&server, "bluegreen", "baking").await;
    assert_eq!(
        shown["rolloutStatus"]["weights"],
        json!({"1": 0, "2": 100}),
        "{shown}"
    );
    // The old revision is still up: a pinned request reaches it.
    let response = server
        .request(Method::POST, "/api/v1/service/bluegreen/score")
        .header("x-berth-revision", "1")
        .body("{}")
        .send()
        .await
        .expect("pinned");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-berth-revision"], "1");
    let ended = server.wait_operation(&op).await;
    let seen = load.finish().await;
    assert_eq!(ended["state"], "Succeeded", "{ended}");
    assert!(
        seen.failed.is_empty() && seen.unrouted.is_empty(),
        "{seen:?}"
    );
    let (_, after) = server.get_json("/v1/services/bluegreen").await;
    assert_eq!(
        after["traffic"],
        json!([{"revision": 2, "weight": 100, "role": "stable"}])
    );
}
