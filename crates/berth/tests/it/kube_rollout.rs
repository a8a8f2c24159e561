//! Progressive delivery, scaling and pod failures of services on an attached
//! Kubernetes cluster, through the full server: a canary whose pods fail its
//! requests is rolled back by its gate, replicas follow `numReplicas` through
//! the scale subresource, and OOMKilled, ImagePullBackOff and Unschedulable pods
//! fail an update with the v1 reason while the old Deployment keeps serving.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Load, TestServer, update};
use crate::kube_deploy::{attach, deployments};
use crate::kube_fake::KubeFake;
use crate::kube_fake::kubelet::{PodFailure, berth_replica};
use crate::kube_fake::store::Kind;

/// Answers with its model's text; a model saying `bad` fails every request.
const GATED: &[u8] = b"import os\n\ndef init():\n    global model\n    with open(os.path.join(os.environ['AZUREML_MODEL_DIR'], 'model.txt')) as f:\n        model = f.read().strip()\n    print('loaded model', model, 'in pod', os.environ.get('HOSTNAME', '?'), flush=True)\n\ndef run(raw):\n    print('scored with', model, flush=True)\n    if model == 'bad':\n        raise RuntimeError('this model fails every request')\n    return model\n";

async fn deploy(server: &TestServer, fake: &KubeFake, name: &str, replicas: u32) {
    attach(server, fake).await;
    server
        .register_file("weights", "model.txt", b"good".to_vec(), json!({}))
        .await;
    server
        .deploy(
            name,
            &[("score.py", GATED)],
            &["weights:1"],
            json!({"computeType": "aks", "computeTargetName": "aks1", "numReplicas": replicas,
                   "authEnabled": false, "maxConcurrentRequestsPerContainer": 4,
                   "maxQueueWaitMs": 60000}),
        )
        .await;
}

fn pods(fake: &KubeFake, service: &str) -> usize {
    fake.list(
        Kind::Pod,
        "ml",
        Some(&format!("berth.dev/service={service}")),
    )
    .len()
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn kube_canary_failing_its_requests_is_rolled_back_by_its_gate() {
    let fake = KubeFake::start(berth_replica()).await;
    let server = TestServer::start().await;
    deploy(&server, &fake, "kube-canary", 1).await;
    server
        .register_file("weights", "model.txt", b"bad".to_vec(), json!({}))
        .await;
    let load = Load::start(&server, "kube-canary", "\"x\"", 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let op = update(
        &server,
        "kube-canary",
        json!({"models": ["weights:2"], "rollout": {"strategy": "canary", "canaryPercent": 30,
               "bake": "60s", "minRequests": 20, "maxErrorRate": 2}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = load.finish().await;
    assert_eq!(op["state"], "RolledBack", "{op}");
    assert_eq!(op["error"]["code"], "GateFailed", "{op}");
    assert!(
        !seen.failures.is_empty(),
        "the canary's pods got traffic: {seen:?}"
    );
    assert_eq!(
        seen.bodies.keys().cloned().collect::<Vec<_>>(),
        vec!["\"good\"".to_owned()],
        "every answer came from the stable revision: {seen:?}"
    );
    let (_, shown) = server.get_json("/v1/services/kube-canary").await;
    assert_eq!(shown["servingRevision"], 1, "{shown}");
    assert_eq!(shown["state"], "Healthy", "{shown}");
    for _ in 0..20 {
        let response = server.score("kube-canary", "\"after\"").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-berth-revision"], "1");
    }
    // The candidate's Deployment is scaled away and deleted.
    wait_until("only the stable Deployment is left", || {
        deployments(&fake) == vec!["berth-kube-canary-r1"]
    })
    .await;
}

#[tokio::test]
async fn kube_replicas_follow_num_replicas_through_the_scale_subresource() {
    let fake = KubeFake::start(berth_replica()).await;
    let server = TestServer::start().await;
    deploy(&server, &fake, "kube-scale", 1).await;
    assert_eq!(pods(&fake, "kube-scale"), 1);
    let load = Load::start(&server, "kube-scale", "\"x\"", 2);
    let op = update(&server, "kube-scale", json!({"numReplicas": 3})).await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    wait_until("three pods run", || pods(&fake, "kube-scale") == 3).await;
    let deployment = fake.list(Kind::Deployment, "ml", None);
    assert_eq!(
        deployments(&fake),
        vec!["berth-kube-scale-r1"],
        "scaling keeps the running Deployment (no new pods for a replica count)"
    );
    assert_eq!(deployment[0]["spec"]["replicas"], 3, "{}", deployment[0]);
    let (_, shown) = server.get_json("/v1/services/kube-scale").await;
    assert_eq!(shown["deploymentStatus"]["availableReplicas"], 3, "{shown}");
    // Every pod's output is the service's log (`get_logs()`), and keeps coming.
    let mut text = String::new();
    for _ in 0..100 {
        let (_, logs) = server.get_json("/v1/services/kube-scale/logs").await;
        text = logs["content"].as_str().unwrap_or_default().to_owned();
        if text.contains("loaded model good") && text.contains("scored with good") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        text.contains("loaded model good") && text.contains("scored with good"),
        "{text}"
    );

    let op = update(&server, "kube-scale", json!({"numReplicas": 1})).await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    wait_until("one pod is left", || pods(&fake, "kube-scale") == 1).await;
    let seen = load.finish().await;
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert!(seen.ok > 0);
}

#[tokio::test]
async fn kube_oomkilled_image_pull_and_unschedulable_pods_fail_the_update_and_keep_the_old_deployment()
 {
    let fake = KubeFake::start(berth_replica()).await;
    let server = TestServer::start().await;
    deploy(&server, &fake, "kube-fail", 1).await;
    let cases = [
        (PodFailure::OomKilled, "MemoryLimitExceeded", "OOMKilled"),
        (
            PodFailure::ImagePullBackOff,
            "ReplicaStartFailed",
            "ImagePullBackOff",
        ),
        (PodFailure::Unschedulable, "Unschedulable", "Unschedulable"),
    ];
    for (revision, (failure, code, reason)) in (2..).zip(cases) {
        server
            .register_file(
                "weights",
                "model.txt",
                format!("v{revision}").into_bytes(),
                json!({}),
            )
            .await;
        let deployment = format!("berth-kube-fail-r{revision}");
        fake.shared.kubelet.fail(&deployment, Some(failure));
        let op = update(
            &server,
            "kube-fail",
            json!({"models": [format!("weights:{revision}")]}),
        )
        .await;
        assert_eq!(op["state"], "Failed", "{reason}: {op}");
        assert_eq!(op["error"]["code"], code, "{reason}: {op}");
        let message = op["error"]["message"].to_string();
        assert!(
            message.contains(reason) && message.contains(&deployment),
            "{reason}: {op}"
        );
        let (_, shown) = server.get_json("/v1/services/kube-fail").await;
        assert_eq!(shown["servingRevision"], 1, "{reason}: {shown}");
        let response = server.score("kube-fail", "\"still\"").await;
        assert_eq!(response.status(), 200, "{reason}");
        wait_until("the failed Deployment is removed", || {
            deployments(&fake) == vec!["berth-kube-fail-r1"]
        })
        .await;
    }
}
