//! Scoring tokens for services with token auth: short-lived, scoped to one
//! service, signed with the workspace's signing key (HMAC-SHA256).
//!
//! A token is `<payload hex>.<signature hex>`, the payload being
//! `{"svc": name, "exp": epoch seconds}`. The key lives in
//! `<data>/token-signing-key` (0600) and never leaves the server.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// When clients should fetch a new one.
pub const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(30 * 60);

/// Signs and checks scoring tokens.
#[derive(Clone)]
pub struct TokenSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

/// A minted token.
#[derive(Debug, Clone)]
pub struct MintedToken {
    /// The token.
    pub access_token: String,
    /// Epoch seconds after which clients should refresh.
    pub refresh_after: u64,
    /// Epoch seconds after which it is refused.
    pub expiry_on: u64,
}

fn hmac(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    hmac_sha256(key, message)
}

/// HMAC-SHA256 (RFC 2104, `ring`'s implementation) of `message` under `key`
/// of any length; used for scoring tokens and webhook signatures.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&key, message);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Whether `signature` is the HMAC-SHA256 of `message` under `key` (constant time).
pub fn hmac_sha256_verify(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::verify(&key, message, signature).is_ok()
}

/// The credential of an `Authorization: Bearer <credential>` header value; the
/// scheme is matched case-insensitively (RFC 9110 §11.1).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, credential) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
        .filter(|c| !c.is_empty())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenSigner {
    /// Loads the signing key, creating it at first start.
    pub fn load_or_create(data: &Path) -> std::io::Result<Self> {
        let path = data.join("token-signing-key");
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => hex::decode(text.trim())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| std::io::Error::other(format!("`{}` is corrupt", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                file.write_all(hex::encode(key).as_bytes())?;
                key
            }
            Err(e) => return Err(e),
        };
        Ok(Self { key })
    }

    /// The keys of remote replicas (bundle tokens, per-revision credentials),
    /// derived from this key with their own labels.
    pub fn replica_keys(&self) -> crate::compute::remote::ReplicaKeys {
        crate::compute::remote::ReplicaKeys::derive(&self.key)
    }

    /// A signer with a given key (tests).
    pub fn from_key(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// Mints a token for `service`.
    pub fn mint(&self, service: &str) -> MintedToken {
        let now = now_secs();
        let expiry_on = now + TOKEN_LIFETIME.as_secs();
        let payload = serde_json::json!({"svc": service, "exp": expiry_on}).to_string();
        let signature = hmac(&self.key, payload.as_bytes());
        MintedToken {
            access_token: format!("{}.{}", hex::encode(payload), hex::encode(signature)),
            refresh_after: now + TOKEN_REFRESH_AFTER.as_secs(),
            expiry_on,
        }
    }

    /// Whether `token` is valid now for `service`.
    pub fn verify(&self, token: &str, service: &str) -> bool {
        let Some((payload_hex, signature_hex)) = token.split_once('.') else {
            return false;
        };
        let (Ok(payload), Ok(signature)) = (hex::decode(payload_hex), hex::decode(signature_hex))
        else {
            return false;
        };
        if !hmac_sha256_verify(&self.key, &payload, &signature) {
            return false;
        }
        let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&payload) else {
            return false;
        };
        claims["svc"] == service && claims["exp"].as_u64().is_some_and(|exp| exp > now_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_scoped_signed_and_expire() {
        let signer = TokenSigner::from_key([7; 32]);
        let token = signer.mint("svc-a");
        assert!(signer.verify(&token.access_token, "svc-a"));
        assert!(
            !signer.verify(&token.access_token, "svc-b"),
            "scoped to one service"
        );
        assert!(token.refresh_after < token.expiry_on);
        let other = TokenSigner::from_key([8; 32]);
        assert!(
            !other.verify(&token.access_token, "svc-a"),
            "another workspace's key"
        );
        let (payload, sig) = token.access_token.split_once('.').unwrap();
        let forged = format!(
            "{}.{sig}",
            hex::encode(r#"{"svc":"svc-a","exp":99999999999}"#)
        );
        assert!(!signer.verify(&forged, "svc-a"));
        let expired_payload = r#"{"svc":"svc-a","exp":1}"#;
        let expired = format!(
            "{}.{}",
            hex::encode(expired_payload),
            hex::encode(hmac(&[7; 32], expired_payload.as_bytes()))
        );
        assert!(!signer.verify(&expired, "svc-a"));
        assert!(!signer.verify(payload, "svc-a"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "BeArEr  abc ",
            " Bearer abc",
        ] {
            assert_eq!(bearer(value), Some("abc"), "{value:?}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc"] {
            assert_eq!(bearer(value), None, "{value:?}");
        }
    }

    #[test]
    fn hmac_matches_pythons_hmac_module() {
        // hmac.new(b"\x0b" * 32, b"Hi There", hashlib.sha256).hexdigest()
        let mac = hmac(&[0x0b; 32], b"Hi There");
        assert_eq!(
            hex::encode(mac),
            "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"
        );
        // RFC 4231 test case 6: a 131-byte key is hashed first.
        let long = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(long),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
