//! `/v1/services`: create (first revision), show, list, logs, keys, delete.
//! Routes validate and write intent; the runtime does the work.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::names::{ModelRef, check_service_name};
use berth_api::service::DeploymentStatus;
use berth_api::{
    CreateServiceRequest, ErrorBody, InferenceConfigRequest, InferenceSpec, OperationAccepted,
    RegisterEnvironmentRequest, Service, ServiceKeys, ServiceList, ServiceLogs, ServiceSpec,
    ServiceState,
};

use super::query::{parse_bool, parse_query};
use super::{ApiJson, AppState};
use crate::archive::safe_relative_path;
use crate::deploy_config;
use crate::envs::spec;
use crate::error::ApiError;
use crate::store::{NewEnvironment, NewService, StoreError, StoredService};

/// Name of the workspace default environment: the server's Python, no packages.
pub const DEFAULT_ENVIRONMENT: &str = "workspace-default";

/// Whether `stem` is a valid, non-keyword Python identifier (the reference's rule).
fn python_identifier(stem: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class",
        "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global",
        "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return",
        "try", "while", "with", "yield",
    ];
    let mut chars = stem.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
        && !KEYWORDS.contains(&stem)
}

pub(super) async fn resolve_environment(
    state: &AppState,
    reference: Option<&str>,
) -> Result<String, String> {
    match reference {
        Some(text) => {
            let r = ModelRef::parse(text).map_err(|e| e.replace("model", "environment"))?;
            if r.alias
                .as_deref()
                .is_some_and(|a| a != berth_api::names::LATEST_ALIAS)
            {
                return Err(format!(
                    "environment reference `{text}` names an alias: environments have none; write `name`, `name:version` or `name@latest`"
                ));
            }
            crate::envs::curated::resolve(state.store.as_ref(), &r.name, r.version)
                .await
                .map(|env| format!("{}:{}", env.name, env.version))
                .map_err(|e| match e {
                    crate::envs::curated::Resolve::Store(StoreError::EnvironmentNotFound(id)) => format!(
                        "environment `{id}` not found; register it with `berth environment register`"
                    ),
                    other => other.to_string(),
                })
        }
        None => {
            let request = RegisterEnvironmentRequest {
                name: DEFAULT_ENVIRONMENT.into(),
                ..Default::default()
            };
            let normalised = spec::normalise(&request).map_err(|p| p.join("; "))?;
            let (_, env) = state
                .store
                .register_environment(NewEnvironment {
                    name: DEFAULT_ENVIRONMENT.into(),
                    spec_digest: spec::spec_digest(&normalised.spec),
                    build_hash: spec::build_hash(&normalised.spec),
                    spec: normalised.spec,
                    warnings: Vec::new(),
                    description: Some("The server's Python with no packages".into()),
                    created_time: crate::now_rfc3339(),
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("{}:{}", env.name, env.version))
        }
    }
}

/// Checks an entry script path; returns its normalised form.
fn validate_entry_script(entry: &str, problems: &mut Vec<String>) -> Option<String> {
    let Some(path) = safe_relative_path(std::path::Path::new(entry))
        .ok()
        .flatten()
    else {
        problems.push(format!(
            "`entryScript` `{entry}` must be a relative path inside the source directory"
        ));
        return None;
    };
    let stem = path
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_end_matches(".py");
    if !path.ends_with(".py") {
        problems.push(format!(
            "`entryScript` `{entry}` is not a Python file: only `.py` entry scripts are supported"
        ));
    } else if !python_identifier(stem) {
        problems.push(format!(
            "`entryScript` `{entry}`: `{stem}` is not a valid Python module name (use letters, digits and `_`, e.g. `score.py`)"
        ));
    }
    Some(path)
}

/// Checks that the snapshot exists and holds the entry script.
async fn snapshot_problems(
    state: &AppState,
    snapshot: &str,
    entry: &str,
    problems: &mut Vec<String>,
) -> Result<(), ApiError> {
    match state.store.snapshot(snapshot).await {
        Ok((_, files)) => {
            if !entry.is_empty() && !files.iter().any(|f| f.file.path == entry) {
                problems.push(format!(
                    "`entryScript` `{entry}` is not in the source snapshot; it holds {} file(s)",
                    files.len()
                ));
            }
            Ok(())
        }
        Err(StoreError::SnapshotNotFound(id)) => {
            problems.push(format!(
                "source snapshot `{id}` not found: upload the source directory with `POST /v1/snapshots` first"
            ));
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The one check of an inference config, for create and update alike: the
/// entry script, the source folder name and the snapshot holding the script.
/// Returns the normalised entry script path.
pub(super) async fn check_inference(
    state: &AppState,
    entry_script: &str,
    source_snapshot: &str,
    source_directory_name: Option<&str>,
    problems: &mut Vec<String>,
) -> Result<Option<String>, ApiError> {
    let entry_path = validate_entry_script(entry_script, problems);
    if let Some(name) = source_directory_name
        && let Err(e) = berth_api::names::check_source_directory_name(name)
    {
        problems.push(e);
    }
    snapshot_problems(
        state,
        source_snapshot,
        entry_path.as_deref().unwrap_or(""),
        problems,
    )
    .await?;
    Ok(entry_path)
}

/// Resolves model references (`name`, `name:version`, `name:latest`,
/// `name@alias`, `name@latest`) to `name:version`; see [`crate::follow::resolve`].
pub(super) async fn resolve_models(
    state: &AppState,
    models: &[String],
    problems: &mut Vec<String>,
) -> crate::follow::resolve::Resolved {
    crate::follow::resolve::resolve_all(state.store.as_ref(), models, problems).await
}

/// The inference config of a no-code deployment: the built-in scorer of the
/// single model's framework (stored as a snapshot) and its built-in environment.
/// Problems (not one model, an unsupported framework) are added to `problems`
/// and an empty config returned.
pub(super) async fn no_code_inference(
    state: &AppState,
    requested: &[String],
    models: &[String],
    problems: &mut Vec<String>,
) -> Result<InferenceConfigRequest, ApiError> {
    let empty = InferenceConfigRequest {
        entry_script: "score.py".into(),
        source_snapshot: String::new(),
        source_directory_name: None,
        environment: None,
    };
    if requested.len() != 1 {
        problems.push(format!(
            "`inferenceConfig` is missing: without it (a no-code deployment) give exactly one model registered with framework `Onnx`, `ScikitLearn` or `TensorFlow`; {} model(s) were given",
            requested.len()
        ));
        return Ok(empty);
    }
    let Some(id) = models.first() else {
        return Ok(empty);
    };
    let Some((name, version)) = id
        .rsplit_once(':')
        .and_then(|(n, v)| Some((n, v.parse().ok()?)))
    else {
        return Ok(empty);
    };
    let model = state.store.model(name, Some(version)).await?;
    let scorer = match crate::nocode::for_framework(id, model.framework.as_deref()) {
        Ok(scorer) => scorer,
        Err(e) => {
            problems.push(e);
            return Ok(empty);
        }
    };
    let archive = scorer.archive().map_err(|e| ApiError::internal(&e))?;
    let mut published = Vec::new();
    let (_, snapshot) =
        super::snapshots::store_snapshot(state, axum::body::Body::from(archive), &mut published)
            .await?;
    let request = RegisterEnvironmentRequest {
        name: scorer.environment.into(),
        pip_requirements: Some(scorer.requirements_text()),
        ..Default::default()
    };
    let normalised = spec::normalise(&request).map_err(ApiError::Invalid)?;
    let (_, env) = state
        .store
        .register_environment(NewEnvironment {
            name: scorer.environment.into(),
            spec_digest: spec::spec_digest(&normalised.spec),
            build_hash: spec::build_hash(&normalised.spec),
            spec: normalised.spec,
            warnings: Vec::new(),
            description: Some(format!(
                "Built-in environment of no-code {} deployments",
                scorer.framework
            )),
            created_time: crate::now_rfc3339(),
        })
        .await?;
    tracing::info!(model = %id, framework = scorer.framework, environment = %format!("{}:{}", env.name, env.version), "no-code deployment");
    Ok(InferenceConfigRequest {
        entry_script: scorer.entry_script.into(),
        source_snapshot: snapshot.id,
        source_directory_name: None,
        environment: Some(format!("{}:{}", env.name, env.version)),
    })
}

/// Creates a service: writes revision 1 and starts its deployment (202 with
/// `Operation-Location`). An existing name is a 409 unless `overwrite`, which
/// rolls the existing service to a new revision instead.
#[utoipa::path(post, path = "/v1/services", tag = "services",
    request_body = CreateServiceRequest,
    responses(
        (status = 202, body = OperationAccepted, description = "Deployment started; follow `Operation-Location`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_service(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateServiceRequest>,
) -> Result<Response, ApiError> {
    let mut problems = Vec::new();
    if let Err(e) = check_service_name(&request.name) {
        problems.push(e);
    }
    let parsed = match deploy_config::parse(request.deployment_config.as_ref()) {
        Ok(parsed) => Some(parsed),
        Err(mut p) => {
            problems.append(&mut p);
            None
        }
    };
    if let Some(parsed) = &parsed
        && parsed.settings.ssl.is_some()
        && state.config.tls.is_none()
    {
        problems.push(deploy_config::SSL_NEEDS_TLS.into());
    }
    problems.extend(berth_api::names::check_key_values("tags", &request.tags));
    problems.extend(berth_api::names::check_key_values(
        "properties",
        &request.properties,
    ));
    if let Some(target) = parsed
        .as_ref()
        .and_then(|p| p.settings.compute_target_name.as_deref())
        && super::computes::find(&state, target).await?.is_none()
    {
        problems.push(format!(
            "`computeTargetName` is `{target}`, which is not a compute target of this workspace: `berth compute list` shows them; create it first (`ComputeTarget.create`, or `PUT /v1/computes/{target}`)"
        ));
    }
    let resolved = resolve_models(&state, &request.models, &mut problems).await;
    let no_code;
    let ic = match &request.inference_config {
        Some(ic) => ic,
        None => {
            no_code =
                no_code_inference(&state, &request.models, &resolved.models, &mut problems).await?;
            &no_code
        }
    };
    let entry_path = check_inference(
        &state,
        &ic.entry_script,
        &ic.source_snapshot,
        ic.source_directory_name.as_deref(),
        &mut problems,
    )
    .await?;
    let environment = match resolve_environment(&state, ic.environment.as_deref()).await {
        Ok(env) => Some(env),
        Err(e) => {
            problems.push(e);
            None
        }
    };
    let (Some(parsed), Some(environment), true) = (parsed, environment, problems.is_empty()) else {
        return Err(ApiError::Invalid(problems));
    };
    let res = &parsed.settings.container_resource_requirements;
    state
        .runtime
        .resource_manager()
        .check_gpus(
            &request.name,
            res.gpu,
            parsed.settings.desired_replicas(),
            false,
        )
        .map_err(ApiError::unschedulable)?;
    if let Some(key) = &parsed.ssl_key {
        crate::tls::store_service_key(&state.config.data_dir, key)
            .map_err(|e| ApiError::internal(&e))?;
    }
    // A local service's own port is taken now, so that a taken port fails the deploy.
    let newly_bound = match parsed.settings.port {
        Some(port) => state
            .runtime
            .ports()
            .bind(&request.name, port)
            .await
            .map_err(|e| ApiError::Invalid(vec![e.to_string()]))?,
        None => false,
    };
    let keys_given = parsed.keys.is_some();
    let mut spec = ServiceSpec {
        models: resolved.models,
        model_references: resolved.references,
        inference: InferenceSpec {
            entry_script: entry_path.unwrap_or_default(),
            source_snapshot: ic.source_snapshot.clone(),
            source_directory_name: ic.source_directory_name.clone(),
            environment,
        },
        deployment: parsed.settings,
    };
    let rollout_given = request
        .deployment_config
        .as_ref()
        .is_some_and(|dc| dc.get("rollout").is_some());
    let mut warnings = parsed.warnings;
    if crate::domain::change::guard_followers(&mut spec, false, rollout_given) {
        warnings.push(crate::domain::change::FOLLOWER_CANARY.to_owned());
    }
    let new = NewService {
        name: request.name.clone(),
        description: request.description.filter(|d| !d.is_empty()),
        tags: request.tags,
        properties: request.properties,
        spec,
        keys: deploy_config::complete_keys(parsed.keys),
        keys_given,
        overwrite: request.overwrite,
        operation_id: uuid::Uuid::new_v4().to_string(),
        now: crate::now_rfc3339(),
    };
    let operation = match state.services.create_service(new).await {
        Ok(operation) => operation,
        Err(e) => {
            if newly_bound {
                state.runtime.ports().release(&request.name);
            }
            return Err(e.into());
        }
    };
    tracing::info!(service = %operation.service, operation = %operation.id, kind = operation.operation_type.as_str(), "service change accepted");
    state.runtime.run_operation(operation.clone());
    let location = format!("/v1/operations/{}", operation.id);
    let body = OperationAccepted {
        operation,
        warnings,
    };
    Ok((
        StatusCode::ACCEPTED,
        [
            ("operation-location", location),
            (
                header::LOCATION.as_str(),
                format!("/v1/services/{}", request.name),
            ),
        ],
        Json(body),
    )
        .into_response())
}

async fn to_wire(state: &AppState, stored: StoredService) -> Result<Service, ApiError> {
    let shown = stored.serving_revision.unwrap_or(stored.latest_revision);
    let spec = state.services.revision(&stored.name, shown).await?;
    let replicas = state.runtime.replica_status(&stored.name);
    let ready = replicas.ready;
    let desired = if replicas.desired == 0 {
        spec.deployment.desired_replicas()
    } else {
        replicas.desired
    };
    let observed = crate::domain::state::observed(stored.state, ready, desired);
    let base = match spec.deployment.port {
        Some(port) => format!("http://localhost:{port}"),
        None => format!("{}/api/v1/service/{}", state.endpoint, stored.name),
    };
    let resources = state.runtime.resources(
        &stored.name,
        &spec.deployment.container_resource_requirements,
    );
    let traffic = state
        .runtime
        .traffic_shares(&stored.name, stored.traffic.as_deref());
    let rollout = state.runtime.rollout_status(&stored.name);
    let mirror = state.runtime.mirror_status(&stored.name);
    let follows = state.follow.status(&stored.name, &spec).await;
    Ok(Service {
        follows,
        scoring_uri: Some(format!("{base}/score")),
        swagger_uri: Some(format!("{base}/swagger.json")),
        name: stored.name,
        description: stored.description,
        tags: stored.tags,
        properties: stored.properties,
        state: observed,
        created_time: stored.created_time,
        updated_time: stored.updated_time,
        workspace_name: state.config.workspace_name.clone(),
        traffic,
        rollout,
        mirror,
        serving_revision: stored.serving_revision,
        latest_revision: stored.latest_revision,
        models: spec.models,
        environment: spec.inference.environment,
        entry_script: spec.inference.entry_script,
        deployment_status: DeploymentStatus {
            desired_replicas: desired,
            available_replicas: ready,
            current_replicas: replicas.current,
            restarts: replicas.restarts,
            reason: (observed == ServiceState::Unhealthy).then(|| {
                replicas
                    .reason
                    .unwrap_or_else(|| format!("{ready} of {desired} replica(s) ready"))
            }),
            utilization: replicas.utilization,
            last_scaling: replicas.last_scaling,
        },
        error: if observed == ServiceState::Failed {
            stored.error
        } else {
            None
        },
        operation_id: stored.last_operation,
        resources: Some(resources),
        settings: spec.deployment,
    })
}

/// A service with its state, serving revision and settings.
#[utoipa::path(get, path = "/v1/services/{name}", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = Service), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn show_service(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Service>, ApiError> {
    let stored = state.services.service(&name).await?;
    Ok(Json(to_wire(&state, stored).await?))
}

/// All services, by name.
#[utoipa::path(get, path = "/v1/services", tag = "services",
    responses((status = 200, body = ServiceList), (status = 401, body = ErrorBody)))]
pub async fn list_services(State(state): State<AppState>) -> Result<Json<ServiceList>, ApiError> {
    let mut value = Vec::new();
    for stored in state.services.list_services().await? {
        value.push(to_wire(&state, stored).await?);
    }
    Ok(Json(ServiceList { value }))
}

/// Deletes a service: drains and stops its replicas, releases its models (202).
#[utoipa::path(delete, path = "/v1/services/{name}", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses(
        (status = 202, body = OperationAccepted, description = "Deleting; follow `Operation-Location`"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn delete_service(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let operation = state
        .services
        .start_delete(&name, &id, &crate::now_rfc3339())
        .await?;
    state.runtime.run_operation(operation.clone());
    Ok((
        StatusCode::ACCEPTED,
        [("operation-location", format!("/v1/operations/{id}"))],
        Json(OperationAccepted {
            operation,
            warnings: Vec::new(),
        }),
    )
        .into_response())
}

/// The scoring keys (both work).
#[utoipa::path(get, path = "/v1/services/{name}/keys", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = ServiceKeys), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn service_keys(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceKeys>, ApiError> {
    Ok(Json(state.services.service(&name).await?.keys))
}

/// The replicas' output: `tail` lines (default 5000); `init=true` gives the
/// output of the last failed start; `follow=true` streams new lines as text;
/// `requests=true` gives the request log instead (one JSON line per scoring
/// request, written while `appInsightsEnabled` is on).
#[utoipa::path(get, path = "/v1/services/{name}/logs", tag = "services",
    params(
        ("name" = String, Path, description = "Service name"),
        ("tail" = Option<usize>, Query, description = "Lines, default 5000"),
        ("init" = Option<bool>, Query, description = "Output of the last failed start"),
        ("follow" = Option<bool>, Query, description = "Stream new lines (text/plain; server-sent events with `Accept: text/event-stream`)"),
        ("requests" = Option<bool>, Query, description = "The request log (JSON lines) instead")),
    responses((status = 200, body = ServiceLogs), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn service_logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let mut tail = 5000usize;
    let mut init = false;
    let mut follow = false;
    let mut requests = false;
    for (key, value) in parse_query(raw.as_deref(), &["tail", "init", "follow", "requests"])? {
        match key.as_str() {
            "tail" => {
                tail = value.parse().map_err(|_| {
                    ApiError::invalid(format!("`tail` is `{value}`: it must be a whole number"))
                })?
            }
            "init" => init = parse_bool(&key, &value)?,
            "requests" => requests = parse_bool(&key, &value)?,
            _ => follow = parse_bool(&key, &value)?,
        }
    }
    let stored = state.services.service(&name).await?;
    if requests && (init || follow) {
        return Err(ApiError::invalid(
            "`requests=true` cannot be combined with `init` or `follow`: ask for the request log alone".to_owned(),
        ));
    }
    let lines = if requests {
        let path = state.runtime.observability().request_log_path(&stored.name);
        tokio::task::spawn_blocking(move || {
            crate::observability::read_tail(&path, crate::observability::REQUEST_LOG_KEEP, tail)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("reading the request log stopped: {e}")))?
        .map_err(|e| ApiError::Internal(format!("cannot read the request log: {e}")))?
    } else if init {
        stored.error.map(|e| e.output).unwrap_or_default()
    } else {
        state.runtime.logs(&name, tail).unwrap_or_default()
    };
    let start = lines.len().saturating_sub(tail);
    let mut content = lines[start..].join("\n");
    if !content.is_empty() {
        content.push('\n');
    }
    if !follow {
        return Ok(Json(ServiceLogs { content }).into_response());
    }
    let sse = super::sse::wanted(&headers);
    let frame = move |text: String| if sse { super::sse::lines(&text) } else { text };
    let receivers = state.runtime.follow(&name);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(256);
    let _ = tx.send(Ok(frame(content))).await;
    for (revision, index, mut receiver) in receivers {
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    received = receiver.recv() => received,
                    // The client hung up.
                    () = tx.closed() => return,
                };
                match received {
                    Ok(line) => {
                        let text = format!(
                            "{} r{revision}/{index} {}: {}\n",
                            humantime::format_rfc3339_millis(line.at),
                            line.stream.as_str(),
                            line.text
                        );
                        if tx.send(Ok(frame(text))).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Ok(frame(format!("... {n} lines skipped ...\n"))))
                            .await;
                    }
                    Err(_) => return,
                }
            }
        });
    }
    drop(tx);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let content_type = if sse {
        super::sse::CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
