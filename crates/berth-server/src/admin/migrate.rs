//! `berth admin migrate --from sqlite://PATH --to postgres://...`: copies every
//! metadata row (models and files, environments, snapshots, services,
//! revisions, operations and their logs, events, webhooks and their cursors,
//! aliases, follow states, compute targets, settings, version counters) into
//! an empty PostgreSQL store, in one transaction on the target, and reports the
//! rows copied per table.
//!
//! Blobs are not copied here: the data directory's `blobs/` stays where it is
//! and serves both stores. Copying blobs between blob stores (`--blobs-from` /
//! `--blobs-to`) is the follow-up step of this command once other blob stores
//! exist; see [`blobs_step`].

use super::AdminError;
use crate::store::postgres::import::{Copied, copy_from_sqlite};
use crate::store::{PgStore, SqliteStore, StoreUrl};

/// Runs the copy; returns the report to print.
pub fn migrate(from: &str, to: &str) -> Result<String, AdminError> {
    let source = StoreUrl::parse("--from", from)?;
    let target = StoreUrl::parse("--to", to)?;
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
    let copied = runtime.block_on(async {
        let sqlite = SqliteStore::open(path).await?;
        let postgres = PgStore::open(url).await?;
        copy_from_sqlite(&sqlite, &postgres).await
    })?;
    Ok(report(&source, &target, &copied))
}

/// Where copying blobs between blob stores goes once there are several; today
/// the data directory's `blobs/` serves either metadata store unchanged.
fn blobs_step() -> &'static str {
    "blobs: not copied (they stay in the data directory's `blobs/`, which serves the new store as it is)"
}

fn report(source: &StoreUrl, target: &StoreUrl, copied: &[Copied]) -> String {
    let width = copied.iter().map(|c| c.table.len()).max().unwrap_or(0);
    let mut out = format!("copied {source} into {target}:\n");
    for c in copied {
        out.push_str(&format!("  {:<width$}  {}\n", c.table, c.rows));
    }
    let total: u64 = copied.iter().map(|c| c.rows).sum();
    out.push_str(&format!("  {:<width$}  {total}\n", "total"));
    out.push_str(blobs_step());
    out.push_str(&format!(
        "\nstart the server with `--store {target}` (the password, if any, as given)"
    ));
    out
}
