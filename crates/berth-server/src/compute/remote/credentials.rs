//! Credentials of remote replicas, all derived from the workspace's signing
//! key with their own labels, so every server of a workspace derives the same
//! ones and none is stored:
//!
//! - **bundle tokens** (`b1.<payload hex>.<signature hex>`, HMAC-SHA256 under the
//!   bundle key): read-only, scoped to one service revision, expiring; they open
//!   the revision's bundle and its blobs and nothing else;
//! - **per-revision credentials**: an Ed25519 TLS certificate (deterministic: the
//!   key comes from the revision's seed, Ed25519 signatures are deterministic and
//!   the validity and serial are fixed) that the gateway pins, and the secret a
//!   gateway presents first on every connection.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_api::bundle::ReplicaCredentials;

use crate::tokens::{hmac_sha256, hmac_sha256_verify};

/// Label of the bundle-token key.
const BUNDLE_TOKEN_LABEL: &[u8] = b"berth/v1/bundle-token";
/// Label of the per-revision credential seed key.
const REPLICA_CREDENTIALS_LABEL: &[u8] = b"berth/v1/replica-credentials";
/// Prefix of a bundle token.
const TOKEN_PREFIX: &str = "b1.";
/// How long a bundle token minted for a local replica is valid by default.
pub const BUNDLE_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// What a bundle token grants: reading one revision's bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleGrant {
    /// The service.
    pub service: String,
    /// The revision.
    pub revision: u32,
}

/// Keys for remote replicas, derived from the workspace's signing key.
#[derive(Clone)]
pub struct ReplicaKeys {
    bundle: [u8; 32],
    credentials: [u8; 32],
}

impl std::fmt::Debug for ReplicaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplicaKeys(..)")
    }
}

/// The per-revision credentials could not be made (never expected).
#[derive(Debug, thiserror::Error)]
#[error("minting the replica certificate of {service} revision {revision}: {reason}")]
pub struct CredentialsError {
    /// The service.
    pub service: String,
    /// The revision.
    pub revision: u32,
    /// What failed.
    pub reason: String,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ReplicaKeys {
    /// Keys derived from the workspace signing key `root`.
    pub fn derive(root: &[u8]) -> ReplicaKeys {
        ReplicaKeys {
            bundle: hmac_sha256(root, BUNDLE_TOKEN_LABEL),
            credentials: hmac_sha256(root, REPLICA_CREDENTIALS_LABEL),
        }
    }

    /// A bundle token for `service` revision `revision`, valid for `lifetime`.
    pub fn mint_bundle_token(&self, service: &str, revision: u32, lifetime: Duration) -> String {
        let exp = now_secs() + lifetime.as_secs();
        let payload = serde_json::json!({"svc": service, "rev": revision, "exp": exp}).to_string();
        let signature = hmac_sha256(&self.bundle, payload.as_bytes());
        format!(
            "{TOKEN_PREFIX}{}.{}",
            hex::encode(payload),
            hex::encode(signature)
        )
    }

    /// What `token` grants, when it is a valid, unexpired bundle token of this
    /// workspace (signature checked in constant time).
    pub fn verify_bundle_token(&self, token: &str) -> Option<BundleGrant> {
        let rest = token.strip_prefix(TOKEN_PREFIX)?;
        let (payload_hex, signature_hex) = rest.split_once('.')?;
        let payload = hex::decode(payload_hex).ok()?;
        let signature = hex::decode(signature_hex).ok()?;
        if !hmac_sha256_verify(&self.bundle, &payload, &signature) {
            return None;
        }
        let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
        if claims["exp"].as_u64().is_none_or(|exp| exp <= now_secs()) {
            return None;
        }
        Some(BundleGrant {
            service: claims["svc"].as_str()?.to_owned(),
            revision: u32::try_from(claims["rev"].as_u64()?).ok()?,
        })
    }

    fn seed(&self, service: &str, revision: u32, purpose: &str) -> [u8; 32] {
        let message = format!("{purpose}\0{service}\0{revision}");
        hmac_sha256(&self.credentials, message.as_bytes())
    }

    /// The connection secret of `service` revision `revision` (hex).
    pub fn secret(&self, service: &str, revision: u32) -> String {
        hex::encode(self.seed(service, revision, "secret"))
    }

    /// The TLS certificate (PEM and DER), its key (PKCS#8 PEM) and the
    /// connection secret of `service` revision `revision`.
    pub fn credentials(
        &self,
        service: &str,
        revision: u32,
    ) -> Result<ReplicaCredentials, CredentialsError> {
        let fail = |reason: String| CredentialsError {
            service: service.to_owned(),
            revision,
            reason,
        };
        let seed = self.seed(service, revision, "tls-key");
        // PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410).
        let mut pkcs8 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        pkcs8.extend_from_slice(&seed);
        let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8),
            &rcgen::PKCS_ED25519,
        )
        .map_err(|e| fail(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(vec![server_name(service, revision)])
            .map_err(|e| fail(e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("berth replica {service} r{revision}"),
        );
        let serial = self.seed(service, revision, "serial");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial[..16]));
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(9999, 12, 31);
        let certificate = params.self_signed(&key).map_err(|e| fail(e.to_string()))?;
        Ok(ReplicaCredentials {
            certificate_pem: certificate.pem(),
            private_key_pem: key.serialize_pem(),
            secret: self.secret(service, revision),
        })
    }
}

/// The name in a replica certificate and in the gateway's TLS handshake.
pub fn server_name(service: &str, revision: u32) -> String {
    format!("r{revision}.{service}.replica.berth.invalid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_tokens_are_scoped_signed_and_expire() {
        let keys = ReplicaKeys::derive(&[7; 32]);
        let token = keys.mint_bundle_token("svc-a", 3, Duration::from_secs(60));
        assert_eq!(
            keys.verify_bundle_token(&token),
            Some(BundleGrant {
                service: "svc-a".into(),
                revision: 3
            })
        );
        // Another workspace's key, a changed payload, an expired token: refused.
        assert_eq!(
            ReplicaKeys::derive(&[8; 32]).verify_bundle_token(&token),
            None
        );
        let (head, sig) = token.rsplit_once('.').unwrap();
        let forged_payload = hex::encode(r#"{"svc":"svc-a","rev":4,"exp":99999999999}"#);
        assert_eq!(
            keys.verify_bundle_token(&format!("b1.{forged_payload}.{sig}")),
            None
        );
        assert_eq!(keys.verify_bundle_token(head), None);
        let expired = keys.mint_bundle_token("svc-a", 3, Duration::ZERO);
        assert_eq!(keys.verify_bundle_token(&expired), None);
        // A scoring token or the workspace token is not a bundle token.
        let scoring = crate::tokens::TokenSigner::from_key([7; 32]).mint("svc-a");
        assert_eq!(keys.verify_bundle_token(&scoring.access_token), None);
    }

    #[test]
    fn credentials_are_per_revision_and_the_same_on_every_server() {
        let keys = ReplicaKeys::derive(&[7; 32]);
        let a = keys.credentials("svc", 1).unwrap();
        let again = ReplicaKeys::derive(&[7; 32]).credentials("svc", 1).unwrap();
        assert_eq!(a, again);
        let b = keys.credentials("svc", 2).unwrap();
        assert_ne!(a.certificate_pem, b.certificate_pem);
        assert_ne!(a.secret, b.secret);
        assert_ne!(
            a.secret,
            keys.credentials("svc2", 1).unwrap().secret,
            "secrets differ per service"
        );
        assert!(a.certificate_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(a.private_key_pem.contains("PRIVATE KEY"));
    }
}
