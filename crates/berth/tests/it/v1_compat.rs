//! Azure ML v1 names end to end: the workspace identity flags, curated
//! environments and compute targets (REST and CLI).

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestServer, assert_error, json_of, patch};

const SCORE: &[u8] = b"def init():\n    pass\n\n\ndef run(raw):\n    return raw\n";

async fn put(server: &TestServer, name: &str, body: Value) -> (u16, Value) {
    json_of(
        server
            .request(Method::PUT, &format!("/v1/computes/{name}"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn workspace_reports_the_identity_flags_and_defaults() {
    let server = TestServer::start_with(&[
        "--workspace-resource-group",
        "rg-prod",
        "--workspace-location",
        "westeurope",
        "--workspace-subscription-id",
        "sub-123",
    ])
    .await;
    let (status, info) = server.get_json("/v1/workspace").await;
    assert_eq!(status, 200);
    assert_eq!(info["resourceGroup"], "rg-prod");
    assert_eq!(info["location"], "westeurope");
    assert_eq!(info["subscriptionId"], "sub-123");

    let plain = TestServer::start().await;
    let (_, info) = plain.get_json("/v1/workspace").await;
    assert_eq!(info["resourceGroup"], "berth");
    assert_eq!(info["location"], "local");
    assert_eq!(
        info["subscriptionId"],
        "00000000-0000-0000-0000-000000000000"
    );
}

#[tokio::test]
async fn curated_environments_register_on_first_use_and_unknown_names_suggest() {
    let server = TestServer::start().await;
    let (status, env) = server
        .get_json("/v1/environments/AzureML-sklearn-1.0")
        .await;
    assert_eq!(status, 200, "{env}");
    assert_eq!(env["id"], "AzureML-sklearn-1.0:1");
    assert_eq!(env["spec"]["pythonVersion"], "3.8");
    let requirements = env["spec"]["requirements"].to_string();
    assert!(requirements.contains("scikit-learn==1.0.2"), "{env}");
    assert!(env["warnings"].to_string().contains("curated"), "{env}");

    // Asked again (or by version): the same version, not a new one.
    let (status, again) = server
        .get_json("/v1/environments/AzureML-sklearn-1.0/versions/1")
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], "AzureML-sklearn-1.0:1");
    let (_, listed) = server
        .get_json("/v1/environments?name=AzureML-sklearn-1.0")
        .await;
    assert_eq!(listed["value"].as_array().unwrap().len(), 1, "{listed}");

    let (_, all) = server
        .get_json("/v1/environments?latest=true&curated=true")
        .await;
    let names: Vec<&str> = all["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        names.contains(&"AzureML-Tutorial") && names.contains(&"AzureML-sklearn-1.0"),
        "{names:?}"
    );
    let (_, old) = server
        .get_json("/v1/environments/AzureML-sklearn-0.24-ubuntu18.04-py37-cpu")
        .await;
    assert_eq!(old["spec"]["pythonVersion"], "3.7");

    let missing = server
        .get_json("/v1/environments/AzureML-sklearn-1.1")
        .await;
    assert_error(&missing, 404, "not_found", "AzureML-sklearn-1.0");
    let plain = server.get_json("/v1/environments/nothing-here").await;
    assert_error(&plain, 404, "not_found", "nothing-here");

    // Users still cannot register under the reserved prefix.
    let (status, body) = json_of(
        server
            .request(Method::POST, "/v1/environments")
            .json(&json!({"name": "AzureML-sklearn-1.0", "pipRequirements": ""}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // The CLI sees the curated environment too.
    let dir = tempfile::tempdir().unwrap();
    let out = server
        .cli(dir.path())
        .args(["environment", "show", "AzureML-Minimal"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("AzureML-Minimal"), "{text}");
    let out = server
        .cli(dir.path())
        .args(["environment", "list", "--latest", "--curated"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("AzureML-pytorch-1.10-ubuntu18.04-py38-cuda11-gpu"),
        "{text}"
    );
}

#[tokio::test]
async fn compute_targets_are_created_listed_used_and_deleted() {
    let server = TestServer::start().await;
    let (status, list) = server.get_json("/v1/computes").await;
    assert_eq!(status, 200);
    assert_eq!(list["value"][0]["name"], "local");
    assert_eq!(list["value"][0]["provisioningState"], "Succeeded");

    let (status, created) = put(
        &server,
        "aks-prod",
        json!({"computeType": "AKS", "properties": {"agentCount": 3, "vmSize": "Standard_D3_v2"}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["provisioningState"], "Succeeded");
    assert_eq!(created["backedBy"], "local");
    assert!(
        created["warnings"][0]
            .as_str()
            .unwrap()
            .contains("backed by the built-in `local` target"),
        "{created}"
    );
    // Again: the same target, no second notice.
    let (status, again) = put(&server, "aks-prod", json!({"computeType": "AKS"})).await;
    assert_eq!(status, 200);
    assert!(again.get("warnings").is_none(), "{again}");
    assert_eq!(again["properties"]["agentCount"], 3);

    let bad = put(&server, "x", json!({"computeType": "AmlCompute"})).await;
    assert_error(&bad, 400, "invalid_argument", "AmlCompute");
    let local = put(&server, "local", json!({"computeType": "AKS"})).await;
    assert_eq!(local.0, 409, "{}", local.1);

    // A service records the target it was deployed to; an unknown one is refused.
    let refused = server
        .create_service(
            "to-nowhere",
            &[("score.py", SCORE)],
            &[],
            json!({"computeType": "aks", "computeTargetName": "nope"}),
        )
        .await;
    assert_error(&refused, 400, "invalid_argument", "computeTargetName");
    server
        .deploy(
            "on-aks",
            &[("score.py", SCORE)],
            &[],
            json!({"computeType": "aks", "computeTargetName": "aks-prod", "numReplicas": 1, "authEnabled": false}),
        )
        .await;
    let (_, service) = server.get_json("/v1/services/on-aks").await;
    assert_eq!(service["computeTargetName"], "aks-prod", "{service}");
    let response = server.score("on-aks", "\"hi\"").await;
    assert_eq!(response.status().as_u16(), 200);
    let moved = patch(&server, "on-aks", json!({"computeTargetName": "ghost"})).await;
    assert_error(&moved, 400, "invalid_argument", "ghost");

    let dir = tempfile::tempdir().unwrap();
    let out = server
        .cli(dir.path())
        .args(["compute", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("aks-prod") && text.contains("local"),
        "{text}"
    );
    let out = server
        .cli(dir.path())
        .args(["compute", "show", "-n", "aks-prod"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("AKS"));

    let (status, _) = json_of(
        server
            .request(Method::DELETE, "/v1/computes/aks-prod")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 204);
    let gone = server.get_json("/v1/computes/aks-prod").await;
    assert_error(&gone, 404, "not_found", "aks-prod");
}
