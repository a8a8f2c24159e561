//! The PostgreSQL the conformance suite runs on: `BERTH_TEST_POSTGRES_URL`
//! when `scripts/test.sh` exported it (one cluster for the whole run), else a
//! cluster this process starts once with `scripts/test-postgres.sh` (stopped
//! when the process exits). Every test gets its own fresh database. A cluster
//! that cannot be had fails the test with the reason; nothing is skipped.

use std::path::Path;
use std::sync::OnceLock;

/// The variable `scripts/test.sh` sets to an admin URL of a running cluster.
pub const URL_VARIABLE: &str = "BERTH_TEST_POSTGRES_URL";

static ADMIN_URL: OnceLock<Result<String, String>> = OnceLock::new();

fn start_cluster() -> Result<String, String> {
    run_script(&[])
}

/// A cluster of this process's own that also speaks TLS; its URL asks for TLS
/// and names the CA (`?sslmode=require&sslrootcert=...`).
pub fn start_tls_cluster() -> String {
    run_script(&["--tls"]).unwrap_or_else(|why| panic!("cannot start a TLS cluster: {why}"))
}

fn run_script(extra: &[&str]) -> Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-postgres.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(std::process::id().to_string())
        .args(extra)
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", script.display()))?;
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || url.is_empty() {
        return Err(format!(
            "`{}` could not start PostgreSQL ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(url)
}

/// The admin URL (database `postgres`) of the test cluster.
pub fn admin_url() -> String {
    let found = ADMIN_URL.get_or_init(|| match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => Ok(url.trim().to_owned()),
        _ => start_cluster(),
    });
    match found {
        Ok(url) => url.clone(),
        Err(why) => panic!(
            "PostgreSQL tests need a cluster: set {URL_VARIABLE} or let the test start one. {why}"
        ),
    }
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/{database}{query}")
}

/// Creates a database with a unique name; returns its URL.
pub async fn fresh_database() -> String {
    let admin = admin_url();
    let name = format!("berth_t_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test cluster at {admin}: {e}"));
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    with_database(&admin, &name)
}

#[test]
fn the_database_of_a_url_is_replaced() {
    assert_eq!(
        with_database("postgres://u@127.0.0.1:5/postgres?sslmode=disable", "x"),
        "postgres://u@127.0.0.1:5/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
}
