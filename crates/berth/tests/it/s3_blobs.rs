//! `berth server --blobs s3://...` against a real S3-compatible server (moto, shared through
//! `BERTH_TEST_S3_ENDPOINT` or started by the test): a model larger than one multipart part is
//! registered, served by a deployed service (laid out from the digest-checked local cache) and
//! downloaded back byte-identical; the bucket holds exactly the digest keys, with no upload
//! left in progress, also after a registration the client broke off; `/readyz` reports the
//! blob store.

use berth_server::blobs::{PART_BYTES, test_s3};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{TestServer, tar_of};

/// Answers with the digest and size of the model file it loaded.
const SCRIPT: &[u8] = br#"
import hashlib, os

def init():
    global digest, size
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.bin"), "rb") as f:
        data = f.read()
    digest, size = hashlib.sha256(data).hexdigest(), len(data)

def run(raw):
    return {"sha256": digest, "size": size}
"#;

async fn start(bucket: &str) -> TestServer {
    let endpoint = test_s3::endpoint();
    let url = format!("s3://{bucket}/berth?path_style=true");
    TestServer::start_with_env(
        &["--blobs", &url],
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", test_s3::REGION),
            ("AWS_ACCESS_KEY_ID", test_s3::ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", test_s3::SECRET_ACCESS_KEY),
        ],
    )
    .await
}

fn model_bytes() -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * PART_BYTES + 4096);
    let mut block = Sha256::digest(b"berth s3 model").to_vec();
    while out.len() < 2 * PART_BYTES + 4096 {
        block = Sha256::digest(&block).to_vec();
        out.extend_from_slice(&block);
    }
    out
}

fn blob_keys(keys: &[String]) -> Vec<String> {
    keys.iter()
        .filter(|k| k.starts_with("berth/sha256/"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_blobs_register_serve_and_download_a_multipart_model() {
    let bucket = test_s3::bucket("it-s3-blobs").await;
    let server = start(&bucket).await;

    let ready = server
        .http
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await.expect("readyz JSON");
    assert_eq!(ready["blobs"]["ok"], true, "{ready}");

    let model = model_bytes();
    let hex = hex_of(&model);
    let (status, registered) = server
        .register_file("big", "model.bin", model.clone(), json!({}))
        .await;
    assert_eq!(status, 201, "{registered}\n{}", server.log());
    let keys = test_s3::list_keys(&bucket).await;
    let model_key = format!("berth/sha256/{}/{hex}", &hex[..2]);
    assert_eq!(blob_keys(&keys), vec![model_key.clone()], "{keys:?}");
    assert_eq!(server.blob_count(), 0, "blobs were stored on local disk");

    // The same content again is not uploaded twice and shares the key.
    let (status, again) = server
        .register_file("big", "model.bin", model.clone(), json!({}))
        .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(blob_keys(&test_s3::list_keys(&bucket).await).len(), 1);

    server
        .deploy("s3-served", &[("score.py", SCRIPT)], &["big:1"], json!({}))
        .await;
    let answer: Value = server
        .score("s3-served", "{}")
        .await
        .json()
        .await
        .expect("score JSON");
    assert_eq!(answer, json!({"sha256": hex, "size": model.len()}));
    // The revision was laid out from the local cache, filled from the bucket and checked.
    let cached = server
        .data_dir()
        .join("blob-cache/sha256")
        .join(&hex[..2])
        .join(&hex);
    assert_eq!(
        std::fs::metadata(&cached).expect("cached model").len(),
        model.len() as u64
    );

    let download = server
        .request(Method::GET, "/v1/models/big/versions/1/content")
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), 200);
    let body = download.bytes().await.expect("body");
    assert!(
        body[..] == model[..],
        "the download differs from the registered model"
    );

    // A folder comes back as a tar of the same files, streamed from the bucket.
    let (status, folder) = server
        .register_tar(
            "folder",
            "weights",
            tar_of(&[("a.txt", b"first file"), ("sub/b.bin", &model[..70_000])]),
        )
        .await;
    assert_eq!(status, 201, "{folder}");
    let tar = server
        .request(Method::GET, "/v1/models/folder/versions/1/content")
        .send()
        .await
        .expect("download folder")
        .bytes()
        .await
        .expect("tar body");
    let mut entries = std::collections::BTreeMap::new();
    for entry in tar::Archive::new(&tar[..]).entries().expect("tar") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).expect("read entry");
        entries.insert(path, content);
    }
    assert_eq!(entries.len(), 2, "{:?}", entries.keys());
    assert_eq!(entries["weights/a.txt"], b"first file");
    assert!(entries["weights/sub/b.bin"][..] == model[..70_000]);

    // A registration the client breaks off leaves nothing in the bucket.
    let before = test_s3::list_keys(&bucket).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(vec![1u8; PART_BYTES]),
        Ok(vec![2u8; PART_BYTES]),
        Err(std::io::Error::other("client gone")),
    ];
    let form = reqwest::multipart::Form::new()
        .part(
            "metadata",
            reqwest::multipart::Part::text(
                json!({"name": "broken", "kind": "file", "assetName": "model.bin"}).to_string(),
            ),
        )
        .part(
            "content",
            reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(
                futures_util::stream::iter(chunks),
            ))
            .file_name("model.bin"),
        );
    let sent = server
        .request(Method::POST, "/v1/models")
        .multipart(form)
        .send()
        .await;
    assert!(sent.is_err() || !sent.is_ok_and(|r| r.status().is_success()));
    let (_, models) = server.get_json("/v1/models?name=broken").await;
    assert!(!models.to_string().contains("\"broken\""), "{models}");
    assert_eq!(test_s3::list_keys(&bucket).await, before);
    assert_eq!(
        test_s3::list_multipart_uploads(&bucket).await,
        Vec::<String>::new()
    );
    // The server removes its temporary file once it notices the broken upload.
    let temp = server.data_dir().join("blob-cache/tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_dir(&temp).map(|d| d.count()).unwrap_or(0) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "temporary upload files left in {}",
            temp.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn hex_of(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
