//! The workspace token and the token-signing key of a PostgreSQL store: kept
//! in the store's settings, created once by whichever server starts first
//! (insert if absent, so servers starting at once agree), so every server
//! accepts the same credentials. A data directory that already has the files
//! (a server moved from SQLite, or run on PostgreSQL before) offers them as the
//! values to store, so its clients keep working; the files are never written
//! for a PostgreSQL store. A SQLite store keeps the files, as before.

use std::path::Path;

use crate::store::{ClusterStore, Result, StoreError};
use crate::tokens::TokenSigner;

/// Setting holding the workspace token.
pub const TOKEN_SETTING: &str = "workspace_token";
/// Setting holding the token-signing key (hex).
pub const SIGNING_KEY_SETTING: &str = "token_signing_key";

fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Task(format!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

fn file(data: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(data.join(name))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The shared token and signer, stored now if no server stored them yet.
pub async fn shared(store: &dyn ClusterStore, data: &Path) -> Result<(String, TokenSigner)> {
    let token_offer = match file(data, crate::workspace_files::TOKEN_FILE) {
        Some(token) => token,
        None => format!("berth_{}", random_hex()?),
    };
    let token = store.setting_or_insert(TOKEN_SETTING, &token_offer).await?;
    let key_offer = match file(data, crate::tokens::SIGNING_KEY_FILE) {
        Some(key) => key,
        None => random_hex()?,
    };
    let key_hex = store
        .setting_or_insert(SIGNING_KEY_SETTING, &key_offer)
        .await?;
    let key = hex::decode(&key_hex)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| StoreError::Corrupt {
            what: "token-signing key",
            detail: format!("the `{SIGNING_KEY_SETTING}` setting is not 32 bytes of hex"),
        })?;
    if token != token_offer {
        tracing::info!("using the workspace token stored by the first server of this store");
    }
    Ok((token, TokenSigner::from_key(key)))
}
