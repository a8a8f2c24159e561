//! Running operations: roll out a revision, delete a service, restore after a restart.

use std::sync::Arc;
use std::time::Instant;

use berth_api::{
    Operation, OperationError, OperationErrorCode, OperationType, ServiceSpec, ServiceState,
};

use super::drain;
use super::rollout::Ended;
use super::{DRAIN_LIMIT, Runtime, STOP_GRACE};
use crate::compute::local::materialise::{
    RevisionContent, RevisionDir, materialise, revision_root,
};
use crate::compute::local::replicas::LaunchPlan;
use crate::events::EventDraft;
use crate::store::OperationOutcome;

/// Lines of worker or build output kept in an operation error.
const OUTPUT_LINES: usize = 60;

/// Writes an operation's log (or, during restore, only the server log).
pub(super) struct OpLog<'a> {
    runtime: &'a Runtime,
    /// The operation's id (`None`: server log only).
    pub id: Option<String>,
    /// The operation.
    pub operation: Option<&'a Operation>,
    started: Instant,
}

impl<'a> OpLog<'a> {
    /// A log that writes to the server log only.
    pub fn server_only(runtime: &'a Runtime) -> Self {
        Self {
            runtime,
            id: None,
            operation: None,
            started: Instant::now(),
        }
    }

    /// The log of `op`.
    fn of(runtime: &'a Runtime, op: &'a Operation) -> Self {
        Self {
            runtime,
            id: Some(op.id.clone()),
            operation: Some(op),
            started: Instant::now(),
        }
    }
}

/// A revision whose replicas all passed `init()`, not yet given traffic.
pub(super) struct Candidate {
    /// Revision.
    pub revision: u32,
    /// Its spec.
    pub spec: ServiceSpec,
    /// How its replicas start (for restarts and scaling).
    pub plan: Arc<LaunchPlan>,
    /// Its replicas.
    pub replicas: Vec<Arc<crate::compute::Replica>>,
    /// Replicas wanted.
    pub count: u32,
}

impl OpLog<'_> {
    pub async fn event(&self, message: &str) {
        tracing::info!(operation = ?self.id, "{message}");
        if let Some(id) = &self.id {
            let elapsed = self.started.elapsed().as_millis() as u64;
            if let Err(e) = self
                .runtime
                .deps
                .services
                .add_event(id, elapsed, message)
                .await
            {
                tracing::warn!(error = %e, "could not record an operation event");
            }
        }
    }
}

fn failure(
    code: OperationErrorCode,
    step: impl Into<String>,
    message: impl Into<String>,
    output: Vec<String>,
) -> OperationError {
    let start = output.len().saturating_sub(OUTPUT_LINES);
    OperationError::new(code, step, message, output[start..].to_vec())
}

/// How long a replica may take to become ready: the time the liveness probe
/// would give it (initial delay plus `failureThreshold` periods).
use crate::compute::local::probes::readiness_limit;

fn split_id(id: &str) -> Option<(&str, u32)> {
    let (name, version) = id.rsplit_once(':')?;
    Some((name, version.parse().ok()?))
}

impl Runtime {
    /// The service's scoring keys, for the routes an operation publishes.
    pub(super) async fn service_keys(
        &self,
        service: &str,
    ) -> Result<berth_api::ServiceKeys, OperationError> {
        self.deps
            .services
            .service(service)
            .await
            .map(|stored| stored.keys)
            .map_err(|e| {
                failure(
                    OperationErrorCode::InternalError,
                    "read the service",
                    e.to_string(),
                    Vec::new(),
                )
            })
    }

    /// Runs `operation` in the background.
    pub fn run_operation(self: &Arc<Self>, operation: Operation) {
        let runtime = self.clone();
        tokio::spawn(async move { runtime.execute(operation).await });
    }

    async fn execute(self: Arc<Self>, op: Operation) {
        let lock = self.replica_set_lock(&op.service);
        let _held = lock.lock().await;
        let log = OpLog::of(&self, &op);
        let events = &self.deps.events;
        events.emit(EventDraft::operation_started(&op));
        let kind = serde_json::to_value(op.operation_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.note_state(&op.service, &format!("{kind} started"), Some(&op.id))
            .await;
        let outcome = match op.operation_type {
            OperationType::Delete => {
                self.delete(&log, &op.service).await;
                OperationOutcome::Deleted
            }
            OperationType::RegenerateKey => match self.refresh_keys(&op.service).await {
                Ok(()) => {
                    log.event("New key in effect").await;
                    OperationOutcome::Completed
                }
                Err(e) => OperationOutcome::Failed(failure(
                    OperationErrorCode::InternalError,
                    "apply the new key",
                    e,
                    Vec::new(),
                )),
            },
            OperationType::Traffic => {
                self.end_mirror(&op.service).await;
                match self.apply_traffic(&log, &op).await {
                    Ok(traffic) => OperationOutcome::Split {
                        serving_revision: traffic.first().map_or(0, |t| t.revision),
                        traffic,
                    },
                    Err(error) => {
                        log.event(&format!(
                            "Failed at step `{}`: {}",
                            error.step, error.message
                        ))
                        .await;
                        OperationOutcome::Failed(error)
                    }
                }
            }
            _ => {
                let Some(revision) = op.target_revision else {
                    return;
                };
                self.end_mirror(&op.service).await;
                if self.deps.table.get(&op.service).is_none() {
                    self.publish_empty(&op.service).await;
                }
                let result = match op.operation_type {
                    OperationType::Update => self.update(&log, &op.service, revision).await,
                    _ => self.roll_out(&log, &op.service, revision).await,
                };
                match result {
                    Ok(Ended::Promoted) => OperationOutcome::Succeeded {
                        serving_revision: revision,
                    },
                    Ok(Ended::RolledBack(error)) => OperationOutcome::RolledBack(error),
                    Err(error) => {
                        log.event(&format!(
                            "Failed at step `{}`: {}",
                            error.step, error.message
                        ))
                        .await;
                        OperationOutcome::Failed(error)
                    }
                }
            }
        };
        let succeeded = !matches!(
            outcome,
            OperationOutcome::Failed(_) | OperationOutcome::RolledBack(_)
        );
        let ended = match &outcome {
            OperationOutcome::Failed(error) => EventDraft::operation_failed(&op, error),
            OperationOutcome::RolledBack(error) => EventDraft::operation_rolled_back(&op, error),
            OperationOutcome::Succeeded { serving_revision }
            | OperationOutcome::Split {
                serving_revision, ..
            } => EventDraft::operation_succeeded(&op, Some(*serving_revision)),
            OperationOutcome::Deleted | OperationOutcome::Completed => {
                EventDraft::operation_succeeded(&op, None)
            }
        };
        let rolled_back = matches!(outcome, OperationOutcome::RolledBack(_));
        let deleted = matches!(outcome, OperationOutcome::Deleted);
        self.deps.observability.metrics().operation_finished(
            &format!("{:?}", op.operation_type),
            match outcome {
                OperationOutcome::Failed(_) => "Failed",
                OperationOutcome::RolledBack(_) => "RolledBack",
                OperationOutcome::Deleted => "Deleted",
                _ => "Succeeded",
            },
        );
        if let Err(e) = self
            .deps
            .services
            .finish_operation(&op.id, outcome, &crate::now_rfc3339())
            .await
        {
            tracing::error!(operation = %op.id, error = %e, "could not record the end of an operation");
        }
        if deleted {
            events.forget_service(&op.service);
            events.emit(EventDraft::service_deleted(&op.service).with_operation(&op.id));
        } else {
            let how = match (succeeded, rolled_back) {
                (true, _) => "succeeded",
                (false, true) => "rolled back",
                (false, false) => "failed",
            };
            self.note_state(&op.service, &format!("{kind} {how}"), Some(&op.id))
                .await;
        }
        events.emit(ended);
        if !deleted {
            self.collect_layouts(&op.service);
        }
        if succeeded {
            log.event("Succeeded").await;
        }
        if rolled_back {
            log.event("RolledBack").await;
        }
        self.deps
            .follow
            .on_operation_ended(
                &op.service,
                match (succeeded, rolled_back) {
                    (true, _) => berth_api::OperationState::Succeeded,
                    (false, true) => berth_api::OperationState::RolledBack,
                    (false, false) => berth_api::OperationState::Failed,
                },
            )
            .await;
    }

    /// Removes lay-outs of revisions no replica serves, beyond the newest
    /// `--keep-revision-layouts` (under the replica-set lock: nothing starts meanwhile).
    fn collect_layouts(&self, service: &str) {
        let mut in_use: Vec<u32> = Vec::new();
        if let Some(route) = self.deps.table.get(service) {
            in_use.extend(route.pools.iter().map(|p| p.revision));
            in_use.extend(route.replicas().map(|r| r.revision));
        }
        if let Some(revision) = self.with_service(service, |s| s.plan.revision) {
            in_use.push(revision);
        }
        crate::compute::local::layouts::collect(
            &self.deps.config.data_dir,
            service,
            &in_use,
            self.deps.config.keep_revision_layouts,
        );
    }

    /// Reads a service's stored state and emits `service.state_changed` when it
    /// differs from the last one seen.
    pub(super) async fn note_state(&self, service: &str, reason: &str, operation: Option<&str>) {
        match self.deps.services.service(service).await {
            Ok(stored) => self
                .deps
                .events
                .observe_state(service, stored.state, reason, operation),
            Err(e) => tracing::debug!(%service, error = %e, "no state to note"),
        }
    }

    /// Records the observed state of a serving service (Healthy/Unhealthy) and
    /// emits `service.state_changed` when it changed.
    pub(super) async fn set_state(&self, service: &str, state: ServiceState, reason: &str) {
        if let Err(e) = self.deps.services.set_service_state(service, state).await {
            tracing::warn!(%service, error = %e, "could not record the service state");
            return;
        }
        self.note_state(service, reason, None).await;
    }

    /// A route with no replicas, so the gateway answers 503 rather than 404.
    async fn publish_empty(&self, service: &str) {
        let Ok(stored) = self.deps.services.service(service).await else {
            return;
        };
        let spec = match self
            .deps
            .services
            .revision(service, stored.latest_revision)
            .await
        {
            Ok(spec) => spec,
            Err(_) => return,
        };
        self.publish(service, None, Vec::new(), &spec, &stored.keys);
    }

    /// Brings up `revision` and moves traffic to it: an update by the
    /// revision's `rollout` settings; everything else (a first revision, a
    /// rollback, a redeploy, a restore) all at once, as soon as the new
    /// replicas are ready.
    pub(super) async fn roll_out(
        &self,
        log: &OpLog<'_>,
        service: &str,
        revision: u32,
    ) -> Result<Ended, OperationError> {
        let candidate = self.start_candidate(log, service, revision).await?;
        let rollout = &candidate.spec.deployment.rollout;
        let progressive = log
            .operation
            .is_some_and(|op| op.operation_type == OperationType::Update)
            && !(rollout.is_rolling() && rollout.shadow.is_none());
        match self
            .deps
            .table
            .get(service)
            .filter(|r| r.replicas().next().is_some())
        {
            Some(current) if progressive => {
                self.progressive(log, service, candidate, current).await
            }
            current => {
                drop(current);
                self.switch_all(log, service, candidate).await?;
                Ok(Ended::Promoted)
            }
        }
    }

    /// Prepares `revision` (environment, lay-out) and starts its replicas;
    /// resolves once each passed `init()`. Nothing is routed to them yet.
    pub(super) async fn start_candidate(
        &self,
        log: &OpLog<'_>,
        service: &str,
        revision: u32,
    ) -> Result<Candidate, OperationError> {
        let internal = |step: &str, e: &dyn std::fmt::Display| {
            failure(
                OperationErrorCode::InternalError,
                step,
                e.to_string(),
                Vec::new(),
            )
        };
        let spec = self
            .deps
            .services
            .revision(service, revision)
            .await
            .map_err(|e| internal("read the revision", &e))?;
        log.event(&format!(
            "Preparing revision {revision}: models [{}], entry script `{}`, environment `{}`, {} replica(s)",
            spec.models.join(", "),
            spec.inference.entry_script,
            spec.inference.environment,
            spec.deployment.desired_replicas()
        ))
        .await;

        self.apply_port(service, &spec).await.map_err(|e| {
            failure(
                OperationErrorCode::PortUnavailable,
                "serve the service on its port",
                e,
                Vec::new(),
            )
        })?;
        let (env_name, env_version) = split_id(&spec.inference.environment).ok_or_else(|| {
            internal(
                "read the environment",
                &format!("bad reference `{}`", spec.inference.environment),
            )
        })?;
        let environment = self
            .deps
            .store
            .environment(env_name, Some(env_version))
            .await
            .map_err(|e| internal("read the environment", &e))?;
        let cached = self.deps.envs.status(&environment.spec).await.state
            == berth_api::BuildState::Succeeded;
        if !cached {
            log.event(&format!("Building environment {env_name}:{env_version}"))
                .await;
        }
        let built = self.deps.envs.ensure(&environment.spec).await;
        let built = built.map_err(|e| {
            failure(
                OperationErrorCode::EnvironmentBuildFailed,
                format!("build environment {env_name}:{env_version} ({})", e.step),
                e.message.clone(),
                e.log_tail.clone(),
            )
        })?;
        log.event(&format!(
            "Environment {env_name}:{env_version} ready{}: Python {} ({})",
            if cached { " (cached)" } else { "" },
            built.full_version,
            built.installer
        ))
        .await;
        if let Some(warning) = &built.python_warning {
            log.event(&format!("Warning: {warning}")).await;
        }

        let content = self.gather(&spec).await?;
        let root = revision_root(&self.deps.config.data_dir, service, revision);
        let blobs = self.deps.blobs.clone();
        let spec_for_layout = spec.clone();
        let link_models = self.deps.isolation.protects_models();
        let dir = tokio::task::spawn_blocking(move || {
            materialise(&root, &spec_for_layout, &content, &blobs, link_models)
        })
        .await
        .map_err(|e| internal("lay out the revision", &e))?
        .map_err(|e| {
            failure(
                OperationErrorCode::RevisionLayoutFailed,
                "lay out the revision",
                e.to_string(),
                Vec::new(),
            )
        })?;
        log.event(&format!(
            "Revision {revision} laid out in {}",
            dir.app.display()
        ))
        .await;
        let isolation = &self.deps.isolation;
        for path in isolation.writable_source(&dir.app) {
            isolation.give(&path).map_err(|e| {
                failure(
                    OperationErrorCode::RevisionLayoutFailed,
                    "give the source to the worker user",
                    format!("{}: {e}", path.display()),
                    Vec::new(),
                )
            })?;
        }

        let (runtime_dir, socket_dir) = self.run_dirs();
        let plan = Arc::new(LaunchPlan {
            service: service.to_owned(),
            revision,
            python: built.python.clone(),
            runtime_dir,
            socket_dir,
            app: dir.app.clone(),
            env: self.worker_env(
                service,
                revision,
                &spec,
                &dir,
                &environment.spec.environment_variables,
            ),
            init_timeout: readiness_limit(&spec.deployment),
            requirements: spec.deployment.container_resource_requirements.clone(),
            resources: self.deps.resources.clone(),
            max_processes: spec.deployment.max_processes_per_container,
            isolation: self.deps.isolation.clone(),
            scratch_root: self.deps.config.data_dir.join("run").join("w"),
            child: self.deps.child_launch.clone(),
        });
        let running_now = self
            .deps
            .table
            .get(service)
            .and_then(|r| r.primary().map(|p| p.replicas.len()))
            .unwrap_or(0);
        let count = Self::target_replicas(&spec, running_now);
        if let Some(target) = self.use_cluster(service, revision, &spec).await? {
            log.event(&format!(
                "Replicas run on the Kubernetes cluster `{target}` (Deployment berth-{service}-r{revision})"
            ))
            .await;
        }
        log.event(&format!("Starting {count} replica(s)")).await;
        let replicas = self.start_more(&plan, &[], count).await.map_err(|f| {
            let (code, what) = match (&f.error, f.error.init_stage()) {
                (e, _) if e.resource_code().is_some() => {
                    e.resource_code().unwrap_or((OperationErrorCode::ReplicaStartFailed, "the worker did not start"))
                }
                (crate::compute::local::StartError::Spawn(berth_worker::SpawnError::InitTimeout { .. }), _) => (
                    OperationErrorCode::DeploymentTimedOut,
                    "init() did not finish within the readiness limit (livenessProbeRequirements: initialDelaySeconds + periodSeconds × failureThreshold)",
                ),
                (_, stage) => match stage {
                Some(berth_worker::InitStage::Init) => (OperationErrorCode::CrashLoopBackOff, "init() raised"),
                Some(berth_worker::InitStage::LoadScript) => {
                    (OperationErrorCode::CrashLoopBackOff, "the entry script failed to load")
                }
                Some(berth_worker::InitStage::Contract) => {
                    (OperationErrorCode::EntryScriptInvalid, "the entry script breaks the contract")
                }
                None => (OperationErrorCode::ReplicaStartFailed, "the worker did not start"),
                },
            };
            let output: Vec<String> = f.error.output().lines().map(str::to_owned).collect();
            failure(
                code,
                format!("start replica {}: {what}", f.index),
                f.error.to_string(),
                output,
            )
        })?;
        for replica in &replicas {
            log.event(&format!(
                "Replica {} ready ({}): init() took {} ms",
                replica.index,
                replica.location(),
                replica.init().init_ms
            ))
            .await;
        }
        Ok(Candidate {
            revision,
            spec,
            plan,
            replicas,
            count,
        })
    }

    /// Switches all traffic to `candidate` at once, then drains and stops what
    /// served before.
    async fn switch_all(
        &self,
        log: &OpLog<'_>,
        service: &str,
        candidate: Candidate,
    ) -> Result<(), OperationError> {
        let Candidate {
            revision,
            spec,
            plan,
            replicas,
            count,
        } = candidate;
        let keys = self.service_keys(service).await?;
        let old = self.publish(service, Some(revision), replicas.clone(), &spec, &keys);
        self.watch(
            service,
            &replicas,
            &spec.deployment.liveness_probe_requirements,
        );
        self.set_serving(service, spec, plan, count);
        self.set_others(service, Vec::new());
        log.event(&format!("Switched traffic to revision {revision}"))
            .await;
        if let Some(old) = old.filter(|o| o.replicas().next().is_some()) {
            let old_revision = old.revision().unwrap_or(0);
            log.event(&format!("Draining revision {old_revision}"))
                .await;
            drain::drain(old, DRAIN_LIMIT, STOP_GRACE).await;
            log.event(&format!("Revision {old_revision} stopped")).await;
        }
        Ok(())
    }

    /// Applies an update: live when only live settings changed, else a rollout.
    async fn update(
        &self,
        log: &OpLog<'_>,
        service: &str,
        revision: u32,
    ) -> Result<Ended, OperationError> {
        let spec = self
            .deps
            .services
            .revision(service, revision)
            .await
            .map_err(|e| {
                failure(
                    OperationErrorCode::InternalError,
                    "read the revision",
                    e.to_string(),
                    Vec::new(),
                )
            })?;
        let running = self
            .running
            .lock()
            .ok()
            .and_then(|m| m.get(service).map(|s| (s.spec.clone(), s.plan.clone())));
        let route = self
            .deps
            .table
            .get(service)
            .filter(|r| r.pools.len() == 1 && r.replicas().next().is_some());
        if let (Some((old, plan)), Some(route)) = (running, route) {
            if !crate::domain::change::needs_new_replicas(&old, &spec) {
                let current = route.replicas().cloned().collect();
                // Draining waits for the old route's last holder: never this function.
                drop(route);
                return self
                    .apply_live(log, service, revision, spec, &old, plan, current)
                    .await
                    .map(|()| Ended::Promoted);
            }
            // The old route must not be held here: draining waits for its last holder.
            drop(route);
        }
        log.event("The change needs new replicas: rolling out")
            .await;
        self.roll_out(log, service, revision).await
    }

    /// Applies settings to the running replicas, scaling them when the count changed.
    #[allow(clippy::too_many_arguments)]
    async fn apply_live(
        &self,
        log: &OpLog<'_>,
        service: &str,
        revision: u32,
        spec: ServiceSpec,
        old: &ServiceSpec,
        plan: Arc<LaunchPlan>,
        mut current: Vec<Arc<crate::compute::Replica>>,
    ) -> Result<(), OperationError> {
        for change in crate::domain::change::describe_changes(&old.deployment, &spec.deployment) {
            log.event(&format!("Live change: {change}")).await;
        }
        self.apply_port(service, &spec).await.map_err(|e| {
            failure(
                OperationErrorCode::PortUnavailable,
                "serve the service on its port",
                e,
                Vec::new(),
            )
        })?;
        let desired = Self::target_replicas(&spec, current.len()) as usize;
        current.sort_by_key(|r| r.index);
        let mut added = Vec::new();
        if desired > current.len() {
            log.event(&format!(
                "Scaling up from {} to {desired} replica(s)",
                current.len()
            ))
            .await;
            added = self
                .start_more(&plan, &current, (desired - current.len()) as u32)
                .await
                .map_err(|f| {
                    let output = f.error.output().lines().map(str::to_owned).collect();
                    let code = f
                        .error
                        .resource_code()
                        .map_or(OperationErrorCode::ReplicaStartFailed, |(c, _)| c);
                    failure(
                        code,
                        format!("start replica {}", f.index),
                        f.error.to_string(),
                        output,
                    )
                })?;
        }
        let retired = if desired < current.len() {
            log.event(&format!(
                "Scaling down from {} to {desired} replica(s)",
                current.len()
            ))
            .await;
            current.split_off(desired)
        } else {
            Vec::new()
        };
        current.extend(added.iter().cloned());
        let keys = self.service_keys(service).await?;
        let old_route = self.publish(service, Some(revision), current, &spec, &keys);
        self.watch(
            service,
            &added,
            &spec.deployment.liveness_probe_requirements,
        );
        self.set_serving(service, spec, plan, desired as u32);
        log.event(&format!(
            "Revision {revision} applied to the running replicas"
        ))
        .await;
        if let (Some(old_route), false) = (old_route, retired.is_empty()) {
            drain::drain_subset(old_route, retired, DRAIN_LIMIT, STOP_GRACE).await;
            log.event("Retired replicas stopped").await;
        }
        Ok(())
    }

    /// Reads what the revision lays out.
    async fn gather(&self, spec: &ServiceSpec) -> Result<RevisionContent, OperationError> {
        let mut models = Vec::new();
        for id in &spec.models {
            let (name, version) = split_id(id).ok_or_else(|| {
                failure(
                    OperationErrorCode::InternalError,
                    "read the models",
                    format!("bad model reference `{id}`"),
                    Vec::new(),
                )
            })?;
            let model = self
                .deps
                .store
                .model(name, Some(version))
                .await
                .map_err(|e| {
                    failure(
                        OperationErrorCode::ModelNotFound,
                        "read the models",
                        e.to_string(),
                        Vec::new(),
                    )
                })?;
            let files = self
                .deps
                .store
                .model_files(name, version)
                .await
                .map_err(|e| {
                    failure(
                        OperationErrorCode::ModelNotFound,
                        "read the models",
                        e.to_string(),
                        Vec::new(),
                    )
                })?;
            models.push((
                name.to_owned(),
                version,
                model.kind,
                model.asset_name,
                files,
            ));
        }
        let (_, source) = self
            .deps
            .store
            .snapshot(&spec.inference.source_snapshot)
            .await
            .map_err(|e| {
                failure(
                    OperationErrorCode::SnapshotNotFound,
                    "read the source snapshot",
                    e.to_string(),
                    Vec::new(),
                )
            })?;
        Ok(RevisionContent { models, source })
    }

    fn worker_env(
        &self,
        service: &str,
        revision: u32,
        spec: &ServiceSpec,
        dir: &RevisionDir,
        variables: &std::collections::BTreeMap<String, String>,
    ) -> Vec<(String, String)> {
        let mut env = crate::compute::local::materialise::worker_variables(
            service,
            revision,
            spec,
            variables,
            &self.deps.config.workspace_name,
        );
        env.extend(crate::compute::local::materialise::layout_variables(dir));
        env
    }

    /// Stops a service's replicas and removes its files.
    async fn delete(&self, log: &OpLog<'_>, service: &str) {
        let old = self.deps.table.get(service);
        self.deps.table.publish(service, None);
        if let Some(certs) = &self.deps.certs {
            certs.set_service(service, None);
        }
        if let Ok(mut running) = self.running.lock() {
            running.remove(service);
        }
        // The operation holds its clone of the lock until it ends; a later
        // service of the same name gets a fresh one.
        if let Ok(mut locks) = self.replica_sets.lock() {
            locks.remove(service);
        }
        self.deps.resources.forget(service);
        self.deps.ports.release(service);
        self.deps.observability.metrics().service_deleted(service);
        if let Some(old) = old.filter(|o| o.replicas().next().is_some()) {
            log.event("Draining replicas").await;
            for replica in old.replicas() {
                replica
                    .healthy
                    .store(false, std::sync::atomic::Ordering::Release);
            }
            drain::drain(old, DRAIN_LIMIT, STOP_GRACE).await;
        }
        let dir = self.deps.config.data_dir.join("services").join(service);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%service, error = %e, "could not remove the service's files");
        }
        log.event("Replicas stopped and files removed").await;
    }

    /// After a restart: fails cut-off operations, then brings every service back
    /// to its serving revision.
    pub async fn restore(self: &Arc<Self>) {
        match self
            .deps
            .services
            .fail_interrupted_operations(&crate::now_rfc3339(), |stored| {
                let progress = serde_json::from_value(stored.progress.clone()).ok();
                super::plan::after_restart(progress) == super::plan::AfterRestart::RolledBack
            })
            .await
        {
            Ok(ops) => {
                for op in ops {
                    let rolled_back = op.state == berth_api::OperationState::RolledBack;
                    tracing::warn!(operation = %op.id, service = %op.service, state = ?op.state, "operation cut off by a restart ended");
                    if let Some(error) = &op.error {
                        self.deps.events.emit(if rolled_back {
                            EventDraft::operation_rolled_back(&op, error)
                        } else {
                            EventDraft::operation_failed(&op, error)
                        });
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "could not scan for interrupted operations"),
        }
        let services = match self.deps.services.list_services().await {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(error = %e, "could not list services to restore");
                return;
            }
        };
        for stored in &services {
            self.deps.events.seed_state(&stored.name, stored.state);
        }
        for stored in services {
            let runtime = self.clone();
            tokio::spawn(async move {
                let name = stored.name.clone();
                let lock = runtime.replica_set_lock(&name);
                let _held = lock.lock().await;
                runtime.publish_empty(&name).await;
                let Some(revision) = stored.serving_revision else {
                    return;
                };
                let log = OpLog::server_only(&runtime);
                let restored = match stored.traffic.as_deref() {
                    Some(split) if split.len() > 1 => runtime.apply_split(&log, &name, split).await,
                    _ => runtime.roll_out(&log, &name, revision).await.map(drop),
                };
                match restored {
                    Ok(()) => {
                        tracing::info!(service = %name, revision, "service restored");
                        if stored.state != ServiceState::Failed {
                            runtime
                                .set_state(&name, ServiceState::Healthy, "restored after a restart")
                                .await;
                        }
                    }
                    Err(e) => {
                        tracing::error!(service = %name, revision, step = %e.step, error = %e.message, "could not restore the service");
                        runtime
                            .set_state(
                                &name,
                                ServiceState::Unhealthy,
                                "could not restore after a restart",
                            )
                            .await;
                    }
                }
            });
        }
    }
}
