//! The Kubernetes target's cluster client (kube-rs) against the test API
//! server: a revision's objects created and adopted without duplicates, ready
//! pod addresses through a watch that survives disconnects, scaling through
//! the scale subresource, each injected pod failure classified with the pod's
//! last log lines, retirement, and bad credentials named.

use std::time::Duration;

use berth_api::{ComputeType, DeploymentSettings, KubernetesAttach, OperationErrorCode};
use berth_server::compute::kubernetes::cluster::{Cluster, ClusterError};

use crate::kube_fake::KubeFake;
use crate::kube_fake::kubelet::{PodFailure, ready_server};
use crate::kube_fake::store::Kind;

const WAIT: Duration = Duration::from_secs(60);

fn attach(fake: &KubeFake) -> KubernetesAttach {
    KubernetesAttach {
        kubeconfig: Some(std::fs::read_to_string(&fake.kubeconfig).unwrap()),
        in_cluster: false,
        namespace: "ml".into(),
        image: "berth".into(),
        server_url: Some("http://127.0.0.1:1".into()),
    }
}

#[tokio::test]
async fn kube_cluster_applies_adopts_scales_watches_and_retires() {
    let fake = KubeFake::start(ready_server()).await;
    let cluster = Cluster::connect("aks1", &attach(&fake)).await.unwrap();
    let settings = DeploymentSettings::defaults(ComputeType::Aks);
    let m = cluster.manifest("digits", 1, "http://unused", &settings);

    assert_eq!(cluster.apply(&m, "token-1", 2).await.unwrap(), 2);
    let addresses = cluster.ready_addresses(&m, 2, WAIT).await.unwrap();
    assert_eq!(addresses.len(), 2);
    assert!(
        addresses
            .iter()
            .all(|a| a.port() == 9000 && a.ip().is_loopback())
    );
    assert_ne!(addresses[0].ip(), addresses[1].ip());

    // Applying again (a restarted server) adopts the Deployment: no duplicate.
    assert_eq!(cluster.apply(&m, "token-2", 5).await.unwrap(), 2);
    assert_eq!(fake.list(Kind::Deployment, "ml", None).len(), 1);
    let secret = &fake.list(Kind::Secret, "ml", None)[0];
    assert_eq!(
        secret["data"]["token"], "dG9rZW4tMg==",
        "the token is refreshed"
    );
    // The periodic refresh replaces the token alone; the Deployment is untouched.
    cluster.put_secret(&m, "token-3").await.unwrap();
    let secrets = fake.list(Kind::Secret, "ml", None);
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0]["data"]["token"], "dG9rZW4tMw==");
    assert_eq!(fake.list(Kind::Deployment, "ml", None).len(), 1);

    // Scale through the subresource while the watches are cut.
    cluster.scale(&m, 3).await.unwrap();
    fake.disconnect_watches();
    assert_eq!(cluster.ready_addresses(&m, 3, WAIT).await.unwrap().len(), 3);
    let found = cluster.adopt("ml").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (
            found[0].service.as_str(),
            found[0].revision,
            found[0].replicas
        ),
        ("digits", 1, 3)
    );

    // Each injected failure shows with its v1 code and the pod's last log lines.
    for (revision, failure, code, log) in [
        (
            2,
            PodFailure::Crash,
            OperationErrorCode::CrashLoopBackOff,
            true,
        ),
        (
            3,
            PodFailure::OomKilled,
            OperationErrorCode::MemoryLimitExceeded,
            true,
        ),
        (
            4,
            PodFailure::ImagePullBackOff,
            OperationErrorCode::ReplicaStartFailed,
            false,
        ),
        (
            5,
            PodFailure::Unschedulable,
            OperationErrorCode::Unschedulable,
            false,
        ),
    ] {
        let failing = cluster.manifest("digits", revision, "http://unused", &settings);
        fake.shared
            .kubelet
            .fail(&failing.deployment_name(), Some(failure));
        cluster.apply(&failing, "t", 1).await.unwrap();
        let error = cluster
            .ready_addresses(&failing, 1, WAIT)
            .await
            .unwrap_err();
        assert_eq!(error.code(), code, "{error}");
        let ClusterError::Pod { problem, logs } = &error else {
            panic!("{error}")
        };
        assert!(
            problem.message.contains(&failing.deployment_name()),
            "{}",
            problem.message
        );
        if log {
            assert!(
                logs.iter().any(|l| l.contains("init failed on purpose")),
                "{logs:?}"
            );
        }
        // A failed revision is retired; the serving one is untouched.
        cluster.retire(&failing).await.unwrap();
        cluster.retire(&failing).await.unwrap();
    }
    assert_eq!(fake.list(Kind::Deployment, "ml", None).len(), 1);
    assert_eq!(fake.list(Kind::Secret, "ml", None).len(), 1);
    assert_eq!(cluster.ready_addresses(&m, 3, WAIT).await.unwrap().len(), 3);

    cluster.retire(&m).await.unwrap();
    assert!(fake.list(Kind::Deployment, "ml", None).is_empty());
    assert!(fake.list(Kind::Secret, "ml", None).is_empty());
    for _ in 0..100 {
        if fake.list(Kind::Pod, "ml", None).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fake.list(Kind::Pod, "ml", None).is_empty());
}

#[tokio::test]
async fn kube_cluster_names_unusable_credentials() {
    let settings = KubernetesAttach {
        kubeconfig: Some("this: [is not a kubeconfig".into()),
        in_cluster: false,
        namespace: "ml".into(),
        image: "berth".into(),
        server_url: None,
    };
    let error = Cluster::connect("aks9", &settings).await.err().unwrap();
    let text = error.to_string();
    assert!(
        text.contains("`aks9`") && text.contains("--kubeconfig"),
        "{text}"
    );
}
