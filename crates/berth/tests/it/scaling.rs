//! Replicas under stress: autoscaling on measured utilisation, replacement of
//! killed, hung and crash-looping replicas, live changes of counts and bounds.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Load, TestServer};
use crate::observability::{scrape, value};

/// Answers after 50 ms with its pid, so load keeps replicas busy.
const SLOW: &[u8] = br#"
import os, time

def init():
    pass

def run(raw):
    time.sleep(0.05)
    return {"pid": os.getpid()}
"#;

/// Answers after 10 ms with its pid; `{"exit": true}` makes the process exit.
const PIDS: &[u8] = br#"
import json, os, time

def init():
    pass

def run(raw):
    if json.loads(raw).get("exit"):
        os._exit(7)
    time.sleep(0.01)
    return {"pid": os.getpid()}
"#;

/// The events of `kind` about `service`.
async fn events(server: &TestServer, service: &str, kind: &str) -> Vec<Value> {
    let (status, body) = server
        .get_json(&format!("/v1/events?service={service}&type={kind}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

async fn show(server: &TestServer, name: &str) -> Value {
    let (status, body) = server.get_json(&format!("/v1/services/{name}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls `show` until `check` holds; panics with the last answer after `limit`.
async fn until(
    server: &TestServer,
    name: &str,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let body = show(server, name).await;
        if check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached; last: {body:#}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ready(body: &Value) -> u64 {
    body["deploymentStatus"]["availableReplicas"]
        .as_u64()
        .unwrap_or(0)
}

fn current(body: &Value) -> u64 {
    body["deploymentStatus"]["currentReplicas"]
        .as_u64()
        .unwrap_or(0)
}

async fn pid_of(server: &TestServer, name: &str) -> u64 {
    let response = server.score(name, "{}").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["pid"].as_u64().unwrap()
}

/// The pids of the replicas now serving, from their processes' answers to
/// concurrent requests (the gateway spreads requests that overlap).
async fn pids(server: &TestServer, name: &str, replicas: usize) -> std::collections::BTreeSet<u64> {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let round = (0..replicas * 2).map(|_| pid_of(server, name));
        seen.extend(futures_util::future::join_all(round).await);
        if seen.len() >= replicas {
            break;
        }
    }
    seen
}

#[tokio::test]
async fn autoscale_scales_up_under_load_and_back_down_after_it() {
    let server = TestServer::start_with(&["--scale-down-stabilization-secs", "2"]).await;
    server
        .deploy(
            "elastic",
            &[("score.py", SLOW)],
            &[],
            json!({"computeType": "aks", "authEnabled": false, "maxQueueWaitMs": 20000,
                   "autoScaler": {"autoscaleEnabled": true, "minReplicas": 1, "maxReplicas": 3,
                                  "refreshPeriodInSeconds": 1, "targetUtilization": 50}}),
        )
        .await;
    let idle = show(&server, "elastic").await;
    assert_eq!(ready(&idle), 1, "{idle:#}");

    let load = Load::start(&server, "elastic", "{}", 6);
    let scaled = until(&server, "elastic", Duration::from_secs(30), |b| {
        ready(b) == 3
    })
    .await;
    let decision = &scaled["deploymentStatus"]["lastScaling"];
    assert_eq!(decision["from"], 1, "{scaled:#}");
    assert_eq!(decision["applied"], true, "{scaled:#}");
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains("above the target 50%"),
        "{scaled:#}"
    );
    assert!(decision["to"].as_u64().unwrap() >= 2);
    assert_eq!(
        scaled["deploymentStatus"]["desiredReplicas"], 3,
        "{scaled:#}"
    );
    assert!(scaled["deploymentStatus"]["utilization"].as_f64().is_some());
    // The added replicas take their share of the load.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let under_load = load.finish().await;
    assert!(
        under_load.failures.is_empty(),
        "scaling up failed requests: {:?}",
        under_load.failures
    );
    let served_by: std::collections::BTreeSet<String> = under_load.bodies.keys().cloned().collect();
    assert!(
        served_by.len() >= 2,
        "only one replica answered: {served_by:?}"
    );

    // A lighter load: the service shrinks under it without failing a request.
    let light = Load::start(&server, "elastic", "{}", 1);
    until(&server, "elastic", Duration::from_secs(30), |b| {
        current(b) < 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during_scale_down = light.finish().await;
    assert!(
        during_scale_down.failures.is_empty(),
        "scaling down failed requests: {:?}",
        during_scale_down.failures
    );
    assert!(during_scale_down.ok > 0);

    // With no load the count returns to the minimum after the stabilisation window.
    let calm = until(&server, "elastic", Duration::from_secs(30), |b| {
        current(b) == 1 && ready(b) == 1
    })
    .await;
    let decision = &calm["deploymentStatus"]["lastScaling"];
    assert_eq!(decision["to"], 1, "{calm:#}");
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains("below the target"),
        "{calm:#}"
    );
    assert_eq!(calm["state"], "Healthy");
    let scaled = events(&server, "elastic", "service.scaled").await;
    assert!(scaled.len() >= 2, "{scaled:?}");
    assert_eq!(scaled.first().unwrap()["data"]["from"], 1, "{scaled:?}");
    assert_eq!(scaled.last().unwrap()["data"]["to"], 1, "{scaled:?}");
    let metrics = scrape(&server).await;
    let ups = value(
        &metrics,
        "berth_scaling_decisions_total{service=\"elastic\",direction=\"up\"}",
    );
    let downs = value(
        &metrics,
        "berth_scaling_decisions_total{service=\"elastic\",direction=\"down\"}",
    );
    assert_eq!((ups + downs) as usize, scaled.len(), "{metrics}");
    assert!(ups >= 1.0 && downs >= 1.0, "{metrics}");
    let after = server.score("elastic", "{}").await;
    assert_eq!(after.status(), 200);

    let out = server
        .cli(server.data_dir())
        .args(["service", "show", "-n", "elastic"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("last scaling"), "{text}");
    assert!(text.contains("1–3 replicas, target 50%"), "{text}");
}

#[tokio::test]
async fn a_killed_replica_fails_only_its_requests_and_is_replaced() {
    let server = TestServer::start().await;
    server
        .deploy(
            "sturdy",
            &[("score.py", SLOW)],
            &[],
            json!({"computeType": "local", "numReplicas": 2, "maxQueueWaitMs": 10000}),
        )
        .await;
    let before = pids(&server, "sturdy", 2).await;
    assert_eq!(before.len(), 2);
    let victim = *before.iter().next().unwrap();

    let load = Load::start(&server, "sturdy", "{}", 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let healed = until(&server, "sturdy", Duration::from_secs(20), |b| {
        ready(b) == 2 && b["deploymentStatus"]["restarts"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.finish().await;
    // Only requests already written to the killed replica may fail: at most
    // the clients' worth, each a 502 naming the stopped replica.
    assert!(
        report.failures.len() <= 4,
        "more than the in-flight requests failed: {:?}",
        report.failures
    );
    for failure in &report.failures {
        assert!(failure.starts_with("502"), "{failure}");
    }
    assert!(report.ok > 0);
    assert_eq!(healed["state"], "Healthy", "{healed:#}");

    let after = pids(&server, "sturdy", 2).await;
    assert_eq!(after.len(), 2);
    assert!(
        !after.contains(&victim),
        "the killed pid still answers: {after:?}"
    );

    let (_, logs) = server.get_json("/v1/services/sturdy/logs").await;
    let text = logs["content"].as_str().unwrap();
    assert!(text.contains("was killed by signal 9"), "{text}");
    assert!(text.contains("started again"), "{text}");
    let restarted = events(&server, "sturdy", "replica.restarted").await;
    assert_eq!(restarted.len(), 1, "{restarted:?}");
    let metrics = scrape(&server).await;
    assert_eq!(
        value(&metrics, "berth_replica_restarts_total{service=\"sturdy\"}"),
        1.0
    );
}

#[tokio::test]
async fn a_hung_replica_is_taken_out_of_rotation_and_replaced() {
    let server = TestServer::start().await;
    server
        .deploy(
            "frozen",
            &[("score.py", PIDS)],
            &[],
            json!({"computeType": "aks", "authEnabled": false, "numReplicas": 2, "maxQueueWaitMs": 10000,
                   "livenessProbeRequirements": {"periodSeconds": 1, "timeoutSeconds": 1,
                       "failureThreshold": 3, "successThreshold": 1, "initialDelaySeconds": 30}}),
        )
        .await;
    let before = pids(&server, "frozen", 2).await;
    let victim = *before.iter().next().unwrap();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &victim.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());

    // Out of rotation after the first unanswered probe: requests keep succeeding.
    let unready = until(&server, "frozen", Duration::from_secs(10), |b| {
        ready(b) == 1
    })
    .await;
    assert_eq!(unready["state"], "Unhealthy", "{unready:#}");
    for _ in 0..20 {
        let response = server.score("frozen", "{}").await;
        assert_eq!(response.status(), 200);
    }
    // Killed after failureThreshold periods and replaced.
    let healed = until(&server, "frozen", Duration::from_secs(20), |b| {
        ready(b) == 2 && b["deploymentStatus"]["restarts"] == 1
    })
    .await;
    assert_eq!(healed["state"], "Healthy");
    let after = pids(&server, "frozen", 2).await;
    assert!(!after.contains(&victim), "{after:?}");
    let (_, logs) = server.get_json("/v1/services/frozen/logs").await;
    let text = logs["content"].as_str().unwrap();
    assert!(text.contains("liveness probe failed"), "{text}");
    let killed = events(&server, "frozen", "replica.killed").await;
    assert_eq!(killed.len(), 1, "{killed:?}");
    assert!(
        killed[0]["data"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("liveness probe failed"),
        "{killed:?}"
    );
}

#[tokio::test]
async fn a_crash_loop_is_reported_in_state_and_logs() {
    let server = TestServer::start().await;
    server
        .deploy(
            "loopy",
            &[("score.py", PIDS)],
            &[],
            json!({"computeType": "local", "numReplicas": 1}),
        )
        .await;
    let mut last = Value::Null;
    for round in 0..4 {
        // Wait for the replica to be back, then make it exit again.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let response = server.score("loopy", r#"{"exit": true}"#).await;
            if response.status() == 502 {
                break;
            }
            assert_eq!(response.status(), 503, "round {round}");
            assert!(Instant::now() < deadline, "round {round}: replica not back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last = until(&server, "loopy", Duration::from_secs(5), |b| {
            b["deploymentStatus"]["restarts"].as_u64() == Some(round + 1)
        })
        .await;
    }
    let reason = last["deploymentStatus"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(last["state"], "Unhealthy", "{last:#}");
    assert!(reason.contains("CrashLoopBackOff"), "{last:#}");
    assert!(reason.contains("exited with code 7"), "{last:#}");
    let (_, logs) = server.get_json("/v1/services/loopy/logs").await;
    assert!(
        logs["content"]
            .as_str()
            .unwrap()
            .contains("CrashLoopBackOff")
    );
}

#[tokio::test]
async fn replica_counts_and_autoscale_bounds_change_without_restarts() {
    let server = TestServer::start().await;
    server
        .deploy(
            "flex",
            &[("score.py", PIDS)],
            &[],
            json!({"computeType": "aks", "authEnabled": false, "numReplicas": 1}),
        )
        .await;
    let first = pids(&server, "flex", 1).await;

    let patch = |body: Value| {
        let server = &server;
        async move {
            let op = crate::harness::update(server, "flex", body).await;
            assert_eq!(op["state"], "Succeeded", "{op}");
        }
    };

    patch(
        json!({"autoScaler": {"autoscaleEnabled": true, "minReplicas": 2, "maxReplicas": 4,
                                "refreshPeriodInSeconds": 5, "targetUtilization": 70}}),
    )
    .await;
    let two = until(&server, "flex", Duration::from_secs(10), |b| ready(b) == 2).await;
    assert_eq!(two["autoScaler"]["minReplicas"], 2, "{two:#}");
    let now = pids(&server, "flex", 2).await;
    assert!(
        now.is_superset(&first),
        "the first replica was restarted: {first:?} → {now:?}"
    );

    patch(json!({"autoScaler": {"autoscaleEnabled": false}, "numReplicas": 3})).await;
    until(&server, "flex", Duration::from_secs(10), |b| ready(b) == 3).await;
    let three = pids(&server, "flex", 3).await;
    assert!(three.is_superset(&now), "{now:?} → {three:?}");

    patch(json!({"numReplicas": 1})).await;
    let one = until(&server, "flex", Duration::from_secs(10), |b| {
        current(b) == 1
    })
    .await;
    assert_eq!(one["state"], "Healthy");
    let last = pids(&server, "flex", 1).await;
    assert!(three.is_superset(&last), "{three:?} → {last:?}");
}

#[tokio::test]
async fn a_scale_up_that_cannot_get_gpus_is_reported_not_applied() {
    let server = TestServer::start_with(&["--gpus", "0"]).await;
    server
        .deploy(
            "greedy",
            &[("score.py", SLOW)],
            &[],
            json!({"computeType": "aks", "authEnabled": false, "maxQueueWaitMs": 20000, "gpuCores": 1,
                   "autoScaler": {"autoscaleEnabled": true, "minReplicas": 1, "maxReplicas": 2,
                                  "refreshPeriodInSeconds": 1, "targetUtilization": 50}}),
        )
        .await;
    let load = Load::start(&server, "greedy", "{}", 4);
    let refused = until(&server, "greedy", Duration::from_secs(30), |b| {
        b["deploymentStatus"]["lastScaling"]["applied"] == false
    })
    .await;
    let report = load.finish().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let decision = &refused["deploymentStatus"]["lastScaling"];
    assert_eq!(decision["from"], 1, "{refused:#}");
    assert_eq!(decision["to"], 2, "{refused:#}");
    assert!(
        decision["reason"].as_str().unwrap().contains("GPU"),
        "{refused:#}"
    );
    assert_eq!(current(&refused), 1, "{refused:#}");
    assert_eq!(refused["deploymentStatus"]["desiredReplicas"], 1);
    assert!(events(&server, "greedy", "service.scaled").await.is_empty());
}

#[tokio::test]
async fn a_replica_restart_keeps_a_failed_update_reported() {
    let server = TestServer::start().await;
    server
        .deploy(
            "scarred",
            &[("score.py", PIDS)],
            &[],
            json!({"computeType": "local", "numReplicas": 1}),
        )
        .await;
    let response = server
        .request(reqwest::Method::POST, "/v1/snapshots")
        .header("content-type", "application/x-tar")
        .body(crate::harness::tar_of(&[(
            "score.py",
            b"def init():\n    raise RuntimeError('bad weights')\ndef run(r):\n    return r\n",
        )]))
        .send()
        .await
        .unwrap();
    let (_, snapshot) = crate::harness::json_of(response).await;
    let op = crate::harness::update(
        &server,
        "scarred",
        json!({"inferenceConfig": {"sourceSnapshot": snapshot["id"]}}),
    )
    .await;
    assert_eq!(op["state"], "Failed", "{op}");

    // The serving replica of revision 1 crashes and is replaced.
    let crashed = server.score("scarred", r#"{"exit": true}"#).await;
    assert_eq!(crashed.status(), 502);
    let after = until(&server, "scarred", Duration::from_secs(20), |b| {
        ready(b) == 1 && b["deploymentStatus"]["restarts"] == 1
    })
    .await;
    assert_eq!(after["state"], "Failed", "{after:#}");
    assert_eq!(after["servingRevision"], 1, "{after:#}");
    assert!(
        after["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("bad weights"),
        "{after:#}"
    );
    let ok = server.score("scarred", "{}").await;
    assert_eq!(ok.status(), 200);
}
