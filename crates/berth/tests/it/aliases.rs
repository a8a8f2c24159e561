//! Model aliases and the services that follow `name@alias` / `name@latest`:
//! alias moves, the 412 on deleting an aliased version, automatic rollouts of
//! followers (queued when busy, newest target only), rejected versions, the
//! manual policy with `--follow`, and a restart with a queued rollout.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestServer, assert_error, json_of, patch, tar_of, update};

/// Serves the content of `model.txt`; `bad` in it fails `init()`.
const SCRIPT: &[u8] = br#"
import os

def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read().strip()
    if model == "bad":
        raise RuntimeError("this model version cannot load")

def run(raw):
    return {"model": model}
"#;

/// The same, with an `init()` slow enough to keep an update in flight.
const SLOW_SCRIPT: &[u8] = br#"
import os, time

def init():
    global model
    time.sleep(4)
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read().strip()

def run(raw):
    return {"model": model}
"#;

async fn register(server: &TestServer, content: &str) -> Value {
    let (status, model) = server
        .register_file(
            "weights",
            "model.txt",
            content.as_bytes().to_vec(),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{model}");
    model
}

async fn set_alias(server: &TestServer, alias: &str, version: u32) -> (u16, Value) {
    json_of(
        server
            .request(Method::PUT, &format!("/v1/models/weights/aliases/{alias}"))
            .json(&json!({"version": version}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn plan_of<'a>(answer: &'a Value, service: &str) -> &'a Value {
    answer["followers"]
        .as_array()
        .and_then(|f| f.iter().find(|p| p["service"] == service))
        .unwrap_or_else(|| panic!("no plan for {service}: {answer}"))
}

/// Waits until `service` serves `models` with no operation in flight.
async fn wait_models(server: &TestServer, service: &str, models: Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, shown) = server.get_json(&format!("/v1/services/{service}")).await;
        if shown["models"] == models
            && shown["state"] != "Transitioning"
            && let Some(op) = shown["operationId"].as_str()
            && server.wait_operation(op).await["state"] == "Succeeded"
        {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "{service} did not reach {models}: {shown}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the service's first followed reference shows `key: value` (the
/// follower records an operation's end just after the operation is stored as ended).
async fn wait_follow(server: &TestServer, service: &str, key: &str, value: Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, shown) = server.get_json(&format!("/v1/services/{service}")).await;
        if shown["follows"][0][key] == value {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "{service} never showed {key}: {value}: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn served(server: &TestServer, service: &str) -> String {
    let response = server.score(service, "{}").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["model"].as_str().unwrap_or_default().to_owned()
}

fn messages(op: &Value) -> Vec<String> {
    op["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["message"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn aliases_move_list_and_remove_and_an_aliased_version_cannot_be_deleted() {
    let server = TestServer::start().await;
    for content in ["v1", "v2", "v3"] {
        register(&server, content).await;
    }
    let (status, set) = set_alias(&server, "champion", 1).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        (set["previous"].clone(), set["alias"]["version"].clone()),
        (Value::Null, json!(1))
    );
    assert_eq!(set["followers"], json!([]));
    let (_, moved) = set_alias(&server, "champion", 2).await;
    assert_eq!(moved["previous"], 1);
    set_alias(&server, "canary", 3).await;

    let (_, list) = server.get_json("/v1/models/weights/aliases").await;
    let pairs: Vec<(String, u64)> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["alias"].as_str().unwrap().to_owned(),
                a["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pairs, vec![("canary".into(), 3), ("champion".into(), 2)]);
    let (_, shown) = server.get_json("/v1/models/weights/versions/1").await;
    assert_eq!(shown["aliases"], json!({"canary": 3, "champion": 2}));

    // `latest` is reserved; names follow the registry's rules; versions must exist.
    assert_error(
        &set_alias(&server, "latest", 1).await,
        400,
        "invalid_argument",
        "reserved",
    );
    assert_error(
        &set_alias(&server, "-bad", 1).await,
        400,
        "invalid_argument",
        "lias name `-bad`",
    );
    assert_error(
        &set_alias(&server, "x", 9).await,
        404,
        "not_found",
        "weights:9",
    );

    // A version an alias points at cannot be deleted; the answer names the alias and the fix.
    let refused = json_of(
        server
            .request(Method::DELETE, "/v1/models/weights/versions/2")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&refused, 412, "precondition_failed", "weights@champion");
    assert!(
        refused.1.to_string().contains("alias remove"),
        "{}",
        refused.1
    );

    // The CLI lists and removes.
    let cwd = tempfile::tempdir().unwrap();
    let out = server
        .cli(cwd.path())
        .args(["model", "alias", "list", "weights"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("champion") && text.contains("canary"),
        "{text}"
    );
    let out = server
        .cli(cwd.path())
        .args(["model", "alias", "remove", "weights", "champion"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = json_of(
        server
            .request(Method::DELETE, "/v1/models/weights/aliases/champion")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&gone, 404, "not_found", "weights@champion");
    let deleted = server
        .request(Method::DELETE, "/v1/models/weights/versions/2")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    let (_, doc) = server.get_json("/v1/openapi.json").await;
    for path in [
        "/v1/models/{name}/aliases/{alias}",
        "/v1/models/{name}/aliases",
        "/v1/aliases",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }

    // Every move is an event with from and to.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, events) = server.get_json("/v1/events?type=model.alias_moved").await;
        let data: Vec<Value> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["data"].clone())
            .collect();
        if data.len() == 4 {
            assert_eq!(
                data[0],
                json!({"name": "weights", "alias": "champion", "from": null, "to": 1})
            );
            assert_eq!(
                data[1],
                json!({"name": "weights", "alias": "champion", "from": 1, "to": 2})
            );
            assert_eq!(
                data[3],
                json!({"name": "weights", "alias": "champion", "from": 2, "to": null})
            );
            break;
        }
        assert!(Instant::now() < deadline, "{data:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn followers_roll_out_when_the_alias_moves_and_when_a_new_version_is_registered() {
    let server = TestServer::start().await;
    register(&server, "v1").await;
    register(&server, "v2").await;
    set_alias(&server, "champion", 1).await;
    let dc = json!({"computeType": "local", "numReplicas": 1, "rollout": {"strategy": "rolling"}});
    server
        .deploy(
            "champ",
            &[("score.py", SCRIPT)],
            &["weights@champion"],
            dc.clone(),
        )
        .await;
    server
        .deploy("newest", &[("score.py", SCRIPT)], &["weights@latest"], dc)
        .await;
    let (_, shown) = server.get_json("/v1/services/champ").await;
    assert_eq!(shown["models"], json!(["weights:1"]));
    assert_eq!(
        shown["follows"],
        json!([{"reference": "weights@champion", "version": 1, "policy": "auto"}])
    );
    let (_, revisions) = server.get_json("/v1/services/champ/revisions").await;
    assert_eq!(
        revisions["value"][0]["spec"]["models"],
        json!(["weights:1"])
    );
    assert_eq!(
        revisions["value"][0]["spec"]["modelReferences"],
        json!(["weights@champion"])
    );
    assert_eq!(served(&server, "newest").await, "v2");

    let (status, moved) = set_alias(&server, "champion", 2).await;
    assert_eq!(status, 200, "{moved}");
    let plan = plan_of(&moved, "champ");
    assert_eq!(plan["action"], "autoRollout", "{moved}");
    assert_eq!(
        (plan["from"].clone(), plan["to"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(
        moved["followers"].as_array().unwrap().len(),
        1,
        "only champ follows it"
    );
    let op = server
        .wait_operation(plan["operation"].as_str().unwrap())
        .await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    assert_eq!(op["operationType"], "Update");
    let log = messages(&op);
    assert_eq!(log[0], "Update accepted: revision 2", "{log:?}");
    assert_eq!(
        log[1], "Started by Berth: alias moved weights@champion 1 → 2",
        "{log:?}"
    );
    assert_eq!(served(&server, "champ").await, "v2");
    let (_, revisions) = server.get_json("/v1/services/champ/revisions").await;
    assert_eq!(
        revisions["value"][1]["spec"]["models"],
        json!(["weights:2"])
    );
    assert_eq!(
        revisions["value"][1]["spec"]["modelReferences"],
        json!(["weights@champion"])
    );

    // A registration moves `@latest` followers.
    let registered = register(&server, "v3").await;
    let plan = plan_of(&registered, "newest");
    assert_eq!(plan["action"], "autoRollout", "{registered}");
    let op = server
        .wait_operation(plan["operation"].as_str().unwrap())
        .await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    assert_eq!(served(&server, "newest").await, "v3");
    assert_eq!(
        served(&server, "champ").await,
        "v2",
        "champ follows the alias, not @latest"
    );

    // The operation's events name the cause.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, events) = server
            .get_json("/v1/events?type=operation.started&service=newest")
            .await;
        let causes: Vec<String> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["data"]["cause"].as_str().map(str::to_owned))
            .collect();
        if !causes.is_empty() {
            assert_eq!(causes, vec!["new version registered weights@latest 2 → 3"]);
            break;
        }
        assert!(Instant::now() < deadline, "{events}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_busy_follower_is_queued_and_then_moves_to_the_newest_target_only() {
    let server = TestServer::start().await;
    for content in ["v1", "v2", "v3"] {
        register(&server, content).await;
    }
    set_alias(&server, "champion", 1).await;
    server
        .deploy(
            "busy",
            &[("score.py", SCRIPT)],
            &["weights@champion"],
            json!({"computeType": "local", "numReplicas": 1, "rollout": {"strategy": "rolling"}}),
        )
        .await;
    let snapshot = {
        let response = server
            .request(Method::POST, "/v1/snapshots")
            .header("content-type", "application/x-tar")
            .body(tar_of(&[("score.py", SLOW_SCRIPT)]))
            .send()
            .await
            .unwrap();
        json_of(response).await.1["id"].as_str().unwrap().to_owned()
    };
    let (status, slow) = patch(
        &server,
        "busy",
        json!({"inferenceConfig": {"sourceSnapshot": snapshot}}),
    )
    .await;
    assert_eq!(status, 202, "{slow}");
    let slow_id = slow["operation"]["id"].as_str().unwrap().to_owned();
    let (_, first) = set_alias(&server, "champion", 2).await;
    assert_eq!(plan_of(&first, "busy")["action"], "queued", "{first}");
    let (_, second) = set_alias(&server, "champion", 3).await;
    assert_eq!(plan_of(&second, "busy")["action"], "queued", "{second}");
    let (_, shown) = server.get_json("/v1/services/busy").await;
    assert_eq!(shown["follows"][0]["pending"], 3, "{shown}");
    let op = server.wait_operation(&slow_id).await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    wait_models(&server, "busy", json!(["weights:3"])).await;
    assert_eq!(served(&server, "busy").await, "v3");
    let (_, revisions) = server.get_json("/v1/services/busy/revisions").await;
    let models: Vec<Value> = revisions["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["spec"]["models"].clone())
        .collect();
    assert_eq!(
        models,
        vec![
            json!(["weights:1"]),
            json!(["weights:1"]),
            json!(["weights:3"])
        ],
        "version 2 was never rolled out"
    );
    let shown = wait_follow(&server, "busy", "pending", Value::Null).await;
    assert_eq!(
        shown["follows"],
        json!([{"reference": "weights@champion", "version": 3, "policy": "auto"}])
    );
}

#[tokio::test]
async fn a_failed_automatic_rollout_rejects_its_version_and_moving_the_alias_again_retries() {
    let server = TestServer::start().await;
    register(&server, "v1").await;
    register(&server, "bad").await;
    register(&server, "v3").await;
    set_alias(&server, "champion", 1).await;
    server
        .deploy(
            "guard",
            &[("score.py", SCRIPT)],
            &["weights@champion"],
            json!({"computeType": "local", "numReplicas": 1, "rollout": {"strategy": "rolling"}}),
        )
        .await;
    let (_, moved) = set_alias(&server, "champion", 2).await;
    let op = server
        .wait_operation(plan_of(&moved, "guard")["operation"].as_str().unwrap())
        .await;
    assert_ne!(op["state"], "Succeeded", "{op}");
    assert_eq!(
        served(&server, "guard").await,
        "v1",
        "the old version still serves"
    );
    let shown = wait_follow(&server, "guard", "rejected", json!(2)).await;
    assert_eq!(shown["follows"][0]["version"], 1, "{shown}");
    // The same version is not retried.
    let (_, again) = set_alias(&server, "champion", 2).await;
    assert_eq!(plan_of(&again, "guard")["action"], "rejected", "{again}");
    let cwd = tempfile::tempdir().unwrap();
    let out = server
        .cli(cwd.path())
        .args(["service", "show", "-n", "guard"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("weights@champion → 1 (auto)") && text.contains("rejected: weights:2"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another version is.
    let (_, retried) = set_alias(&server, "champion", 3).await;
    let plan = plan_of(&retried, "guard");
    assert_eq!(plan["action"], "autoRollout", "{retried}");
    let op = server
        .wait_operation(plan["operation"].as_str().unwrap())
        .await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    assert_eq!(served(&server, "guard").await, "v3");
    let (_, shown) = server.get_json("/v1/services/guard").await;
    assert_eq!(shown["follows"][0].get("rejected"), None, "{shown}");
}

#[tokio::test]
async fn a_manual_follower_shows_the_update_and_follow_applies_it() {
    let server = TestServer::start().await;
    register(&server, "v1").await;
    register(&server, "v2").await;
    set_alias(&server, "champion", 1).await;
    server
        .deploy(
            "hand",
            &[("score.py", SCRIPT)],
            &["weights@champion"],
            json!({"computeType": "local", "numReplicas": 1, "followPolicy": "manual", "rollout": {"strategy": "rolling"}}),
        )
        .await;
    let cwd = tempfile::tempdir().unwrap();
    let out = server
        .cli(cwd.path())
        .args(["model", "alias", "set", "weights", "champion", "2"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("hand follows weights@champion (1 → 2): update available"),
        "{said}"
    );
    let (_, shown) = server.get_json("/v1/services/hand").await;
    assert_eq!(shown["models"], json!(["weights:1"]));
    assert_eq!(shown["follows"][0]["available"], 2, "{shown}");
    assert_eq!(shown["follows"][0]["policy"], "manual");
    let out = server
        .cli(cwd.path())
        .args(["service", "show", "-n", "hand"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("weights@champion → 1 (manual), update available: weights@champion → 2"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server
        .cli(cwd.path())
        .args(["service", "update", "-n", "hand", "--follow"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(served(&server, "hand").await, "v2");
    let (_, shown) = server.get_json("/v1/services/hand").await;
    assert_eq!(shown["models"], json!(["weights:2"]));
    assert_eq!(shown["follows"][0].get("available"), None, "{shown}");
    // Switching to auto is a live setting; the next move rolls out.
    let op = update(&server, "hand", json!({"followPolicy": "auto"})).await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    register(&server, "v3").await;
    let (_, moved) = set_alias(&server, "champion", 3).await;
    assert_eq!(plan_of(&moved, "hand")["action"], "autoRollout", "{moved}");
    wait_models(&server, "hand", json!(["weights:3"])).await;
    // `follow` on a service that follows nothing names the fix.
    let (status, body) = patch(
        &server,
        "hand",
        json!({"follow": true, "models": ["weights:1"]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn queued_rollouts_of_an_alias_move_and_a_registration_survive_a_kill_9() {
    let mut server = TestServer::start().await;
    register(&server, "v1").await;
    set_alias(&server, "champion", 1).await;
    let dc = json!({"computeType": "local", "numReplicas": 1, "rollout": {"strategy": "rolling"}});
    server
        .deploy(
            "crash",
            &[("score.py", SCRIPT)],
            &["weights@champion"],
            dc.clone(),
        )
        .await;
    server
        .deploy(
            "crash-latest",
            &[("score.py", SCRIPT)],
            &["weights@latest"],
            dc,
        )
        .await;
    let snapshot = {
        let response = server
            .request(Method::POST, "/v1/snapshots")
            .header("content-type", "application/x-tar")
            .body(tar_of(&[("score.py", SLOW_SCRIPT)]))
            .send()
            .await
            .unwrap();
        json_of(response).await.1["id"].as_str().unwrap().to_owned()
    };
    for name in ["crash", "crash-latest"] {
        let (status, body) = patch(
            &server,
            name,
            json!({"inferenceConfig": {"sourceSnapshot": snapshot}}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
    let registered = register(&server, "v2").await;
    assert_eq!(
        plan_of(&registered, "crash-latest")["action"],
        "queued",
        "{registered}"
    );
    let (_, moved) = set_alias(&server, "champion", 2).await;
    assert_eq!(plan_of(&moved, "crash")["action"], "queued", "{moved}");
    server.kill9().await;
    server.start_again().await;
    for name in ["crash", "crash-latest"] {
        let shown = wait_models(&server, name, json!(["weights:2"])).await;
        assert_eq!(shown["follows"][0]["version"], 2, "{shown}");
        assert_eq!(served(&server, name).await, "v2");
    }
}

#[tokio::test]
async fn the_cli_deploys_from_an_alias_in_m_and_in_a_metadata_file_and_register_prints_followers() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("model.txt"), "v1").unwrap();
    std::fs::create_dir(cwd.join("src")).unwrap();
    std::fs::write(cwd.join("src/score.py"), SCRIPT).unwrap();
    std::fs::write(
        cwd.join("inferenceconfig.json"),
        r#"{"entryScript": "score.py", "sourceDirectory": "src"}"#,
    )
    .unwrap();
    std::fs::write(
        cwd.join("meta.json"),
        r#"{"modelId": "weights@latest", "modelName": "weights"}"#,
    )
    .unwrap();
    let run = |args: &[&str]| server.cli(cwd).args(args).output().unwrap();
    let ok = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(&run(&[
        "model",
        "register",
        "-n",
        "weights",
        "-p",
        "model.txt",
    ]));
    ok(&run(&["model", "alias", "set", "weights", "champion", "1"]));
    ok(&run(&[
        "model",
        "deploy",
        "-n",
        "cli-champ",
        "-m",
        "weights@champion",
        "--ic",
        "inferenceconfig.json",
        "--strategy",
        "canary",
        "--bake",
        "1s",
    ]));
    // A follower deployed without rollout settings gets a guarded canary.
    ok(&run(&[
        "model",
        "deploy",
        "-n",
        "cli-latest",
        "-f",
        "meta.json",
        "--ic",
        "inferenceconfig.json",
    ]));
    let (_, latest) = server.get_json("/v1/services/cli-latest").await;
    assert_eq!(latest["rollout"]["strategy"], "canary", "{latest}");
    assert_eq!(latest["rollout"]["bakeSeconds"], 60, "{latest}");
    ok(&run(&[
        "service",
        "update",
        "-n",
        "cli-latest",
        "--bake",
        "1s",
    ]));
    let shown = run(&["service", "show", "-n", "cli-champ"]);
    ok(&shown);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("weights@champion → 1 (auto)"), "{text}");
    let shown = run(&["model", "show", "-i", "weights@champion"]);
    ok(&shown);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("weights:1") && text.contains("champion → 1"),
        "{text}"
    );

    // A registration prints its followers and what happens to each; `-o json` lists them.
    std::fs::write(cwd.join("model.txt"), "v2").unwrap();
    let out = run(&[
        "model",
        "register",
        "-n",
        "weights",
        "-p",
        "model.txt",
        "-o",
        "json",
    ]);
    ok(&out);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("cli-latest follows weights@latest (1 → 2): automatic rollout started"),
        "{said}"
    );
    let model: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(model["followers"][0]["service"], "cli-latest", "{model}");
    assert_eq!(model["followers"][0]["action"], "autoRollout", "{model}");
    wait_models(&server, "cli-latest", json!(["weights:2"])).await;
    let out = run(&[
        "model", "alias", "set", "weights", "champion", "2", "-o", "json",
    ]);
    ok(&out);
    let moved: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(moved["previous"], 1, "{moved}");
    assert_eq!(
        plan_of(&moved, "cli-champ")["action"],
        "autoRollout",
        "{moved}"
    );
    wait_models(&server, "cli-champ", json!(["weights:2"])).await;
    let out = run(&["model", "alias", "set", "weights", "latest", "1"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("reserved"));
}

/// Fails 3 requests in 10 when the model file says `flaky`.
const GATED_SCRIPT: &[u8] = br#"
import os

def init():
    global model, count
    count = 0
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read().strip()

def run(raw):
    global count
    count += 1
    if model == "flaky" and count % 10 < 3:
        raise ValueError("flaky candidate")
    return {"model": model}
"#;

#[tokio::test]
async fn three_canary_followers_move_together_and_a_version_their_gates_roll_back_is_rejected() {
    let server = TestServer::start().await;
    register(&server, "v1").await;
    register(&server, "v2").await;
    set_alias(&server, "champion", 1).await;
    let dc = json!({
        "computeType": "local", "numReplicas": 1, "maxConcurrentRequestsPerContainer": 4,
        "rollout": {"strategy": "canary", "canaryPercent": 30, "bake": "2s", "minRequests": 20, "maxErrorRate": 2}
    });
    let names = ["follow-a", "follow-b", "follow-c"];
    for name in names {
        server
            .deploy(
                name,
                &[("score.py", GATED_SCRIPT)],
                &["weights@champion"],
                dc.clone(),
            )
            .await;
    }
    let loads: Vec<crate::harness::Load> = names
        .iter()
        .map(|name| crate::harness::Load::start(&server, name, "{}", 2))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // `follow-c` is busy with a canary of a resource change when the alias moves.
    let (status, busy) = patch(
        &server,
        "follow-c",
        json!({
            "containerResourceRequirements": {"cpu": 0.2},
            "rollout": {"strategy": "canary", "canaryPercent": 30, "bake": "4s", "minRequests": 1, "maxErrorRate": 2}
        }),
    )
    .await;
    assert_eq!(status, 202, "{busy}");
    let (_, moved) = set_alias(&server, "champion", 2).await;
    let actions: Vec<(String, String)> = moved["followers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["service"].as_str().unwrap().to_owned(),
                p["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("follow-a".to_owned(), "autoRollout".to_owned()),
            ("follow-b".to_owned(), "autoRollout".to_owned()),
            ("follow-c".to_owned(), "queued".to_owned()),
        ],
        "{moved}"
    );
    let busy_op = server
        .wait_operation(busy["operation"]["id"].as_str().unwrap())
        .await;
    assert_eq!(busy_op["state"], "Succeeded", "{busy_op}");
    for name in names {
        wait_models(&server, name, json!(["weights:2"])).await;
    }
    let mut failures = Vec::new();
    for load in loads {
        let report = load.finish().await;
        assert!(report.ok > 10, "the load ran: {}", report.ok);
        failures.extend(report.failures);
    }
    assert!(
        failures.is_empty(),
        "failed requests on the good path: {failures:?}"
    );

    // A version whose canary fails its gate is rolled back on every follower and rejected.
    let flaky = register(&server, "flaky").await["version"]
        .as_u64()
        .unwrap();
    let loads: Vec<crate::harness::Load> = names
        .iter()
        .map(|name| crate::harness::Load::start(&server, name, "{}", 3))
        .collect();
    let (_, moved) = set_alias(&server, "champion", flaky as u32).await;
    for name in names {
        let plan = plan_of(&moved, name);
        assert_eq!(plan["action"], "autoRollout", "{moved}");
        let op = server
            .wait_operation(plan["operation"].as_str().unwrap())
            .await;
        assert_eq!(op["state"], "RolledBack", "{name}: {op}");
    }
    for load in loads {
        load.finish().await;
    }
    for name in names {
        let shown = wait_follow(&server, name, "rejected", json!(flaky)).await;
        assert_eq!(shown["models"], json!(["weights:2"]), "{shown}");
        assert_eq!(served(&server, name).await, "v2");
    }
    // No retry loop: moving the alias to the same version again starts nothing.
    let (_, again) = set_alias(&server, "champion", flaky as u32).await;
    assert!(
        again["followers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["action"] == "rejected"),
        "{again}"
    );
}
