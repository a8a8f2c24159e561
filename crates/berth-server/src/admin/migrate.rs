//! `berth admin migrate --from sqlite://PATH --to postgres://...`: copies every
//! metadata row (models and files, environments, snapshots, services,
//! revisions, operations and their logs, events, webhooks and their cursors,
//! aliases, follow states, compute targets, settings, version counters) into
//! an empty PostgreSQL store, in one transaction on the target, and reports the
//! rows copied per table.
//!
//! With `--blobs-to`, every blob the source references is first streamed into the
//! target blob store and checked against its digest ([`crate::blobs::copy_blobs`]);
//! a blob that cannot be copied stops the command before any metadata is written,
//! so the new store never refers to content its blob store lacks. Without it the
//! data directory's `blobs/` stays where it is and serves the new store.

use std::path::Path;

use super::AdminError;
use crate::blobs::{BlobLocation, BlobStore, LocationError, copy_blobs};
use crate::store::postgres::import::{Copied, copy_from_sqlite};
use crate::store::{PgStore, SqliteStore, Store, StoreUrl};

/// Runs the copy (blobs first when `blobs_to` is given); returns the report to print.
pub fn migrate(
    from: &str,
    to: &str,
    blobs_to: Option<&str>,
    blobs_from: Option<&str>,
) -> Result<String, AdminError> {
    let source = StoreUrl::parse("--from", from)?;
    let target = StoreUrl::parse("--to", to)?;
    let blob_move = match blobs_to {
        Some(to) => Some(BlobMove {
            to: BlobLocation::parse_flag("--blobs-to", to).map_err(refused)?,
            from: blobs_from
                .map(|from| BlobLocation::parse_flag("--blobs-from", from))
                .transpose()
                .map_err(refused)?,
        }),
        None => None,
    };
    let StoreUrl::Sqlite(path) = &source else {
        return Err(AdminError::Refused(format!(
            "`--from` is `{source}`: the source must be a SQLite store (`sqlite://PATH`)"
        )));
    };
    let StoreUrl::Postgres(url) = &target else {
        return Err(AdminError::Refused(format!(
            "`--to` is `{target}`: the target must be a PostgreSQL store (`postgres://...`)"
        )));
    };
    if !path.is_file() {
        return Err(AdminError::Refused(format!(
            "`--from` is `{source}`: no such file; give the `berth.db` of the data directory to migrate (stop its server first)"
        )));
    }
    // A server still writing the source would leave the copy behind it.
    if let Some(data) = path.parent() {
        super::refuse_if_serving(data)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| AdminError::Io {
            step: "start the async runtime for",
            path: path.clone(),
            source,
        })?;
    let (copied, blobs) = runtime.block_on(async {
        let sqlite = SqliteStore::open(path).await?;
        let blobs = match &blob_move {
            Some(blob_move) => Some(blob_move.run(&sqlite, path).await?),
            None => None,
        };
        let postgres = PgStore::open(url).await?;
        Ok::<_, AdminError>((copy_from_sqlite(&sqlite, &postgres).await?, blobs))
    })?;
    Ok(report(&source, &target, &copied, blobs.as_deref()))
}

fn refused(e: LocationError) -> AdminError {
    AdminError::Refused(e.to_string())
}

/// `--blobs-from` / `--blobs-to`.
struct BlobMove {
    from: Option<BlobLocation>,
    to: BlobLocation,
}

impl BlobMove {
    /// Copies every blob `store` references; returns the report line, or refuses
    /// naming each digest that could not be copied.
    async fn run(&self, store: &SqliteStore, db: &Path) -> Result<String, AdminError> {
        let beside = db.parent().unwrap_or(Path::new(".")).join("blobs");
        let from = self.from.clone().unwrap_or(BlobLocation::Local(beside));
        // The object stores' download caches are scratch space for this copy only.
        let scratch = db
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("migrate-scratch-{}", std::process::id()));
        let result = self.copy(store, from, &scratch).await;
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        result
    }

    async fn copy(
        &self,
        store: &SqliteStore,
        from: BlobLocation,
        scratch: &Path,
    ) -> Result<String, AdminError> {
        let open = |location: &BlobLocation, name: &str| {
            let cache = scratch.join(name);
            let location = location.clone();
            async move { BlobStore::open_location(&location, &cache).await }
        };
        let blob_error = |e: crate::blobs::BlobError| AdminError::Refused(e.to_string());
        let source = open(&from, "from").await.map_err(blob_error)?;
        let target = open(&self.to, "to").await.map_err(blob_error)?;
        let digests = store.referenced_blobs().await?;
        let report = copy_blobs(&source, &target, &digests).await;
        if !report.complete() {
            let failed: Vec<String> = report
                .failed
                .iter()
                .map(|(digest, e)| format!("{digest}: {e}"))
                .collect();
            return Err(AdminError::Refused(format!(
                "{} of {} blob(s) could not be copied from {} to {}, so no metadata was written: {}",
                failed.len(),
                digests.len(),
                source.describe(),
                target.describe(),
                failed.join("; ")
            )));
        }
        Ok(format!(
            "blobs: {} copied ({} bytes), {} already there, all {} verified by digest, into {}",
            report.copied.len(),
            report.bytes,
            report.present.len(),
            digests.len(),
            target.describe()
        ))
    }
}

/// The report line when blobs stay where they are.
const BLOBS_STAY: &str = "blobs: not copied (they stay in the data directory's `blobs/`, which serves the new store as it is; `--blobs-to URL` copies them)";

fn report(source: &StoreUrl, target: &StoreUrl, copied: &[Copied], blobs: Option<&str>) -> String {
    let width = copied.iter().map(|c| c.table.len()).max().unwrap_or(0);
    let mut out = format!("copied {source} into {target}:\n");
    for c in copied {
        out.push_str(&format!("  {:<width$}  {}\n", c.table, c.rows));
    }
    let total: u64 = copied.iter().map(|c| c.rows).sum();
    out.push_str(&format!("  {:<width$}  {total}\n", "total"));
    out.push_str(blobs.unwrap_or(BLOBS_STAY));
    out.push_str(&format!(
        "\nstart the server with `--store {target}` (the password, if any, as given)"
    ));
    out
}
