//! PostgreSQL implementation of the store traits: a `deadpool-postgres` pool of
//! `tokio-postgres` connections (TLS through rustls with `ring` when the URL
//! asks for it with `sslmode=`), migrations embedded in the binary and applied
//! at start in one transaction under an advisory lock, so several servers may
//! start at once. Every method is one transaction; the business rules (one
//! running operation per service, versions never reused) are the database's:
//! a unique partial index, per-name counter rows, row locks.

mod aliases;
mod cluster;
mod computes;
mod events;
pub mod import;
mod registry;
mod services;

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSql;
use tokio_postgres::{Client, Row};

use super::{Result, StoreError};

/// Migrations in order; `berth_schema_migrations` records which ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_initial.sql"),
    include_str!("../migrations/postgres/0002_cluster.sql"),
    include_str!("../migrations/postgres/0003_kubernetes_targets.sql"),
];

/// Advisory lock key held while migrating (`berth` + 1).
const MIGRATION_LOCK: i64 = 0x6265_7274_6801;

/// Advisory lock key serialising event appends, so event ids commit in order
/// and a webhook cursor never passes an event still being written.
pub(super) const EVENT_LOCK: i64 = 0x6265_7274_6802;

/// Most pooled connections.
const POOL_SIZE: usize = 16;

/// Longest a new connection may take to open.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Longest a call waits for a pooled connection.
const WAIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Reconciler writes check this fence in their transaction (`None`: unfenced).
    fence: Option<std::sync::Arc<super::Fence>>,
}

pub(super) fn db(step: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |source| StoreError::Database {
        step,
        source: Box::new(source),
    }
}

/// The constraint a unique violation broke, if that is what `e` is.
pub(super) fn unique_violation(e: &tokio_postgres::Error) -> Option<&str> {
    if e.code() != Some(&SqlState::UNIQUE_VIOLATION) {
        return None;
    }
    e.as_db_error().and_then(|d| d.constraint())
}

/// A column, with a decoding failure as a store error (never a panic).
pub(super) fn col<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T> {
    row.try_get(index).map_err(db("decode column"))
}

/// A stored non-negative integer as `u32`.
pub(super) fn u32_of(value: i64, what: &'static str) -> Result<u32> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt {
        what,
        detail: format!("{value} is out of range"),
    })
}

/// A stored non-negative integer as `u64`.
pub(super) fn u64_of(value: i64, what: &'static str) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        what,
        detail: format!("{value} is out of range"),
    })
}

/// A count or id as stored (`BIGINT`).
pub(super) fn i64_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) use crate::store::corrupt;

/// Options Berth reads itself and removes before the driver parses the URL.
struct Extracted {
    url: String,
    root_cert: Option<String>,
    tls_asked: bool,
}

fn extract(url: &str) -> Extracted {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let mut root_cert = None;
    let mut tls_asked = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslrootcert", path)) => root_cert = Some(path.to_owned()),
            // rustls always checks the chain and the host name: libpq's
            // `verify-ca` / `verify-full` are what `require` does here.
            Some(("sslmode", "verify-ca" | "verify-full")) => {
                tls_asked = true;
                kept.push("sslmode=require");
            }
            Some(("sslmode", mode)) => {
                tls_asked = mode != "disable";
                kept.push(pair);
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Extracted {
        url,
        root_cert,
        tls_asked,
    }
}

/// Checks that the driver accepts `url` (for `--store` parsing).
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    let extracted = extract(url);
    extracted
        .url
        .parse::<tokio_postgres::Config>()
        .map(|_| ())
        .map_err(|e| format!("PostgreSQL refuses the URL ({e})"))
}

fn tls_config(root_cert: Option<&str>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| StoreError::Database {
                step: "read sslrootcert",
                source: format!("`{path}`: {e}").into(),
            })? {
                let cert = cert.map_err(|e| StoreError::Database {
                    step: "read sslrootcert",
                    source: format!("`{path}`: {e}").into(),
                })?;
                roots.add(cert).map_err(|e| StoreError::Database {
                    step: "read sslrootcert",
                    source: Box::new(e),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Database {
            step: "configure TLS",
            source: Box::new(e),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl PgStore {
    /// Connects to `url`, then creates or migrates the schema.
    pub async fn open(url: &str) -> Result<Self> {
        let extracted = extract(url);
        let config: tokio_postgres::Config =
            extracted
                .url
                .parse()
                .map_err(|e: tokio_postgres::Error| StoreError::Database {
                    step: "parse the PostgreSQL URL",
                    source: Box::new(e),
                })?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if extracted.tls_asked {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(
                extracted.root_cert.as_deref(),
            )?);
            Manager::from_config(config, tls, manager_config)
        } else {
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(WAIT_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Database {
                step: "build the connection pool",
                source: Box::new(e),
            })?;
        let store = Self { pool, fence: None };
        let mut conn = store.conn().await?;
        migrate(&mut conn).await?;
        Ok(store)
    }

    /// A pooled connection.
    pub(super) async fn conn(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| StoreError::Database {
            step: "connect to PostgreSQL",
            source: Box::new(e),
        })
    }
}

/// The driver's client of a pooled connection (its own `transaction()`, not the pool wrapper's).
pub(super) fn client_mut(conn: &mut deadpool_postgres::Object) -> &mut Client {
    conn
}

/// The schema version a database is at (0: empty).
async fn schema_version(client: &impl tokio_postgres::GenericClient) -> Result<i64> {
    let row = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM berth_schema_migrations",
            &[],
        )
        .await
        .map_err(db("read schema version"))?;
    col(&row, 0)
}

async fn migrate(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await.map_err(db("begin migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db("take the migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS berth_schema_migrations (\
            version BIGINT PRIMARY KEY, \
            applied_time TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .map_err(db("create the migration table"))?;
    let done = schema_version(&tx).await?;
    let known = MIGRATIONS.len() as i64;
    if done > known {
        return Err(StoreError::Corrupt {
            what: "schema version",
            detail: format!(
                "the database is at version {done}, newer than this server knows ({known}); use a newer berth"
            ),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        tx.batch_execute(sql).await.map_err(db("run migration"))?;
        tx.execute(
            "INSERT INTO berth_schema_migrations (version) VALUES ($1)",
            &[&(index as i64 + 1)],
        )
        .await
        .map_err(db("record schema version"))?;
    }
    tx.commit().await.map_err(db("commit migration"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::conformance::pg;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn servers_starting_at_once_migrate_once() {
        let url = pg::fresh_database().await;
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { PgStore::open(&url).await })
            })
            .collect();
        for open in opens {
            let store = open.await.unwrap().unwrap();
            store.set_setting("k", "v").await.unwrap();
        }
        let store = PgStore::open(&url).await.unwrap();
        let conn = store.conn().await.unwrap();
        let rows = conn
            .query(
                "SELECT version FROM berth_schema_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap();
        let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(versions, (1..=MIGRATIONS.len() as i64).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_newer_than_the_binary_is_refused() {
        let url = pg::fresh_database().await;
        let store = PgStore::open(&url).await.unwrap();
        store
            .conn()
            .await
            .unwrap()
            .execute(
                "INSERT INTO berth_schema_migrations (version) VALUES (99)",
                &[],
            )
            .await
            .unwrap();
        match PgStore::open(&url).await {
            Err(StoreError::Corrupt { what, detail }) => {
                assert_eq!(what, "schema version");
                assert!(
                    detail.contains("version 99") && detail.contains("use a newer berth"),
                    "{detail}"
                );
            }
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    }

    async fn ssl_in_use(store: &PgStore) -> bool {
        let conn = store.conn().await.unwrap();
        let row = conn
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        row.get(0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_is_used_when_the_url_asks_and_the_certificate_is_checked() {
        let url = tokio::task::spawn_blocking(pg::start_tls_cluster)
            .await
            .unwrap();
        let store = PgStore::open(&url).await.unwrap();
        assert!(
            ssl_in_use(&store).await,
            "sslmode=require connects over TLS"
        );
        store.set_setting("k", "v").await.unwrap();
        let (plain_url, _) = url.split_once('?').unwrap();
        let plain = PgStore::open(plain_url).await.unwrap();
        assert!(!ssl_in_use(&plain).await, "no sslmode: plain");
        assert_eq!(plain.setting("k").await.unwrap().as_deref(), Some("v"));
        // Without the test CA the server's certificate is not trusted.
        let untrusted = format!("{plain_url}?sslmode=require");
        match PgStore::open(&untrusted).await {
            Err(StoreError::Database { step, source }) => {
                assert_eq!(step, "connect to PostgreSQL");
                let chain = format!("{source:?}");
                assert!(chain.to_lowercase().contains("certificate"), "{chain}");
            }
            other => panic!("expected a certificate error, got {:?}", other.map(|_| ())),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_server_is_a_database_error_naming_the_step() {
        // Port 1 on localhost: nothing listens there.
        match PgStore::open("postgres://berth@127.0.0.1:1/none").await {
            Err(StoreError::Database { step, .. }) => assert_eq!(step, "connect to PostgreSQL"),
            other => panic!("expected a connection error, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn berth_options_are_taken_out_of_the_url() {
        let e = extract("postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem&application_name=x");
        assert_eq!(
            e.url,
            "postgres://u@h/db?sslmode=require&application_name=x"
        );
        assert_eq!(e.root_cert.as_deref(), Some("/ca.pem"));
        assert!(e.tls_asked);
        let plain = extract("postgres://u@h/db");
        assert_eq!(
            (plain.url.as_str(), plain.tls_asked),
            ("postgres://u@h/db", false)
        );
        assert!(!extract("postgres://u@h/db?sslmode=disable").tls_asked);
        let full = extract("postgres://u@h/db?sslmode=verify-full");
        assert_eq!(
            (full.url.as_str(), full.tls_asked),
            ("postgres://u@h/db?sslmode=require", true)
        );
    }
}
