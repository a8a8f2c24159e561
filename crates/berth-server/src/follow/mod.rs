//! Services that follow `name@alias` or `name@latest`: who follows what, what
//! an alias move or a registration does to each follower, the durable pending
//! target of a busy follower (started when its operation ends), and the
//! rejection of a version whose automatic rollout failed or was rolled back.
//!
//! The follower never builds a change itself: it hands the current spec with
//! the model swapped to a [`Submitter`], the same path `PATCH` takes.

pub mod plan;
pub mod resolve;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use berth_api::names::{LATEST_ALIAS, ModelRef};
use berth_api::{
    AliasMoved, Follow as FollowStatus, FollowPolicy, FollowerAction, FollowerPlan, Model,
    Operation, OperationState, ServiceSpec,
};

use crate::events::{EventBus, EventDraft};
use crate::store::{FollowState, NewModel, ServiceStore, Store, StoreError};

/// Why a change could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// Another operation of the service is in flight: try again when it ends.
    Busy,
    /// The change was refused (the message says why).
    Refused(String),
}

/// Starts an update of a service to `spec`, computed from revision `based_on`,
/// the way `PATCH /v1/services/{name}` does; `cause` names why Berth started it.
#[async_trait]
pub trait Submitter: Send + Sync + 'static {
    /// Validates, writes the revision and its operation, and starts it.
    async fn submit(
        &self,
        service: &str,
        based_on: u32,
        spec: ServiceSpec,
        cause: &str,
    ) -> Result<Operation, SubmitError>;
}

/// One service following one reference.
#[derive(Debug, Clone)]
struct Follower {
    service: String,
    reference: String,
    /// The version it serves.
    version: u32,
    policy: FollowPolicy,
}

/// What trying to start a follower's pending target did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kick {
    Started(String),
    Busy,
    Nothing,
    Refused(String),
}

/// The follower: shared as `Arc<Follow>` by the routes and the runtime.
pub struct Follow {
    store: Arc<dyn Store>,
    services: Arc<dyn ServiceStore>,
    events: Arc<EventBus>,
    submitter: OnceLock<Arc<dyn Submitter>>,
    /// Serialises every read-modify-write of follow state.
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Follow(..)")
    }
}

fn version_of(id: &str) -> Option<u32> {
    id.rsplit_once(':')?.1.parse().ok()
}

/// The references of `spec` that follow, with the version each serves.
fn followed(spec: &ServiceSpec) -> Vec<(String, u32)> {
    spec.model_references
        .iter()
        .zip(&spec.models)
        .filter(|(reference, _)| reference.contains('@'))
        .filter_map(|(reference, id)| Some((reference.clone(), version_of(id)?)))
        .collect()
}

impl Follow {
    /// A follower with no submitter yet ([`Follow::set_submitter`]).
    pub fn new(
        store: Arc<dyn Store>,
        services: Arc<dyn ServiceStore>,
        events: Arc<EventBus>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            services,
            events,
            submitter: OnceLock::new(),
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Sets how changes are started (once, at start-up).
    pub fn set_submitter(&self, submitter: Arc<dyn Submitter>) {
        if self.submitter.set(submitter).is_err() {
            tracing::warn!("the follower's submitter was set twice; the first one is kept");
        }
    }

    /// The spec a service's follow state is read from: its serving revision,
    /// else its newest.
    async fn current(&self, service: &str) -> Result<(u32, ServiceSpec), StoreError> {
        let stored = self.services.service(service).await?;
        let based_on = stored.serving_revision.unwrap_or(stored.latest_revision);
        Ok((based_on, self.services.revision(service, based_on).await?))
    }

    /// Every service following `reference` (`m@champion`).
    async fn followers_of(&self, reference: &str) -> Result<Vec<Follower>, StoreError> {
        let mut out = Vec::new();
        for stored in self.services.list_services().await? {
            let Ok((_, spec)) = self.current(&stored.name).await else {
                continue;
            };
            for (r, version) in followed(&spec) {
                if r == reference {
                    out.push(Follower {
                        service: stored.name.clone(),
                        reference: r,
                        version,
                        policy: spec.deployment.follow_policy,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Plans the followers of `reference` moving to `target`: returns the
    /// plans and the states to store.
    async fn plan_move(
        &self,
        reference: &str,
        from: Option<u32>,
        target: u32,
    ) -> Result<(Vec<FollowerPlan>, Vec<FollowState>), StoreError> {
        let followers = self.followers_of(reference).await?;
        let mut known: HashMap<(String, String), FollowState> = self
            .store
            .follow_states(None)
            .await?
            .into_iter()
            .map(|s| ((s.service.clone(), s.reference.clone()), s))
            .collect();
        let mut plans = Vec::new();
        let mut states = Vec::new();
        for f in followers {
            let state = known
                .remove(&(f.service.clone(), f.reference.clone()))
                .unwrap_or_else(|| FollowState::new(&f.service, &f.reference));
            let cause = plan::cause(reference, from.or(Some(f.version)), target);
            let (action, state) = plan::on_move(state, f.version, target, f.policy, &cause);
            plans.push(FollowerPlan {
                service: f.service,
                reference: f.reference,
                from: Some(f.version),
                to: target,
                action,
                operation: None,
                message: None,
            });
            states.push(state);
        }
        Ok((plans, states))
    }

    /// Starts the pending rollouts of the planned followers; fills in what happened.
    async fn start_planned(&self, plans: &mut [FollowerPlan]) {
        for plan in plans
            .iter_mut()
            .filter(|p| p.action == FollowerAction::AutoRollout)
        {
            match self.kick(&plan.service).await {
                Kick::Started(id) => plan.operation = Some(id),
                Kick::Busy => plan.action = FollowerAction::Queued,
                Kick::Nothing => plan.action = FollowerAction::UpToDate,
                Kick::Refused(message) => {
                    plan.action = FollowerAction::Failed;
                    plan.message = Some(message);
                }
            }
        }
    }

    /// Points `name@alias` at `version` (the pending targets of its auto
    /// followers are written in the same transaction), emits
    /// `model.alias_moved`, and starts the followers' rollouts.
    pub async fn move_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
    ) -> Result<AliasMoved, StoreError> {
        let _held = self.lock.lock().await;
        let reference = format!("{name}@{alias}");
        let from = match self.store.alias_version(name, alias).await {
            Ok(v) => Some(v),
            Err(StoreError::AliasNotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let (mut followers, states) = self.plan_move(&reference, from, version).await?;
        let (moved, previous) = self
            .store
            .set_alias(name, alias, version, &crate::now_rfc3339(), states)
            .await?;
        if previous != Some(version) {
            self.events.emit(EventDraft::alias_moved(
                name,
                alias,
                previous,
                Some(version),
            ));
        }
        tracing::info!(alias = %reference, ?previous, version, followers = followers.len(), "alias moved");
        self.start_planned(&mut followers).await;
        Ok(AliasMoved {
            alias: moved,
            previous,
            followers,
        })
    }

    /// Removes `name@alias` and emits `model.alias_moved` with `to: null`.
    /// Its followers keep serving what they serve; pending targets are dropped.
    pub async fn remove_alias(&self, name: &str, alias: &str) -> Result<u32, StoreError> {
        let _held = self.lock.lock().await;
        let version = self.store.remove_alias(name, alias).await?;
        let reference = format!("{name}@{alias}");
        let cleared: Vec<FollowState> = self
            .store
            .follow_states(None)
            .await?
            .into_iter()
            .filter(|s| s.reference == reference && s.pending.is_some())
            .map(|mut s| {
                s.pending = None;
                s.pending_cause = None;
                s
            })
            .collect();
        self.store.put_follow_states(cleared).await?;
        self.events
            .emit(EventDraft::alias_moved(name, alias, Some(version), None));
        Ok(version)
    }

    /// Registers a model version and emits `model.registered`. The `name@latest` followers with
    /// `followPolicy: auto` get it as their pending target in the registration's
    /// own transaction (durable intent), then their rollouts start; the model
    /// comes back with `followers` saying what happens to each.
    pub async fn register(&self, new: NewModel) -> Result<Model, StoreError> {
        let _held = self.lock.lock().await;
        let name = new.name.clone();
        let reference = format!("{name}@{LATEST_ALIAS}");
        let intent = match self.latest_intent(&reference).await {
            Ok(intent) => intent,
            Err(e) => {
                tracing::error!(%reference, error = %e, "could not read the followers of a registration; they are not updated");
                Vec::new()
            }
        };
        let mut model = self.store.insert_model_following(new, intent).await?;
        self.events
            .emit(EventDraft::model_registered(&model.name, model.version));
        let result = async {
            let (mut plans, states) = self.plan_move(&reference, None, model.version).await?;
            self.store.put_follow_states(states).await?;
            self.start_planned(&mut plans).await;
            Ok::<_, StoreError>(plans)
        }
        .await;
        model.followers = result.unwrap_or_else(|e| {
            tracing::error!(model = %model.id, error = %e, "could not start the rollouts of a registration's followers; they start after a restart");
            Vec::new()
        });
        Ok(model)
    }

    /// The follow state of every `auto` follower of `reference`, to receive a
    /// new version as its pending target.
    async fn latest_intent(&self, reference: &str) -> Result<Vec<FollowState>, StoreError> {
        let known = self.store.follow_states(None).await?;
        Ok(self
            .followers_of(reference)
            .await?
            .into_iter()
            .filter(|f| f.policy == FollowPolicy::Auto)
            .map(|f| {
                known
                    .iter()
                    .find(|s| s.service == f.service && s.reference == f.reference)
                    .cloned()
                    .unwrap_or_else(|| FollowState::new(&f.service, &f.reference))
            })
            .collect())
    }

    /// Called when an operation of `service` has ended (after its end is
    /// stored): records how an automatic rollout ended (a failure or rollback
    /// rejects its version) and starts the newest pending target, if any.
    pub async fn on_operation_ended(&self, service: &str, state: OperationState) {
        let _held = self.lock.lock().await;
        if let Err(e) = self.settle(service, Some(state)).await {
            tracing::warn!(%service, error = %e, "could not record the end of an automatic rollout");
        }
        if let Kick::Refused(message) = self.kick(service).await {
            tracing::warn!(%service, %message, "a queued automatic rollout was refused");
        }
    }

    /// After a restart: settles rollouts that ended while the server was down
    /// and starts every pending target that survived in the store.
    pub async fn resume(&self) {
        let _held = self.lock.lock().await;
        let states = match self.store.follow_states(None).await {
            Ok(states) => states,
            Err(e) => {
                tracing::error!(error = %e, "could not read the follow state; automatic rollouts wait for the next move");
                return;
            }
        };
        let mut services: Vec<String> = states.into_iter().map(|s| s.service).collect();
        services.dedup();
        for service in services {
            if let Err(e) = self.settle(&service, None).await {
                tracing::warn!(%service, error = %e, "could not settle an automatic rollout");
            }
            match self.kick(&service).await {
                Kick::Started(id) => {
                    tracing::info!(%service, operation = %id, "resumed a pending automatic rollout")
                }
                Kick::Refused(message) => {
                    tracing::warn!(%service, %message, "a pending automatic rollout was refused")
                }
                Kick::Busy | Kick::Nothing => {}
            }
        }
    }

    /// Applies [`plan::on_end`] to the service's rollout in flight, if it ended.
    async fn settle(&self, service: &str, told: Option<OperationState>) -> Result<(), StoreError> {
        let mut changed = Vec::new();
        for state in self.store.follow_states(Some(service)).await? {
            let Some(id) = state.in_flight_operation.clone() else {
                continue;
            };
            let (ended, interrupted) = match self.services.operation(&id, 0).await {
                Ok(op) => (
                    op.state,
                    op.error.as_ref().is_some_and(|e| {
                        [
                            berth_api::OperationErrorCode::ServerRestarted,
                            berth_api::OperationErrorCode::RolloutInterrupted,
                        ]
                        .iter()
                        .any(|code| e.code == code.as_str())
                    }),
                ),
                Err(StoreError::OperationNotFound(_)) => {
                    (told.unwrap_or(OperationState::Failed), false)
                }
                Err(e) => return Err(e),
            };
            if !ended.is_terminal() {
                continue;
            }
            let after = plan::on_end(state.clone(), ended, interrupted);
            if let Some(rejected) = after.rejected.filter(|_| after.rejected != state.rejected) {
                tracing::warn!(%service, reference = %state.reference, rejected, ?ended, "automatic rollout did not succeed; the version is rejected for this service");
            }
            changed.push(after);
        }
        self.store.put_follow_states(changed).await
    }

    /// Starts the service's pending targets in one update, unless it is busy.
    /// A rollout whose end is stored but not yet reported is settled first.
    async fn kick(&self, service: &str) -> Kick {
        if let Err(e) = self.settle(service, None).await {
            return Kick::Refused(e.to_string());
        }
        match self.try_kick(service).await {
            Ok(kick) => kick,
            Err(e) => Kick::Refused(e.to_string()),
        }
    }

    async fn try_kick(&self, service: &str) -> Result<Kick, StoreError> {
        let states: Vec<FollowState> = self.store.follow_states(Some(service)).await?;
        if !states.iter().any(|s| s.pending.is_some()) {
            return Ok(Kick::Nothing);
        }
        if states.iter().any(|s| s.in_flight_operation.is_some()) {
            return Ok(Kick::Busy);
        }
        let (based_on, spec) = match self.current(service).await {
            Ok(found) => found,
            Err(StoreError::ServiceNotFound(_)) => {
                let gone = states
                    .into_iter()
                    .map(|s| FollowState::new(&s.service, &s.reference))
                    .collect();
                self.store.put_follow_states(gone).await?;
                return Ok(Kick::Nothing);
            }
            Err(e) => return Err(e),
        };
        let mut next = spec.clone();
        let mut causes = Vec::new();
        let mut moving = Vec::new();
        let mut settled = Vec::new();
        for mut state in states.into_iter().filter(|s| s.pending.is_some()) {
            let target = state.pending.unwrap_or_default();
            let serving = spec
                .model_references
                .iter()
                .position(|r| *r == state.reference)
                .and_then(|i| Some((i, version_of(spec.models.get(i)?)?)));
            let name = ModelRef::parse(&state.reference).map(|r| r.name);
            match (serving, name) {
                (Some((i, current)), Ok(name)) if current != target => {
                    if let Some(slot) = next.models.get_mut(i) {
                        *slot = format!("{name}:{target}");
                    }
                    causes.push(
                        state.pending_cause.clone().unwrap_or_else(|| {
                            plan::cause(&state.reference, Some(current), target)
                        }),
                    );
                    moving.push(state);
                }
                _ => {
                    // Up to date, or the service no longer follows the reference.
                    state.pending = None;
                    state.pending_cause = None;
                    settled.push(state);
                }
            }
        }
        self.store.put_follow_states(settled).await?;
        if moving.is_empty() {
            return Ok(Kick::Nothing);
        }
        let Some(submitter) = self.submitter.get() else {
            return Ok(Kick::Busy);
        };
        let cause = causes.join("; ");
        match submitter.submit(service, based_on, next, &cause).await {
            Ok(op) => {
                let started = moving
                    .into_iter()
                    .map(|mut s| {
                        s.in_flight = s.pending.take();
                        s.pending_cause = None;
                        s.in_flight_operation = Some(op.id.clone());
                        s
                    })
                    .collect();
                self.store.put_follow_states(started).await?;
                tracing::info!(%service, operation = %op.id, %cause, "automatic rollout started");
                Ok(Kick::Started(op.id))
            }
            Err(SubmitError::Busy) => Ok(Kick::Busy),
            Err(SubmitError::Refused(message)) => {
                let rejected = moving
                    .into_iter()
                    .map(|mut s| {
                        s.rejected = s.pending.take();
                        s.pending_cause = None;
                        s
                    })
                    .collect();
                self.store.put_follow_states(rejected).await?;
                Ok(Kick::Refused(message))
            }
        }
    }

    /// What `service show` says about the references `spec` follows.
    pub async fn status(&self, service: &str, spec: &ServiceSpec) -> Vec<FollowStatus> {
        let followed = followed(spec);
        if followed.is_empty() {
            return Vec::new();
        }
        let states = self
            .store
            .follow_states(Some(service))
            .await
            .unwrap_or_default();
        let mut out = Vec::new();
        for (reference, version) in followed {
            let state = states.iter().find(|s| s.reference == reference);
            let pending = state.and_then(|s| s.pending.or(s.in_flight));
            let rejected = state.and_then(|s| s.rejected);
            let now = match ModelRef::parse(&reference) {
                Ok(r) => resolve::resolve(self.store.as_ref(), &r)
                    .await
                    .ok()
                    .map(|m| m.version),
                Err(_) => None,
            };
            let available =
                now.filter(|v| *v != version && Some(*v) != rejected && Some(*v) != pending);
            out.push(FollowStatus {
                reference,
                version,
                policy: spec.deployment.follow_policy,
                available,
                pending,
                rejected,
            });
        }
        out
    }

    /// The spec of `service` with every followed reference resolved anew
    /// (`berth service update --follow`); clears rejections of what it applies.
    pub async fn refollow(&self, service: &str, spec: &ServiceSpec) -> Result<ServiceSpec, String> {
        let followed = followed(spec);
        if followed.is_empty() {
            return Err(format!(
                "service `{service}` follows no model alias: deploy or update it with `-m NAME@ALIAS` (or `NAME@latest`) first"
            ));
        }
        let mut next = spec.clone();
        let mut problems = Vec::new();
        let resolved =
            resolve::resolve_all(self.store.as_ref(), &spec.model_references, &mut problems).await;
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        next.models = resolved.models;
        let _held = self.lock.lock().await;
        let cleared = self
            .store
            .follow_states(Some(service))
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|mut s| {
                s.rejected = None;
                s.pending = None;
                s.pending_cause = None;
                s
            })
            .collect();
        if let Err(e) = self.store.put_follow_states(cleared).await {
            tracing::warn!(%service, error = %e, "could not clear the follow state");
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followed_references_pair_with_their_concrete_versions() {
        let spec: ServiceSpec = serde_json::from_value(serde_json::json!({
            "models": ["m:7", "other:2"],
            "modelReferences": ["m@champion", "other:2"],
            "inference": {"entryScript": "s.py", "sourceSnapshot": "x", "sourceDirectoryName": null, "environment": "e:1"},
            "deployment": serde_json::to_value(berth_api::DeploymentSettings::defaults(berth_api::ComputeType::Local)).unwrap(),
        }))
        .unwrap();
        assert_eq!(followed(&spec), vec![("m@champion".to_owned(), 7)]);
        // Re-resolving a reference to the version already served is not a rolling change.
        let mut same = spec.clone();
        same.model_references = vec!["m:7".into(), "other:2".into()];
        assert!(!crate::domain::change::needs_new_replicas(&spec, &same));
        same.models[0] = "m:8".into();
        assert!(crate::domain::change::needs_new_replicas(&spec, &same));
        let mut plain = spec.clone();
        plain.model_references.clear();
        assert!(followed(&plain).is_empty());
    }
}
