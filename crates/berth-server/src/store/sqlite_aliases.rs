//! SQLite statements for model aliases and follow state.

use berth_api::ModelAlias;
use rusqlite::{OptionalExtension, params};

use super::aliases::FollowState;
use super::sqlite::{SqliteStore, db};
use super::{Result, StoreError};

pub(super) fn upsert_follow(conn: &rusqlite::Connection, state: &FollowState) -> Result<()> {
    if state.is_empty() {
        conn.execute(
            "DELETE FROM follow_state WHERE service = ?1 AND reference = ?2",
            params![state.service, state.reference],
        )
        .map_err(db("delete follow state"))?;
        return Ok(());
    }
    conn.execute(
        "INSERT INTO follow_state (service, reference, pending, pending_cause, in_flight, \
         in_flight_operation, rejected) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (service, reference) DO UPDATE SET pending = excluded.pending, \
         pending_cause = excluded.pending_cause, in_flight = excluded.in_flight, \
         in_flight_operation = excluded.in_flight_operation, rejected = excluded.rejected",
        params![
            state.service,
            state.reference,
            state.pending,
            state.pending_cause,
            state.in_flight,
            state.in_flight_operation,
            state.rejected
        ],
    )
    .map_err(db("write follow state"))?;
    Ok(())
}

fn alias_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ModelAlias> {
    Ok(ModelAlias {
        name: r.get(0)?,
        alias: r.get(1)?,
        version: r.get(2)?,
        updated_time: r.get(3)?,
    })
}

impl SqliteStore {
    /// Points `alias` at `name:version` and writes `follows` in the same
    /// transaction; returns the alias and the version it pointed at before.
    pub(super) async fn put_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
        now: &str,
        follows: Vec<FollowState>,
    ) -> Result<(ModelAlias, Option<u32>)> {
        let (name, alias, now) = (name.to_owned(), alias.to_owned(), now.to_owned());
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin alias move"))?;
            let exists: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM models WHERE name = ?1 AND version = ?2)",
                    params![name, version],
                    |r| r.get(0),
                )
                .map_err(db("read model"))?;
            if !exists {
                return Err(StoreError::ModelNotFound(format!("{name}:{version}")));
            }
            let previous: Option<u32> = tx
                .query_row(
                    "SELECT version FROM model_aliases WHERE model_name = ?1 AND alias = ?2",
                    params![name, alias],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db("read alias"))?;
            tx.execute(
                "INSERT INTO model_aliases (model_name, alias, version, updated_time) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (model_name, alias) DO UPDATE SET version = excluded.version, \
                 updated_time = excluded.updated_time",
                params![name, alias, version, now],
            )
            .map_err(db("write alias"))?;
            for state in &follows {
                upsert_follow(&tx, state)?;
            }
            tx.commit().map_err(db("commit alias move"))?;
            Ok((
                ModelAlias {
                    name,
                    alias,
                    version,
                    updated_time: now,
                },
                previous,
            ))
        })
        .await
    }

    /// Removes an alias; returns the version it pointed at.
    pub(super) async fn drop_alias(&self, name: &str, alias: &str) -> Result<u32> {
        let (name, alias) = (name.to_owned(), alias.to_owned());
        self.write(move |conn| {
            conn.query_row(
                "DELETE FROM model_aliases WHERE model_name = ?1 AND alias = ?2 RETURNING version",
                params![name, alias],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("delete alias"))?
            .ok_or(StoreError::AliasNotFound { name, alias })
        })
        .await
    }

    /// Aliases of one model name, or of all, by name then alias.
    pub(super) async fn all_aliases(&self, name: Option<&str>) -> Result<Vec<ModelAlias>> {
        let name = name.map(str::to_owned);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT model_name, alias, version, updated_time FROM model_aliases \
                     WHERE ?1 IS NULL OR model_name = ?1 ORDER BY model_name, alias",
                )
                .map_err(db("prepare alias list"))?;
            let rows = stmt
                .query_map(params![name], alias_row)
                .map_err(db("list aliases"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db("list aliases"))
        })
        .await
    }

    /// The follow state of one service, or of every service.
    pub(super) async fn follows(&self, service: Option<&str>) -> Result<Vec<FollowState>> {
        let service = service.map(str::to_owned);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT service, reference, pending, pending_cause, in_flight, \
                     in_flight_operation, rejected FROM follow_state \
                     WHERE ?1 IS NULL OR service = ?1 ORDER BY service, reference",
                )
                .map_err(db("prepare follow state list"))?;
            let rows = stmt
                .query_map(params![service], |r| {
                    Ok(FollowState {
                        service: r.get(0)?,
                        reference: r.get(1)?,
                        pending: r.get(2)?,
                        pending_cause: r.get(3)?,
                        in_flight: r.get(4)?,
                        in_flight_operation: r.get(5)?,
                        rejected: r.get(6)?,
                    })
                })
                .map_err(db("list follow state"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db("list follow state"))
        })
        .await
    }

    /// Writes (or, when empty, deletes) follow state rows in one transaction.
    pub(super) async fn write_follows(&self, states: Vec<FollowState>) -> Result<()> {
        self.write(move |conn| {
            let tx = conn.transaction().map_err(db("begin follow state"))?;
            for state in &states {
                upsert_follow(&tx, state)?;
            }
            tx.commit().map_err(db("commit follow state"))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    async fn store_with_versions(n: u32) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        for i in 0..n {
            store
                .insert_model(crate::store::test_model("m", &format!("sha256:{i:02}")))
                .await
                .unwrap();
        }
        (dir, store)
    }

    #[tokio::test]
    async fn aliases_move_show_on_models_and_block_deletes() {
        let (_dir, store) = store_with_versions(3).await;
        let (alias, previous) = store
            .set_alias("m", "champion", 1, "t1", Vec::new())
            .await
            .unwrap();
        assert_eq!((alias.version, previous), (1, None));
        let (_, previous) = store
            .set_alias("m", "champion", 2, "t2", Vec::new())
            .await
            .unwrap();
        assert_eq!(previous, Some(1));
        store
            .set_alias("m", "canary", 3, "t3", Vec::new())
            .await
            .unwrap();
        let shown = store.model("m", Some(1)).await.unwrap();
        assert_eq!(
            shown.aliases.into_iter().collect::<Vec<_>>(),
            vec![("canary".to_owned(), 3), ("champion".to_owned(), 2)]
        );
        assert_eq!(store.alias_version("m", "champion").await.unwrap(), 2);
        match store.delete_model("m", 2).await {
            Err(StoreError::ModelAliased { id, aliases }) => {
                assert_eq!(
                    (id.as_str(), aliases),
                    ("m:2", vec!["m@champion".to_owned()])
                );
            }
            other => panic!("expected ModelAliased, got {other:?}"),
        }
        store.delete_model("m", 1).await.unwrap();
        assert!(matches!(
            store.set_alias("m", "x", 9, "t", Vec::new()).await,
            Err(StoreError::ModelNotFound(id)) if id == "m:9"
        ));
        assert_eq!(store.remove_alias("m", "champion").await.unwrap(), 2);
        assert!(matches!(
            store.remove_alias("m", "champion").await,
            Err(StoreError::AliasNotFound { .. })
        ));
        assert!(matches!(
            store.alias_version("m", "champion").await,
            Err(StoreError::AliasNotFound { .. })
        ));
        store.delete_model("m", 2).await.unwrap();
        let all = store.aliases(None).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].alias.as_str(), all[0].version), ("canary", 3));
    }

    #[tokio::test]
    async fn a_registration_writes_the_new_version_as_its_followers_pending_target() {
        let (_dir, store) = store_with_versions(1).await;
        let mut kept = FollowState::new("svc", "m@latest");
        kept.rejected = Some(1);
        kept.pending_cause = Some("old".into());
        let model = store
            .insert_model_following(crate::store::test_model("m", "sha256:ff"), vec![kept])
            .await
            .unwrap();
        assert_eq!(model.version, 2);
        let [state] = store
            .follow_states(Some("svc"))
            .await
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(
            (state.pending, state.rejected, state.pending_cause),
            (Some(2), Some(1), None)
        );
    }

    #[tokio::test]
    async fn follow_state_is_written_with_the_alias_move_and_cleared_when_empty() {
        let (_dir, store) = store_with_versions(2).await;
        let mut state = FollowState::new("svc", "m@champion");
        state.pending = Some(2);
        state.pending_cause = Some("alias moved m@champion 1 → 2".into());
        store
            .set_alias("m", "champion", 2, "t", vec![state.clone()])
            .await
            .unwrap();
        assert_eq!(
            store.follow_states(Some("svc")).await.unwrap(),
            vec![state.clone()]
        );
        assert!(store.follow_states(Some("other")).await.unwrap().is_empty());
        // A refused move writes nothing.
        let mut other = FollowState::new("svc2", "m@champion");
        other.pending = Some(5);
        assert!(
            store
                .set_alias("m", "champion", 5, "t", vec![other])
                .await
                .is_err()
        );
        assert_eq!(store.follow_states(None).await.unwrap().len(), 1);
        state.pending = None;
        state.pending_cause = None;
        store.put_follow_states(vec![state]).await.unwrap();
        assert!(store.follow_states(None).await.unwrap().is_empty());
    }
}
