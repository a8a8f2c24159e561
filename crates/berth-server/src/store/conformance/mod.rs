//! One conformance suite for every store backend: each behaviour is written
//! once, as an async fn taking a [`Subject`], and run twice by
//! [`conformance!`] (`<case>_sqlite` on a temp file, `<case>_postgres` on a
//! fresh database of a real PostgreSQL cluster, see [`pg`]).

mod cluster;
mod events;
mod migrate;
pub(crate) mod pg;
mod registry;
mod services;

use std::collections::BTreeMap;

use berth_api::{ComputeType, DeploymentSettings, InferenceSpec, ServiceKeys, ServiceSpec};

use super::{NewService, StoreUrl, Stores, Synchronous, open};

/// A store under test, with what it takes to open it again.
pub(super) struct Subject {
    pub stores: Stores,
    url: StoreUrl,
    _dir: Option<tempfile::TempDir>,
}

impl Subject {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = StoreUrl::Sqlite(dir.path().join("berth.db"));
        Self {
            stores: open(&url, Synchronous::Normal).await.expect("open sqlite"),
            url,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Self {
        let url = StoreUrl::Postgres(pg::fresh_database().await);
        Self {
            stores: open(&url, Synchronous::Normal)
                .await
                .expect("open postgres"),
            url,
            _dir: None,
        }
    }

    /// Closes the store and opens it again from what is stored.
    pub async fn reopen(self) -> Self {
        let Self { stores, url, _dir } = self;
        drop(stores);
        Self {
            stores: open(&url, Synchronous::Normal).await.expect("reopen"),
            url,
            _dir,
        }
    }
}

/// A minimal revision spec using `models`.
pub(super) fn spec(models: &[&str]) -> ServiceSpec {
    ServiceSpec {
        models: models.iter().map(|m| m.to_string()).collect(),
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

/// A create request for `name` with revision `spec`.
pub(super) fn new_service(name: &str, operation: &str, spec: ServiceSpec) -> NewService {
    NewService {
        name: name.into(),
        description: Some("d".into()),
        tags: BTreeMap::from([("team".into(), "a".into())]),
        properties: BTreeMap::new(),
        spec,
        keys: ServiceKeys {
            primary_key: "k1".into(),
            secondary_key: "k2".into(),
        },
        keys_given: true,
        overwrite: false,
        operation_id: operation.into(),
        now: "2026-01-01T00:00:00.000Z".into(),
    }
}

/// Declares each case twice: `$sqlite` and `$postgres` run `$case` on a fresh
/// store of that backend.
macro_rules! conformance {
    ($($case:ident => $sqlite:ident, $postgres:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $sqlite() {
                $case($crate::store::conformance::Subject::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $postgres() {
                $case($crate::store::conformance::Subject::postgres().await).await
            }
        )*
    };
}
pub(super) use conformance;
