//! `berth service update`: turns the reference's flags into one PATCH.

use anyhow::Context;
use serde_json::{Map, Value, json};

use super::deploy::{InferenceSources, inference_fields, model_list};
use crate::args::{OutputFormat, UpdateServiceArgs, UsageError};
use crate::client::Client;

fn set(map: &mut Map<String, Value>, path: &[&str], value: Value) {
    let (last, parents) = match path.split_last() {
        Some(split) => split,
        None => return,
    };
    let mut node = map;
    for part in parents {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        node = match entry.as_object_mut() {
            Some(inner) => inner,
            None => return,
        };
    }
    node.insert(last.to_string(), value);
}

/// Builds the PATCH body the flags describe.
pub async fn build_patch(
    client: &Client,
    a: &UpdateServiceArgs,
) -> anyhow::Result<Map<String, Value>> {
    let mut patch = match &a.source.deploy_config {
        Some(path) => match super::dc_file::read(path)? {
            Value::Object(map) => map,
            _ => {
                return Err(UsageError {
                    message: format!(
                        "deployment config `{}` must be a JSON object",
                        path.display()
                    ),
                    hint: None,
                }
                .into());
            }
        },
        None => Map::new(),
    };
    let models = model_list(&a.source.models, &a.source.model_metadata_files)?;
    if !models.is_empty() {
        patch.insert("models".into(), json!(models));
    }
    let inference = inference_fields(
        client,
        InferenceSources {
            service: &a.name,
            inference_config: a.source.inference_config.as_deref(),
            entry_script: a.source.entry_script.as_deref(),
            source_directory: a.source.source_directory.as_deref(),
            environment_name: a.source.environment_name.as_deref(),
            environment_version: a.source.environment_version,
        },
    )
    .await?;
    if !inference.is_empty() {
        patch.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if !a.add_tags.is_empty() {
        let tags: Map<String, Value> = a
            .add_tags
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        patch.insert("addTags".into(), Value::Object(tags));
    }
    if !a.remove_tags.is_empty() {
        patch.insert("removeTags".into(), json!(a.remove_tags));
    }
    if !a.add_properties.is_empty() {
        let props: Map<String, Value> = a
            .add_properties
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        patch.insert("properties".into(), Value::Object(props));
    }
    let options: [(&[&str], Option<Value>); 29] = [
        (&["description"], a.description.clone().map(Value::String)),
        (&["authEnabled"], a.auth_enabled.map(Value::Bool)),
        (&["tokenAuthEnabled"], a.token_auth_enabled.map(Value::Bool)),
        (
            &["keys", "primaryKey"],
            a.primary_key.clone().map(Value::String),
        ),
        (
            &["keys", "secondaryKey"],
            a.secondary_key.clone().map(Value::String),
        ),
        (
            &["autoScaler", "autoscaleEnabled"],
            a.autoscale_enabled.map(Value::Bool),
        ),
        (
            &["autoScaler", "minReplicas"],
            a.autoscale_min_replicas.map(|v| json!(v)),
        ),
        (
            &["autoScaler", "maxReplicas"],
            a.autoscale_max_replicas.map(|v| json!(v)),
        ),
        (
            &["autoScaler", "refreshPeriodInSeconds"],
            a.autoscale_refresh_seconds.map(|v| json!(v)),
        ),
        (
            &["autoScaler", "targetUtilization"],
            a.autoscale_target_utilization.map(|v| json!(v)),
        ),
        (&["numReplicas"], a.num_replicas.map(|v| json!(v))),
        (
            &["containerResourceRequirements", "cpu"],
            a.cpu_cores.map(|v| json!(v)),
        ),
        (
            &["containerResourceRequirements", "cpuLimit"],
            a.cpu_cores_limit.map(|v| json!(v)),
        ),
        (
            &["containerResourceRequirements", "memoryInGB"],
            a.memory_gb.map(|v| json!(v)),
        ),
        (
            &["containerResourceRequirements", "memoryInGBLimit"],
            a.memory_gb_limit.map(|v| json!(v)),
        ),
        (&["gpuCores"], a.gpu_cores.map(|v| json!(v))),
        (
            &["scoringTimeoutMs"],
            a.scoring_timeout_ms.map(|v| json!(v)),
        ),
        (
            &["maxConcurrentRequestsPerContainer"],
            a.replica_max_concurrent_requests.map(|v| json!(v)),
        ),
        (
            &["maxQueueWaitMs"],
            a.max_request_wait_time.map(|v| json!(v)),
        ),
        (
            &["livenessProbeRequirements", "periodSeconds"],
            a.period_seconds.map(|v| json!(v)),
        ),
        (
            &["livenessProbeRequirements", "initialDelaySeconds"],
            a.initial_delay_seconds.map(|v| json!(v)),
        ),
        (
            &["livenessProbeRequirements", "timeoutSeconds"],
            a.timeout_seconds.map(|v| json!(v)),
        ),
        (
            &["livenessProbeRequirements", "successThreshold"],
            a.success_threshold.map(|v| json!(v)),
        ),
        (
            &["livenessProbeRequirements", "failureThreshold"],
            a.failure_threshold.map(|v| json!(v)),
        ),
        (
            &["dataCollection", "storageEnabled"],
            a.collect_model_data.map(Value::Bool),
        ),
        (
            &["appInsightsEnabled"],
            a.enable_app_insights.map(Value::Bool),
        ),
        (&["requestLogBodies"], a.request_log_bodies.map(Value::Bool)),
        (
            &["followPolicy"],
            a.follow_policy.clone().map(Value::String),
        ),
        (&["follow"], a.follow.then_some(Value::Bool(true))),
    ];
    for (path, value) in options {
        if let Some(value) = value {
            set(&mut patch, path, value);
        }
    }
    super::rollout::merge_rollout(&mut patch, &a.rollout);
    Ok(patch)
}

/// Runs `berth service update`.
pub async fn update(
    client: &Client,
    args: UpdateServiceArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let patch = build_patch(client, &args).await?;
    if patch.is_empty() {
        return Err(UsageError {
            message:
                "nothing to update: name at least one change (see `berth service update --help`)"
                    .into(),
            hint: None,
        }
        .into());
    }
    let accepted = client
        .update_service(&args.name, &Value::Object(patch))
        .await
        .with_context(|| format!("cannot update service `{}`", args.name))?;
    for warning in &accepted.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "Updating service {} to revision {} (operation {})",
        args.name,
        accepted.operation.target_revision.unwrap_or(0),
        accepted.operation.id
    );
    if args.no_wait {
        return crate::render::line(&accepted.operation.id);
    }
    super::service::wait_for_operation(client, &accepted.operation.id, output).await
}
