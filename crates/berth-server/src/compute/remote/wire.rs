//! The remote replica connection, both ends: TLS 1.3 over TCP with the
//! revision's certificate (the gateway pins it: exactly that certificate, no
//! CA), then an AUTH frame from the gateway carrying the revision's secret,
//! then the worker protocol of `docs/worker-protocol.md` as over a Unix socket
//! (the replica first relays the worker's HELLO and INIT_OK).
//!
//! AUTH is a frame of the worker protocol's framing (`u32` length, type byte,
//! payload) with type [`AUTH_FRAME`] and the secret's bytes as payload. A
//! replica closes a connection whose first frame is anything else or carries
//! another secret (constant-time comparison).

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Frame type of the gateway's first frame (outside the worker's types).
pub const AUTH_FRAME: u8 = 0x7A;
/// Longest AUTH frame a replica reads.
pub const MAX_AUTH_FRAME: u32 = 1024;

/// The AUTH frame carrying `secret`.
pub fn auth_frame(secret: &str) -> Vec<u8> {
    let len = u32::try_from(secret.len() + 1).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(secret.len() + 5);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.push(AUTH_FRAME);
    frame.extend_from_slice(secret.as_bytes());
    frame
}

/// TLS material that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("replica TLS: {0}")]
pub struct WireTlsError(pub String);

/// The DER of the first certificate in `pem`.
pub fn certificate_der(pem: &str) -> Result<CertificateDer<'static>, WireTlsError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| WireTlsError("no certificate in the PEM text".into()))?
        .map_err(|e| WireTlsError(format!("the certificate PEM cannot be read: {e}")))
}

/// The replica's TLS server configuration.
pub fn server_config(
    certificate_pem: &str,
    private_key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, WireTlsError> {
    let cert = certificate_der(certificate_pem)?;
    let key = PrivateKeyDer::from_pem_slice(private_key_pem.as_bytes())
        .map_err(|e| WireTlsError(format!("the private key PEM cannot be read: {e}")))?;
    let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| WireTlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| WireTlsError(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The gateway's TLS client configuration: it accepts exactly `pinned`.
pub fn client_config(
    pinned: CertificateDer<'static>,
) -> Result<Arc<rustls::ClientConfig>, WireTlsError> {
    let provider = crate::tls::provider();
    let verifier = Arc::new(Pinned {
        certificate: pinned,
        algorithms: provider.signature_verification_algorithms,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| WireTlsError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts one certificate, byte for byte; the handshake signature is checked
/// against its key as usual.
#[derive(Debug)]
struct Pinned {
    certificate: CertificateDer<'static>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the replica's certificate is not the one minted for this revision".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("replicas speak TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
