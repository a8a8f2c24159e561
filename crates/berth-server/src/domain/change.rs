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

/// Gives a service that starts following a model alias or `@latest` the
/// canary strategy (with its gates) when its rollout was left at the default
/// `rolling`: its updates are then started by Berth, so they are guarded
/// unless the user said otherwise (`"rollout": {"strategy": "rolling"}`).
/// Returns whether it did.
pub fn guard_followers(spec: &mut ServiceSpec, was_following: bool, rollout_given: bool) -> bool {
    if spec.model_references.is_empty()
        || was_following
        || rollout_given
        || !spec.deployment.rollout.is_rolling()
    {
        return false;
    }
    spec.deployment.rollout.strategy = berth_api::RolloutStrategy::Canary;
    true
}

/// The warning shown when [`guard_followers`] chose canary.
pub const FOLLOWER_CANARY: &str = "the service follows a model alias, so Berth starts its updates: they roll out as a canary with gates (rollout.strategy canary, the defaults of canaryPercent, bake and gates); give `rollout` (e.g. {\"strategy\": \"rolling\"}) to choose otherwise";

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
            model_references: Vec::new(),
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
    fn a_new_follower_with_the_default_rollout_gets_a_canary_and_no_one_else_does() {
        let mut follower = spec();
        follower.model_references = vec!["m@champion".into()];
        let mut guarded = follower.clone();
        assert!(guard_followers(&mut guarded, false, false));
        assert_eq!(
            guarded.deployment.rollout.strategy,
            berth_api::RolloutStrategy::Canary
        );
        for (was_following, given) in [(true, false), (false, true)] {
            let mut kept = follower.clone();
            assert!(!guard_followers(&mut kept, was_following, given));
            assert!(kept.deployment.rollout.is_rolling());
        }
        let mut plain = spec();
        assert!(!guard_followers(&mut plain, false, false));
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
