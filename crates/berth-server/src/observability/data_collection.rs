//! The data-collection writer: one JSON line per scored request,
//! `{time, requestId, revision, models, input, output, status}`, appended to
//! `<data>/datacollection/<service>/<yyyy>/<mm>/<dd>/data.jsonl` (UTC date of
//! the request), rotated by size (`data.jsonl.1` is the newest rotated file of
//! the day; bodies longer than [`super::MAX_BODY_IN_LINE`] are cut with a
//! marker). Runs on its own thread; flushes whenever its queue is empty.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use super::request_log::RotatingFile;
use super::{
    BodyJson, DATA_COLLECTION_KEEP, DATA_COLLECTION_MAX_BYTES, DataSample, body_json, rfc3339,
};

/// One collected line.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Sample<'a> {
    time: &'a str,
    request_id: &'a str,
    revision: u32,
    models: &'a [String],
    input: BodyJson<'a>,
    output: Option<BodyJson<'a>>,
    status: u16,
}

/// The file of `service`'s samples taken on the UTC date of `time` (RFC 3339).
fn file_for(root: &Path, service: &str, time: &str) -> PathBuf {
    let (year, month, day) = (
        time.get(0..4).unwrap_or("0000"),
        time.get(5..7).unwrap_or("00"),
        time.get(8..10).unwrap_or("00"),
    );
    root.join(service)
        .join(year)
        .join(month)
        .join(day)
        .join("data.jsonl")
}

struct Open {
    path: PathBuf,
    file: RotatingFile,
}

fn write(
    files: &mut HashMap<Arc<str>, Open>,
    root: &Path,
    sample: DataSample,
) -> std::io::Result<()> {
    let time = rfc3339(sample.at);
    let path = file_for(root, &sample.service, &time);
    let line = Sample {
        time: &time,
        request_id: &sample.request_id,
        revision: sample.revision,
        models: &sample.models,
        input: body_json(&sample.input),
        output: sample.output.as_deref().map(body_json),
        status: sample.status,
    };
    let current = match files.get_mut(&sample.service) {
        Some(open) if open.path == path => open,
        _ => {
            if let Some(mut old) = files.remove(&sample.service) {
                old.file.flush()?;
            }
            let file = RotatingFile::new(
                path.clone(),
                DATA_COLLECTION_MAX_BYTES,
                DATA_COLLECTION_KEEP,
            );
            files
                .entry(sample.service.clone())
                .or_insert(Open { path, file })
        }
    };
    let mut bytes = serde_json::to_vec(&line)?;
    bytes.push(b'\n');
    current.file.write_line(&bytes)
}

/// Writes samples until every sender is gone.
pub(super) fn run_writer(root: &Path, mut rx: mpsc::Receiver<DataSample>) {
    let mut files: HashMap<Arc<str>, Open> = HashMap::new();
    loop {
        let sample = match rx.try_recv() {
            Ok(sample) => sample,
            Err(mpsc::error::TryRecvError::Empty) => {
                for (service, open) in &mut files {
                    if let Err(e) = open.file.flush() {
                        tracing::warn!(%service, error = %e, "cannot flush collected data");
                    }
                }
                // Polling, not parking on the queue: a sender then never has
                // a sleeping thread to wake, so the request path makes no syscall.
                std::thread::sleep(super::WRITER_POLL);
                continue;
            }
            Err(mpsc::error::TryRecvError::Disconnected) => return,
        };
        let service = sample.service.clone();
        if let Err(e) = write(&mut files, root, sample) {
            if crate::disk::is_full(&e) {
                let dir = root.join(&*service);
                crate::disk::warn_full(&dir, crate::disk::free_bytes(&dir));
            } else {
                tracing::warn!(%service, error = %e, "cannot write collected data");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_go_under_the_utc_date() {
        let root = Path::new("/d");
        assert_eq!(
            file_for(root, "svc", "2025-03-09T23:59:59.123Z"),
            Path::new("/d/svc/2025/03/09/data.jsonl")
        );
    }
}
