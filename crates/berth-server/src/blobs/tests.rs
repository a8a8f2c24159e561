//! Blob-store conformance: every test runs once on a local folder and once on a real
//! S3-compatible server (moto, see [`super::test_s3`]), plus the object-store specifics
//! (multipart, interrupted uploads, the cache, copies between stores).

use std::sync::Arc;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::location::BlobLocation;
use super::{BlobStore, PART_BYTES, format_digest, test_s3};
use crate::store::{SqliteStore, Store};

/// A blob store under test with its metadata store and folders.
struct Backend {
    blobs: BlobStore,
    store: Arc<SqliteStore>,
    data: tempfile::TempDir,
    bucket: Option<String>,
}

impl Backend {
    async fn local() -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let location = BlobLocation::parse(None, data.path()).expect("default location");
        Self::open(data, location, None).await
    }

    async fn s3(test: &str) -> Self {
        let bucket = test_s3::bucket(test).await;
        let data = tempfile::tempdir().expect("temp dir");
        let url = format!("s3://{bucket}/berth/blobs?{}", test_s3::url_options());
        let location = BlobLocation::parse(Some(&url), data.path()).expect("s3 location");
        Self::open(data, location, Some(bucket)).await
    }

    async fn open(data: tempfile::TempDir, location: BlobLocation, bucket: Option<String>) -> Self {
        let blobs = BlobStore::open_location(&location, data.path())
            .await
            .expect("open blob store");
        blobs.set_sweep_grace(std::time::Duration::ZERO);
        let store = Arc::new(
            SqliteStore::open(&data.path().join("berth.db"))
                .await
                .expect("open store"),
        );
        Self {
            blobs,
            store,
            data,
            bucket,
        }
    }

    async fn put(&self, content: &[u8]) -> super::BlobPin {
        let mut writer = self.blobs.writer(u64::MAX).await.expect("writer");
        for chunk in content.chunks(64 * 1024) {
            writer.write(chunk).await.expect("write");
        }
        writer.finish().await.expect("finish")
    }

    async fn read(&self, digest: &str) -> Vec<u8> {
        let mut stream = Box::pin(self.blobs.stream(digest).await.expect("stream"));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.expect("chunk"));
        }
        out
    }

    /// Objects and in-progress uploads left in the bucket (S3), or files in the local folders.
    async fn leftovers(&self) -> Vec<String> {
        match &self.bucket {
            Some(bucket) => {
                let mut all = test_s3::list_keys(bucket).await;
                all.extend(
                    test_s3::list_multipart_uploads(bucket)
                        .await
                        .into_iter()
                        .map(|k| format!("upload in progress: {k}")),
                );
                all
            }
            None => Vec::new(),
        }
        .into_iter()
        .chain(files_under(&self.data.path().join("blobs")))
        .chain(files_under(&self.data.path().join("blob-cache")))
        .collect()
    }
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            } else {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}

fn digest_of(content: &[u8]) -> String {
    format_digest(&Sha256::digest(content))
}

/// Content that is not all one byte, `len` long.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Runs a conformance test on both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local() {
                super::$name(super::Backend::local().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() {
                super::$name(super::Backend::s3(stringify!($name)).await).await;
            }
        }
    )*};
}

on_both_backends!(
    put_then_get_streams_the_same_bytes,
    identical_content_is_stored_once,
    sync_writer_publishes_from_a_blocking_thread,
    collect_removes_unreferenced_unpinned_blobs_only,
    sweep_removes_what_no_model_references,
    over_limit_uploads_leave_nothing,
    local_paths_hold_checked_content,
    health_is_ok_for_a_working_store,
);

async fn put_then_get_streams_the_same_bytes(b: Backend) {
    let data = content(300_000, 1);
    let pin = b.put(&data).await;
    assert_eq!(pin.digest(), digest_of(&data));
    assert_eq!(pin.size(), data.len() as u64);
    assert!(b.blobs.contains(pin.digest()).await.expect("contains"));
    assert_eq!(b.read(pin.digest()).await, data);
    let empty = b.put(b"").await;
    assert_eq!(b.read(empty.digest()).await, b"");
    let missing = digest_of(b"never stored");
    assert!(!b.blobs.contains(&missing).await.expect("contains"));
    assert!(b.blobs.stream(&missing).await.is_err());
}

async fn identical_content_is_stored_once(b: Backend) {
    let data = content(100_000, 2);
    let first = b.put(&data).await;
    let uploads = b.blobs.uploads();
    let second = b.put(&data).await;
    assert_eq!(first.digest(), second.digest());
    assert_eq!(
        b.blobs.uploads(),
        uploads,
        "the second copy was uploaded again"
    );
    let stored: Vec<String> = b
        .leftovers()
        .await
        .into_iter()
        .filter(|k| k.contains("sha256/"))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
}

async fn sync_writer_publishes_from_a_blocking_thread(b: Backend) {
    let data = content(70_000, 3);
    let blobs = b.blobs.clone();
    let expected = data.clone();
    let pin = tokio::task::spawn_blocking(move || {
        let mut writer = blobs.sync_writer(u64::MAX).expect("sync writer");
        writer.copy_from(&mut expected.as_slice()).expect("copy");
        writer.finish().expect("finish")
    })
    .await
    .expect("join");
    assert_eq!(pin.digest(), digest_of(&data));
    assert_eq!(b.read(pin.digest()).await, data);
}

async fn collect_removes_unreferenced_unpinned_blobs_only(b: Backend) {
    let kept = b.put(b"referenced by a model").await;
    b.store
        .insert_model(crate::store::test_model("m", kept.digest()))
        .await
        .expect("model");
    let pinned = b.put(b"pinned by an upload in flight").await;
    let loose = b.put(b"nobody's").await;
    let loose_digest = loose.digest().to_owned();
    drop(loose);
    let digests = vec![
        kept.digest().to_owned(),
        pinned.digest().to_owned(),
        loose_digest.clone(),
    ];
    let removed = b.blobs.collect(&digests, b.store.as_ref()).await;
    assert_eq!(removed, 1);
    assert!(b.blobs.contains(kept.digest()).await.expect("contains"));
    assert!(b.blobs.contains(pinned.digest()).await.expect("contains"));
    assert!(!b.blobs.contains(&loose_digest).await.expect("contains"));
    drop(pinned);
    let removed = b.blobs.collect(&digests, b.store.as_ref()).await;
    assert_eq!(removed, 1, "the pin was released, so the blob goes");
}

async fn sweep_removes_what_no_model_references(b: Backend) {
    let kept = b.put(b"kept").await;
    b.store
        .insert_model(crate::store::test_model("m", kept.digest()))
        .await
        .expect("model");
    let pinned = b.put(b"pinned").await;
    let loose = b.put(b"loose").await;
    let loose_digest = loose.digest().to_owned();
    drop(loose);
    let removed = b.blobs.sweep(b.store.as_ref()).await.expect("sweep");
    assert_eq!(removed, 1);
    assert!(b.blobs.contains(kept.digest()).await.expect("contains"));
    assert!(b.blobs.contains(pinned.digest()).await.expect("contains"));
    assert!(!b.blobs.contains(&loose_digest).await.expect("contains"));
}

async fn over_limit_uploads_leave_nothing(b: Backend) {
    let mut writer = b.blobs.writer(1000).await.expect("writer");
    writer.write(&[7u8; 600]).await.expect("under the limit");
    let err = writer.write(&[7u8; 600]).await.expect_err("over the limit");
    assert!(
        matches!(err, super::BlobError::TooLarge { limit: 1000 }),
        "{err}"
    );
    drop(writer);
    let left = b.leftovers().await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

async fn local_paths_hold_checked_content(b: Backend) {
    let mut blobs = Vec::new();
    for seed in 0..12u8 {
        let data = content(20_000 + usize::from(seed), seed);
        let pin = b.put(&data).await;
        blobs.push((pin, data));
    }
    let digests: Vec<String> = blobs.iter().map(|(p, _)| p.digest().to_owned()).collect();
    b.blobs.ensure_local(&digests).await.expect("ensure local");
    for (pin, data) in &blobs {
        let path = b.blobs.path(pin.digest());
        assert_eq!(&std::fs::read(&path).expect("read local copy"), data);
        super::verify::check_file(&path, pin.digest()).expect("checked");
    }
}

async fn health_is_ok_for_a_working_store(b: Backend) {
    b.blobs.health().await.expect("healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sweep_keeps_unreferenced_objects_younger_than_the_grace() {
    let b = Backend::s3("sweep-grace").await;
    b.blobs.set_sweep_grace(super::SWEEP_GRACE);
    let loose = b.put(b"uploaded by another server a moment ago").await;
    let digest = loose.digest().to_owned();
    drop(loose);
    assert_eq!(b.blobs.sweep(b.store.as_ref()).await.expect("sweep"), 0);
    assert!(b.blobs.contains(&digest).await.expect("contains"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_large_content_goes_up_in_parts_and_reads_back() {
    let b = Backend::s3("multipart").await;
    let data = content(PART_BYTES * 2 + 12_345, 5);
    let pin = b.put(&data).await;
    assert_eq!(pin.size(), data.len() as u64);
    assert_eq!(b.read(pin.digest()).await, data);
    let bucket = b.bucket.as_deref().expect("bucket");
    let keys = test_s3::list_keys(bucket).await;
    let hex = pin.digest().trim_start_matches("sha256:");
    assert_eq!(
        keys,
        vec![format!("berth/blobs/sha256/{}/{hex}", &hex[..2])],
        "only the digest key is stored"
    );
    // An S3 object written in parts has an ETag of the form `<md5>-<parts>`.
    let head = reqwest::Client::new()
        .head(format!("{}/{bucket}/{}", test_s3::endpoint(), keys[0]))
        .send()
        .await
        .expect("head");
    let etag = head
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "ETag {etag}: not a 3-part upload"
    );
    assert!(test_s3::list_multipart_uploads(bucket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_interrupted_multipart_upload_leaves_nothing() {
    let b = Backend::s3("interrupted").await;
    let remote = b.blobs.inner.remote.as_ref().expect("remote");
    // Two parts' worth of content, then the source fails (a client hanging up, a disk error).
    let chunks: Vec<std::io::Result<bytes::Bytes>> = (0..(2 * PART_BYTES / (1 << 20)) + 1)
        .map(|i| Ok(bytes::Bytes::from(content(1 << 20, i as u8))))
        .chain([Err(std::io::Error::other("the client went away"))])
        .collect();
    let key = remote.key(&digest_of(b"whatever"));
    let err = remote
        .upload(&key, futures_util::stream::iter(chunks))
        .await
        .expect_err("the upload fails with its source");
    assert!(
        err.to_string().contains("went away") || format!("{err:?}").contains("went away"),
        "{err:?}"
    );
    let bucket = b.bucket.as_deref().expect("bucket");
    assert_eq!(test_s3::list_keys(bucket).await, Vec::<String>::new());
    assert_eq!(
        test_s3::list_multipart_uploads(bucket).await,
        Vec::<String>::new(),
        "the multipart upload was not aborted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_cache_refuses_content_that_does_not_match_its_digest() {
    let b = Backend::s3("corrupt").await;
    let remote = b.blobs.inner.remote.as_ref().expect("remote");
    let claimed = digest_of(b"the real model");
    remote
        .upload(
            &remote.key(&claimed),
            futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"a damaged model"))]),
        )
        .await
        .expect("plant damaged object");
    let err = b
        .blobs
        .ensure_local(std::slice::from_ref(&claimed))
        .await
        .expect_err("mismatch");
    assert!(err.to_string().contains(&claimed), "{err}");
    assert!(matches!(err, super::BlobError::Corrupt { .. }), "{err:?}");
    assert!(!b.blobs.path(&claimed).exists(), "the bad copy was kept");
    assert!(files_under(&b.data.path().join("blob-cache")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_missing_bucket() {
    let data = tempfile::tempdir().expect("temp dir");
    let url = format!("s3://no-such-bucket-here/p?{}", test_s3::url_options());
    let location = BlobLocation::parse(Some(&url), data.path()).expect("location");
    let blobs = BlobStore::open_location(&location, data.path())
        .await
        .expect("open");
    let err = blobs.health().await.expect_err("missing bucket");
    assert!(err.contains("s3://no-such-bucket-here/p"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_an_unreachable_object_store() {
    let data = tempfile::tempdir().expect("temp dir");
    // Nothing listens on port 9 of loopback.
    let url = "s3://nowhere/p?endpoint=http://127.0.0.1:9&allow_http=true&region=us-east-1&access_key_id=a&secret_access_key=b";
    let location = BlobLocation::parse(Some(url), data.path()).expect("location");
    let blobs = BlobStore::open_location(&location, data.path())
        .await
        .expect("open");
    let err = blobs.health().await.expect_err("unreachable");
    assert!(err.contains("s3://nowhere/p"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_blobs_moves_local_to_s3_and_back_checked() {
    let local = Backend::local().await;
    let s3 = Backend::s3("copy").await;
    let small = local.put(b"small file").await;
    let large_data = content(PART_BYTES + 1000, 6);
    let large = local.put(&large_data).await;
    let digests = vec![small.digest().to_owned(), large.digest().to_owned()];
    let report = super::copy_blobs(&local.blobs, &s3.blobs, &digests).await;
    assert!(report.complete(), "{:?}", report.failed);
    assert_eq!(report.copied, digests);
    assert_eq!(report.bytes, 10 + large_data.len() as u64);
    assert_eq!(s3.read(large.digest()).await, large_data);
    // Again: everything is there already.
    let again = super::copy_blobs(&local.blobs, &s3.blobs, &digests).await;
    assert_eq!(again.present, digests);
    assert!(again.copied.is_empty());
    // And back into an empty local store; a digest the source lacks is reported, not fatal.
    let back = Backend::local().await;
    let missing = digest_of(b"nowhere");
    let mut wanted = digests.clone();
    wanted.push(missing.clone());
    let report = super::copy_blobs(&s3.blobs, &back.blobs, &wanted).await;
    assert_eq!(report.copied, digests);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, missing);
    assert_eq!(back.read(large.digest()).await, large_data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_blobs_refuses_content_that_does_not_match_its_digest() {
    let s3 = Backend::s3("copy-corrupt").await;
    let remote = s3.blobs.inner.remote.as_ref().expect("remote");
    let claimed = digest_of(b"the real content");
    remote
        .upload(
            &remote.key(&claimed),
            futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"other content"))]),
        )
        .await
        .expect("plant");
    let target = Backend::local().await;
    let report = super::copy_blobs(&s3.blobs, &target.blobs, std::slice::from_ref(&claimed)).await;
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].1.to_string().contains(&claimed));
    assert!(
        target.leftovers().await.is_empty(),
        "{:?}",
        target.leftovers().await
    );
}
