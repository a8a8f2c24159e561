//! Dialling a remote replica: [`connect`] turns an address and the revision's
//! credentials into a [`Replica`] the gateway uses like a local one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_worker::{ConnError, DEFAULT_MAX_FRAME, PendingConn};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;

use super::credentials::{ReplicaKeys, server_name};
use super::wire;
use crate::compute::{RemoteOwner, RemoteRunner, Replica};

/// Longest the TCP connect, TLS handshake, AUTH and HELLO/INIT_OK relay may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a gateway needs to reach the replicas of one revision: the certificate
/// it pins and the secret it presents. Derive it with [`RevisionCredentials::derive`]
/// (every server of the workspace derives the same).
#[derive(Clone)]
pub struct RevisionCredentials {
    /// The service.
    pub service: String,
    /// The revision.
    pub revision: u32,
    /// The one certificate accepted.
    pub certificate: CertificateDer<'static>,
    /// The connection secret.
    pub secret: String,
}

impl std::fmt::Debug for RevisionCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevisionCredentials")
            .field("service", &self.service)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

impl RevisionCredentials {
    /// The credentials of `service` revision `revision`.
    pub fn derive(
        keys: &ReplicaKeys,
        service: &str,
        revision: u32,
    ) -> Result<RevisionCredentials, ConnectError> {
        let minted = keys
            .credentials(service, revision)
            .map_err(|e| ConnectError::Credentials(e.to_string()))?;
        Ok(RevisionCredentials {
            service: service.to_owned(),
            revision,
            certificate: wire::certificate_der(&minted.certificate_pem)
                .map_err(|e| ConnectError::Credentials(e.to_string()))?,
            secret: minted.secret,
        })
    }
}

/// Why a replica could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The credentials could not be derived (never expected).
    #[error("replica credentials: {0}")]
    Credentials(String),
    /// TCP connect failed.
    #[error("connecting to the replica at {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (a certificate other than the pinned one included).
    #[error("TLS with the replica at {addr}: {source}")]
    Tls {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The replica closed the connection or broke the protocol (a wrong secret ends here).
    #[error("the replica at {addr} did not answer the handshake: {source}")]
    Handshake {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: ConnError,
    },
    /// The worker behind it failed `init()` (not expected: a replica listens only after it).
    #[error("the replica at {addr} reports a failed init(): {message}")]
    InitFailed {
        /// Where.
        addr: SocketAddr,
        /// The worker's message.
        message: String,
    },
    /// It all took longer than [`CONNECT_TIMEOUT`].
    #[error("the replica at {addr} did not complete the handshake within {CONNECT_TIMEOUT:?}")]
    TimedOut {
        /// Where.
        addr: SocketAddr,
    },
}

/// Dials the `berth replica` at `addr` serving `credentials.revision`:
/// TCP, TLS 1.3 accepting exactly the revision's certificate, AUTH with the
/// revision's secret, then the worker's HELLO and INIT_OK relayed by the
/// replica. Returns replica number `index` of the revision, ready for the
/// gateway. `owner` (when this server can end the replica: a local child
/// process, a pod) is asked to kill it when Berth kills or stops it.
///
/// Nothing here retries: a closed connection makes the replica unready and the
/// reconciler decides what to do (dial again, replace it).
pub async fn connect(
    addr: SocketAddr,
    credentials: &RevisionCredentials,
    index: u32,
    owner: Option<Arc<dyn RemoteOwner>>,
) -> Result<Arc<Replica>, ConnectError> {
    connect_with(RemoteRunner::new(addr, owner), credentials, index).await
}

/// [`connect`] with a prepared [`RemoteRunner`]: its log tail already fed by
/// whoever sees the replica's output (a child's stderr, a pod's log stream).
pub async fn connect_with(
    runner: RemoteRunner,
    credentials: &RevisionCredentials,
    index: u32,
) -> Result<Arc<Replica>, ConnectError> {
    let addr = runner.addr;
    tokio::time::timeout(CONNECT_TIMEOUT, dial(runner, credentials, index))
        .await
        .map_err(|_| ConnectError::TimedOut { addr })?
}

async fn dial(
    runner: RemoteRunner,
    credentials: &RevisionCredentials,
    index: u32,
) -> Result<Arc<Replica>, ConnectError> {
    let addr = runner.addr;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ConnectError::Connect { addr, source })?;
    let _ = tcp.set_nodelay(true);
    let config = wire::client_config(credentials.certificate.clone())
        .map_err(|e| ConnectError::Credentials(e.to_string()))?;
    let name = ServerName::try_from(server_name(&credentials.service, credentials.revision))
        .map_err(|e| ConnectError::Credentials(e.to_string()))?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|source| ConnectError::Tls { addr, source })?;
    tls.write_all(&wire::auth_frame(&credentials.secret))
        .await
        .map_err(|source| ConnectError::Tls { addr, source })?;
    tls.flush()
        .await
        .map_err(|source| ConnectError::Tls { addr, source })?;
    let mut pending = PendingConn::over(tls, DEFAULT_MAX_FRAME);
    let handshake = |source| ConnectError::Handshake { addr, source };
    let hello = pending.read_hello().await.map_err(handshake)?;
    let init = match pending.read_init().await.map_err(handshake)? {
        Ok(init) => init,
        Err(failed) => {
            return Err(ConnectError::InitFailed {
                addr,
                message: failed.message,
            });
        }
    };
    let conn = pending.into_conn();
    Ok(Arc::new(Replica::remote(
        index,
        credentials.revision,
        runner,
        conn,
        hello,
        init,
    )))
}
