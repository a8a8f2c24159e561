//! Persistent metadata: the `Store`, `ServiceStore` and `EventStore` traits and
//! their SQLite and PostgreSQL implementations, chosen by URL in [`open`].
//!
//! Routes and the registry talk to `dyn Store`; nothing outside this module writes
//! SQL. Every method is one transaction.

mod aliases;
pub mod cluster;
mod computes;
#[cfg(test)]
mod conformance;
mod events;
mod model_list;
mod open;
pub mod postgres;
mod services;
mod sqlite;
mod sqlite_aliases;
mod sqlite_cluster;
mod sqlite_computes;
mod sqlite_events;
mod sqlite_services;
pub mod trust;

use std::collections::BTreeMap;

use async_trait::async_trait;
use berth_api::{EnvironmentSpec, Model, ModelAlias, ModelFile, ModelKind, Snapshot};

pub use aliases::FollowState;
pub use cluster::{ClusterStore, Fence, LEADER_LEASE, LeaseView, PublishedRoute};
pub use computes::StoredComputeTarget;
pub use events::{DeliveryRecord, EventQuery, EventStore, NewEvent, NewWebhook, StoredWebhook};
pub use open::{ACCEPTED_FORMS, StoreUrl, StoreUrlError, Stores, open};
pub use postgres::PgStore;
pub use services::{
    NewService, OperationOutcome, ServiceChange, ServiceStore, StoredRollout, StoredService,
};
pub use sqlite::{SqliteStore, Synchronous};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The model version does not exist.
    #[error("model `{0}` not found")]
    ModelNotFound(String),
    /// The model version is used by services.
    #[error("model `{id}` is used by service(s) {}", services.join(", "))]
    ModelInUse {
        /// `name:version`.
        id: String,
        /// Services referencing it.
        services: Vec<String>,
    },
    /// An alias points at the model version.
    #[error("model `{id}` is the target of alias(es) {}", aliases.join(", "))]
    ModelAliased {
        /// `name:version`.
        id: String,
        /// The aliases pointing at it.
        aliases: Vec<String>,
    },
    /// The alias does not exist.
    #[error("alias `{name}@{alias}` not found")]
    AliasNotFound {
        /// Model name.
        name: String,
        /// Alias.
        alias: String,
    },
    /// The environment version does not exist.
    #[error("environment `{0}` not found")]
    EnvironmentNotFound(String),
    /// The snapshot does not exist.
    #[error("snapshot `{0}` not found")]
    SnapshotNotFound(String),
    /// The service does not exist.
    #[error("service `{0}` not found")]
    ServiceNotFound(String),
    /// A service of that name exists.
    #[error("service `{0}` exists already")]
    ServiceExists(String),
    /// Another operation of the service is running.
    #[error("service `{service}` has operation `{operation}` ({kind}) in progress")]
    OperationInProgress {
        /// Service.
        service: String,
        /// The running operation's id.
        operation: String,
        /// Its kind.
        kind: String,
    },
    /// The operation does not exist.
    #[error("operation `{0}` not found")]
    OperationNotFound(String),
    /// The service changed between reading it and writing the change.
    #[error(
        "service `{service}` changed while this change was prepared (now serving revision {now:?})"
    )]
    Moved {
        /// Service.
        service: String,
        /// Serving revision now.
        now: Option<u32>,
    },
    /// The revision does not exist.
    #[error("revision {revision} of service `{service}` not found")]
    RevisionNotFound {
        /// Service.
        service: String,
        /// Revision.
        revision: u32,
    },
    /// The change breaks a rule; every problem is listed.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The database failed (whichever backend: the cause is kept as an error
    /// object, so no backend's type leaks into the store's interface).
    #[error("database {step} failed")]
    Database {
        /// What was being done.
        step: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A reconciler write carried a fencing number that no longer holds the
    /// lease: another server leads now (or the lease expired).
    #[error(
        "this server no longer holds the `{lease}` lease with fencing number {fence}; the write was refused"
    )]
    Fenced {
        /// The lease.
        lease: &'static str,
        /// The stale fencing number.
        fence: u64,
    },
    /// A blocking task failed to run.
    #[error("database task failed: {0}")]
    Task(String),
    /// Stored data could not be decoded.
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// Result of store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps a JSON column that does not decode to [`StoreError::Corrupt`] naming `what`.
pub(crate) fn corrupt(what: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

/// One file of a model being registered.
#[derive(Debug, Clone)]
pub struct NewModelFile {
    /// Path relative to the asset.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Unix permission bits.
    pub mode: u32,
}

/// A model version to insert; the store assigns the version.
#[derive(Debug, Clone)]
pub struct NewModel {
    /// Name (already validated).
    pub name: String,
    /// File or folder.
    pub kind: ModelKind,
    /// Basename of the registered path.
    pub asset_name: String,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Properties.
    pub properties: BTreeMap<String, String>,
    /// Framework.
    pub framework: Option<String>,
    /// Framework version.
    pub framework_version: Option<String>,
    /// Experiment.
    pub experiment_name: Option<String>,
    /// Run.
    pub run_id: Option<String>,
    /// Digest of the file, or of the folder manifest.
    pub content_digest: String,
    /// Registration time, RFC 3339.
    pub created_time: String,
    /// Who registered it.
    pub created_by: String,
    /// The files.
    pub files: Vec<NewModelFile>,
}

/// Filters of a model list; all given filters must hold.
#[derive(Debug, Clone, Default)]
pub struct ModelFilter {
    /// Exact name.
    pub name: Option<String>,
    /// Tags: key present (`None`) or key equal to value.
    pub tags: Vec<(String, Option<String>)>,
    /// Properties: key present or key equal to value.
    pub properties: Vec<(String, Option<String>)>,
    /// Exact framework.
    pub framework: Option<String>,
    /// Only the newest matching version per name.
    pub latest: bool,
}

/// A model version as stored, with its file list for materialising and download.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// The wire form.
    pub file: ModelFile,
    /// Unix permission bits.
    pub mode: u32,
}

/// Changes to a model's mutable metadata.
#[derive(Debug, Clone, Default)]
pub struct ModelChanges {
    /// New description; `Some("")` clears it.
    pub description: Option<String>,
    /// Replaces all tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Tags to add or change.
    pub add_tags: BTreeMap<String, String>,
    /// Tags to remove.
    pub remove_tags: Vec<String>,
    /// Properties to add (existing keys are refused).
    pub add_properties: BTreeMap<String, String>,
}

/// An environment version to register.
#[derive(Debug, Clone)]
pub struct NewEnvironment {
    /// Name (validated).
    pub name: String,
    /// Normalised spec.
    pub spec: EnvironmentSpec,
    /// Digest of the whole spec.
    pub spec_digest: String,
    /// Build cache key.
    pub build_hash: String,
    /// Normalisation warnings.
    pub warnings: Vec<String>,
    /// Description.
    pub description: Option<String>,
    /// RFC 3339 time.
    pub created_time: String,
}

/// A registered environment version.
#[derive(Debug, Clone)]
pub struct StoredEnvironment {
    /// Name.
    pub name: String,
    /// Version.
    pub version: u32,
    /// Normalised spec.
    pub spec: EnvironmentSpec,
    /// Normalisation warnings.
    pub warnings: Vec<String>,
    /// Description.
    pub description: Option<String>,
    /// RFC 3339 time.
    pub created_time: String,
}

/// A snapshot to insert.
#[derive(Debug, Clone)]
pub struct NewSnapshot {
    /// Manifest digest.
    pub digest: String,
    /// RFC 3339 time.
    pub created_time: String,
    /// Files.
    pub files: Vec<NewModelFile>,
}

/// Metadata persistence.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads a workspace setting.
    async fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Writes a workspace setting.
    async fn set_setting(&self, key: &str, value: &str) -> Result<()>;

    /// Inserts a model version with version = last assigned + 1 for its name.
    async fn insert_model(&self, model: NewModel) -> Result<Model>;
    /// Inserts a model version and, in the same transaction, writes `follows`
    /// with `pending` set to the new version (the durable intent of the
    /// `name@latest` followers of a registration).
    async fn insert_model_following(
        &self,
        model: NewModel,
        follows: Vec<FollowState>,
    ) -> Result<Model>;
    /// One version, or the newest when `version` is `None`.
    async fn model(&self, name: &str, version: Option<u32>) -> Result<Model>;
    /// The files of a model version, sorted by path.
    async fn model_files(&self, name: &str, version: u32) -> Result<Vec<StoredFile>>;
    /// Matching versions, newest registration first.
    async fn list_models(&self, filter: &ModelFilter) -> Result<Vec<Model>>;
    /// Applies metadata changes atomically.
    async fn update_model(&self, name: &str, version: u32, changes: ModelChanges) -> Result<Model>;
    /// Deletes a version unless a service uses it or an alias points at it;
    /// returns the digests it held.
    async fn delete_model(&self, name: &str, version: u32) -> Result<Vec<String>>;
    /// Points `alias` at `name:version` (the version must exist) and writes
    /// `follows` in the same transaction; returns the alias and its previous version.
    async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
        now: &str,
        follows: Vec<FollowState>,
    ) -> Result<(ModelAlias, Option<u32>)>;
    /// Removes an alias; returns the version it pointed at.
    async fn remove_alias(&self, name: &str, alias: &str) -> Result<u32>;
    /// The aliases of one model name, or of every model.
    async fn aliases(&self, name: Option<&str>) -> Result<Vec<ModelAlias>>;
    /// The version an alias points at.
    async fn alias_version(&self, name: &str, alias: &str) -> Result<u32> {
        self.aliases(Some(name))
            .await?
            .into_iter()
            .find(|a| a.alias == alias)
            .map(|a| a.version)
            .ok_or_else(|| StoreError::AliasNotFound {
                name: name.to_owned(),
                alias: alias.to_owned(),
            })
    }
    /// The follow state of one service, or of every service.
    async fn follow_states(&self, service: Option<&str>) -> Result<Vec<FollowState>>;
    /// Writes follow state rows (an empty row is deleted), in one transaction.
    async fn put_follow_states(&self, states: Vec<FollowState>) -> Result<()>;
    /// Registers an environment version, unless the newest version of the name
    /// has the same spec, which is returned instead (`false`).
    async fn register_environment(&self, new: NewEnvironment) -> Result<(bool, StoredEnvironment)>;
    /// One version, or the newest.
    async fn environment(&self, name: &str, version: Option<u32>) -> Result<StoredEnvironment>;
    /// Versions, newest registration first; `latest` keeps the newest per name.
    async fn list_environments(
        &self,
        name: Option<&str>,
        latest: bool,
    ) -> Result<Vec<StoredEnvironment>>;

    /// Inserts a snapshot unless it exists (`false`).
    async fn insert_snapshot(&self, snapshot: NewSnapshot) -> Result<(bool, Snapshot)>;
    /// A snapshot with its files.
    async fn snapshot(&self, digest: &str) -> Result<(Snapshot, Vec<StoredFile>)>;

    /// Inserts a compute target unless one of that name exists, which is
    /// returned instead (`false`).
    async fn put_compute_target(
        &self,
        target: StoredComputeTarget,
    ) -> Result<(bool, StoredComputeTarget)>;
    /// One compute target.
    async fn compute_target(&self, name: &str) -> Result<Option<StoredComputeTarget>>;
    /// Every stored compute target, by name.
    async fn list_compute_targets(&self) -> Result<Vec<StoredComputeTarget>>;
    /// Deletes a compute target; `false` when there was none.
    async fn delete_compute_target(&self, name: &str) -> Result<bool>;

    /// Whether any model or snapshot file still references the digest.
    async fn blob_referenced(&self, digest: &str) -> Result<bool>;
    /// Every digest referenced by any model or snapshot file.
    async fn referenced_blobs(&self) -> Result<Vec<String>>;
}

/// A one-file model version for tests.
#[cfg(test)]
pub fn test_model(name: &str, digest: &str) -> NewModel {
    sqlite::tests::new_model(name, digest)
}

/// Applies `changes` to the mutable fields, collecting every rule broken.
pub fn apply_model_changes(
    description: &mut Option<String>,
    tags: &mut BTreeMap<String, String>,
    properties: &mut BTreeMap<String, String>,
    changes: ModelChanges,
) -> std::result::Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let existing: Vec<&String> = changes
        .add_properties
        .keys()
        .filter(|key| properties.contains_key(*key))
        .collect();
    if !existing.is_empty() {
        let keys: Vec<&str> = existing.iter().map(|k| k.as_str()).collect();
        problems.push(format!(
            "properties are add-only: `{}` already set; register a new version to change them",
            keys.join("`, `")
        ));
    }
    for key in &changes.remove_tags {
        if changes.add_tags.contains_key(key) {
            problems.push(format!("tag `{key}` is both added and removed: pick one"));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if let Some(text) = changes.description {
        *description = Some(text).filter(|t| !t.is_empty());
    }
    if let Some(all) = changes.tags {
        *tags = all;
    }
    tags.extend(changes.add_tags);
    for key in &changes.remove_tags {
        tags.remove(key);
    }
    properties.extend(changes.add_properties);
    let mut problems = berth_api::names::check_key_values("tags", tags);
    problems.extend(berth_api::names::check_key_values("properties", properties));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn properties_are_add_only() {
        let (mut d, mut t, mut p) = (None, map(&[]), map(&[("a", "1")]));
        let changes = ModelChanges {
            add_properties: map(&[("a", "2"), ("b", "3")]),
            ..Default::default()
        };
        let err = apply_model_changes(&mut d, &mut t, &mut p, changes).unwrap_err();
        assert!(err[0].contains("`a` already set"), "{err:?}");
        assert_eq!(p, map(&[("a", "1")]), "nothing changed on refusal");
    }

    #[test]
    fn tags_replace_then_add_then_remove() {
        let (mut d, mut t, mut p) = (Some("x".into()), map(&[("old", "1")]), map(&[]));
        let changes = ModelChanges {
            description: Some(String::new()),
            tags: Some(map(&[("a", "1"), ("b", "2")])),
            add_tags: map(&[("c", "3")]),
            remove_tags: vec!["a".into()],
            add_properties: map(&[("p", "v")]),
        };
        apply_model_changes(&mut d, &mut t, &mut p, changes).unwrap();
        assert_eq!(d, None);
        assert_eq!(t, map(&[("b", "2"), ("c", "3")]));
        assert_eq!(p, map(&[("p", "v")]));
    }
}
