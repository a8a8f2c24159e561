//! Services on an attached Kubernetes cluster, end to end: the real server
//! drives the test API server through kube-rs, whose fake kubelet runs each pod
//! as a `berth replica` process on its own loopback IP.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestServer, json_of};
use crate::kube_fake::KubeFake;
use crate::kube_fake::kubelet::{PodFailure, berth_replica};
use crate::kube_fake::store::Kind;

const SCORE: &[u8] = b"import os\n\ndef init():\n    pass\n\ndef run(raw):\n    return {'echo': raw, 'pid': os.getpid()}\n";

pub(crate) async fn attach(server: &TestServer, fake: &KubeFake) {
    let body = json!({"computeType": "AKS", "attach": true, "kubernetes": {
        "kubeconfig": std::fs::read_to_string(&fake.kubeconfig).unwrap(),
        "namespace": "ml", "image": "berth", "serverUrl": server.endpoint}});
    let (status, target) = json_of(
        server
            .request(Method::PUT, "/v1/computes/aks1")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{target}");
}

pub(crate) fn deployments(fake: &KubeFake) -> Vec<String> {
    fake.list(Kind::Deployment, "ml", None)
        .iter()
        .map(|d| {
            d["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn kube_deploy_scores_through_pods_and_updates_to_a_new_deployment() {
    let fake = KubeFake::start(berth_replica()).await;
    let server = TestServer::start().await;
    attach(&server, &fake).await;
    server
        .register_file("weights", "model.txt", b"one".to_vec(), json!({}))
        .await;
    server
        .register_file("weights", "model.txt", b"two".to_vec(), json!({}))
        .await;
    let started = std::time::Instant::now();
    let op = server
        .deploy(
            "kube-svc",
            &[("score.py", SCORE)],
            &["weights:1"],
            json!({"computeType": "aks", "computeTargetName": "aks1", "numReplicas": 2, "authEnabled": false}),
        )
        .await;
    assert!(op.to_string().contains("Kubernetes cluster `aks1`"), "{op}");
    assert_eq!(deployments(&fake), vec!["berth-kube-svc-r1"]);
    let pods = fake.list(Kind::Pod, "ml", Some("berth.dev/service=kube-svc"));
    assert_eq!(pods.len(), 2);
    let response = server.score("kube-svc", "\"hi\"").await;
    assert_eq!(response.status().as_u16(), 200);
    crate::harness::record_figure("kube_deploy_to_first_200_ms", started.elapsed());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["echo"], "\"hi\"", "{body}");

    // An update runs a new Deployment; the old one is scaled away and deleted.
    let started = std::time::Instant::now();
    let updated =
        crate::harness::update(&server, "kube-svc", json!({"models": ["weights:2"]})).await;
    crate::harness::record_figure("kube_model_update_to_succeeded_ms", started.elapsed());
    assert_eq!(updated["state"], "Succeeded", "{updated}");
    for _ in 0..200 {
        if deployments(&fake) == vec!["berth-kube-svc-r2"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(deployments(&fake), vec!["berth-kube-svc-r2"]);
    assert_eq!(
        server
            .score("kube-svc", "\"again\"")
            .await
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn kube_failed_update_shows_crashloop_with_pod_logs_and_keeps_the_old_deployment() {
    let fake = KubeFake::start(berth_replica()).await;
    let server = TestServer::start().await;
    attach(&server, &fake).await;
    server
        .register_file("weights", "model.txt", b"one".to_vec(), json!({}))
        .await;
    server
        .register_file("weights", "model.txt", b"two".to_vec(), json!({}))
        .await;
    server
        .deploy(
            "kube-keep",
            &[("score.py", SCORE)],
            &["weights:1"],
            json!({"computeType": "aks", "computeTargetName": "aks1", "numReplicas": 1, "authEnabled": false}),
        )
        .await;
    fake.shared
        .kubelet
        .fail("berth-kube-keep-r2", Some(PodFailure::Crash));
    let op = crate::harness::update(&server, "kube-keep", json!({"models": ["weights:2"]})).await;
    assert_eq!(op["state"], "Failed", "{op}");
    assert_eq!(op["error"]["code"], "CrashLoopBackOff", "{op}");
    assert!(
        op["error"]["message"]
            .to_string()
            .contains("berth-kube-keep-r2"),
        "{op}"
    );
    assert!(
        op["error"]["output"]
            .to_string()
            .contains("init failed on purpose"),
        "{op}"
    );
    let (_, service) = server.get_json("/v1/services/kube-keep").await;
    assert_eq!(service["servingRevision"], 1, "{service}");
    assert_eq!(
        server
            .score("kube-keep", "\"still\"")
            .await
            .status()
            .as_u16(),
        200
    );
    // The failed revision's objects are gone; the serving one is untouched.
    for _ in 0..100 {
        if deployments(&fake) == vec!["berth-kube-keep-r1"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(deployments(&fake), vec!["berth-kube-keep-r1"]);
    assert_eq!(fake.list(Kind::Secret, "ml", None).len(), 1);
}

#[tokio::test]
async fn kube_server_kill9_restart_adopts_the_deployment_without_duplicates() {
    let fake = KubeFake::start(berth_replica()).await;
    let mut server = TestServer::start().await;
    attach(&server, &fake).await;
    server
        .deploy(
            "kube-adopt",
            &[("score.py", SCORE)],
            &[],
            json!({"computeType": "aks", "computeTargetName": "aks1", "numReplicas": 2, "authEnabled": false}),
        )
        .await;
    let before: Vec<String> = fake
        .list(Kind::Pod, "ml", None)
        .iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(before.len(), 2);
    server.kill9().await;
    server.start_again().await;
    let mut ok = false;
    for _ in 0..300 {
        if server
            .score("kube-adopt", "\"back\"")
            .await
            .status()
            .as_u16()
            == 200
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "{}", server.log());
    assert_eq!(deployments(&fake), vec!["berth-kube-adopt-r1"]);
    let after: Vec<String> = fake
        .list(Kind::Pod, "ml", None)
        .iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(after, before, "the running pods were adopted, none added");
}

const MODEL_SCORE: &[u8] = b"import os\n\ndef init():\n    global model\n    with open(os.path.join(os.environ['AZUREML_MODEL_DIR'], 'model.txt')) as f:\n        model = f.read().strip()\n\ndef run(raw):\n    return model\n";

#[tokio::test]
async fn kube_update_under_load_fails_no_request_and_a_killed_pod_is_replaced() {
    let fake = KubeFake::start(berth_replica()).await;
    let server = TestServer::start().await;
    attach(&server, &fake).await;
    server
        .register_file("weights", "model.txt", b"one".to_vec(), json!({}))
        .await;
    server
        .register_file("weights", "model.txt", b"two".to_vec(), json!({}))
        .await;
    server
        .deploy(
            "kube-load",
            &[("score.py", MODEL_SCORE)],
            &["weights:1"],
            json!({"computeType": "aks", "computeTargetName": "aks1", "numReplicas": 2,
                   "authEnabled": false, "maxQueueWaitMs": 60000}),
        )
        .await;
    let load = crate::harness::Load::start(&server, "kube-load", "\"x\"", 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let op = crate::harness::update(&server, "kube-load", json!({"models": ["weights:2"]})).await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.finish().await;
    assert!(
        report.failures.is_empty(),
        "{:?}",
        &report.failures[..report.failures.len().min(5)]
    );
    assert!(
        report.bodies.keys().any(|b| b.contains("one")),
        "{:?}",
        report.bodies
    );
    assert!(
        report.bodies.keys().any(|b| b.contains("two")),
        "{:?}",
        report.bodies
    );

    // A pod deleted under the server: its replica is replaced by another pod.
    let pods = fake.list(Kind::Pod, "ml", Some("berth.dev/revision=2"));
    assert_eq!(pods.len(), 2);
    let victim = pods[0]["metadata"]["name"].as_str().unwrap().to_owned();
    let client = {
        let kubeconfig = kube::config::Kubeconfig::read_from(&fake.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    };
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, "ml");
    api.delete(&victim, &Default::default()).await.unwrap();
    let mut replaced = false;
    for _ in 0..300 {
        let (_, service) = server.get_json("/v1/services/kube-load").await;
        let names: Vec<String> = fake
            .list(Kind::Pod, "ml", Some("berth.dev/revision=2"))
            .iter()
            .filter(|p| p["status"]["conditions"][0]["status"] == "True")
            .map(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        if names.len() == 2 && !names.contains(&victim) && service["state"] == "Healthy" {
            replaced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(replaced, "{}", server.log());
    assert_eq!(
        server.score("kube-load", "\"y\"").await.status().as_u16(),
        200
    );
    assert_eq!(deployments(&fake), vec!["berth-kube-load-r2"]);
}
