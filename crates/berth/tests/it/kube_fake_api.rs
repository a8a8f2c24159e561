//! The test Kubernetes API server itself, driven through kube-rs: writes and
//! their 409s, the scale subresource, pod watches with resume, bookmarks and
//! 410 Gone, logs, and the fake kubelet's pods (ready from `/readyz`, injected
//! failures).

use std::time::Duration;

use berth_api::{ComputeType, DeploymentSettings};
use berth_server::compute::kubernetes::manifests::RevisionManifest;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, LogParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;

use crate::kube_fake::KubeFake;
use crate::kube_fake::kubelet::{PodFailure, ready_server};

async fn client(fake: &KubeFake) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(&fake.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn eventually<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn ready_pods(fake: &KubeFake, deployment: &str) -> Vec<serde_json::Value> {
    fake.list(crate::kube_fake::store::Kind::Pod, "ml", None)
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["berth-fake/deployment"] == deployment)
        .filter(|p| {
            p["status"]["conditions"][0]["status"] == "True" && p["status"]["podIP"].is_string()
        })
        .collect()
}

fn api_code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn kube_fake_api_serves_writes_scale_watches_and_logs() {
    let fake = KubeFake::start(ready_server()).await;
    assert!(fake.addr.ip().is_loopback());
    let client = client(&fake).await;
    let settings = DeploymentSettings::defaults(ComputeType::Aks);
    let m = RevisionManifest {
        service: "digits",
        revision: 1,
        target: "aks1",
        namespace: "ml",
        image: "berth",
        server_url: "http://127.0.0.1:1",
        settings: &settings,
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ml");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "ml");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ml");
    secrets
        .create(&PostParams::default(), &m.secret("t0k3n"))
        .await
        .unwrap();
    let created = deployments
        .create(&PostParams::default(), &m.deployment(2))
        .await
        .unwrap();
    // Creating an existing name: 409 AlreadyExists.
    let again = deployments
        .create(&PostParams::default(), &m.deployment(2))
        .await
        .unwrap_err();
    assert_eq!(api_code(&again), 409);

    // A watcher (list, then watch with bookmarks) sees both pods ready.
    let watch_config = watcher::Config::default().labels("berth.dev/service=digits");
    let mut events = watcher(pods.clone(), watch_config).boxed();
    eventually("two ready pods", || {
        ready_pods(&fake, "berth-digits-r1").len() == 2
    })
    .await;
    let mut seen_ready = 0;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .unwrap()
    {
        if let watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) = event.unwrap() {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                seen_ready += 1;
            }
        }
        if seen_ready >= 2 {
            break;
        }
    }

    // Scale subresource: down to one pod.
    let scale = m.scale(1);
    deployments
        .patch_scale(
            "berth-digits-r1",
            &PatchParams::default(),
            &Patch::Merge(&scale),
        )
        .await
        .unwrap();
    assert_eq!(
        deployments
            .get_scale("berth-digits-r1")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(1)
    );
    eventually("one pod", || {
        fake.list(
            crate::kube_fake::store::Kind::Pod,
            "ml",
            Some("berth.dev/service=digits"),
        )
        .len()
            == 1
    })
    .await;

    // A stale resourceVersion: 409 Conflict.
    let stale = deployments
        .replace("berth-digits-r1", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert_eq!(api_code(&stale), 409);

    // Logs, last lines only.
    let pod = ready_pods(&fake, "berth-digits-r1")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let lines = pods
        .logs(
            &pod,
            &LogParams {
                tail_lines: Some(1),
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");

    // Dropped watches: the watcher resumes and still sees new pods.
    fake.disconnect_watches();
    deployments
        .patch_scale(
            "berth-digits-r1",
            &PatchParams::default(),
            &Patch::Merge(&m.scale(2)),
        )
        .await
        .unwrap();
    let mut added = false;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .unwrap()
    {
        if let Ok(watcher::Event::Apply(p)) = event
            && p.metadata.name.as_deref() != Some(pod.as_str())
        {
            added = true;
            break;
        }
    }
    assert!(added);

    // A watch from a compacted version gets 410 Gone; bookmarks arrive on idle watches.
    fake.compact();
    let mut old = pods
        .watch(
            &WatchParams::default().labels("berth.dev/service=digits"),
            "1",
        )
        .await
        .unwrap()
        .boxed();
    match old.next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    let rv = pods
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut idle = pods
        .watch(&WatchParams::default().labels("no=match"), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(10), idle.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }

    // Injected failures show on new pods; deleting the Deployment removes its pods.
    for (failure, reason) in [
        (PodFailure::Unschedulable, "Unschedulable"),
        (PodFailure::ImagePullBackOff, "ImagePullBackOff"),
        (PodFailure::Crash, "CrashLoopBackOff"),
        (PodFailure::OomKilled, "OOMKilled"),
    ] {
        let mut m2 = m.clone();
        m2.revision = 2 + failure as u32;
        let name = m2.deployment_name();
        fake.shared.kubelet.fail(&name, Some(failure));
        deployments
            .create(&PostParams::default(), &m2.deployment(1))
            .await
            .unwrap();
        eventually(reason, || {
            fake.list(crate::kube_fake::store::Kind::Pod, "ml", None)
                .iter()
                .any(|p| {
                    p["metadata"]["labels"]["berth-fake/deployment"] == name.as_str()
                        && p["status"].to_string().contains(reason)
                })
        })
        .await;
        deployments
            .delete(&name, &Default::default())
            .await
            .unwrap();
    }
    eventually("the failed pods removed", || {
        fake.list(crate::kube_fake::store::Kind::Pod, "ml", None)
            .len()
            == 2
    })
    .await;
}
