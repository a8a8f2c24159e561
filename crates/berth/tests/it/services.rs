//! Deploying and scoring services end to end with real Python workers.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestServer, assert_error, json_of};

const ECHO_MODEL: &[u8] = br#"
import json, os

def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read().strip()
    print("init loaded", model)

def run(raw_data):
    print("scoring", raw_data)
    return {"model": model, "input": json.loads(raw_data)}
"#;

fn local() -> Value {
    json!({"computeType": "local"})
}

#[tokio::test]
async fn register_deploy_score_logs_and_delete_through_the_cli() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("model.txt"), "weights-v1").unwrap();
    std::fs::create_dir(cwd.join("src")).unwrap();
    std::fs::write(cwd.join("src/score.py"), ECHO_MODEL).unwrap();
    std::fs::write(
        cwd.join("inferenceconfig.json"),
        r#"{"entryScript": "score.py", "sourceDirectory": "src"}"#,
    )
    .unwrap();
    std::fs::write(
        cwd.join("deploymentconfig.json"),
        r#"{"computeType": "aci"}"#,
    )
    .unwrap();
    let run = |args: &[&str]| server.cli(cwd).args(args).output().unwrap();
    let out = run(&[
        "model",
        "register",
        "-n",
        "echo",
        "-p",
        "model.txt",
        "-t",
        "modelinfo.json",
    ]);
    assert!(out.status.success());
    let out = run(&[
        "model",
        "deploy",
        "-n",
        "echo-svc",
        "-f",
        "modelinfo.json",
        "--ic",
        "inferenceconfig.json",
        "--dc",
        "deploymentconfig.json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}\n{}", server.log());
    assert!(
        stderr.contains("Switched traffic to revision 1"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("/api/v1/service/echo-svc/score"));

    let shown = run(&["service", "show", "-n", "echo-svc", "-o", "json"]);
    let service: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(service["state"], "Healthy");
    assert_eq!(service["servingRevision"], 1);
    assert_eq!(service["models"], json!(["echo:1"]));
    assert_eq!(service["environment"], "workspace-default:1");
    assert_eq!(service["computeType"], "ACI");
    assert_eq!(
        service["deploymentStatus"],
        json!({"desiredReplicas": 1, "availableReplicas": 1, "currentReplicas": 1, "restarts": 0})
    );
    let scoring_uri = service["scoringUri"].as_str().unwrap().to_owned();
    assert!(scoring_uri.ends_with("/api/v1/service/echo-svc/score"));

    let response = server
        .http
        .post(&scoring_uri)
        .header("x-request-id", "my-request-1")
        .body(r#"{"data": [1, 2]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-request-id"], "my-request-1");
    assert_eq!(headers["x-ms-request-id"], "my-request-1");
    assert_eq!(headers["x-ms-run-function-failed"], "False");
    assert_eq!(headers["x-berth-revision"], "1");
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.contains_key("x-ms-run-fn-exec-ms"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"model": "weights-v1", "input": {"data": [1, 2]}})
    );

    let scored = run(&["service", "run", "-n", "echo-svc", "-d", r#"{"x": 3}"#]);
    assert!(
        scored.status.success(),
        "{}",
        String::from_utf8_lossy(&scored.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&scored.stdout).unwrap(),
        json!({"model": "weights-v1", "input": {"x": 3}})
    );
    let logs = run(&["service", "logs", "-n", "echo-svc", "--tail", "50"]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.contains("init loaded weights-v1"), "{logs}");
    assert!(logs.contains(r#"scoring {"x": 3}"#), "{logs}");

    let swagger = server
        .http
        .get(server.url("/api/v1/service/echo-svc/swagger.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(swagger.status(), 200);
    let swagger: Value = swagger.json().await.unwrap();
    assert!(
        swagger["paths"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.ends_with("/score")),
        "{swagger}"
    );

    // The model is in use: it cannot be deleted while the service exists.
    let in_use = json_of(
        server
            .request(Method::DELETE, "/v1/models/echo/versions/1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&in_use, 412, "precondition_failed", "echo-svc");

    let deleted = run(&["service", "delete", "-n", "echo-svc"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert_eq!(server.score("echo-svc", "{}").await.status(), 404);
    assert!(!server.data_dir().join("services/echo-svc").exists());
    let released = server
        .request(Method::DELETE, "/v1/models/echo/versions/1")
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), 204, "delete released the model");
}

#[tokio::test]
async fn one_and_several_models_get_the_azure_model_dir_layouts() {
    let server = TestServer::start().await;
    server
        .register_file("alpha", "a.txt", b"A".to_vec(), json!({}))
        .await;
    server
        .register_tar(
            "beta",
            "beta_dir",
            crate::harness::tar_of(&[("weights/w.bin", b"B")]),
        )
        .await;
    let script: &[u8] = br#"
import json, os
from azureml.core.model import Model

def init():
    pass

def run(raw):
    root = os.environ["AZUREML_MODEL_DIR"]
    names = json.loads(raw)
    found = {}
    for name in names:
        path = Model.get_model_path(name)
        found[name] = os.path.relpath(path, root)
    return {"root_tail": root.split("azureml-models")[-1], "found": found, "cwd_is_app_root": os.getcwd() == os.environ["AML_APP_ROOT"]}
"#;
    server
        .deploy("one-model", &[("score.py", script)], &["alpha:1"], local())
        .await;
    let body: Value = server
        .score("one-model", r#"["alpha"]"#)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["root_tail"], "/alpha/1");
    assert_eq!(body["found"]["alpha"], "a.txt");
    assert_eq!(body["cwd_is_app_root"], true);

    server
        .deploy(
            "two-models",
            &[("score.py", script)],
            &["alpha:1", "beta"],
            local(),
        )
        .await;
    let body: Value = server
        .score("two-models", r#"["alpha", "beta"]"#)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["root_tail"], "");
    assert_eq!(body["found"]["alpha"], "alpha/1/a.txt");
    assert_eq!(body["found"]["beta"], "beta/1/beta_dir");
}

#[tokio::test]
async fn invalid_configs_list_every_problem_and_create_nothing() {
    let server = TestServer::start().await;
    let (status, body) = server
        .create_service(
            "Bad_Name",
            &[("score.py", ECHO_MODEL)],
            &["missing:3"],
            json!({"computeType": "aks", "numReplica": 2, "scoringTimeoutMs": "fast",
                   "containerResourceRequirements": {"cpu": 2, "cpuLimit": 1}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let details = body["details"].to_string();
    for needle in [
        "service name `Bad_Name` is invalid",
        "model `missing:3` not found",
        "unknown key `numReplica` in the deployment config (did you mean `numReplicas`?)",
        "`scoringTimeoutMs` is \\\"fast\\\"",
        "is above `cpuLimit` (1)",
    ] {
        assert!(details.contains(needle), "{needle} missing in {details}");
    }
    let (status, body) = server
        .create_service(
            "good-name",
            &[("other.py", b"x = 1")],
            &[],
            json!({"computeType": "local"}),
        )
        .await;
    assert_error(
        &(status, body),
        400,
        "invalid_argument",
        "not in the source snapshot",
    );
    let (_, list) = server.get_json("/v1/services").await;
    assert_eq!(list["value"], json!([]));

    // The CLI reports inference-config typos before uploading anything.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ic.json"), r#"{"entryScrpt": "score.py"}"#).unwrap();
    let out = server
        .cli(dir.path())
        .args(["model", "deploy", "-n", "svc", "--ic", "ic.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown key `entryScrpt`"), "{stderr}");
}

#[tokio::test]
async fn init_failure_fails_the_operation_with_the_traceback_and_leaves_no_replica() {
    let server = TestServer::start().await;
    let script: &[u8] = b"def init():\n    raise ValueError('cannot load weights: boom')\n\ndef run(raw):\n    return raw\n";
    let (status, accepted) = server
        .create_service("broken", &[("score.py", script)], &[], local())
        .await;
    assert_eq!(status, 202);
    let op = server
        .wait_operation(accepted["operation"]["id"].as_str().unwrap())
        .await;
    assert_eq!(op["state"], "Failed", "{op}");
    assert_eq!(op["error"]["code"], "CrashLoopBackOff");
    assert!(
        op["error"]["step"]
            .as_str()
            .unwrap()
            .contains("init() raised")
    );
    let output = op["error"]["output"].to_string();
    assert!(
        output.contains("ValueError: cannot load weights: boom"),
        "{output}"
    );
    let (_, service) = server.get_json("/v1/services/broken").await;
    assert_eq!(service["state"], "Failed");
    assert_eq!(service["servingRevision"], Value::Null);
    assert_eq!(service["deploymentStatus"]["availableReplicas"], 0);
    assert_eq!(service["error"]["code"], "CrashLoopBackOff");
    let response = server.score("broken", "{}").await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));

    let dir = tempfile::tempdir().unwrap();
    let init_logs = server
        .cli(dir.path())
        .args(["service", "logs", "-n", "broken", "--init"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&init_logs.stdout).contains("ValueError"));
    let wait = server
        .cli(dir.path())
        .args(["service", "wait", "-n", "broken"])
        .output()
        .unwrap();
    assert_eq!(wait.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&wait.stderr);
    assert!(
        stderr.contains("CrashLoopBackOff") && stderr.contains("boom"),
        "{stderr}"
    );
    let pids = std::process::Command::new("pgrep")
        .args([
            "-f",
            &format!("{}/run/berth_worker.py", server.data_dir().display()),
        ])
        .output()
        .unwrap();
    assert!(pids.stdout.is_empty(), "no worker may be left running");
}

#[tokio::test]
async fn a_restart_brings_services_back_without_user_action() {
    let mut server = TestServer::start().await;
    server
        .register_file("m", "model.txt", b"v9".to_vec(), json!({}))
        .await;
    server
        .deploy(
            "survivor",
            &[("score.py", ECHO_MODEL)],
            &["m:1"],
            json!({"computeType": "local", "numReplicas": 2}),
        )
        .await;
    assert_eq!(server.score("survivor", "1").await.status(), 200);
    server.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = server.score("survivor", "2").await;
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body, json!({"model": "v9", "input": 2}));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not restored: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, service) = server.get_json("/v1/services/survivor").await;
    assert_eq!(service["servingRevision"], 1);
    assert_eq!(service["deploymentStatus"]["availableReplicas"], 2);
}

#[tokio::test]
async fn a_second_create_is_409_and_so_is_any_change_while_an_operation_runs() {
    let server = TestServer::start().await;
    let slow: &[u8] =
        b"import time\ndef init():\n    time.sleep(1.5)\ndef run(raw):\n    return raw\n";
    let (status, first) = server
        .create_service("busy", &[("score.py", slow)], &[], local())
        .await;
    assert_eq!(status, 202);
    let (status, again) = server
        .create_service("busy", &[("score.py", slow)], &[], local())
        .await;
    assert_error(&(status, again), 409, "conflict", "exists already");
    let op_id = first["operation"]["id"].as_str().unwrap();
    let busy_delete = json_of(
        server
            .request(Method::DELETE, "/v1/services/busy")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&busy_delete, 409, "conflict", op_id);
    assert!(
        busy_delete.1["hint"]
            .as_str()
            .unwrap()
            .contains("berth service wait -n busy")
    );
    assert_eq!(server.wait_operation(op_id).await["state"], "Succeeded");
}

#[tokio::test]
async fn key_auth_uses_both_keys_and_the_gateway_answers_like_the_reference() {
    let server = TestServer::start().await;
    let script: &[u8] = br#"
import time
def init():
    pass
def run(raw):
    if raw == "raise":
        raise RuntimeError("scoring failed")
    if raw == "sleep":
        time.sleep(5)
    return raw
"#;
    let primary = "p".repeat(32);
    server
        .deploy(
            "guarded",
            &[("score.py", script)],
            &[],
            json!({"computeType": "aks", "authEnabled": true, "numReplicas": 2,
                   "scoringTimeoutMs": 800, "keys": {"primaryKey": primary}}),
        )
        .await;
    let (_, keys) = server.get_json("/v1/services/guarded/keys").await;
    assert_eq!(keys["primaryKey"], primary.as_str());
    let secondary = keys["secondaryKey"].as_str().unwrap().to_owned();
    assert_eq!(secondary.len(), 32);
    let url = server.url("/api/v1/service/guarded/score");
    let anonymous = server.http.post(&url).body("\"x\"").send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let wrong = server
        .http
        .post(&url)
        .bearer_auth("nope")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    for key in [&primary, &secondary] {
        let ok = server
            .http
            .post(&url)
            .bearer_auth(key)
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.text().await.unwrap(), "\"hello\"");
    }
    let failed = server
        .http
        .post(&url)
        .bearer_auth(&primary)
        .body("raise")
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    assert_eq!(failed.headers()["x-ms-run-function-failed"], "True");
    let long_id = server
        .http
        .post(&url)
        .bearer_auth(&primary)
        .header("x-request-id", "x".repeat(101))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(long_id.status(), 431);
    let timed_out = server
        .http
        .post(&url)
        .bearer_auth(&primary)
        .body("sleep")
        .send()
        .await
        .unwrap();
    assert_eq!(timed_out.status(), 504);
    // The other replica keeps serving, and the recycled one comes back.
    let still = server
        .http
        .post(&url)
        .bearer_auth(&primary)
        .body("after")
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, service) = server.get_json("/v1/services/guarded").await;
        if service["deploymentStatus"]["availableReplicas"] == 2 && service["state"] == "Healthy" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica not replaced: {service}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unknown = server.score("nothing-here", "{}").await;
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("nothing-here"));
}
