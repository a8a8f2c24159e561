//! Changing a service in place: `PATCH /v1/services/{name}` (a JSON merge of the
//! changed fields, or the reference's JSON-Patch array), rollback, redeploy and
//! revision history. Every change writes intent in one transaction and starts
//! one operation; a second change while it runs gets 409.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_api::{
    ErrorBody, Operation, OperationAccepted, OperationType, Revision, RevisionList,
    RollbackRequest, ServiceKeys, ServiceSpec,
};
use serde_json::{Map, Value};

use super::services::{check_inference, no_code_inference, resolve_environment, resolve_models};
use super::{ApiJson, AppState};
use crate::deploy_config;
use crate::error::ApiError;
use crate::follow::{SubmitError, Submitter};
use crate::store::ServiceChange;

/// Keys of a PATCH body that are not deployment settings.
const SERVICE_KEYS: &[&str] = &[
    "description",
    "tags",
    "kvTags",
    "addTags",
    "removeTags",
    "properties",
    "models",
    "inferenceConfig",
    "keys",
    "follow",
];

/// Converts the reference's JSON-Patch form into a merge object.
pub fn json_patch_to_merge(ops: &[Value]) -> Result<Map<String, Value>, Vec<String>> {
    let mut merged = Map::new();
    let mut problems = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        let Some(value) = op.get("value") else {
            problems.push(format!("JSON-Patch operation {i} has no `value`"));
            continue;
        };
        if kind != "replace" && kind != "add" {
            problems.push(format!(
                "JSON-Patch operation {i} is `{kind}`: only `replace` and `add` are supported"
            ));
            continue;
        }
        let mut parts: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(|p| p.replace("~1", "/").replace("~0", "~"))
            .collect();
        if parts.iter().any(String::is_empty) {
            problems.push(format!(
                "JSON-Patch operation {i} has an invalid path `{path}`"
            ));
            continue;
        }
        if parts[0] == "aadAuthEnabled" {
            parts[0] = "tokenAuthEnabled".into();
        }
        let mut node = &mut merged;
        let last = parts.len() - 1;
        for (depth, part) in parts.iter().enumerate() {
            if depth == last {
                node.insert(part.clone(), value.clone());
            } else {
                let entry = node
                    .entry(part.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                node = match entry.as_object_mut() {
                    Some(map) => map,
                    None => break,
                };
            }
        }
    }
    if problems.is_empty() {
        Ok(merged)
    } else {
        Err(problems)
    }
}

fn string_map(value: &Value, what: &str, problems: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match value.as_object() {
        Some(map) => {
            for (k, v) in map {
                match v.as_str() {
                    Some(s) if !k.is_empty() => {
                        out.insert(k.clone(), s.to_owned());
                    }
                    _ => problems.push(format!(
                        "`{what}.{k}` must be a string with a non-empty key"
                    )),
                }
            }
        }
        None => problems.push(format!("`{what}` must be an object of strings")),
    }
    out
}

/// Changes a service in place. Live settings (tags, description, properties,
/// auth, keys, timeouts, queue, replicas, autoscale bounds, data collection) are
/// applied without restarting replicas; models, entry script, source,
/// environment, resources and probes roll out new replicas with zero downtime.
/// The answer is 202 with `Operation-Location`; 409 while another operation runs.
#[utoipa::path(patch, path = "/v1/services/{name}", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    request_body(content = Object, description = "Changed fields (JSON merge), or a JSON-Patch array"),
    responses(
        (status = 202, body = OperationAccepted, description = "Update started; follow `Operation-Location`"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn update_service(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let (change, warnings) = prepare_update(&state, &name, body).await?;
    let operation = submit_update(&state, change, None).await?;
    Ok(accepted(&state, operation, warnings))
}

/// Validates an update body against the service's serving (else newest)
/// revision: the change to write (with its new revision) and the warnings.
pub(super) async fn prepare_update(
    state: &AppState,
    name: &str,
    body: Value,
) -> Result<(ServiceChange, Vec<String>), ApiError> {
    let name = name.to_owned();
    let patch = match body {
        Value::Object(map) => map,
        Value::Array(ops) => json_patch_to_merge(&ops).map_err(ApiError::Invalid)?,
        other => {
            return Err(ApiError::invalid(format!(
                "an update is a JSON object of changed fields (or a JSON-Patch array), not {other}"
            )));
        }
    };
    if patch.is_empty() {
        return Err(ApiError::invalid(
            "the update changes nothing: name at least one field",
        ));
    }
    let stored = state.services.service(&name).await?;
    let based_on = stored.serving_revision.unwrap_or(stored.latest_revision);
    let current = state.services.revision(&name, based_on).await?;
    let mut problems = Vec::new();
    let mut spec = current.clone();

    let deployment_fields: Map<String, Value> = patch
        .iter()
        .filter(|(k, _)| !SERVICE_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut warnings = Vec::new();
    let mut keys_from_patch = None;
    let mut ssl_key = None;
    if !deployment_fields.is_empty() {
        match deploy_config::apply_update(&current.deployment, &deployment_fields) {
            Ok(parsed) => {
                spec.deployment = parsed.settings;
                warnings = parsed.warnings;
                keys_from_patch = parsed.keys;
                ssl_key = parsed.ssl_key;
                if spec.deployment.ssl.is_some()
                    && spec.deployment.ssl != current.deployment.ssl
                    && state.config.tls.is_none()
                {
                    problems.push(deploy_config::SSL_NEEDS_TLS.into());
                }
                if let Some(target) = spec.deployment.compute_target_name.as_deref()
                    && spec.deployment.compute_target_name != current.deployment.compute_target_name
                    && super::computes::find(state, target).await?.is_none()
                {
                    problems.push(format!(
                        "`computeTargetName` is `{target}`, which is not a compute target of this workspace: `berth compute list` shows them"
                    ));
                }
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    if let Some(keys) = patch.get("keys") {
        match keys.as_object() {
            Some(map) => match deploy_config::apply_update(
                &current.deployment,
                &Map::from_iter([("keys".to_owned(), Value::Object(map.clone()))]),
            ) {
                Ok(parsed) => keys_from_patch = parsed.keys,
                Err(mut p) => problems.append(&mut p),
            },
            None => {
                problems.push("`keys` must be an object with `primaryKey`/`secondaryKey`".into())
            }
        }
    }
    match patch.get("follow") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) if patch.contains_key("models") => problems.push(
            "`follow: true` and `models` are both given: `follow` re-resolves the references the service follows, `models` replaces them; give one".into(),
        ),
        Some(Value::Bool(true)) => match state.follow.refollow(&name, &current).await {
            Ok(next) => spec.models = next.models,
            Err(e) => problems.push(e),
        },
        Some(other) => problems.push(format!(
            "`follow` is {other}: it must be `true` (apply what the followed aliases point at now)"
        )),
    }
    if let Some(models) = patch.get("models") {
        match serde_json::from_value::<Vec<String>>(models.clone()) {
            Ok(list) => {
                let resolved = resolve_models(state, &list, &mut problems).await;
                spec.models = resolved.models;
                spec.model_references = resolved.references;
                // A no-code service given new models alone gets the scorer of their framework.
                if !patch.contains_key("inferenceConfig")
                    && crate::nocode::for_environment(&current.inference.environment).is_some()
                    && problems.is_empty()
                {
                    let ic = no_code_inference(state, &list, &spec.models, &mut problems).await?;
                    if let Some(environment) = ic.environment {
                        spec.inference.entry_script = ic.entry_script;
                        spec.inference.source_snapshot = ic.source_snapshot;
                        spec.inference.source_directory_name = None;
                        spec.inference.environment = environment;
                    }
                }
            }
            Err(_) => problems.push("`models` must be a list of `name:version` strings".into()),
        }
    }
    if let Some(ic) = patch.get("inferenceConfig") {
        match ic.as_object() {
            None => problems.push("`inferenceConfig` must be an object".into()),
            Some(ic) => {
                const IC_KEYS: &[&str] = &[
                    "entryScript",
                    "sourceSnapshot",
                    "sourceDirectoryName",
                    "environment",
                ];
                for key in ic.keys().filter(|k| !IC_KEYS.contains(&k.as_str())) {
                    problems.push(format!(
                        "unknown key `inferenceConfig.{key}`; known keys: `{}`",
                        IC_KEYS.join("`, `")
                    ));
                }
                let mut text = |key: &str| match ic.get(key) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => {
                        problems.push(format!(
                            "`inferenceConfig.{key}` is {other}: it must be a string"
                        ));
                        None
                    }
                };
                if let Some(entry) = text("entryScript") {
                    spec.inference.entry_script = entry;
                }
                if let Some(snapshot) = text("sourceSnapshot") {
                    spec.inference.source_snapshot = snapshot;
                }
                if ic.contains_key("sourceDirectoryName") {
                    spec.inference.source_directory_name = text("sourceDirectoryName");
                }
                if ic.contains_key("environment") {
                    let reference = text("environment");
                    match resolve_environment(state, reference.as_deref()).await {
                        Ok(env) => spec.inference.environment = env,
                        Err(e) => problems.push(e),
                    }
                }
            }
        }
    }
    // The same check as create, on the merged spec.
    if let Some(path) = check_inference(
        state,
        &spec.inference.entry_script,
        &spec.inference.source_snapshot,
        spec.inference.source_directory_name.as_deref(),
        &mut problems,
    )
    .await?
    {
        spec.inference.entry_script = path;
    }
    let description = match patch.get("description") {
        None => None,
        Some(Value::String(d)) if d.is_empty() => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(other) => {
            problems.push(format!("`description` is {other}: it must be a string"));
            None
        }
    };
    let mut tags = None;
    if let Some(value) = patch.get("tags").or_else(|| patch.get("kvTags")) {
        tags = Some(string_map(value, "tags", &mut problems));
    }
    if patch.contains_key("addTags") || patch.contains_key("removeTags") {
        let mut all = tags.clone().unwrap_or_else(|| stored.tags.clone());
        if let Some(add) = patch.get("addTags") {
            all.extend(string_map(add, "addTags", &mut problems));
        }
        if let Some(remove) = patch.get("removeTags") {
            match serde_json::from_value::<Vec<String>>(remove.clone()) {
                Ok(keys) => keys.iter().for_each(|k| {
                    all.remove(k);
                }),
                Err(_) => problems.push("`removeTags` must be a list of tag keys".into()),
            }
        }
        tags = Some(all);
    }
    let mut properties = None;
    if let Some(value) = patch.get("properties") {
        let added = string_map(value, "properties", &mut problems);
        let mut all = stored.properties.clone();
        let clashes: Vec<&String> = added
            .iter()
            .filter(|(k, v)| all.get(*k).is_some_and(|old| old != *v))
            .map(|(k, _)| k)
            .collect();
        if !clashes.is_empty() {
            problems.push(format!(
                "properties are add-only: `{}` already set with another value",
                clashes
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join("`, `")
            ));
        }
        all.extend(added);
        properties = Some(all);
    }
    if let Some(tags) = &tags {
        problems.extend(berth_api::names::check_key_values("tags", tags));
    }
    if let Some(properties) = &properties {
        problems.extend(berth_api::names::check_key_values("properties", properties));
    }
    if crate::domain::change::guard_followers(
        &mut spec,
        !current.model_references.is_empty(),
        patch.contains_key("rollout"),
    ) {
        warnings.push(crate::domain::change::FOLLOWER_CANARY.to_owned());
    }
    if let Some(port) = spec.deployment.port
        && spec.deployment.port != current.deployment.port
        && let Err(e) = state.runtime.ports().check(&name, port)
    {
        problems.push(e.to_string());
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    check_schedulable(state, &name, &current, &spec)?;
    if let Some(key) = &ssl_key {
        crate::tls::store_service_key(&state.config.data_dir, key)
            .map_err(|e| ApiError::internal(&e))?;
    }
    let keys = keys_from_patch.map(|k| ServiceKeys {
        primary_key: k.primary.unwrap_or_else(|| stored.keys.primary_key.clone()),
        secondary_key: k
            .secondary
            .unwrap_or_else(|| stored.keys.secondary_key.clone()),
    });
    let change = ServiceChange {
        name: name.clone(),
        kind: OperationType::Update,
        operation_id: uuid::Uuid::new_v4().to_string(),
        now: crate::now_rfc3339(),
        based_on: Some(based_on),
        new_revision: Some(spec),
        target: None,
        description,
        tags,
        properties,
        keys,
    };
    Ok((change, warnings))
}

/// Whether the GPUs `spec` needs are free (a live change keeps its own).
fn check_schedulable(
    state: &AppState,
    name: &str,
    current: &ServiceSpec,
    spec: &ServiceSpec,
) -> Result<(), ApiError> {
    let live = !crate::domain::change::needs_new_replicas(current, spec);
    let res = &spec.deployment.container_resource_requirements;
    state
        .runtime
        .resource_manager()
        .check_gpus(name, res.gpu, spec.deployment.desired_replicas(), live)
        .map_err(ApiError::unschedulable)
}

/// Writes an update's revision and operation in one transaction (409 while
/// another operation runs); the path of every update: `PATCH`, `--follow` and
/// the automatic rollouts of followers, whose `cause` starts the operation's
/// log and is carried by its events. The caller starts the operation.
pub(super) async fn submit_update(
    state: &AppState,
    change: ServiceChange,
    cause: Option<&str>,
) -> Result<Operation, ApiError> {
    let operation = state.services.change_service(change).await?;
    if let Some(cause) = cause {
        state.events.note_cause(&operation.id, cause);
        if let Err(e) = state
            .services
            .add_event(&operation.id, 0, &format!("Started by Berth: {cause}"))
            .await
        {
            tracing::warn!(operation = %operation.id, error = %e, "could not record the cause of an automatic rollout");
        }
    }
    Ok(operation)
}

/// Starts the automatic rollouts of followers through [`submit_update`].
pub struct FollowSubmitter(pub AppState);

#[async_trait::async_trait]
impl Submitter for FollowSubmitter {
    async fn submit(
        &self,
        service: &str,
        based_on: u32,
        spec: ServiceSpec,
        cause: &str,
    ) -> Result<Operation, SubmitError> {
        let state = &self.0;
        let refused = |e: ApiError| match e {
            ApiError::Conflict { .. } => SubmitError::Busy,
            other => SubmitError::Refused(other.to_string()),
        };
        let current = state
            .services
            .revision(service, based_on)
            .await
            .map_err(|e| refused(e.into()))?;
        let mut problems = Vec::new();
        resolve_models(state, &spec.models, &mut problems).await;
        if !problems.is_empty() {
            return Err(SubmitError::Refused(problems.join("; ")));
        }
        let change = ServiceChange {
            name: service.to_owned(),
            kind: OperationType::Update,
            operation_id: uuid::Uuid::new_v4().to_string(),
            now: crate::now_rfc3339(),
            based_on: Some(based_on),
            new_revision: None,
            target: None,
            description: None,
            tags: None,
            properties: None,
            keys: None,
        };
        check_schedulable(state, service, &current, &spec).map_err(refused)?;
        let change = ServiceChange {
            new_revision: Some(spec),
            ..change
        };
        let operation = submit_update(state, change, Some(cause))
            .await
            .map_err(refused)?;
        start(state, &operation);
        Ok(operation)
    }
}

/// Logs an accepted change and runs its operation.
fn start(state: &AppState, operation: &Operation) {
    tracing::info!(service = %operation.service, operation = %operation.id, kind = operation.operation_type.as_str(), revision = ?operation.target_revision, "service change accepted");
    state.runtime.run_operation(operation.clone());
}

pub(super) fn accepted(
    state: &AppState,
    operation: berth_api::Operation,
    warnings: Vec<String>,
) -> Response {
    start(state, &operation);
    (
        StatusCode::ACCEPTED,
        [(
            "operation-location",
            format!("/v1/operations/{}", operation.id),
        )],
        Json(OperationAccepted {
            operation,
            warnings,
        }),
    )
        .into_response()
}

/// Serves an earlier revision again (new replicas, zero downtime).
#[utoipa::path(post, path = "/v1/services/{name}/rollback", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    request_body = RollbackRequest,
    responses((status = 202, body = OperationAccepted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rollback_service(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<RollbackRequest>,
) -> Result<Response, ApiError> {
    let stored = state.services.service(&name).await?;
    if stored.serving_revision == Some(request.revision) {
        return Err(ApiError::invalid(format!(
            "revision {} is already serving; `berth service redeploy -n {name}` starts fresh replicas of it",
            request.revision
        )));
    }
    state.services.revision(&name, request.revision).await?;
    let change = ServiceChange {
        name: name.clone(),
        kind: OperationType::Rollback,
        operation_id: uuid::Uuid::new_v4().to_string(),
        now: crate::now_rfc3339(),
        based_on: Some(stored.serving_revision.unwrap_or(stored.latest_revision)),
        new_revision: None,
        target: Some(request.revision),
        description: None,
        tags: None,
        properties: None,
        keys: None,
    };
    let operation = state.services.change_service(change).await?;
    Ok(accepted(&state, operation, Vec::new()))
}

/// Starts fresh replicas of the serving revision (of the newest one when none serves).
#[utoipa::path(post, path = "/v1/services/{name}/redeploy", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses((status = 202, body = OperationAccepted), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn redeploy_service(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let stored = state.services.service(&name).await?;
    let target = stored.serving_revision.unwrap_or(stored.latest_revision);
    let change = ServiceChange {
        name: name.clone(),
        kind: OperationType::Redeploy,
        operation_id: uuid::Uuid::new_v4().to_string(),
        now: crate::now_rfc3339(),
        based_on: Some(target),
        new_revision: None,
        target: Some(target),
        description: None,
        tags: None,
        properties: None,
        keys: None,
    };
    let operation = state.services.change_service(change).await?;
    Ok(accepted(&state, operation, Vec::new()))
}

/// Every revision of a service, oldest first.
#[utoipa::path(get, path = "/v1/services/{name}/revisions", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = RevisionList), (status = 404, body = ErrorBody)))]
pub async fn list_revisions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<RevisionList>, ApiError> {
    let serving = state.services.service(&name).await?.serving_revision;
    let value = state
        .services
        .revisions(&name)
        .await?
        .into_iter()
        .map(|(revision, created_time, spec)| Revision {
            revision,
            created_time,
            serving: serving == Some(revision),
            spec,
        })
        .collect();
    Ok(Json(RevisionList { value }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_becomes_a_merge_object() {
        let merged = json_patch_to_merge(&[
            json!({"op": "replace", "path": "/autoScaler/autoscaleEnabled", "value": true}),
            json!({"op": "replace", "path": "/autoScaler/maxReplicas", "value": 4}),
            json!({"op": "add", "path": "/properties/team", "value": "x"}),
            json!({"op": "replace", "path": "/aadAuthEnabled", "value": false}),
        ])
        .unwrap();
        assert_eq!(
            Value::Object(merged),
            json!({"autoScaler": {"autoscaleEnabled": true, "maxReplicas": 4},
                   "properties": {"team": "x"}, "tokenAuthEnabled": false})
        );
        let err =
            json_patch_to_merge(&[json!({"op": "remove", "path": "/x", "value": 1})]).unwrap_err();
        assert!(err[0].contains("only `replace` and `add`"));
    }
}
