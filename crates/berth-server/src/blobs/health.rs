//! Blob-store health for `/readyz`: one cheap probe (a folder check, or a HEAD request to the
//! object store), its answer cached for a few seconds so that probes never pile up on the store.

use std::time::{Duration, Instant};

use super::Inner;

/// How long an answer is reused.
const FRESH_FOR: Duration = Duration::from_secs(5);
/// Longest a probe may take before the store counts as unavailable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The last answer and when it was taken.
#[derive(Default)]
pub(crate) struct HealthCache(tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>);

impl HealthCache {
    /// The cached answer, or a fresh probe when it is older than [`FRESH_FOR`].
    pub(crate) async fn get(&self, inner: &Inner) -> Result<(), String> {
        let mut last = self.0.lock().await;
        if let Some((at, answer)) = last.as_ref()
            && at.elapsed() < FRESH_FOR
        {
            return answer.clone();
        }
        let answer = match tokio::time::timeout(PROBE_TIMEOUT, probe(inner)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!(
                "{}: no answer within {} s",
                inner.describe(),
                PROBE_TIMEOUT.as_secs()
            )),
        };
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}

async fn probe(inner: &Inner) -> Result<(), String> {
    match &inner.remote {
        Some(remote) => remote.probe().await,
        None => {
            let root = inner.root.join("sha256");
            match tokio::fs::metadata(&root).await {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(format!("{} is not a folder", root.display())),
                Err(e) => Err(format!("{}: {e}", root.display())),
            }
        }
    }
}
