//! SQLite implementation of [`Store`]: WAL mode, one writer connection, a small
//! pool of readers, migrations embedded in the binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::model_list::{self, Dialect};
use async_trait::async_trait;
use berth_api::{Model, ModelFile, ModelKind, Snapshot};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    ModelChanges, ModelFilter, NewEnvironment, NewModel, NewSnapshot, Result, Store, StoreError,
    StoredEnvironment, StoredFile, apply_model_changes,
};

/// Migrations in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_registry.sql"),
    include_str!("migrations/0002_environments_snapshots.sql"),
    include_str!("migrations/0003_services.sql"),
    include_str!("migrations/0004_events_webhooks.sql"),
    include_str!("migrations/0005_compute_targets.sql"),
    include_str!("migrations/0006_rollouts.sql"),
    include_str!("migrations/0007_model_aliases.sql"),
    include_str!("migrations/0008_kubernetes_targets.sql"),
    include_str!("migrations/0009_cluster.sql"),
];

/// Most reader connections kept open.
const MAX_IDLE_READERS: usize = 8;

/// The SQLite store.
pub struct SqliteStore {
    pub(super) inner: Arc<Inner>,
    /// Reconciler writes check this fence in their transaction (`None`: unfenced).
    pub(super) fence: Option<Arc<super::Fence>>,
}

pub(super) struct Inner {
    path: PathBuf,
    sync: Synchronous,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

pub(super) fn db(step: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Database {
        step,
        source: Box::new(source),
    }
}

/// SQLite's `synchronous` setting for the store (`--sqlite-synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Synchronous {
    /// Every commit is on disk before it returns: survives a power cut.
    #[default]
    Full,
    /// Commits reach the disk at checkpoints: the newest may be lost on a power
    /// cut (never corrupted); faster writes.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

fn open_connection(path: &Path, sync: Synchronous) -> Result<Connection> {
    let conn = Connection::open(path).map_err(db("open"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db("configure busy timeout"))?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
        sync.pragma()
    ))
    .map_err(db("configure pragmas"))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let done: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db("read schema version"))?;
    if done > MIGRATIONS.len() {
        return Err(StoreError::Corrupt {
            what: "schema version",
            detail: format!(
                "the database is at version {done}, newer than this server knows ({}); use a newer berth",
                MIGRATIONS.len()
            ),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction().map_err(db("begin migration"))?;
        tx.execute_batch(sql).map_err(db("run migration"))?;
        tx.pragma_update(None, "user_version", index + 1)
            .map_err(db("record schema version"))?;
        tx.commit().map_err(db("commit migration"))?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`, `synchronous = FULL`.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, Synchronous::Full).await
    }

    /// Opens (creating and migrating) the database at `path`.
    pub async fn open_with(path: &Path, sync: Synchronous) -> Result<Self> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut writer = open_connection(&path, sync)?;
            migrate(&mut writer)?;
            Ok(Self {
                inner: Arc::new(Inner {
                    path,
                    sync,
                    writer: Mutex::new(writer),
                    readers: Mutex::new(Vec::new()),
                }),
                fence: None,
            })
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub(super) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().map_err(poisoned)?.pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&inner.path, inner.sync)?,
            };
            let out = f(&conn);
            let mut readers = inner.readers.lock().map_err(poisoned)?;
            if readers.len() < MAX_IDLE_READERS {
                readers.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().map_err(poisoned)?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> StoreError {
    StoreError::Task("a database connection lock was poisoned by an earlier panic".into())
}

const MODEL_COLUMNS: &str = "m.id, m.name, m.version, m.kind, m.asset_name, m.description, m.tags, \
     m.properties, m.framework, m.framework_version, m.experiment_name, m.run_id, m.size, \
     m.file_count, m.content_digest, m.created_time, m.created_by, \
     (SELECT group_concat(service, char(31)) FROM (SELECT DISTINCT service FROM model_references r \
      WHERE r.model_name = m.name AND r.model_version = m.version ORDER BY service)), \
     (SELECT group_concat(a.alias || char(30) || a.version, char(31)) FROM model_aliases a \
      WHERE a.model_name = m.name)";

fn json_map(what: &'static str, text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn to_json(map: &BTreeMap<String, String>) -> String {
    // A map of strings always serialises.
    serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
}

struct RawModel {
    id: i64,
    model: Model,
    tags: String,
    properties: String,
}

fn raw_model(row: &Row<'_>) -> rusqlite::Result<RawModel> {
    let name: String = row.get(1)?;
    let version: u32 = row.get(2)?;
    let kind: String = row.get(3)?;
    let used_by: Option<String> = row.get(17)?;
    let aliases: Option<String> = row.get(18)?;
    Ok(RawModel {
        id: row.get(0)?,
        tags: row.get(6)?,
        properties: row.get(7)?,
        model: Model {
            id: format!("{name}:{version}"),
            name,
            version,
            kind: if kind == "folder" {
                ModelKind::Folder
            } else {
                ModelKind::File
            },
            asset_name: row.get(4)?,
            description: row.get(5)?,
            tags: BTreeMap::new(),
            properties: BTreeMap::new(),
            framework: row.get(8)?,
            framework_version: row.get(9)?,
            experiment_name: row.get(10)?,
            run_id: row.get(11)?,
            size: row.get(12)?,
            file_count: row.get(13)?,
            content_digest: row.get(14)?,
            created_time: row.get(15)?,
            created_by: row.get(16)?,
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
    })
}

fn finish_model(raw: RawModel) -> Result<(i64, Model)> {
    let mut model = raw.model;
    model.tags = json_map("tags", &raw.tags)?;
    model.properties = json_map("properties", &raw.properties)?;
    Ok((raw.id, model))
}

fn find_model(conn: &Connection, name: &str, version: Option<u32>) -> Result<(i64, Model)> {
    let raw = match version {
        Some(v) => conn
            .query_row(
                &format!("SELECT {MODEL_COLUMNS} FROM models m WHERE m.name = ?1 AND m.version = ?2"),
                params![name, v],
                raw_model,
            )
            .optional(),
        None => conn
            .query_row(
                &format!(
                    "SELECT {MODEL_COLUMNS} FROM models m WHERE m.name = ?1 ORDER BY m.version DESC LIMIT 1"
                ),
                params![name],
                raw_model,
            )
            .optional(),
    }
    .map_err(db("read model"))?;
    let id = match version {
        Some(v) => format!("{name}:{v}"),
        None => name.to_owned(),
    };
    finish_model(raw.ok_or(StoreError::ModelNotFound(id))?)
}

fn files_of(conn: &Connection, model_id: i64) -> Result<Vec<StoredFile>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT path, size, digest, mode FROM model_files WHERE model_id = ?1 ORDER BY path",
        )
        .map_err(db("prepare file query"))?;
    let rows = stmt
        .query_map(params![model_id], |row| {
            Ok(StoredFile {
                file: ModelFile {
                    path: row.get(0)?,
                    size: row.get(1)?,
                    digest: row.get(2)?,
                },
                mode: row.get(3)?,
            })
        })
        .map_err(db("read model files"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db("read model files"))
}

const ENV_COLUMNS: &str = "e.name, e.version, e.spec, e.warnings, e.description, e.created_time";

type RawEnvironment = (String, u32, String, String, Option<String>, String);

fn finish_environment(raw: RawEnvironment) -> Result<StoredEnvironment> {
    let (name, version, spec, warnings, description, created_time) = raw;
    Ok(StoredEnvironment {
        name,
        version,
        spec: serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt {
            what: "environment spec",
            detail: e.to_string(),
        })?,
        warnings: serde_json::from_str(&warnings).map_err(|e| StoreError::Corrupt {
            what: "environment warnings",
            detail: e.to_string(),
        })?,
        description,
        created_time,
    })
}

fn find_environment(
    conn: &Connection,
    name: &str,
    version: Option<u32>,
) -> Result<StoredEnvironment> {
    let raw = match version {
        Some(v) => conn.query_row(
            &format!("SELECT {ENV_COLUMNS} FROM environments e WHERE e.name = ?1 AND e.version = ?2"),
            params![name, v],
            |row| RawEnvironment::try_from(row),
        ),
        None => conn.query_row(
            &format!(
                "SELECT {ENV_COLUMNS} FROM environments e WHERE e.name = ?1 ORDER BY e.version DESC LIMIT 1"
            ),
            params![name],
            |row| RawEnvironment::try_from(row),
        ),
    }
    .optional()
    .map_err(db("read environment"))?;
    let id = match version {
        Some(v) => format!("{name}:{v}"),
        None => name.to_owned(),
    };
    finish_environment(raw.ok_or(StoreError::EnvironmentNotFound(id))?)
}

fn find_snapshot(conn: &Connection, digest: &str) -> Result<(Snapshot, Vec<StoredFile>)> {
    let snapshot = conn
        .query_row(
            "SELECT digest, size, file_count, created_time FROM snapshots WHERE digest = ?1",
            params![digest],
            |r| {
                Ok(Snapshot {
                    id: r.get(0)?,
                    size: r.get(1)?,
                    file_count: r.get(2)?,
                    created_time: r.get(3)?,
                    files: None,
                })
            },
        )
        .optional()
        .map_err(db("read snapshot"))?
        .ok_or_else(|| StoreError::SnapshotNotFound(digest.to_owned()))?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT path, size, digest, mode FROM snapshot_files WHERE snapshot = ?1 ORDER BY path",
        )
        .map_err(db("prepare snapshot files"))?;
    let files = stmt
        .query_map(params![digest], |row| {
            Ok(StoredFile {
                file: ModelFile {
                    path: row.get(0)?,
                    size: row.get(1)?,
                    digest: row.get(2)?,
                },
                mode: row.get(3)?,
            })
        })
        .map_err(db("read snapshot files"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db("read snapshot files"))?;
    Ok((snapshot, files))
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_compute_target(
        &self,
        target: super::StoredComputeTarget,
    ) -> Result<(bool, super::StoredComputeTarget)> {
        self.put_compute(target).await
    }

    async fn compute_target(&self, name: &str) -> Result<Option<super::StoredComputeTarget>> {
        self.get_compute(name).await
    }

    async fn list_compute_targets(&self) -> Result<Vec<super::StoredComputeTarget>> {
        self.all_computes().await
    }

    async fn delete_compute_target(&self, name: &str) -> Result<bool> {
        self.remove_compute(name).await
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT value FROM settings WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("read setting"))
        })
        .await
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(db("write setting"))?;
            Ok(())
        })
        .await
    }

    async fn insert_model(&self, new: NewModel) -> Result<Model> {
        self.insert_model_following(new, Vec::new()).await
    }

    async fn insert_model_following(
        &self,
        new: NewModel,
        follows: Vec<super::FollowState>,
    ) -> Result<Model> {
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin model insert"))?;
            let version: u32 = tx
                .query_row(
                    "INSERT INTO model_names (name, last_version) VALUES (?1, 1) \
                     ON CONFLICT (name) DO UPDATE SET last_version = last_version + 1 \
                     RETURNING last_version",
                    params![new.name],
                    |r| r.get(0),
                )
                .map_err(db("assign model version"))?;
            let size: u64 = new.files.iter().map(|f| f.size).sum();
            tx.execute(
                "INSERT INTO models (name, version, kind, asset_name, description, tags, properties, \
                 framework, framework_version, experiment_name, run_id, size, file_count, \
                 content_digest, created_time, created_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    new.name,
                    version,
                    new.kind.as_str(),
                    new.asset_name,
                    new.description,
                    to_json(&new.tags),
                    to_json(&new.properties),
                    new.framework,
                    new.framework_version,
                    new.experiment_name,
                    new.run_id,
                    size,
                    new.files.len() as u64,
                    new.content_digest,
                    new.created_time,
                    new.created_by,
                ],
            )
            .map_err(db("insert model"))?;
            let model_id = tx.last_insert_rowid();
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO model_files (model_id, path, size, digest, mode) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(db("prepare file insert"))?;
                for file in &new.files {
                    stmt.execute(params![model_id, file.path, file.size, file.digest, file.mode])
                        .map_err(db("insert model file"))?;
                }
            }
            for mut state in follows {
                state.pending = Some(version);
                state.pending_cause = None;
                super::sqlite_aliases::upsert_follow(&tx, &state)?;
            }
            let (_, model) = find_model(&tx, &new.name, Some(version))?;
            tx.commit().map_err(db("commit model insert"))?;
            Ok(model)
        })
        .await
    }

    async fn model(&self, name: &str, version: Option<u32>) -> Result<Model> {
        let name = name.to_owned();
        self.read(move |conn| {
            let (id, mut model) = find_model(conn, &name, version)?;
            model.files = Some(files_of(conn, id)?.into_iter().map(|f| f.file).collect());
            Ok(model)
        })
        .await
    }

    async fn model_files(&self, name: &str, version: u32) -> Result<Vec<StoredFile>> {
        let name = name.to_owned();
        self.read(move |conn| {
            let (id, _) = find_model(conn, &name, Some(version))?;
            files_of(conn, id)
        })
        .await
    }

    async fn list_models(&self, filter: &ModelFilter) -> Result<Vec<Model>> {
        let filter = filter.clone();
        self.read(move |conn| {
            let (query, args) = model_list::query(&filter, MODEL_COLUMNS, Dialect::Sqlite);
            let mut stmt = conn.prepare(&query).map_err(db("prepare model list"))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), raw_model)
                .map_err(db("list models"))?;
            let mut out = Vec::new();
            for raw in rows {
                let (_, model) = finish_model(raw.map_err(db("list models"))?)?;
                out.push(model);
            }
            Ok(out)
        })
        .await
    }

    async fn update_model(&self, name: &str, version: u32, changes: ModelChanges) -> Result<Model> {
        let name = name.to_owned();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin model update"))?;
            let (id, mut model) = find_model(&tx, &name, Some(version))?;
            apply_model_changes(
                &mut model.description,
                &mut model.tags,
                &mut model.properties,
                changes,
            )
            .map_err(StoreError::Invalid)?;
            tx.execute(
                "UPDATE models SET description = ?1, tags = ?2, properties = ?3 WHERE id = ?4",
                params![
                    model.description,
                    to_json(&model.tags),
                    to_json(&model.properties),
                    id
                ],
            )
            .map_err(db("update model"))?;
            model.files = Some(files_of(&tx, id)?.into_iter().map(|f| f.file).collect());
            tx.commit().map_err(db("commit model update"))?;
            Ok(model)
        })
        .await
    }

    async fn delete_model(&self, name: &str, version: u32) -> Result<Vec<String>> {
        let name = name.to_owned();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin model delete"))?;
            let (id, model) = find_model(&tx, &name, Some(version))?;
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
            let digests = files_of(&tx, id)?
                .into_iter()
                .map(|f| f.file.digest)
                .collect();
            tx.execute("DELETE FROM models WHERE id = ?1", params![id])
                .map_err(db("delete model"))?;
            tx.commit().map_err(db("commit model delete"))?;
            Ok(digests)
        })
        .await
    }

    async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
        now: &str,
        follows: Vec<super::FollowState>,
    ) -> Result<(berth_api::ModelAlias, Option<u32>)> {
        self.put_alias(name, alias, version, now, follows).await
    }

    async fn remove_alias(&self, name: &str, alias: &str) -> Result<u32> {
        self.drop_alias(name, alias).await
    }

    async fn aliases(&self, name: Option<&str>) -> Result<Vec<berth_api::ModelAlias>> {
        self.all_aliases(name).await
    }

    async fn follow_states(&self, service: Option<&str>) -> Result<Vec<super::FollowState>> {
        self.follows(service).await
    }

    async fn put_follow_states(&self, states: Vec<super::FollowState>) -> Result<()> {
        self.write_follows(states).await
    }

    async fn register_environment(&self, new: NewEnvironment) -> Result<(bool, StoredEnvironment)> {
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin environment insert"))?;
            let newest: Option<(u32, String)> = tx
                .query_row(
                    "SELECT version, spec_digest FROM environments WHERE name = ?1 ORDER BY version DESC LIMIT 1",
                    params![new.name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db("read newest environment"))?;
            if let Some((version, digest)) = newest
                && digest == new.spec_digest
            {
                let existing = find_environment(&tx, &new.name, Some(version))?;
                return Ok((false, existing));
            }
            let version: u32 = tx
                .query_row(
                    "INSERT INTO environment_names (name, last_version) VALUES (?1, 1) \
                     ON CONFLICT (name) DO UPDATE SET last_version = last_version + 1 \
                     RETURNING last_version",
                    params![new.name],
                    |r| r.get(0),
                )
                .map_err(db("assign environment version"))?;
            tx.execute(
                "INSERT INTO environments (name, version, spec, spec_digest, build_hash, warnings, description, created_time) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    new.name,
                    version,
                    serde_json::to_string(&new.spec).unwrap_or_default(),
                    new.spec_digest,
                    new.build_hash,
                    serde_json::to_string(&new.warnings).unwrap_or_default(),
                    new.description,
                    new.created_time,
                ],
            )
            .map_err(db("insert environment"))?;
            let stored = find_environment(&tx, &new.name, Some(version))?;
            tx.commit().map_err(db("commit environment insert"))?;
            Ok((true, stored))
        })
        .await
    }

    async fn environment(&self, name: &str, version: Option<u32>) -> Result<StoredEnvironment> {
        let name = name.to_owned();
        self.read(move |conn| find_environment(conn, &name, version))
            .await
    }

    async fn list_environments(
        &self,
        name: Option<&str>,
        latest: bool,
    ) -> Result<Vec<StoredEnvironment>> {
        let name = name.map(str::to_owned);
        self.read(move |conn| {
            let filter = if name.is_some() { "WHERE e.name = ?1" } else { "WHERE ?1 IS NULL" };
            let sql = if latest {
                format!(
                    "SELECT {ENV_COLUMNS} FROM (SELECT e.*, row_number() OVER (PARTITION BY e.name ORDER BY e.version DESC) AS newest \
                     FROM environments e {filter}) e WHERE e.newest = 1 ORDER BY e.id DESC"
                )
            } else {
                format!("SELECT {ENV_COLUMNS} FROM environments e {filter} ORDER BY e.id DESC")
            };
            let mut stmt = conn.prepare(&sql).map_err(db("prepare environment list"))?;
            let rows = stmt
                .query_map(params![name], |row| RawEnvironment::try_from(row))
                .map_err(db("list environments"))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(finish_environment(row.map_err(db("list environments"))?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn insert_snapshot(&self, snapshot: NewSnapshot) -> Result<(bool, Snapshot)> {
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin snapshot insert"))?;
            let size: u64 = snapshot.files.iter().map(|f| f.size).sum();
            let inserted = tx
                .execute(
                    "INSERT INTO snapshots (digest, size, file_count, created_time) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (digest) DO NOTHING",
                    params![snapshot.digest, size, snapshot.files.len() as u64, snapshot.created_time],
                )
                .map_err(db("insert snapshot"))?;
            if inserted == 1 {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO snapshot_files (snapshot, path, size, digest, mode) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(db("prepare snapshot file insert"))?;
                for file in &snapshot.files {
                    stmt.execute(params![snapshot.digest, file.path, file.size, file.digest, file.mode])
                        .map_err(db("insert snapshot file"))?;
                }
            }
            let (found, files) = find_snapshot(&tx, &snapshot.digest)?;
            tx.commit().map_err(db("commit snapshot insert"))?;
            let mut found = found;
            found.files = Some(files.into_iter().map(|f| f.file).collect());
            Ok((inserted == 1, found))
        })
        .await
    }

    async fn snapshot(&self, digest: &str) -> Result<(Snapshot, Vec<StoredFile>)> {
        let digest = digest.to_owned();
        self.read(move |conn| find_snapshot(conn, &digest)).await
    }

    async fn blob_referenced(&self, digest: &str) -> Result<bool> {
        let digest = digest.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM model_files WHERE digest = ?1) \
                 OR EXISTS (SELECT 1 FROM snapshot_files WHERE digest = ?1)",
                params![digest],
                |r| r.get(0),
            )
            .map_err(db("check blob references"))
        })
        .await
    }

    async fn referenced_blobs(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT digest FROM model_files UNION SELECT digest FROM snapshot_files")
                .map_err(db("prepare blob scan"))?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .map_err(db("scan blob references"))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(db("scan blob references"))
        })
        .await
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::NewModelFile;

    #[tokio::test]
    async fn synchronous_is_full_unless_asked_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        for (sync, expected) in [(Synchronous::Full, 2), (Synchronous::Normal, 1)] {
            let store = SqliteStore::open_with(&dir.path().join("s.db"), sync)
                .await
                .unwrap();
            let (writer, reader): (i64, i64) = (
                store
                    .write(|c| {
                        c.query_row("PRAGMA synchronous", [], |r| r.get(0))
                            .map_err(db("read"))
                    })
                    .await
                    .unwrap(),
                store
                    .read(|c| {
                        c.query_row("PRAGMA synchronous", [], |r| r.get(0))
                            .map_err(db("read"))
                    })
                    .await
                    .unwrap(),
            );
            assert_eq!((writer, reader), (expected, expected), "{sync:?}");
        }
    }

    pub(in crate::store) fn new_model(name: &str, digest: &str) -> NewModel {
        NewModel {
            name: name.into(),
            kind: ModelKind::File,
            asset_name: "m.bin".into(),
            description: None,
            tags: BTreeMap::new(),
            properties: BTreeMap::new(),
            framework: None,
            framework_version: None,
            experiment_name: None,
            run_id: None,
            content_digest: digest.into(),
            created_time: "2026-01-01T00:00:00Z".into(),
            created_by: "test".into(),
            files: vec![NewModelFile {
                path: "m.bin".into(),
                size: 3,
                digest: digest.into(),
                mode: 0o644,
            }],
        }
    }

    #[tokio::test]
    async fn a_model_a_service_references_cannot_be_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        store
            .insert_model(new_model("m", "sha256:aa"))
            .await
            .unwrap();
        store
            .write(|conn| {
                conn.execute(
                    "INSERT INTO model_references (service, model_name, model_version) VALUES ('svc-b', 'm', 1), ('svc-a', 'm', 1)",
                    [],
                )
                .map_err(db("test insert"))?;
                Ok(())
            })
            .await
            .unwrap();
        let shown = store.model("m", Some(1)).await.unwrap();
        assert_eq!(shown.used_by, vec!["svc-a", "svc-b"]);
        match store.delete_model("m", 1).await {
            Err(StoreError::ModelInUse { id, services }) => {
                assert_eq!(id, "m:1");
                assert_eq!(services, vec!["svc-a", "svc-b"]);
            }
            other => panic!("expected ModelInUse, got {other:?}"),
        }
        assert!(store.blob_referenced("sha256:aa").await.unwrap());
    }

    #[tokio::test]
    async fn a_database_newer_than_the_binary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .write(|c| c.pragma_update(None, "user_version", 99).map_err(db("t")))
            .await
            .unwrap();
        drop(store);
        match SqliteStore::open(&path).await {
            Err(StoreError::Corrupt { what, detail }) => {
                assert_eq!(what, "schema version");
                assert!(detail.contains("version 99"), "{detail}");
            }
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    }

    #[tokio::test]
    async fn migrations_are_recorded_and_reopening_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(SqliteStore::open(&path).await.unwrap());
        let store = SqliteStore::open(&path).await.unwrap();
        let version: usize = store
            .read(|c| {
                c.query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(db("t"))
            })
            .await
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }
}
