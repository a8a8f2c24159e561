//! A service's JSON round-trips: its flattened settings (with their `rollout`
//! block) and its running rollout never share a key.

use berth_api::deployment::{ComputeType, DeploymentSettings};
use berth_api::service::{DeploymentStatus, Service, ServiceState};
use berth_api::{RolloutStatus, RolloutStrategy};

fn service(rollout: Option<RolloutStatus>) -> Service {
    let mut settings = DeploymentSettings::defaults(ComputeType::Aks);
    settings.rollout.strategy = RolloutStrategy::Canary;
    Service {
        name: "svc".into(),
        description: None,
        tags: Default::default(),
        properties: Default::default(),
        state: ServiceState::Healthy,
        created_time: "t".into(),
        updated_time: "t".into(),
        workspace_name: "w".into(),
        scoring_uri: None,
        swagger_uri: None,
        serving_revision: Some(3),
        traffic: vec![],
        rollout,
        mirror: None,
        latest_revision: 4,
        models: vec![],
        follows: vec![],
        environment: "e:1".into(),
        entry_script: "score.py".into(),
        deployment_status: DeploymentStatus {
            desired_replicas: 1,
            available_replicas: 1,
            current_replicas: 1,
            restarts: 0,
            reason: None,
            utilization: None,
            last_scaling: None,
        },
        error: None,
        operation_id: None,
        settings,
        resources: None,
    }
}

#[test]
fn settings_and_the_running_rollout_round_trip() {
    let running = RolloutStatus {
        operation_id: "op".into(),
        strategy: RolloutStrategy::Canary,
        candidate: 4,
        baseline: Some(3),
        step: 1,
        steps: 1,
        phase: "baking".into(),
        weights: [("3".to_string(), 90), ("4".to_string(), 10)].into(),
        bake_ends: None,
        gates: vec![],
    };
    for s in [service(None), service(Some(running))] {
        let text = serde_json::to_string(&s).unwrap();
        let back: Service = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(back, s);
    }
}
