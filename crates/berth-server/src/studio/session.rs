//! Console sessions: who is signed in, their CSRF token, one-time sign-in codes.
//!
//! A session is created by presenting the workspace token on the sign-in form, or
//! by exchanging a one-time code minted by `berth studio login`. The browser
//! keeps only the session id, in an HttpOnly, SameSite=Strict cookie; the server
//! keeps the SHA-256 of the id (so a memory dump of the map holds no usable
//! cookie), the session's CSRF token and its expiry. Every mutating call of a
//! session must carry the CSRF token in a header (checked in constant time) and,
//! when the browser sends one, an `Origin` naming this server. Sessions live in
//! memory: a server restart signs everybody out.
//!
//! Everything here is pure: the time is passed in as epoch seconds.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a session lasts after sign-in, seconds.
pub const SESSION_LIFETIME_SECS: u64 = 12 * 60 * 60;
/// How long a code from `berth studio login` may wait before it is exchanged, seconds.
pub const CODE_LIFETIME_SECS: u64 = 5 * 60;
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "berth_session";
/// The header mutating calls of a session carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-berth-csrf";
/// Sessions (and codes) kept at most; the oldest are dropped beyond this.
const MAX_ENTRIES: usize = 10_000;

/// A signed-in console session, as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The token mutating calls must echo in [`CSRF_HEADER`].
    pub csrf: String,
    /// Epoch seconds after which the session is refused.
    pub expires: u64,
}

/// A new session: the cookie value (given to the browser once) and its record.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The session id, the cookie's value.
    pub id: String,
    /// The record kept by the server.
    pub session: Session,
}

/// Why a mutating session call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    /// No CSRF header.
    #[error(
        "this change comes from a console session without the `X-Berth-CSRF` header; reload the console and try again"
    )]
    Missing,
    /// The header does not match the session's token.
    #[error(
        "the `X-Berth-CSRF` header does not match this console session; reload the console and try again"
    )]
    Mismatch,
    /// The browser says the request comes from another site.
    #[error(
        "this change comes from `{0}`, not from this server's console; changes are accepted only from the console itself"
    )]
    CrossOrigin(String),
}

/// Random hex of `bytes` bytes from the OS generator.
fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(hex::encode(buf))
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The sessions and pending codes of one server.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    codes: Mutex<HashMap<[u8; 32], u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    /// Starts a session at `now` (after the workspace token or a code was checked).
    pub fn create(&self, now: u64) -> Result<NewSession, getrandom::Error> {
        let id = random_hex(32)?;
        let session = Session {
            csrf: random_hex(32)?,
            expires: now + SESSION_LIFETIME_SECS,
        };
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_ENTRIES
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(digest(&id), session.clone());
        Ok(NewSession { id, session })
    }

    /// The live session with cookie value `id` at `now`.
    pub fn get(&self, id: &str, now: u64) -> Option<Session> {
        let key = digest(id);
        let mut sessions = lock(&self.sessions);
        match sessions.get(&key) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session with cookie value `id` (sign-out); true if there was one.
    pub fn remove(&self, id: &str) -> bool {
        lock(&self.sessions).remove(&digest(id)).is_some()
    }

    /// Mints a one-time sign-in code valid for [`CODE_LIFETIME_SECS`] from `now`.
    pub fn mint_code(&self, now: u64) -> Result<(String, u64), getrandom::Error> {
        let code = random_hex(24)?;
        let expires = now + CODE_LIFETIME_SECS;
        let mut codes = lock(&self.codes);
        codes.retain(|_, e| *e > now);
        if codes.len() >= MAX_ENTRIES {
            codes.clear();
        }
        codes.insert(digest(&code), expires);
        Ok((code, expires))
    }

    /// Exchanges `code` for a new session; a code works once and only before it expires.
    /// `Ok(None)` when the code is unknown, used or expired.
    pub fn redeem_code(
        &self,
        code: &str,
        now: u64,
    ) -> Result<Option<NewSession>, getrandom::Error> {
        let Some(expires) = lock(&self.codes).remove(&digest(code)) else {
            return Ok(None);
        };
        if expires > now {
            self.create(now).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Checks a mutating call of `session`: the CSRF header must equal the session's
/// token, and an `Origin` header, when sent, must be this server (`expected_origins`
/// are the origins the server answers at, e.g. `http://127.0.0.1:8080`).
pub fn check_csrf(
    session: &Session,
    header: Option<&str>,
    origin: Option<&str>,
    expected_origins: &[String],
) -> Result<(), CsrfError> {
    if let Some(origin) = origin
        && !expected_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
    {
        return Err(CsrfError::CrossOrigin(origin.to_owned()));
    }
    let header = header.ok_or(CsrfError::Missing)?;
    if bool::from(header.trim().as_bytes().ct_eq(session.csrf.as_bytes())) {
        Ok(())
    } else {
        Err(CsrfError::Mismatch)
    }
}

/// The origins a request to `host` (the `Host` header) may come from.
pub fn origins_for_host(host: &str, tls: bool) -> Vec<String> {
    let scheme = if tls { "https" } else { "http" };
    vec![format!("{scheme}://{host}")]
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// The `Set-Cookie` value that stores session `id`.
pub fn set_cookie(id: &str, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_LIFETIME_SECS}{secure}"
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_until_it_expires_or_signs_out() {
        let s = Sessions::default();
        let new = s.create(1000).expect("random");
        assert_eq!(new.id.len(), 64);
        assert_ne!(new.id, new.session.csrf);
        assert_eq!(s.get(&new.id, 1001), Some(new.session.clone()));
        assert_eq!(s.get(&new.id, 1000 + SESSION_LIFETIME_SECS), None);
        let other = s.create(1000).expect("random");
        assert!(s.get("not-a-session", 1001).is_none());
        assert!(s.remove(&other.id));
        assert!(s.get(&other.id, 1001).is_none());
        assert!(!s.remove(&other.id));
    }

    #[test]
    fn a_code_works_once_and_only_before_it_expires() {
        let s = Sessions::default();
        let (code, expires) = s.mint_code(50).expect("random");
        assert_eq!(expires, 50 + CODE_LIFETIME_SECS);
        let session = s
            .redeem_code(&code, 60)
            .expect("random")
            .expect("a fresh code signs in");
        assert!(s.get(&session.id, 61).is_some());
        assert!(
            s.redeem_code(&code, 61).expect("random").is_none(),
            "a code works once"
        );
        let (late, _) = s.mint_code(50).expect("random");
        assert!(
            s.redeem_code(&late, 50 + CODE_LIFETIME_SECS)
                .expect("random")
                .is_none()
        );
        assert!(s.redeem_code("made-up", 51).expect("random").is_none());
    }

    #[test]
    fn csrf_needs_the_session_token_and_a_same_origin() {
        let session = Session {
            csrf: "abc123".into(),
            expires: 10,
        };
        let origins = origins_for_host("127.0.0.1:8080", false);
        assert_eq!(
            check_csrf(
                &session,
                Some("abc123"),
                Some("http://127.0.0.1:8080"),
                &origins
            ),
            Ok(())
        );
        assert_eq!(check_csrf(&session, Some("abc123"), None, &origins), Ok(()));
        assert_eq!(
            check_csrf(&session, None, None, &origins),
            Err(CsrfError::Missing)
        );
        assert_eq!(
            check_csrf(&session, Some("abc124"), None, &origins),
            Err(CsrfError::Mismatch)
        );
        assert_eq!(
            check_csrf(
                &session,
                Some("abc123"),
                Some("https://evil.example"),
                &origins
            ),
            Err(CsrfError::CrossOrigin("https://evil.example".into()))
        );
        assert!(
            check_csrf(
                &session,
                Some("abc123"),
                Some("https://127.0.0.1:8080"),
                &origins
            )
            .is_err(),
            "the scheme is part of the origin"
        );
    }

    #[test]
    fn cookies_parse_and_carry_their_attributes() {
        assert_eq!(
            cookie("a=1; berth_session=xyz; b=2", SESSION_COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie("berth_sessionx=1", SESSION_COOKIE), None);
        let plain = set_cookie("id", false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        assert!(set_cookie("id", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
