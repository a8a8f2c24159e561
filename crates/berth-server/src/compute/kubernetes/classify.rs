//! Why a pod does not serve, in the v1 vocabulary: a pure function from a
//! Pod's status to the operation error code and reason the service shows
//! (CrashLoopBackOff, OOMKilled, ImagePullBackOff, Unschedulable / not enough
//! GPUs). The pod's last log lines are added by the caller.

use berth_api::OperationErrorCode;
use k8s_openapi::api::core::v1::Pod;

/// A pod that cannot serve, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct PodProblem {
    /// The code the operation fails with.
    pub code: OperationErrorCode,
    /// Kubernetes' reason (`CrashLoopBackOff`, `OOMKilled`, ...).
    pub reason: String,
    /// What Kubernetes said, with the pod's name.
    pub message: String,
}

/// Whether the pod is Ready (passes its readiness probe).
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's problem, or `None` while it is starting or serving normally.
pub fn classify(pod: &Pod) -> Option<PodProblem> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    let problem = |code, reason: &str, detail: &str| {
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        };
        Some(PodProblem {
            code,
            reason: reason.to_owned(),
            message: format!("pod {name} is {reason}{detail}"),
        })
    };
    for condition in status.conditions.iter().flatten() {
        if condition.type_ == "PodScheduled"
            && condition.status == "False"
            && condition.reason.as_deref() == Some("Unschedulable")
        {
            let message = condition.message.as_deref().unwrap_or_default();
            let detail = if message.contains("nvidia.com/gpu") {
                format!("not enough GPUs in the cluster ({message})")
            } else {
                message.to_owned()
            };
            return problem(OperationErrorCode::Unschedulable, "Unschedulable", &detail);
        }
    }
    for container in status.container_statuses.iter().flatten() {
        let oom = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| container.state.as_ref().and_then(|s| s.terminated.as_ref()))
            .filter(|t| t.reason.as_deref() == Some("OOMKilled"));
        if oom.is_some() {
            return problem(
                OperationErrorCode::MemoryLimitExceeded,
                "OOMKilled",
                "the replica went over its memory limit (`containerResourceRequirements.memoryInGBLimit`)",
            );
        }
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let message = waiting.message.as_deref().unwrap_or_default();
        match waiting.reason.as_deref() {
            Some(reason @ ("ImagePullBackOff" | "ErrImagePull" | "InvalidImageName")) => {
                return problem(OperationErrorCode::ReplicaStartFailed, reason, message);
            }
            Some(
                reason @ ("CrashLoopBackOff" | "CreateContainerConfigError" | "RunContainerError"),
            ) => {
                let restarts = container.restart_count;
                let detail = format!("{message} ({restarts} restarts)");
                return problem(OperationErrorCode::CrashLoopBackOff, reason, &detail);
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "berth-a-r1-x"}, "status": status}),
        )
        .unwrap_or_default()
    }

    #[test]
    fn kube_classifies_pod_failures_in_the_v1_vocabulary() {
        let crash = pod(
            serde_json::json!({"containerStatuses": [{"name": "replica", "ready": false,
            "restartCount": 3, "image": "i", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]}),
        );
        let p = classify(&crash).unwrap();
        assert_eq!(p.code, OperationErrorCode::CrashLoopBackOff);
        assert!(
            p.message.contains("berth-a-r1-x") && p.message.contains("3 restarts"),
            "{}",
            p.message
        );

        let oom = pod(
            serde_json::json!({"containerStatuses": [{"name": "replica", "ready": false,
            "restartCount": 1, "image": "i", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}),
        );
        let p = classify(&oom).unwrap();
        assert_eq!(
            (p.code, p.reason.as_str()),
            (OperationErrorCode::MemoryLimitExceeded, "OOMKilled")
        );

        let pull = pod(
            serde_json::json!({"containerStatuses": [{"name": "replica", "ready": false,
            "restartCount": 0, "image": "i", "imageID": "",
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]}),
        );
        let p = classify(&pull).unwrap();
        assert_eq!(
            (p.code, p.reason.as_str()),
            (OperationErrorCode::ReplicaStartFailed, "ImagePullBackOff")
        );

        let gpu = pod(
            serde_json::json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}]}),
        );
        let p = classify(&gpu).unwrap();
        assert_eq!(p.code, OperationErrorCode::Unschedulable);
        assert!(p.message.contains("not enough GPUs"), "{}", p.message);

        let starting = pod(
            serde_json::json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "replica", "ready": false, "restartCount": 0, "image": "i",
            "imageID": "", "state": {"running": {}}}]}),
        );
        assert_eq!(classify(&starting), None);
        assert!(!is_ready(&starting));
        let ready = pod(serde_json::json!({"conditions": [{"type": "Ready", "status": "True"}]}));
        assert!(is_ready(&ready));
        assert_eq!(classify(&ready), None);
    }
}
