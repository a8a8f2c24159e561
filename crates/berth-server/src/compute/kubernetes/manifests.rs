//! The Kubernetes objects of one revision, built from its plan: pure functions
//! from settings to `k8s-openapi` types (a Deployment whose pods run
//! `berth replica`, the Secret holding its bundle token, the Scale object the
//! autoscaler sends). Nothing here talks to a cluster.

use std::collections::BTreeMap;

use berth_api::DeploymentSettings;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, Secret, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Label every object Berth creates carries (`berth`).
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label naming the service.
pub const SERVICE_LABEL: &str = "berth.dev/service";
/// Label naming the revision.
pub const REVISION_LABEL: &str = "berth.dev/revision";
/// Label naming the compute target the objects belong to.
pub const TARGET_LABEL: &str = "berth.dev/compute-target";
/// Key of the bundle token in the revision's Secret.
pub const TOKEN_KEY: &str = "token";
/// Environment variable the replica reads its bundle token from.
pub const TOKEN_ENV: &str = "BERTH_REPLICA_TOKEN";
/// Port of the worker protocol (TLS) in every pod.
pub const WORKER_PORT: u16 = 9000;
/// Port of the plain-HTTP health endpoints in every pod.
pub const HEALTH_PORT: u16 = 9001;
/// The non-root user the replica runs as.
pub const REPLICA_UID: i64 = 10001;
/// Where the replica caches bundles and environments (an emptyDir).
pub const CACHE_DIR: &str = "/var/cache/berth";

/// What one revision's objects are built from.
#[derive(Debug, Clone)]
pub struct RevisionManifest<'a> {
    /// Service name.
    pub service: &'a str,
    /// Revision number.
    pub revision: u32,
    /// The compute target's name (a label, for adoption).
    pub target: &'a str,
    /// The target's namespace; the revision's `namespace` setting wins.
    pub namespace: &'a str,
    /// The replicas' container image.
    pub image: &'a str,
    /// URL the pods reach the Berth server at.
    pub server_url: &'a str,
    /// The revision's deployment settings.
    pub settings: &'a DeploymentSettings,
}

impl RevisionManifest<'_> {
    /// Namespace the objects go to.
    pub fn namespace(&self) -> &str {
        self.settings.namespace.as_deref().unwrap_or(self.namespace)
    }

    /// `berth-<service>-r<N>`.
    pub fn deployment_name(&self) -> String {
        deployment_name(self.service, self.revision)
    }

    /// `berth-<service>-r<N>-bundle`.
    pub fn secret_name(&self) -> String {
        format!("{}-bundle", self.deployment_name())
    }

    /// The labels that select this revision's pods.
    pub fn selector(&self) -> BTreeMap<String, String> {
        revision_labels(self.target, self.service, self.revision)
    }

    fn meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace().to_owned()),
            labels: Some(self.selector()),
            ..ObjectMeta::default()
        }
    }

    /// The Secret holding the revision's bundle token.
    pub fn secret(&self, bundle_token: &str) -> Secret {
        Secret {
            metadata: self.meta(self.secret_name()),
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                TOKEN_KEY.to_owned(),
                ByteString(bundle_token.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        }
    }

    /// The Deployment of the revision with `replicas` pods.
    pub fn deployment(&self, replicas: u32) -> Deployment {
        let labels = self.selector();
        Deployment {
            metadata: self.meta(self.deployment_name()),
            spec: Some(DeploymentSpec {
                replicas: Some(to_i32(replicas)),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..LabelSelector::default()
                },
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    ..DeploymentStrategy::default()
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(self.pod_spec()),
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    /// The Scale object that sets the Deployment's replicas (sent to its
    /// `scale` subresource).
    pub fn scale(&self, replicas: u32) -> Scale {
        Scale {
            metadata: ObjectMeta {
                name: Some(self.deployment_name()),
                namespace: Some(self.namespace().to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(ScaleSpec {
                replicas: Some(to_i32(replicas)),
            }),
            status: None,
        }
    }

    fn pod_spec(&self) -> PodSpec {
        let probes = &self.settings.liveness_probe_requirements;
        let timeout = to_i32(probes.timeout_seconds.max(1));
        let period = to_i32(probes.period_seconds.max(1));
        let failures = to_i32(probes.failure_threshold.max(1));
        let volumes = [("cache", CACHE_DIR), ("tmp", "/tmp")];
        PodSpec {
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(REPLICA_UID),
                run_as_group: Some(REPLICA_UID),
                fs_group: Some(REPLICA_UID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            termination_grace_period_seconds: Some(
                i64::try_from(self.settings.scoring_timeout_ms / 1000)
                    .unwrap_or(i64::MAX)
                    .clamp(30, 3600),
            ),
            volumes: Some(
                volumes
                    .iter()
                    .map(|(name, _)| Volume {
                        name: (*name).into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Volume::default()
                    })
                    .collect(),
            ),
            containers: vec![Container {
                name: "replica".into(),
                image: Some(self.image.to_owned()),
                args: Some(self.args()),
                env: Some(vec![
                    EnvVar {
                        name: TOKEN_ENV.into(),
                        value_from: Some(EnvVarSource {
                            secret_key_ref: Some(SecretKeySelector {
                                name: self.secret_name(),
                                key: TOKEN_KEY.into(),
                                optional: Some(false),
                            }),
                            ..EnvVarSource::default()
                        }),
                        ..EnvVar::default()
                    },
                    EnvVar {
                        name: "TMPDIR".into(),
                        value: Some("/tmp".into()),
                        ..EnvVar::default()
                    },
                ]),
                ports: Some(vec![
                    port("worker", WORKER_PORT),
                    port("health", HEALTH_PORT),
                ]),
                resources: Some(self.resources()),
                liveness_probe: Some(Probe {
                    http_get: Some(http_get("/healthz")),
                    initial_delay_seconds: Some(to_i32(probes.initial_delay_seconds)),
                    period_seconds: Some(period),
                    timeout_seconds: Some(timeout),
                    // Kubernetes requires 1 for liveness probes.
                    success_threshold: Some(1),
                    failure_threshold: Some(failures),
                    ..Probe::default()
                }),
                readiness_probe: Some(Probe {
                    http_get: Some(http_get("/readyz")),
                    period_seconds: Some(period),
                    timeout_seconds: Some(timeout),
                    success_threshold: Some(to_i32(probes.success_threshold.max(1))),
                    failure_threshold: Some(failures),
                    ..Probe::default()
                }),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    read_only_root_filesystem: Some(true),
                    run_as_non_root: Some(true),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        ..Capabilities::default()
                    }),
                    ..SecurityContext::default()
                }),
                volume_mounts: Some(
                    volumes
                        .iter()
                        .map(|(name, path)| VolumeMount {
                            name: (*name).into(),
                            mount_path: (*path).into(),
                            ..VolumeMount::default()
                        })
                        .collect(),
                ),
                ..Container::default()
            }],
            ..PodSpec::default()
        }
    }

    /// `berth replica ...` as the container's arguments.
    pub fn args(&self) -> Vec<String> {
        vec![
            "replica".into(),
            "--server".into(),
            self.server_url.to_owned(),
            "--service".into(),
            self.service.to_owned(),
            "--revision".into(),
            self.revision.to_string(),
            "--listen".into(),
            format!("0.0.0.0:{WORKER_PORT}"),
            "--health-listen".into(),
            format!("0.0.0.0:{HEALTH_PORT}"),
            "--cache".into(),
            CACHE_DIR.into(),
        ]
    }

    fn resources(&self) -> ResourceRequirements {
        let r = &self.settings.container_resource_requirements;
        let mut requests = BTreeMap::from([
            ("cpu".to_owned(), cpu(r.cpu)),
            ("memory".to_owned(), memory(r.memory_in_gb)),
        ]);
        let mut limits = BTreeMap::new();
        if let Some(c) = r.cpu_limit {
            limits.insert("cpu".to_owned(), cpu(c));
        }
        if let Some(m) = r.memory_in_gb_limit {
            limits.insert("memory".to_owned(), memory(m));
        }
        if r.gpu > 0 {
            // Extended resources: the request must equal the limit.
            let gpus = Quantity(r.gpu.to_string());
            requests.insert("nvidia.com/gpu".into(), gpus.clone());
            limits.insert("nvidia.com/gpu".into(), gpus);
        }
        ResourceRequirements {
            requests: Some(requests),
            limits: (!limits.is_empty()).then_some(limits),
            ..ResourceRequirements::default()
        }
    }
}

/// `berth-<service>-r<N>`.
pub fn deployment_name(service: &str, revision: u32) -> String {
    format!("berth-{service}-r{revision}")
}

/// The labels of one revision's objects.
pub fn revision_labels(target: &str, service: &str, revision: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_owned(), "berth".to_owned()),
        (TARGET_LABEL.to_owned(), target.to_owned()),
        (SERVICE_LABEL.to_owned(), service.to_owned()),
        (REVISION_LABEL.to_owned(), revision.to_string()),
    ])
}

/// The label selector of everything Berth manages for `target`.
pub fn target_selector(target: &str) -> String {
    format!("{MANAGED_BY}=berth,{TARGET_LABEL}={target}")
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// CPU cores as millicores (`0.1` → `100m`).
fn cpu(cores: f64) -> Quantity {
    Quantity(format!("{}m", (cores * 1000.0).round().max(1.0) as u64))
}

/// GB (the v1 unit, powers of 1024 as AKS used them) as MiB (`0.5` → `512Mi`).
fn memory(gb: f64) -> Quantity {
    Quantity(format!("{}Mi", (gb * 1024.0).round().max(1.0) as u64))
}

fn port(name: &str, number: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(number),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn http_get(path: &str) -> HTTPGetAction {
    HTTPGetAction {
        path: Some(path.into()),
        port: IntOrString::String("health".into()),
        scheme: Some("HTTP".into()),
        ..HTTPGetAction::default()
    }
}

#[cfg(test)]
mod tests;
