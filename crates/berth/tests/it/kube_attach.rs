//! Attaching a Kubernetes cluster as a compute target: the CLI and REST
//! settings, the kubeconfig kept secret, every bad input named, and detach
//! refused while services run there.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestServer, assert_error, json_of};

const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: kube-attach-secret-token}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n";

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
async fn kube_attach_stores_the_kubeconfig_as_a_secret_and_names_bad_input() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, KUBECONFIG).unwrap();

    let out = server
        .cli(dir.path())
        .args(["compute", "attach", "-n", "aks1", "--kind", "kubernetes"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--namespace", "ml", "--image", "ghcr.io/acme/berth:1"])
        .args(["--server-url", "http://berth.ml.svc:8080", "-o", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown["backedBy"], "kubernetes", "{shown}");
    assert_eq!(shown["kubernetes"]["namespace"], "ml");
    assert_eq!(shown["kubernetes"]["image"], "ghcr.io/acme/berth:1");
    assert_eq!(shown["kubernetes"]["kubeconfigSet"], true);
    assert_eq!(shown["kubernetes"]["inCluster"], false);

    // Listings, show and the server's log never carry the credentials.
    let (_, list) = server.get_json("/v1/computes").await;
    let (_, one) = server.get_json("/v1/computes/aks1").await;
    for text in [list.to_string(), one.to_string(), server.log()] {
        assert!(!text.contains("kube-attach-secret-token"), "{text}");
    }
    let out = server
        .cli(dir.path())
        .args(["compute", "show", "-n", "aks1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kubeconfig (set)") && text.contains("namespace     ml"),
        "{text}"
    );
    assert!(!text.contains("kube-attach-secret-token"), "{text}");

    // Attaching again with the same settings is a no-op; other settings are refused.
    let same = json!({"computeType": "AKS", "attach": true, "kubernetes": {
        "kubeconfig": KUBECONFIG, "namespace": "ml", "image": "ghcr.io/acme/berth:1",
        "serverUrl": "http://berth.ml.svc:8080"}});
    assert_eq!(put(&server, "aks1", same).await.0, 200);
    let other = json!({"computeType": "AKS", "attach": true, "kubernetes": {
        "inCluster": true, "namespace": "other", "image": "ghcr.io/acme/berth:1"}});
    assert_error(&put(&server, "aks1", other).await, 409, "conflict", "aks1");

    // Every bad input names the field, the value and the fix.
    let bad = put(
        &server,
        "aks2",
        json!({"computeType": "AKS", "attach": true, "kubernetes": {
            "namespace": "Not_A_Namespace", "image": "", "serverUrl": "berth:8080"}}),
    )
    .await;
    assert_eq!(bad.0, 400, "{}", bad.1);
    let message = bad.1.to_string();
    for needle in [
        "`kubernetes.namespace` is `Not_A_Namespace`",
        "`kubernetes.image` is ``",
        "--kubeconfig",
        "`kubernetes.serverUrl` is `berth:8080`",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    let created = put(
        &server,
        "aks3",
        json!({"computeType": "AKS", "kubernetes": {"inCluster": true, "namespace": "ml", "image": "i"}}),
    )
    .await;
    assert_error(&created, 400, "invalid_argument", "`attach` false");
    let out = server
        .cli(dir.path())
        .args(["compute", "attach", "-n", "aks4", "--kind", "kubernetes"])
        .args(["--kubeconfig", "/nonexistent/kubeconfig"])
        .args(["--namespace", "ml", "--image", "i"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/kubeconfig") && err.contains("--kubeconfig"),
        "{err}"
    );
}

#[tokio::test]
async fn kube_detach_is_refused_while_a_service_runs_there() {
    let server = TestServer::start().await;
    let attach = json!({"computeType": "AKS", "attach": true, "kubernetes": {
        "kubeconfig": KUBECONFIG, "namespace": "ml", "image": "ghcr.io/acme/berth:1"}});
    assert_eq!(put(&server, "aks1", attach).await.0, 201);
    let (status, accepted) = server
        .create_service(
            "on-kube",
            &[(
                "score.py",
                b"def init():\n    pass\n\ndef run(raw):\n    return raw\n",
            )],
            &[],
            json!({"computeType": "aks", "computeTargetName": "aks1", "numReplicas": 1}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    server
        .wait_operation(accepted["operation"]["id"].as_str().unwrap())
        .await;

    let dir = tempfile::tempdir().unwrap();
    let out = server
        .cli(dir.path())
        .args(["compute", "detach", "-n", "aks1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`on-kube`") && err.contains("hint:"), "{err}");

    let (status, deleted) = json_of(
        server
            .request(Method::DELETE, "/v1/services/on-kube")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{deleted}");
    server
        .wait_operation(deleted["operation"]["id"].as_str().unwrap())
        .await;
    let out = server
        .cli(dir.path())
        .args(["compute", "detach", "-n", "aks1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_error(
        &server.get_json("/v1/computes/aks1").await,
        404,
        "not_found",
        "aks1",
    );
}
