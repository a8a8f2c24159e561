//! PostgreSQL implementation of [`Store`]: settings, the model registry,
//! environments, snapshots and blob references (aliases and compute targets
//! delegate to their own files).

use std::collections::BTreeMap;

use async_trait::async_trait;
use berth_api::{Model, ModelFile, ModelKind, Snapshot};
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::{PgStore, col, corrupt, db, i64_of, u32_of, u64_of};
use crate::store::model_list::{self, Dialect};
use crate::store::{
    FollowState, ModelChanges, ModelFilter, NewEnvironment, NewModel, NewSnapshot, Result, Store,
    StoreError, StoredComputeTarget, StoredEnvironment, StoredFile, apply_model_changes,
};

const MODEL_COLUMNS: &str = "m.id, m.name, m.version, m.kind, m.asset_name, m.description, m.tags, \
     m.properties, m.framework, m.framework_version, m.experiment_name, m.run_id, m.size, \
     m.file_count, m.content_digest, m.created_time, m.created_by, \
     (SELECT string_agg(DISTINCT r.service, chr(31) ORDER BY r.service) FROM model_references r \
      WHERE r.model_name = m.name AND r.model_version = m.version), \
     (SELECT string_agg(a.alias || chr(30) || a.version::TEXT, chr(31)) FROM model_aliases a \
      WHERE a.model_name = m.name)";

fn json_map(what: &'static str, text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(corrupt(what))
}

fn to_json(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
}

fn model_of(row: &tokio_postgres::Row) -> Result<(i64, Model)> {
    let name: String = col(row, 1)?;
    let version = u32_of(col(row, 2)?, "model version")?;
    let kind: String = col(row, 3)?;
    let used_by: Option<String> = col(row, 17)?;
    let aliases: Option<String> = col(row, 18)?;
    let tags: String = col(row, 6)?;
    let properties: String = col(row, 7)?;
    Ok((
        col(row, 0)?,
        Model {
            id: format!("{name}:{version}"),
            name,
            version,
            kind: if kind == "folder" {
                ModelKind::Folder
            } else {
                ModelKind::File
            },
            asset_name: col(row, 4)?,
            description: col(row, 5)?,
            tags: json_map("tags", &tags)?,
            properties: json_map("properties", &properties)?,
            framework: col(row, 8)?,
            framework_version: col(row, 9)?,
            experiment_name: col(row, 10)?,
            run_id: col(row, 11)?,
            size: u64_of(col(row, 12)?, "model size")?,
            file_count: u64_of(col(row, 13)?, "model file count")?,
            content_digest: col(row, 14)?,
            created_time: col(row, 15)?,
            created_by: col(row, 16)?,
            used_by: used_by
                .map(|s| s.split('\u{1f}').map(str::to_owned).collect())
                .unwrap_or_default(),
            files: None,
            aliases: aliases
                .iter()
                .flat_map(|s| s.split('\u{1f}'))
                .filter_map(|pair| {
                    let (alias, version) = pair.split_once('\u{1e}')?;
                    Some((alias.to_owned(), version.parse().ok()?))
                })
                .collect(),
            followers: Vec::new(),
        },
    ))
}

pub(super) async fn find_model(
    client: &impl GenericClient,
    name: &str,
    version: Option<u32>,
) -> Result<(i64, Model)> {
    let row = match version {
        Some(v) => client
            .query_opt(
                &format!(
                    "SELECT {MODEL_COLUMNS} FROM models m WHERE m.name = $1 AND m.version = $2"
                ),
                &[&name, &i64::from(v)],
            )
            .await,
        None => client
            .query_opt(
                &format!(
                    "SELECT {MODEL_COLUMNS} FROM models m WHERE m.name = $1 ORDER BY m.version DESC LIMIT 1"
                ),
                &[&name],
            )
            .await,
    }
    .map_err(db("read model"))?;
    let id = match version {
        Some(v) => format!("{name}:{v}"),
        None => name.to_owned(),
    };
    model_of(&row.ok_or(StoreError::ModelNotFound(id))?)
}

fn file_of(row: &tokio_postgres::Row) -> Result<StoredFile> {
    Ok(StoredFile {
        file: ModelFile {
            path: col(row, 0)?,
            size: u64_of(col(row, 1)?, "file size")?,
            digest: col(row, 2)?,
        },
        mode: u32_of(col(row, 3)?, "file mode")?,
    })
}

async fn files_of(client: &impl GenericClient, model_id: i64) -> Result<Vec<StoredFile>> {
    client
        .query(
            "SELECT path, size, digest, mode FROM model_files WHERE model_id = $1 ORDER BY path",
            &[&model_id],
        )
        .await
        .map_err(db("read model files"))?
        .iter()
        .map(file_of)
        .collect()
}

const ENV_COLUMNS: &str = "e.name, e.version, e.spec, e.warnings, e.description, e.created_time";

fn environment_of(row: &tokio_postgres::Row) -> Result<StoredEnvironment> {
    let spec: String = col(row, 2)?;
    let warnings: String = col(row, 3)?;
    Ok(StoredEnvironment {
        name: col(row, 0)?,
        version: u32_of(col(row, 1)?, "environment version")?,
        spec: serde_json::from_str(&spec).map_err(corrupt("environment spec"))?,
        warnings: serde_json::from_str(&warnings).map_err(corrupt("environment warnings"))?,
        description: col(row, 4)?,
        created_time: col(row, 5)?,
    })
}

async fn find_environment(
    client: &impl GenericClient,
    name: &str,
    version: Option<u32>,
) -> Result<StoredEnvironment> {
    let row = match version {
        Some(v) => client
            .query_opt(
                &format!(
                    "SELECT {ENV_COLUMNS} FROM environments e WHERE e.name = $1 AND e.version = $2"
                ),
                &[&name, &i64::from(v)],
            )
            .await,
        None => client
            .query_opt(
                &format!(
                    "SELECT {ENV_COLUMNS} FROM environments e WHERE e.name = $1 ORDER BY e.version DESC LIMIT 1"
                ),
                &[&name],
            )
            .await,
    }
    .map_err(db("read environment"))?;
    let id = match version {
        Some(v) => format!("{name}:{v}"),
        None => name.to_owned(),
    };
    environment_of(&row.ok_or(StoreError::EnvironmentNotFound(id))?)
}

async fn find_snapshot(
    client: &impl GenericClient,
    digest: &str,
) -> Result<(Snapshot, Vec<StoredFile>)> {
    let row = client
        .query_opt(
            "SELECT digest, size, file_count, created_time FROM snapshots WHERE digest = $1",
            &[&digest],
        )
        .await
        .map_err(db("read snapshot"))?
        .ok_or_else(|| StoreError::SnapshotNotFound(digest.to_owned()))?;
    let snapshot = Snapshot {
        id: col(&row, 0)?,
        size: u64_of(col(&row, 1)?, "snapshot size")?,
        file_count: u64_of(col(&row, 2)?, "snapshot file count")?,
        created_time: col(&row, 3)?,
        files: None,
    };
    let files = client
        .query(
            "SELECT path, size, digest, mode FROM snapshot_files WHERE snapshot = $1 ORDER BY path",
            &[&digest],
        )
        .await
        .map_err(db("read snapshot files"))?
        .iter()
        .map(file_of)
        .collect::<Result<Vec<_>>>()?;
    Ok((snapshot, files))
}

#[async_trait]
impl Store for PgStore {
    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let conn = self.conn().await?;
        conn.query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .await
            .map_err(db("read setting"))?
            .map(|row| col(&row, 0))
            .transpose()
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .await
        .map_err(db("write setting"))?;
        Ok(())
    }

    async fn insert_model(&self, model: NewModel) -> Result<Model> {
        self.insert_model_following(model, Vec::new()).await
    }

    async fn insert_model_following(
        &self,
        new: NewModel,
        follows: Vec<FollowState>,
    ) -> Result<Model> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin model insert"))?;
        let row = tx
            .query_one(
                "INSERT INTO model_names (name, last_version) VALUES ($1, 1) \
                 ON CONFLICT (name) DO UPDATE SET last_version = model_names.last_version + 1 \
                 RETURNING last_version",
                &[&new.name],
            )
            .await
            .map_err(db("assign model version"))?;
        let version: i64 = col(&row, 0)?;
        let size: u64 = new.files.iter().map(|f| f.size).sum();
        let row = tx
            .query_one(
                "INSERT INTO models (name, version, kind, asset_name, description, tags, properties, \
                 framework, framework_version, experiment_name, run_id, size, file_count, \
                 content_digest, created_time, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                 RETURNING id",
                &[
                    &new.name,
                    &version,
                    &new.kind.as_str(),
                    &new.asset_name,
                    &new.description,
                    &to_json(&new.tags),
                    &to_json(&new.properties),
                    &new.framework,
                    &new.framework_version,
                    &new.experiment_name,
                    &new.run_id,
                    &i64_of(size),
                    &i64_of(new.files.len() as u64),
                    &new.content_digest,
                    &new.created_time,
                    &new.created_by,
                ],
            )
            .await
            .map_err(db("insert model"))?;
        let model_id: i64 = col(&row, 0)?;
        let insert = tx
            .prepare(
                "INSERT INTO model_files (model_id, path, size, digest, mode) VALUES ($1, $2, $3, $4, $5)",
            )
            .await
            .map_err(db("prepare file insert"))?;
        for file in &new.files {
            tx.execute(
                &insert,
                &[
                    &model_id,
                    &file.path,
                    &i64_of(file.size),
                    &file.digest,
                    &i64::from(file.mode),
                ],
            )
            .await
            .map_err(db("insert model file"))?;
        }
        let version = u32_of(version, "model version")?;
        for mut state in follows {
            state.pending = Some(version);
            state.pending_cause = None;
            super::aliases::upsert_follow(&tx, &state).await?;
        }
        let (_, model) = find_model(&tx, &new.name, Some(version)).await?;
        tx.commit().await.map_err(db("commit model insert"))?;
        Ok(model)
    }

    async fn model(&self, name: &str, version: Option<u32>) -> Result<Model> {
        let conn = self.conn().await?;
        let (id, mut model) = find_model(&**conn, name, version).await?;
        model.files = Some(
            files_of(&**conn, id)
                .await?
                .into_iter()
                .map(|f| f.file)
                .collect(),
        );
        Ok(model)
    }

    async fn model_files(&self, name: &str, version: u32) -> Result<Vec<StoredFile>> {
        let conn = self.conn().await?;
        let (id, _) = find_model(&**conn, name, Some(version)).await?;
        files_of(&**conn, id).await
    }

    async fn list_models(&self, filter: &ModelFilter) -> Result<Vec<Model>> {
        let (query, args) = model_list::query(filter, MODEL_COLUMNS, Dialect::Postgres);
        let params: Vec<&(dyn ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let conn = self.conn().await?;
        conn.query(&query, &params)
            .await
            .map_err(db("list models"))?
            .iter()
            .map(|row| model_of(row).map(|(_, m)| m))
            .collect()
    }

    async fn update_model(&self, name: &str, version: u32, changes: ModelChanges) -> Result<Model> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin model update"))?;
        tx.execute(
            "SELECT 1 FROM models WHERE name = $1 AND version = $2 FOR UPDATE",
            &[&name, &i64::from(version)],
        )
        .await
        .map_err(db("lock model"))?;
        let (id, mut model) = find_model(&tx, name, Some(version)).await?;
        apply_model_changes(
            &mut model.description,
            &mut model.tags,
            &mut model.properties,
            changes,
        )
        .map_err(StoreError::Invalid)?;
        tx.execute(
            "UPDATE models SET description = $1, tags = $2, properties = $3 WHERE id = $4",
            &[
                &model.description,
                &to_json(&model.tags),
                &to_json(&model.properties),
                &id,
            ],
        )
        .await
        .map_err(db("update model"))?;
        model.files = Some(
            files_of(&tx, id)
                .await?
                .into_iter()
                .map(|f| f.file)
                .collect(),
        );
        tx.commit().await.map_err(db("commit model update"))?;
        Ok(model)
    }

    async fn delete_model(&self, name: &str, version: u32) -> Result<Vec<String>> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin model delete"))?;
        // References and aliases are written under the model name's counter
        // row lock too, so none appears between this check and the delete.
        tx.execute(
            "SELECT 1 FROM model_names WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await
        .map_err(db("lock model name"))?;
        let (id, model) = find_model(&tx, name, Some(version)).await?;
        if !model.used_by.is_empty() {
            return Err(StoreError::ModelInUse {
                id: model.id,
                services: model.used_by,
            });
        }
        let aliases: Vec<String> = model
            .aliases
            .iter()
            .filter(|(_, v)| **v == version)
            .map(|(a, _)| format!("{name}@{a}"))
            .collect();
        if !aliases.is_empty() {
            return Err(StoreError::ModelAliased {
                id: model.id,
                aliases,
            });
        }
        let digests = files_of(&tx, id)
            .await?
            .into_iter()
            .map(|f| f.file.digest)
            .collect();
        tx.execute("DELETE FROM models WHERE id = $1", &[&id])
            .await
            .map_err(db("delete model"))?;
        tx.commit().await.map_err(db("commit model delete"))?;
        Ok(digests)
    }

    async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
        now: &str,
        follows: Vec<FollowState>,
    ) -> Result<(berth_api::ModelAlias, Option<u32>)> {
        self.put_alias(name, alias, version, now, follows).await
    }

    async fn remove_alias(&self, name: &str, alias: &str) -> Result<u32> {
        self.drop_alias(name, alias).await
    }

    async fn aliases(&self, name: Option<&str>) -> Result<Vec<berth_api::ModelAlias>> {
        self.all_aliases(name).await
    }

    async fn follow_states(&self, service: Option<&str>) -> Result<Vec<FollowState>> {
        self.follows(service).await
    }

    async fn put_follow_states(&self, states: Vec<FollowState>) -> Result<()> {
        self.write_follows(states).await
    }

    async fn register_environment(&self, new: NewEnvironment) -> Result<(bool, StoredEnvironment)> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin environment insert"))?;
        // The name's counter row, locked: registrations of one name run one at a time.
        tx.execute(
            "INSERT INTO environment_names (name, last_version) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
            &[&new.name],
        )
        .await
        .map_err(db("create environment name"))?;
        tx.execute(
            "SELECT 1 FROM environment_names WHERE name = $1 FOR UPDATE",
            &[&new.name],
        )
        .await
        .map_err(db("lock environment name"))?;
        let newest = tx
            .query_opt(
                "SELECT version, spec_digest FROM environments WHERE name = $1 ORDER BY version DESC LIMIT 1",
                &[&new.name],
            )
            .await
            .map_err(db("read newest environment"))?;
        if let Some(row) = newest {
            let (version, digest): (i64, String) = (col(&row, 0)?, col(&row, 1)?);
            if digest == new.spec_digest {
                let existing =
                    find_environment(&tx, &new.name, Some(u32_of(version, "version")?)).await?;
                tx.commit().await.map_err(db("commit environment insert"))?;
                return Ok((false, existing));
            }
        }
        let row = tx
            .query_one(
                "UPDATE environment_names SET last_version = last_version + 1 WHERE name = $1 \
                 RETURNING last_version",
                &[&new.name],
            )
            .await
            .map_err(db("assign environment version"))?;
        let version: i64 = col(&row, 0)?;
        tx.execute(
            "INSERT INTO environments (name, version, spec, spec_digest, build_hash, warnings, description, created_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &new.name,
                &version,
                &serde_json::to_string(&new.spec).unwrap_or_default(),
                &new.spec_digest,
                &new.build_hash,
                &serde_json::to_string(&new.warnings).unwrap_or_default(),
                &new.description,
                &new.created_time,
            ],
        )
        .await
        .map_err(db("insert environment"))?;
        let stored = find_environment(&tx, &new.name, Some(u32_of(version, "version")?)).await?;
        tx.commit().await.map_err(db("commit environment insert"))?;
        Ok((true, stored))
    }

    async fn environment(&self, name: &str, version: Option<u32>) -> Result<StoredEnvironment> {
        let conn = self.conn().await?;
        find_environment(&**conn, name, version).await
    }

    async fn list_environments(
        &self,
        name: Option<&str>,
        latest: bool,
    ) -> Result<Vec<StoredEnvironment>> {
        let filter = "WHERE $1::TEXT IS NULL OR e.name = $1";
        let sql = if latest {
            format!(
                "SELECT {ENV_COLUMNS} FROM (SELECT e.*, row_number() OVER (PARTITION BY e.name ORDER BY e.version DESC) AS newest \
                 FROM environments e {filter}) e WHERE e.newest = 1 ORDER BY e.id DESC"
            )
        } else {
            format!("SELECT {ENV_COLUMNS} FROM environments e {filter} ORDER BY e.id DESC")
        };
        let conn = self.conn().await?;
        conn.query(&sql, &[&name])
            .await
            .map_err(db("list environments"))?
            .iter()
            .map(environment_of)
            .collect()
    }

    async fn insert_snapshot(&self, snapshot: NewSnapshot) -> Result<(bool, Snapshot)> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin snapshot insert"))?;
        let size: u64 = snapshot.files.iter().map(|f| f.size).sum();
        let inserted = tx
            .execute(
                "INSERT INTO snapshots (digest, size, file_count, created_time) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (digest) DO NOTHING",
                &[
                    &snapshot.digest,
                    &i64_of(size),
                    &i64_of(snapshot.files.len() as u64),
                    &snapshot.created_time,
                ],
            )
            .await
            .map_err(db("insert snapshot"))?;
        if inserted == 1 {
            let insert = tx
                .prepare(
                    "INSERT INTO snapshot_files (snapshot, path, size, digest, mode) VALUES ($1, $2, $3, $4, $5)",
                )
                .await
                .map_err(db("prepare snapshot file insert"))?;
            for file in &snapshot.files {
                tx.execute(
                    &insert,
                    &[
                        &snapshot.digest,
                        &file.path,
                        &i64_of(file.size),
                        &file.digest,
                        &i64::from(file.mode),
                    ],
                )
                .await
                .map_err(db("insert snapshot file"))?;
            }
        }
        let (mut found, files) = find_snapshot(&tx, &snapshot.digest).await?;
        tx.commit().await.map_err(db("commit snapshot insert"))?;
        found.files = Some(files.into_iter().map(|f| f.file).collect());
        Ok((inserted == 1, found))
    }

    async fn snapshot(&self, digest: &str) -> Result<(Snapshot, Vec<StoredFile>)> {
        let conn = self.conn().await?;
        find_snapshot(&**conn, digest).await
    }

    async fn put_compute_target(
        &self,
        target: StoredComputeTarget,
    ) -> Result<(bool, StoredComputeTarget)> {
        self.put_compute(target).await
    }

    async fn compute_target(&self, name: &str) -> Result<Option<StoredComputeTarget>> {
        self.get_compute(name).await
    }

    async fn list_compute_targets(&self) -> Result<Vec<StoredComputeTarget>> {
        self.all_computes().await
    }

    async fn delete_compute_target(&self, name: &str) -> Result<bool> {
        self.remove_compute(name).await
    }

    async fn blob_referenced(&self, digest: &str) -> Result<bool> {
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM model_files WHERE digest = $1) \
                 OR EXISTS (SELECT 1 FROM snapshot_files WHERE digest = $1)",
                &[&digest],
            )
            .await
            .map_err(db("check blob references"))?;
        col(&row, 0)
    }

    async fn referenced_blobs(&self) -> Result<Vec<String>> {
        let conn = self.conn().await?;
        conn.query(
            "SELECT digest FROM model_files UNION SELECT digest FROM snapshot_files",
            &[],
        )
        .await
        .map_err(db("scan blob references"))?
        .iter()
        .map(|row| col(row, 0))
        .collect()
    }
}
