//! Change classification: which changes to a service need replicas of a new
//! revision (a rollout) and which apply to the running replicas (live), and
//! how a live change is described in the operation log.

use berth_api::ServiceSpec;

/// Whether moving from `old` to `new` needs new replicas: code, models,
/// environment, resources and probes do; everything else is applied live.
pub fn needs_new_replicas(old: &ServiceSpec, new: &ServiceSpec) -> bool {
    old.models != new.models
        || old.inference != new.inference
        || old.deployment.container_resource_requirements
            != new.deployment.container_resource_requirements
        || old.deployment.liveness_probe_requirements != new.deployment.liveness_probe_requirements
        || old.deployment.max_processes_per_container != new.deployment.max_processes_per_container
}

/// Human lines for the live settings that differ.
pub fn describe_changes(
    old: &berth_api::DeploymentSettings,
    new: &berth_api::DeploymentSettings,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |what: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{what} {a} → {b}"));
        }
    };
    note(
        "replicas",
        old.desired_replicas().to_string(),
        new.desired_replicas().to_string(),
    );
    note(
        "autoscale",
        format!("{:?}", old.auto_scaler),
        format!("{:?}", new.auto_scaler),
    );
    note(
        "key auth",
        old.auth_enabled.to_string(),
        new.auth_enabled.to_string(),
    );
    note(
        "scoringTimeoutMs",
        old.scoring_timeout_ms.to_string(),
        new.scoring_timeout_ms.to_string(),
    );
    note(
        "maxQueueWaitMs",
        old.max_queue_wait_ms.to_string(),
        new.max_queue_wait_ms.to_string(),
    );
    note(
        "maxConcurrentRequestsPerContainer",
        old.max_concurrent_requests_per_container.to_string(),
        new.max_concurrent_requests_per_container.to_string(),
    );
    note(
        "appInsightsEnabled",
        old.app_insights_enabled.to_string(),
        new.app_insights_enabled.to_string(),
    );
    note(
        "requestLogBodies",
        old.request_log_bodies.to_string(),
        new.request_log_bodies.to_string(),
    );
    note("port", format!("{:?}", old.port), format!("{:?}", new.port));
    note(
        "dataCollection",
        format!("{:?}", old.data_collection),
        format!("{:?}", new.data_collection),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{ComputeType, DeploymentSettings, InferenceSpec};

    fn spec() -> ServiceSpec {
        ServiceSpec {
            models: vec!["m:1".into()],
            inference: InferenceSpec {
                entry_script: "score.py".into(),
                source_snapshot: "sha256:aa".into(),
                source_directory_name: None,
                environment: "env:1".into(),
            },
            deployment: DeploymentSettings::defaults(ComputeType::Local),
        }
    }

    #[test]
    fn code_models_environment_resources_and_probes_roll_out_the_rest_is_live() {
        let old = spec();
        let rolling: Vec<fn(&mut ServiceSpec)> = vec![
            |s| s.models = vec!["m:2".into()],
            |s| s.inference.entry_script = "other.py".into(),
            |s| s.inference.environment = "env:2".into(),
            |s| s.deployment.container_resource_requirements.cpu = 2.0,
            |s| s.deployment.liveness_probe_requirements.period_seconds = 3,
            |s| s.deployment.max_processes_per_container = 8,
        ];
        for change in rolling {
            let mut new = old.clone();
            change(&mut new);
            assert!(needs_new_replicas(&old, &new), "{new:?}");
        }
        let live: Vec<fn(&mut ServiceSpec)> = vec![
            |s| s.deployment.num_replicas = 3,
            |s| s.deployment.scoring_timeout_ms = 5,
            |s| s.deployment.auth_enabled = true,
            |s| s.deployment.rollout.strategy = berth_api::RolloutStrategy::Canary,
        ];
        for change in live {
            let mut new = old.clone();
            change(&mut new);
            assert!(!needs_new_replicas(&old, &new), "{new:?}");
        }
    }

    #[test]
    fn live_changes_are_described_from_and_to() {
        let old = spec().deployment;
        let mut new = old.clone();
        new.scoring_timeout_ms = 1234;
        let lines = describe_changes(&old, &new);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("scoringTimeoutMs ") && lines[0].ends_with("→ 1234"));
    }
}
