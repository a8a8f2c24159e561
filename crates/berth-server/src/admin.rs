//! `berth admin`: offline maintenance of a data directory. `backup` copies the
//! metadata database through SQLite's online backup (safe while the server
//! runs), `restore` puts a backup in place (server stopped), `verify` checks
//! every blob against its digest name, `accept-store` accepts the database as
//! it is after the server refused to start on an inconsistency, `migrate`
//! copies a SQLite store into an empty PostgreSQL store (see [`migrate`]).

mod migrate;

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rusqlite::{Connection, MAIN_DB, OpenFlags};
use sha2::Digest;

use crate::env;
use crate::store::trust;

/// `berth admin` flags.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// `berth admin` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Copy the metadata database to FILE (SQLite online backup; the server may run)
    Backup {
        /// Where to write the copy (must not exist)
        file: PathBuf,
        /// Data directory [default: ~/.berth]
        #[arg(long, env = env::BERTH_DATA, value_name = "DIR")]
        data: Option<PathBuf>,
    },
    /// Replace the metadata database with a backup (stop the server first)
    Restore {
        /// A file written by `berth admin backup`
        file: PathBuf,
        /// Data directory [default: ~/.berth]
        #[arg(long, env = env::BERTH_DATA, value_name = "DIR")]
        data: Option<PathBuf>,
    },
    /// Check every blob against its digest name, and that every referenced blob exists
    Verify {
        /// Data directory [default: ~/.berth]
        #[arg(long, env = env::BERTH_DATA, value_name = "DIR")]
        data: Option<PathBuf>,
    },
    /// Copy every metadata row from a SQLite store into an empty PostgreSQL store
    /// (one transaction; stop the server first). Blobs stay in the data directory
    Migrate {
        /// The store to copy: `sqlite://PATH` (e.g. `sqlite://$HOME/.berth/berth.db`)
        #[arg(long, value_name = "URL")]
        from: String,
        /// The empty target: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=require]`
        #[arg(long, value_name = "URL")]
        to: String,
        /// Also copy every referenced blob into this blob store (`s3://BUCKET/PREFIX`, `az://..`,
        /// `gs://..` or a folder), each verified by its digest, before any metadata is written
        #[arg(long, value_name = "URL")]
        blobs_to: Option<String>,
        /// Where the blobs are now [default: the `blobs/` folder beside the `--from` file]
        #[arg(long, value_name = "URL", requires = "blobs_to")]
        blobs_from: Option<String>,
    },
    /// Serve the metadata database as it is after the server refused it (what it lacks is lost)
    AcceptStore {
        /// Data directory [default: ~/.berth]
        #[arg(long, env = env::BERTH_DATA, value_name = "DIR")]
        data: Option<PathBuf>,
    },
}

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No data directory.
    #[error(
        "no data directory: pass `--data DIR` or set {}, or set HOME",
        env::BERTH_DATA
    )]
    NoDataDir,
    /// A database step failed.
    #[error("{step} `{path}`: {source}")]
    Database {
        /// The step.
        step: &'static str,
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A file step failed.
    #[error("{step} `{path}`: {source}")]
    Io {
        /// The step.
        step: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The command cannot run in this state.
    #[error("{0}")]
    Refused(String),
    /// `verify` found problems (listed).
    #[error("{count} problem(s) found:\n{list}")]
    Corrupt {
        /// How many.
        count: usize,
        /// One per line.
        list: String,
    },
    /// The store check failed.
    #[error(transparent)]
    Trust(#[from] trust::TrustError),
    /// A store URL is unusable.
    #[error(transparent)]
    StoreUrl(#[from] crate::store::StoreUrlError),
    /// A store failed (migrate).
    #[error("the store copy failed")]
    Store(#[from] crate::store::StoreError),
}

fn data_dir(data: Option<PathBuf>) -> Result<PathBuf, AdminError> {
    data.or_else(crate::config::default_data_dir)
        .ok_or(AdminError::NoDataDir)
}

fn db_error(step: &'static str, path: &Path) -> impl FnOnce(rusqlite::Error) -> AdminError {
    let path = path.to_owned();
    move |source| AdminError::Database { step, path, source }
}

fn io_error(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AdminError {
    let path = path.to_owned();
    move |source| AdminError::Io { step, path, source }
}

/// Runs an admin command; returns what to print.
pub fn run(args: AdminArgs) -> Result<String, AdminError> {
    match args.command {
        AdminCommand::Backup { file, data } => backup(&data_dir(data)?, &file),
        AdminCommand::Restore { file, data } => restore(&data_dir(data)?, &file),
        AdminCommand::Verify { data } => verify(&data_dir(data)?),
        AdminCommand::Migrate {
            from,
            to,
            blobs_to,
            blobs_from,
        } => migrate::migrate(&from, &to, blobs_to.as_deref(), blobs_from.as_deref()),
        AdminCommand::AcceptStore { data } => {
            let data = data_dir(data)?;
            refuse_if_serving(&data)?;
            let newest = trust::accept(&data, &data.join("berth.db"))?;
            let removed = remove_unknown_layouts(&data)?;
            Ok(format!(
                "accepted `{}` as it is (newest event #{newest}); {removed} lay-out(s) it does not know removed",
                data.join("berth.db").display()
            ))
        }
    }
}

/// Copies `<data>/berth.db` to `file` with SQLite's online backup.
pub fn backup(data: &Path, file: &Path) -> Result<String, AdminError> {
    let db = data.join("berth.db");
    if !db.exists() {
        return Err(AdminError::Refused(format!(
            "`{}` does not exist: is `{}` a Berth data directory?",
            db.display(),
            data.display()
        )));
    }
    if file.exists() {
        return Err(AdminError::Refused(format!(
            "`{}` exists already: name a new file",
            file.display()
        )));
    }
    let source = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(db_error("open", &db))?;
    let mut target = Connection::open(file).map_err(db_error("create", file))?;
    {
        // One step copies every page under one read transaction: a consistent
        // copy, however busy the server is meanwhile.
        let copy = rusqlite::backup::Backup::new(&source, &mut target)
            .map_err(db_error("back up to", file))?;
        let done = copy.step(-1).map_err(db_error("back up to", file))?;
        if done != rusqlite::backup::StepResult::Done {
            return Err(AdminError::Refused(format!(
                "the backup to `{}` did not finish ({done:?}); run it again",
                file.display()
            )));
        }
    }
    drop(target);
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    Ok(format!(
        "backed up `{}` to `{}` ({size} bytes)",
        db.display(),
        file.display()
    ))
}

/// Refuses while a server answers at the data directory's endpoint.
fn refuse_if_serving(data: &Path) -> Result<(), AdminError> {
    let Ok(text) = std::fs::read_to_string(data.join("config.json")) else {
        return Ok(());
    };
    let endpoint = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["endpoint"].as_str().map(str::to_owned));
    let Some(endpoint) = endpoint else {
        return Ok(());
    };
    let Ok(url) = reqwest::Url::parse(&endpoint) else {
        return Ok(());
    };
    let addrs = url.socket_addrs(|| None).unwrap_or_default();
    let serving = addrs.iter().any(|addr| {
        std::net::TcpStream::connect_timeout(addr, std::time::Duration::from_millis(500)).is_ok()
    });
    if serving {
        return Err(AdminError::Refused(format!(
            "a server is listening at {endpoint} for `{}`: stop it first",
            data.display()
        )));
    }
    Ok(())
}

/// Puts `file` (a backup) in place of `<data>/berth.db`; the old database
/// files are kept as `berth.db.before-restore-<time>*`.
pub fn restore(data: &Path, file: &Path) -> Result<String, AdminError> {
    refuse_if_serving(data)?;
    let source = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(db_error("open the backup", file))?;
    let verdict: String = source
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(db_error("check the backup", file))?;
    if verdict != "ok" {
        return Err(AdminError::Refused(format!(
            "the backup `{}` is damaged: {verdict}",
            file.display()
        )));
    }
    let has_schema: bool = source
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'models'",
            [],
            |r| r.get(0),
        )
        .map_err(db_error("read the backup", file))?;
    if !has_schema {
        return Err(AdminError::Refused(format!(
            "`{}` is not a Berth metadata backup (it has no `models` table)",
            file.display()
        )));
    }
    drop(source);
    std::fs::create_dir_all(data).map_err(io_error("create", data))?;
    let db = data.join("berth.db");
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let mut kept = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}.before-restore-{stamp}{suffix}", db.display()));
            std::fs::rename(&from, &to).map_err(io_error("move aside", &from))?;
            kept.push(to.display().to_string());
        }
    }
    let mut target = Connection::open(&db).map_err(db_error("create", &db))?;
    target
        .restore(MAIN_DB, file, None::<fn(rusqlite::backup::Progress)>)
        .map_err(db_error("restore into", &db))?;
    target
        .execute_batch("PRAGMA journal_mode = WAL;")
        .map_err(db_error("configure", &db))?;
    drop(target);
    let newest = trust::accept(data, &db)?;
    let removed = remove_unknown_layouts(data)?;
    Ok(format!(
        "restored `{}` from `{}` (newest event #{newest}); {removed} lay-out(s) of revisions it does not know removed; the replaced files are kept: {}",
        db.display(),
        file.display(),
        if kept.is_empty() {
            "none".to_owned()
        } else {
            kept.join(", ")
        }
    ))
}

/// Removes `services/<name>/r<N>/` lay-outs the database does not know
/// (they are rebuilt from blobs when needed).
fn remove_unknown_layouts(data: &Path) -> Result<usize, AdminError> {
    let db = data.join("berth.db");
    let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(db_error("open", &db))?;
    let mut latest = conn
        .prepare("SELECT latest_revision FROM services WHERE name = ?1")
        .map_err(db_error("read", &db))?;
    let mut removed = 0;
    let Ok(services) = std::fs::read_dir(data.join("services")) else {
        return Ok(0);
    };
    for service in services.flatten() {
        let name = service.file_name().to_string_lossy().into_owned();
        let known: Option<u32> =
            rusqlite::OptionalExtension::optional(latest.query_row([&name], |r| r.get(0)))
                .map_err(db_error("read", &db))?;
        let Ok(revisions) = std::fs::read_dir(service.path()) else {
            continue;
        };
        for revision in revisions.flatten() {
            let number = revision
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix('r'))
                .and_then(|n| n.split('.').next())
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(number) = number
                && known.is_none_or(|k| number > k)
            {
                let path = revision.path();
                std::fs::remove_dir_all(&path).map_err(io_error("remove", &path))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Checks every blob's content against its name, and that every blob the
/// database references exists.
pub fn verify(data: &Path) -> Result<String, AdminError> {
    let root = data.join("blobs").join("sha256");
    let mut problems = Vec::new();
    let mut checked = 0u64;
    let mut bytes = 0u64;
    let mut present = std::collections::HashSet::new();
    if let Ok(shards) = std::fs::read_dir(&root) {
        for shard in shards.flatten() {
            let Ok(files) = std::fs::read_dir(shard.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                let path = file.path();
                match file_digest(&path) {
                    Ok((digest, size)) => {
                        checked += 1;
                        bytes += size;
                        if digest != name {
                            problems.push(format!(
                                "`{}`: its content hashes to sha256:{digest}, not its name (corrupted)",
                                path.display()
                            ));
                        }
                    }
                    Err(e) => problems.push(format!("`{}`: cannot read: {e}", path.display())),
                }
                present.insert(format!("sha256:{name}"));
            }
        }
    }
    let db = data.join("berth.db");
    if db.exists() {
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(db_error("open", &db))?;
        let mut statement = conn
            .prepare("SELECT digest FROM model_files UNION SELECT digest FROM snapshot_files")
            .map_err(db_error("read", &db))?;
        let referenced = statement
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db_error("read", &db))?;
        for digest in referenced {
            let digest = digest.map_err(db_error("read", &db))?;
            if !present.contains(&digest) {
                problems.push(format!(
                    "{digest} is referenced by the database but missing from `{}`",
                    root.display()
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{checked} blob(s), {bytes} bytes: every one matches its digest"
        ))
    } else {
        Err(AdminError::Corrupt {
            count: problems.len(),
            list: problems.join("\n"),
        })
    }
}

fn file_digest(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buffer[..n]);
    }
    Ok((hex::encode(hasher.finalize()), size))
}
