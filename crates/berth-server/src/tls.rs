//! TLS and the listener's accept loop.
//!
//! `berth server --tls-cert PEM --tls-key PEM` serves the whole listener
//! (management API, gateway, health) over TLS with rustls (ring provider). The
//! certificate is chosen per connection by SNI: a service deployed with
//! `sslEnabled`, `sslCertificate`, `sslKey` and `cname` gets its own certificate
//! for its `cname` ([`SniResolver`]); every other name gets the server's.
//!
//! Plain HTTP and TLS share one accept loop ([`serve`]) so both get the slow
//! client limits: the TLS handshake and each request's headers must arrive
//! within the header read timeout, and a request body may not stall longer than
//! the body read timeout. On shutdown the loop stops accepting and in-flight
//! connections finish (the caller bounds that with the grace period).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{what} `{}`: {problem}", path.display())]
    File {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// PEM text (from a deployment config) could not be used.
    #[error("`{key}`: {problem}")]
    Pem {
        /// The deployment-config key.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The certificate and key do not belong together.
    #[error("the certificate and the private key do not match ({0})")]
    Mismatch(String),
}

/// The provider Berth uses everywhere: rustls' ring backend.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads a certificate chain and key from PEM files.
pub fn load_files(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let file_err = |what, path: &Path, problem: String| TlsError::File {
        what,
        path: path.to_path_buf(),
        problem,
    };
    let cert_pem = std::fs::read(cert)
        .map_err(|e| file_err("certificate", cert, format!("cannot read it: {e}")))?;
    let key_pem = std::fs::read(key)
        .map_err(|e| file_err("private key", key, format!("cannot read it: {e}")))?;
    let chain = parse_chain(&cert_pem).map_err(|p| file_err("certificate", cert, p))?;
    let key_der = parse_key(&key_pem).map_err(|p| file_err("private key", key, p))?;
    certified(chain, key_der).map_err(|problem| match problem {
        Problem::Cert(p) => file_err("certificate", cert, p),
        Problem::Key(p) => file_err("private key", key, p),
        Problem::Mismatch(p) => TlsError::Mismatch(p),
    })
}

/// Parses a certificate and key given as PEM text (a deployment config's
/// `sslCertificate` and `sslKey`), checking they belong together.
pub fn parse_pem_pair(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let pem = |key, problem| TlsError::Pem { key, problem };
    let chain = parse_chain(cert_pem.as_bytes()).map_err(|p| pem("sslCertificate", p))?;
    let key = parse_key(key_pem.as_bytes()).map_err(|p| pem("sslKey", p))?;
    certified(chain, key).map_err(|problem| match problem {
        Problem::Cert(p) => pem("sslCertificate", p),
        Problem::Key(p) => pem("sslKey", p),
        Problem::Mismatch(p) => TlsError::Mismatch(p),
    })
}

fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if chain.is_empty() {
        return Err("no PEM certificate (`-----BEGIN CERTIFICATE-----`) in it".into());
    }
    Ok(chain)
}

fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it".into()
        }
        e => format!("not a PEM private key: {e}"),
    })
}

/// Which half of a pair is wrong.
enum Problem {
    Cert(String),
    Key(String),
    Mismatch(String),
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, Problem> {
    let provider = provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| Problem::Key(format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(e)) => Err(Problem::Mismatch(format!("{e:?}"))),
        Err(e) => Err(Problem::Cert(format!("not a valid X.509 certificate: {e}"))),
    }
}

/// Picks the certificate for a connection by its SNI name: a service's own
/// certificate for its `cname`, the server's otherwise.
#[derive(Debug)]
pub struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: RwLock<Names>,
}

#[derive(Debug, Default)]
struct Names {
    /// Lower-case cname → certificate.
    certs: HashMap<String, Arc<CertifiedKey>>,
    /// Service → its cname.
    owners: HashMap<String, String>,
}

impl SniResolver {
    /// A resolver that serves `default` for every name.
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        Self {
            default,
            by_name: RwLock::new(Names::default()),
        }
    }

    /// Serves `cert` for `service`'s `cname` (case-insensitive) from now on,
    /// replacing what the service had; `None` goes back to the server
    /// certificate (the service was deleted or dropped `sslEnabled`).
    pub fn set_service(&self, service: &str, cert: Option<(&str, Arc<CertifiedKey>)>) {
        let mut names = self.by_name.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = names.owners.remove(service) {
            names.certs.remove(&old);
        }
        if let Some((cname, cert)) = cert {
            let cname = cname.to_ascii_lowercase();
            names.certs.insert(cname.clone(), cert);
            names.owners.insert(service.to_owned(), cname);
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            let names = self.by_name.read().unwrap_or_else(|e| e.into_inner());
            let name = name.to_ascii_lowercase();
            if let Some(key) = names.certs.get(&name) {
                return Some(key.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(key) = names.certs.get(&format!("*.{parent}"))
            {
                return Some(key.clone());
            }
        }
        Some(self.default.clone())
    }
}

/// The TLS side of the listener: the acceptor and the resolver the runtime
/// updates.
#[derive(Clone)]
pub struct Tls {
    /// Accepts TLS connections.
    pub acceptor: TlsAcceptor,
    /// Certificates by SNI name.
    pub resolver: Arc<SniResolver>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Builds the listener's TLS from the server certificate.
    pub fn new(default: Arc<CertifiedKey>) -> Result<Self, TlsError> {
        let resolver = Arc::new(SniResolver::new(default));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Mismatch(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
        })
    }
}

/// Slow-client limits of the listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest the TLS handshake, and each request's headers, may take.
    pub header_read_timeout: Duration,
    /// Longest a request body may stall between two chunks.
    pub body_read_timeout: Duration,
}

/// Serves `app` on `listener` (over TLS when `tls` is set) until `stop`
/// resolves, then stops accepting and waits for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let service = tower::ServiceBuilder::new()
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_read_timeout,
        ))
        .service(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Small responses must not wait for Nagle's algorithm (40 ms stalls with delayed ACKs).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(service.clone());
        let http = http.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                            .await;
                    let stream = match handshake {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Where a service's private key is kept: `<data>/tls/<sha256>.key`, 0600.
pub fn service_key_path(data_dir: &Path, key_sha256: &str) -> PathBuf {
    data_dir.join("tls").join(format!("{key_sha256}.key"))
}

/// SHA-256 (hex) of a private key's PEM text: its name on disk.
pub fn key_digest(key_pem: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key_pem.as_bytes()))
}

/// Stores a service's private key (content-addressed, 0600); returns its digest.
pub fn store_service_key(data_dir: &Path, key_pem: &str) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let digest = key_digest(key_pem);
    let path = service_key_path(data_dir, &digest);
    if path.exists() {
        return Ok(digest);
    }
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!("{digest}.{}.tmp", uuid::Uuid::new_v4()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(key_pem.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(digest)
}

/// Loads a service's certificate and stored key.
pub fn load_service_cert(
    data_dir: &Path,
    ssl: &berth_api::deployment::SslSettings,
) -> Result<Arc<CertifiedKey>, String> {
    let path = service_key_path(data_dir, &ssl.key_sha256);
    let key = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the stored key `{}`: {e}", path.display()))?;
    parse_pem_pair(&ssl.certificate, &key).map_err(|e| e.to_string())
}
