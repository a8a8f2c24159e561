//! Choosing the metadata backend from a store URL (`--store`): the one place
//! where `sqlite://` and `postgres://` are told apart and the trait objects
//! every other module uses are made.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    ClusterStore, EventStore, PgStore, Result, ServiceStore, SqliteStore, Store, Synchronous,
};

/// The forms `--store` accepts, for error messages.
pub const ACCEPTED_FORMS: &str = "`sqlite://PATH` (e.g. `sqlite:///var/lib/berth/berth.db`) or \
     `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require]` (`postgresql://` too)";

/// Where the metadata lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (kept whole: it may hold a password).
    Postgres(String),
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for StoreUrl {
    /// The URL with any password hidden.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Why a store URL is refused.
#[derive(Debug, thiserror::Error)]
#[error("`{flag}` is `{value}`: {reason}; accepted forms: {ACCEPTED_FORMS}")]
pub struct StoreUrlError {
    /// The flag (or variable) it came from.
    pub flag: &'static str,
    /// The value, password hidden.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

impl StoreUrl {
    /// Parses `value` given to `flag`.
    pub fn parse(flag: &'static str, value: &str) -> std::result::Result<Self, StoreUrlError> {
        let refuse = |reason: &str| StoreUrlError {
            flag,
            value: redact(value),
            reason: reason.to_owned(),
        };
        let Some((scheme, rest)) = value.split_once("://") else {
            return Err(refuse("it has no `scheme://`"));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                if rest.is_empty() {
                    return Err(refuse("the SQLite path is empty"));
                }
                if rest.contains('?') {
                    return Err(refuse("SQLite URLs take no `?` options"));
                }
                Ok(Self::Sqlite(PathBuf::from(rest)))
            }
            "postgres" | "postgresql" => {
                super::postgres::check_url(value).map_err(|e| refuse(&e))?;
                Ok(Self::Postgres(value.to_owned()))
            }
            other => Err(refuse(&format!(
                "the scheme `{other}` is not a store backend"
            ))),
        }
    }

    /// The default store of a data directory: `<data>/berth.db`.
    pub fn default_for(data: &Path) -> Self {
        Self::Sqlite(data.join("berth.db"))
    }

    /// The SQLite file, when this is SQLite.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }
}

/// The opened store, as the traits the rest of the server uses.
#[derive(Clone)]
pub struct Stores {
    /// Registry, environments, snapshots, settings, aliases, compute targets.
    pub store: Arc<dyn Store>,
    /// Services, revisions, operations.
    pub services: Arc<dyn ServiceStore>,
    /// Workspace events and webhooks.
    pub events: Arc<dyn EventStore>,
    /// Shared settings and the leader lease.
    pub cluster: Arc<dyn ClusterStore>,
}

impl Stores {
    fn of<T: Store + ServiceStore + EventStore + ClusterStore>(backend: T) -> Self {
        let backend = Arc::new(backend);
        Self {
            store: backend.clone(),
            services: backend.clone(),
            events: backend.clone(),
            cluster: backend,
        }
    }
}

/// Opens (creating and migrating) the store `url` names.
pub async fn open(url: &StoreUrl, sqlite_synchronous: Synchronous) -> Result<Stores> {
    match url {
        StoreUrl::Sqlite(path) => Ok(Stores::of(
            SqliteStore::open_with(path, sqlite_synchronous).await?,
        )),
        StoreUrl::Postgres(url) => Ok(Stores::of(PgStore::open(url).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend() {
        assert_eq!(
            StoreUrl::parse("--store", "sqlite:///tmp/x.db").unwrap(),
            StoreUrl::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            StoreUrl::parse("--store", "sqlite://rel/x.db").unwrap(),
            StoreUrl::Sqlite("rel/x.db".into())
        );
        for url in [
            "postgres://berth@localhost/berth",
            "postgresql://u:p@db.example:5433/berth?sslmode=require",
        ] {
            assert!(matches!(
                StoreUrl::parse("--store", url).unwrap(),
                StoreUrl::Postgres(_)
            ));
        }
    }

    #[test]
    fn bad_urls_name_the_flag_the_value_and_the_forms() {
        for (value, why) in [
            ("/tmp/x.db", "no `scheme://`"),
            ("mysql://h/db", "`mysql` is not a store backend"),
            ("sqlite://", "path is empty"),
            ("postgres://u:hunter2@h/db?sslmode=sometimes", "sslmode"),
        ] {
            let err = StoreUrl::parse("--store", value).unwrap_err().to_string();
            assert!(err.starts_with("`--store` is `"), "{err}");
            assert!(err.contains(why), "{value}: {err}");
            assert!(
                err.contains("sqlite://PATH") && err.contains("postgres://"),
                "{err}"
            );
            assert!(!err.contains("hunter2"), "password shown: {err}");
        }
    }

    #[test]
    fn passwords_are_hidden_when_shown() {
        let url = StoreUrl::Postgres("postgres://u:secret@h:5432/db".into());
        assert_eq!(url.to_string(), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
