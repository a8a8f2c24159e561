//! Manifest tests: the settings each field comes from, and every object Berth
//! sends compared with its golden file (`BERTH_UPDATE_GOLDEN=1` rewrites them;
//! `python/tests/test_kube_manifests.py` validates them against the pinned
//! Kubernetes schemas).

use std::path::PathBuf;

use berth_api::{ComputeType, DeploymentSettings};
use k8s_openapi::api::core::v1::Container;

use super::*;

const TOKEN: &str = "golden-bundle-token";

fn settings() -> DeploymentSettings {
    DeploymentSettings::defaults(ComputeType::Aks)
}

fn gpu_settings() -> DeploymentSettings {
    let mut s = settings();
    s.num_replicas = 3;
    s.namespace = Some("gpu-team".into());
    s.container_resource_requirements.cpu = 2.5;
    s.container_resource_requirements.cpu_limit = Some(4.0);
    s.container_resource_requirements.memory_in_gb = 8.0;
    s.container_resource_requirements.memory_in_gb_limit = Some(12.5);
    s.container_resource_requirements.gpu = 2;
    s.liveness_probe_requirements.period_seconds = 7;
    s.liveness_probe_requirements.initial_delay_seconds = 45;
    s.liveness_probe_requirements.timeout_seconds = 4;
    s.liveness_probe_requirements.success_threshold = 2;
    s.liveness_probe_requirements.failure_threshold = 5;
    s
}

fn manifest(settings: &DeploymentSettings) -> RevisionManifest<'_> {
    RevisionManifest {
        service: "digits",
        revision: 4,
        target: "aks1",
        namespace: "ml",
        image: "ghcr.io/acme/berth:0.1.0",
        server_url: "http://berth.ml.svc:8080",
        settings,
    }
}

fn container(d: &Deployment) -> &Container {
    &d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

#[test]
fn kube_deployment_carries_names_labels_replicas_and_args() {
    let s = settings();
    let m = manifest(&s);
    let d = m.deployment(2);
    assert_eq!(d.metadata.name.as_deref(), Some("berth-digits-r4"));
    assert_eq!(d.metadata.namespace.as_deref(), Some("ml"));
    let labels = d.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[MANAGED_BY], "berth");
    assert_eq!(labels[SERVICE_LABEL], "digits");
    assert_eq!(labels[REVISION_LABEL], "4");
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.selector.match_labels.as_ref(), Some(labels));
    let c = container(&d);
    let args = c.args.as_ref().unwrap().join(" ");
    assert!(
        args.starts_with("replica --server http://berth.ml.svc:8080 --service digits --revision 4"),
        "{args}"
    );
    let env = &c.env.as_ref().unwrap()[0];
    assert_eq!(env.name, TOKEN_ENV);
    let secret_ref = env
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(secret_ref.name, "berth-digits-r4-bundle");
    assert_eq!(
        m.secret(TOKEN).metadata.name.as_deref(),
        Some("berth-digits-r4-bundle")
    );
}

#[test]
fn kube_resources_and_probes_follow_the_deployment_config() {
    let s = gpu_settings();
    let m = manifest(&s);
    let d = m.deployment(s.desired_replicas());
    // The revision's `namespace` setting wins over the target's.
    assert_eq!(d.metadata.namespace.as_deref(), Some("gpu-team"));
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(3));
    let c = container(&d);
    let r = c.resources.as_ref().unwrap();
    let requests = r.requests.as_ref().unwrap();
    let limits = r.limits.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "2500m");
    assert_eq!(requests["memory"].0, "8192Mi");
    assert_eq!(requests["nvidia.com/gpu"].0, "2");
    assert_eq!(limits["cpu"].0, "4000m");
    assert_eq!(limits["memory"].0, "12800Mi");
    assert_eq!(limits["nvidia.com/gpu"].0, "2");
    let live = c.liveness_probe.as_ref().unwrap();
    assert_eq!(
        live.http_get.as_ref().unwrap().path.as_deref(),
        Some("/healthz")
    );
    assert_eq!(live.period_seconds, Some(7));
    assert_eq!(live.initial_delay_seconds, Some(45));
    assert_eq!(live.timeout_seconds, Some(4));
    assert_eq!(live.failure_threshold, Some(5));
    assert_eq!(live.success_threshold, Some(1));
    let ready = c.readiness_probe.as_ref().unwrap();
    assert_eq!(
        ready.http_get.as_ref().unwrap().path.as_deref(),
        Some("/readyz")
    );
    assert_eq!(ready.success_threshold, Some(2));
    // Defaults: no limits, no GPU.
    let plain = settings();
    let d = manifest(&plain).deployment(1);
    let r = container(&d).resources.as_ref().unwrap();
    assert!(r.limits.is_none());
    assert_eq!(r.requests.as_ref().unwrap()["cpu"].0, "100m");
    assert_eq!(r.requests.as_ref().unwrap()["memory"].0, "512Mi");
}

#[test]
fn kube_pods_are_locked_down() {
    let s = settings();
    let d = manifest(&s).deployment(1);
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );
    let sc = container(&d).security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    let mounts = container(&d).volume_mounts.as_ref().unwrap();
    assert!(mounts.iter().any(|m| m.mount_path == CACHE_DIR));
}

/// Every object Berth sends, by golden file name.
fn sent() -> Vec<(&'static str, serde_json::Value)> {
    let plain = settings();
    let gpu = gpu_settings();
    let m = manifest(&plain);
    let g = manifest(&gpu);
    let json = |v: serde_json::Result<serde_json::Value>| v.unwrap();
    vec![
        (
            "deployment-default",
            json(serde_json::to_value(m.deployment(1))),
        ),
        (
            "deployment-gpu",
            json(serde_json::to_value(g.deployment(3))),
        ),
        (
            "deployment-scaled-to-zero",
            json(serde_json::to_value(m.deployment(0))),
        ),
        ("secret-bundle", json(serde_json::to_value(m.secret(TOKEN)))),
        ("scale", json(serde_json::to_value(m.scale(5)))),
    ]
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/compute/kubernetes/golden")
}

#[test]
fn kube_manifests_match_their_golden_files() {
    let update = std::env::var_os("BERTH_UPDATE_GOLDEN").is_some();
    let mut differ = Vec::new();
    for (name, value) in sent() {
        let path = golden_dir().join(format!("{name}.json"));
        let text = format!("{}\n", serde_json::to_string_pretty(&value).unwrap());
        if update {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_default();
        if golden != text {
            differ.push(format!("{}:\n{text}", path.display()));
        }
    }
    assert!(
        differ.is_empty(),
        "manifests differ from their golden files (rerun with BERTH_UPDATE_GOLDEN=1 to accept, then validate with python/tests/test_kube_manifests.py):\n{}",
        differ.join("\n")
    );
    // No stale golden file: each one is a manifest Berth sends.
    let names: Vec<String> = sent().iter().map(|(n, _)| format!("{n}.json")).collect();
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(names.contains(&file), "stale golden file {file}");
    }
}
