//! Updating services in place: zero failed requests during rolling and live
//! updates, failed updates that keep the serving revision, 409s, rollback,
//! redeploy, and a `kill -9` in the middle of an update.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Load, TestServer, assert_error, json_of, patch, tar_of, update};

const MODEL_SCRIPT: &[u8] = br#"
import os

def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read().strip()

def run(raw):
    return {"model": model, "pid": os.getpid()}
"#;

async fn upload(server: &TestServer, files: &[(&str, &[u8])]) -> String {
    let response = server
        .request(Method::POST, "/v1/snapshots")
        .header("content-type", "application/x-tar")
        .body(tar_of(files))
        .send()
        .await
        .unwrap();
    let (_, body) = json_of(response).await;
    body["id"].as_str().unwrap().to_owned()
}

fn models_seen(report: &crate::harness::LoadReport) -> Vec<String> {
    let mut models: Vec<String> = report
        .bodies
        .keys()
        .filter_map(|b| serde_json::from_str::<Value>(b).ok())
        .filter_map(|v| v["model"].as_str().map(str::to_owned))
        .collect();
    models.sort();
    models.dedup();
    models
}

async fn deploy_v1(server: &TestServer, name: &str, dc: Value) {
    server
        .register_file("weights", "model.txt", b"v1".to_vec(), json!({}))
        .await;
    server
        .deploy(name, &[("score.py", MODEL_SCRIPT)], &["weights:1"], dc)
        .await;
}

#[tokio::test]
async fn a_model_only_update_under_load_fails_no_request_with_one_replica() {
    let server = TestServer::start().await;
    deploy_v1(
        &server,
        "roll",
        json!({"computeType": "local", "numReplicas": 1}),
    )
    .await;
    server
        .register_file("weights", "model.txt", b"v2".to_vec(), json!({}))
        .await;
    let load = Load::start(&server, "roll", "{}", 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let op = update(&server, "roll", json!({"models": ["weights:2"]})).await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.finish().await;
    assert!(
        report.failures.is_empty(),
        "failed requests: {:?}",
        report.failures
    );
    assert!(report.ok > 20, "the load ran: {}", report.ok);
    assert_eq!(models_seen(&report), vec!["v1", "v2"]);
    let response = server.score("roll", "{}").await;
    assert_eq!(response.headers()["x-berth-revision"], "2");
    let (_, service) = server.get_json("/v1/services/roll").await;
    assert_eq!(service["servingRevision"], 2);
    assert_eq!(service["models"], json!(["weights:2"]));
    let events: Vec<String> = op["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        events.iter().any(|e| e.contains("Draining revision 1")),
        "{events:?}"
    );
    // The old model version is released, the new one is held.
    let (_, old) = server.get_json("/v1/models/weights/versions/1").await;
    assert_eq!(old["usedBy"], json!([]));
    let (_, new) = server.get_json("/v1/models/weights/versions/2").await;
    assert_eq!(new["usedBy"], json!(["roll"]));
}

#[tokio::test]
async fn entry_script_and_environment_updates_roll_without_failures() {
    let server = TestServer::start().await;
    deploy_v1(
        &server,
        "code",
        json!({"computeType": "local", "numReplicas": 2}),
    )
    .await;
    let load = Load::start(&server, "code", "{}", 4);
    let new_script: &[u8] =
        b"import os\ndef init():\n    pass\ndef run(raw):\n    return {'model': 'script-v2', 'var': os.environ.get('FLAVOUR')}\n";
    let snapshot = upload(&server, &[("score.py", new_script)]).await;
    let op = update(
        &server,
        "code",
        json!({"inferenceConfig": {"sourceSnapshot": snapshot}}),
    )
    .await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    let (status, _) = json_of(
        server
            .request(Method::POST, "/v1/environments")
            .json(&json!({"name": "flavoured", "environmentVariables": {"FLAVOUR": "mint"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let op = update(
        &server,
        "code",
        json!({"inferenceConfig": {"environment": "flavoured"}}),
    )
    .await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = load.finish().await;
    assert!(
        report.failures.is_empty(),
        "failed requests: {:?}",
        report.failures
    );
    let body: Value = server.score("code", "{}").await.json().await.unwrap();
    assert_eq!(body, json!({"model": "script-v2", "var": "mint"}));
    let (_, service) = server.get_json("/v1/services/code").await;
    assert_eq!(service["servingRevision"], 3);
    assert_eq!(service["environment"], "flavoured:1");
}

#[tokio::test]
async fn settings_only_updates_apply_live_without_restarting_replicas() {
    let server = TestServer::start().await;
    deploy_v1(
        &server,
        "live",
        json!({"computeType": "local", "numReplicas": 1}),
    )
    .await;
    let before: Value = server.score("live", "{}").await.json().await.unwrap();
    let load = Load::start(&server, "live", "{}", 2);
    let op = update(
        &server,
        "live",
        json!({"scoringTimeoutMs": 5000, "numReplicas": 2, "addTags": {"team": "fraud"}, "description": "live change"}),
    )
    .await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    let report = load.finish().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let events = op["events"].to_string();
    assert!(
        events.contains("Live change: scoringTimeoutMs 60000 → 5000"),
        "{events}"
    );
    assert!(events.contains("Scaling up from 1 to 2"), "{events}");
    assert!(
        !events.contains("Switched traffic"),
        "no rollout for settings: {events}"
    );
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let body: Value = server.score("live", "{}").await.json().await.unwrap();
        pids.insert(body["pid"].as_u64().unwrap());
    }
    assert!(
        pids.contains(&before["pid"].as_u64().unwrap()),
        "the first replica kept running"
    );
    let (_, service) = server.get_json("/v1/services/live").await;
    assert_eq!(service["scoringTimeoutMs"], 5000);
    assert_eq!(service["deploymentStatus"]["availableReplicas"], 2);
    assert_eq!(service["tags"]["team"], "fraud");
    assert_eq!(service["description"], "live change");
    assert_eq!(service["servingRevision"], 2);

    let op = update(&server, "live", json!({"numReplicas": 1})).await;
    assert_eq!(op["state"], "Succeeded");
    let (_, service) = server.get_json("/v1/services/live").await;
    assert_eq!(
        service["deploymentStatus"],
        json!({"desiredReplicas": 1, "availableReplicas": 1, "currentReplicas": 1, "restarts": 0})
    );
}

#[tokio::test]
async fn failing_updates_of_every_kind_keep_the_serving_revision() {
    let server = TestServer::start().await;
    // The load checks that no request fails because of an update; a generous
    // queue wait keeps a starved CI machine from turning waits into 503s.
    deploy_v1(
        &server,
        "steady",
        json!({"computeType": "local", "numReplicas": 1, "maxQueueWaitMs": 10000}),
    )
    .await;
    let (status, _) = json_of(
        server
            .request(Method::POST, "/v1/environments")
            .json(&json!({"name": "uninstallable", "pipRequirements": "--no-index\nberth-no-such-package==1\n"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let raises = upload(
        &server,
        &[(
            "score.py",
            b"def init():\n    raise RuntimeError('bad weights')\ndef run(r):\n    return r\n",
        )],
    )
    .await;
    let exits = upload(
        &server,
        &[(
            "score.py",
            b"import os\ndef init():\n    os._exit(7)\ndef run(r):\n    return r\n",
        )],
    )
    .await;
    let hangs = upload(
        &server,
        &[(
            "score.py",
            b"import time\ndef init():\n    time.sleep(30)\ndef run(r):\n    return r\n",
        )],
    )
    .await;
    let cases = [
        (
            json!({"inferenceConfig": {"sourceSnapshot": raises}}),
            "CrashLoopBackOff",
            "bad weights",
        ),
        (
            json!({"inferenceConfig": {"environment": "uninstallable"}}),
            "EnvironmentBuildFailed",
            "berth-no-such-package",
        ),
        (
            json!({"inferenceConfig": {"sourceSnapshot": exits}}),
            "ReplicaStartFailed",
            "",
        ),
        (
            json!({"inferenceConfig": {"sourceSnapshot": hangs},
                   "livenessProbeRequirements": {"initialDelaySeconds": 1, "periodSeconds": 1, "failureThreshold": 1}}),
            "DeploymentTimedOut",
            "",
        ),
    ];
    let load = Load::start(&server, "steady", "{}", 3);
    for (body, code, needle) in cases {
        let op = update(&server, "steady", body).await;
        assert_eq!(op["state"], "Failed", "{op}");
        assert_eq!(op["error"]["code"], code, "{op}");
        assert!(op["error"].to_string().contains(needle), "{op}");
        let (_, service) = server.get_json("/v1/services/steady").await;
        assert_eq!(service["state"], "Failed");
        assert_eq!(service["servingRevision"], 1);
        assert_eq!(service["error"]["code"], code);
    }
    // A missing entry script is refused before anything changes.
    let missing = upload(&server, &[("other.py", b"x = 1")]).await;
    let refused = patch(
        &server,
        "steady",
        json!({"inferenceConfig": {"sourceSnapshot": missing}}),
    )
    .await;
    assert_error(
        &refused,
        400,
        "invalid_argument",
        "not in the source snapshot",
    );
    let report = load.finish().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(
        models_seen(&report),
        vec!["v1"],
        "revision 1 answered throughout"
    );
    // The next update is accepted and succeeds.
    server
        .register_file("weights", "model.txt", b"v2".to_vec(), json!({}))
        .await;
    let op = update(&server, "steady", json!({"models": ["weights:2"]})).await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    let (_, service) = server.get_json("/v1/services/steady").await;
    assert_eq!(service["state"], "Healthy");
    // Revision 1, four failed ones, and this one (the refused change wrote none).
    assert_eq!(service["servingRevision"], 6);
}

#[tokio::test]
async fn fifty_concurrent_updates_accept_exactly_one() {
    let server = std::sync::Arc::new(TestServer::start().await);
    // init() takes long enough that all 50 calls arrive while the accepted one still runs.
    let slow: &[u8] = b"import time\ndef init():\n    time.sleep(3)\ndef run(r):\n    return r\n";
    server
        .deploy(
            "race",
            &[("score.py", slow)],
            &[],
            json!({"computeType": "local"}),
        )
        .await;
    let snapshot = upload(&server, &[("score.py", slow), ("extra.txt", b"x")]).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let server = server.clone();
            let body = json!({"inferenceConfig": {"sourceSnapshot": snapshot}});
            tokio::spawn(async move { patch(&server, "race", body).await })
        })
        .collect();
    let mut accepted = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            202 => accepted.push(body),
            409 => {
                assert_eq!(body["code"], "conflict");
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((accepted.len(), conflicts), (1, 49));
    let op_id = accepted[0]["operation"]["id"].as_str().unwrap();
    assert_eq!(server.wait_operation(op_id).await["state"], "Succeeded");
    let (_, revisions) = server.get_json("/v1/services/race/revisions").await;
    assert_eq!(
        revisions["value"].as_array().unwrap().len(),
        2,
        "the store holds one new revision"
    );
}

#[tokio::test]
async fn rollback_redeploy_revisions_and_diff() {
    let server = TestServer::start().await;
    deploy_v1(&server, "history", json!({"computeType": "local"})).await;
    server
        .register_file("weights", "model.txt", b"v2".to_vec(), json!({}))
        .await;
    assert_eq!(
        update(&server, "history", json!({"models": ["weights:2"]})).await["state"],
        "Succeeded"
    );
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| server.cli(dir.path()).args(args).output().unwrap();
    let listed = cli(&["service", "revisions", "-n", "history"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("weights:1") && text.contains("weights:2"),
        "{text}"
    );
    let diff = cli(&["service", "diff", "-n", "history", "1", "2"]);
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        text.contains(r#"models: ["weights:1"] → ["weights:2"]"#),
        "{text}"
    );

    let load = Load::start(&server, "history", "{}", 2);
    let rolled = cli(&["service", "rollback", "-n", "history", "--to", "1"]);
    assert!(
        rolled.status.success(),
        "{}",
        String::from_utf8_lossy(&rolled.stderr)
    );
    let before: Value = server.score("history", "{}").await.json().await.unwrap();
    assert_eq!(before["model"], "v1");
    let redeployed = cli(&["service", "redeploy", "-n", "history"]);
    assert!(
        redeployed.status.success(),
        "{}",
        String::from_utf8_lossy(&redeployed.stderr)
    );
    let report = load.finish().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let after: Value = server.score("history", "{}").await.json().await.unwrap();
    assert_eq!(after["model"], "v1");
    assert_ne!(
        after["pid"], before["pid"],
        "redeploy starts fresh replicas"
    );
    let (_, service) = server.get_json("/v1/services/history").await;
    assert_eq!(service["servingRevision"], 1);
    assert_eq!(service["latestRevision"], 2);
    let same = json_of(
        server
            .request(Method::POST, "/v1/services/history/rollback")
            .json(&json!({"revision": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&same, 400, "invalid_argument", "already serving");
}

#[tokio::test]
async fn the_cli_update_takes_the_reference_flags_and_register_points_at_it() {
    let server = TestServer::start().await;
    deploy_v1(
        &server,
        "flags",
        json!({"computeType": "aks", "numReplicas": 1}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.txt"), "v2").unwrap();
    let cli = |args: &[&str]| server.cli(dir.path()).args(args).output().unwrap();
    let registered = cli(&[
        "model",
        "register",
        "-n",
        "weights",
        "-p",
        "model.txt",
        "-t",
        "info.json",
    ]);
    let stderr = String::from_utf8_lossy(&registered.stderr);
    assert!(
        stderr.contains("Service flags serves weights:1; to move it to weights:2: berth service update -n flags -m weights:2"),
        "{stderr}"
    );
    let out = cli(&[
        "service",
        "update",
        "-n",
        "flags",
        "-f",
        "info.json",
        "--tm",
        "3000",
        "--mr",
        "250",
        "--add-tag",
        "stage=prod",
        "--nr",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, service) = server.get_json("/v1/services/flags").await;
    assert_eq!(service["models"], json!(["weights:2"]));
    assert_eq!(service["scoringTimeoutMs"], 3000);
    assert_eq!(service["maxQueueWaitMs"], 250);
    assert_eq!(service["numReplicas"], 2);
    assert_eq!(service["tags"]["stage"], "prod");
    let quirk = cli(&["service", "update", "-n", "flags", "--ma", "5"]);
    assert_eq!(quirk.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&quirk.stderr).contains("autoscaleEnabled: true"));
    let conflicting = cli(&[
        "service", "update", "-n", "flags", "--as", "true", "--nr", "3",
    ]);
    assert_eq!(conflicting.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&conflicting.stderr).contains("one or the other"));
}

#[tokio::test]
async fn kill_9_in_the_middle_of_an_update_keeps_a_revision_serving() {
    let mut server = TestServer::start().await;
    deploy_v1(&server, "crashy", json!({"computeType": "local"})).await;
    let slow: &[u8] =
        b"import time\ndef init():\n    time.sleep(3)\ndef run(r):\n    return {'model': 'v2'}\n";
    let snapshot = upload(&server, &[("score.py", slow)]).await;
    let (status, accepted) = patch(
        &server,
        "crashy",
        json!({"inferenceConfig": {"sourceSnapshot": snapshot}}),
    )
    .await;
    assert_eq!(status, 202);
    let op_id = accepted["operation"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill9().await;
    server.start_again().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = server.score("crashy", "{}").await;
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["model"], "v1", "the old revision serves again");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing serves: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, op) = server.get_json(&format!("/v1/operations/{op_id}")).await;
    assert_eq!(op["state"], "Failed");
    assert_eq!(op["error"]["code"], "ServerRestarted");
    assert!(
        op["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server stopped")
    );
    let (_, service) = server.get_json("/v1/services/crashy").await;
    assert_eq!(service["servingRevision"], 1);
    server
        .register_file("weights", "model.txt", b"v3".to_vec(), json!({}))
        .await;
    let op = update(&server, "crashy", json!({"models": ["weights:2"]})).await;
    assert_eq!(op["state"], "Succeeded", "a new update is accepted: {op}");
}
