//! Model registry behaviour: versions, metadata, filters, updates, deletes,
//! downloads and content de-duplication.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestServer, assert_error, json_of, tar_of};

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

#[tokio::test]
async fn versions_increment_per_name_and_show_finds_latest_or_exact() {
    let server = TestServer::start().await;
    let meta = json!({
        "description": "first", "tags": {"stage": "dev"}, "properties": {"auc": "0.9"},
        "framework": "ScikitLearn", "frameworkVersion": "1.5", "experimentName": "exp", "runId": "run-1"
    });
    let (status, first) = server
        .register_file("digits", "model.pkl", b"v1".to_vec(), meta)
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["id"], "digits:1");
    assert_eq!(first["version"], 1);
    assert_eq!(first["kind"], "file");
    assert_eq!(first["assetName"], "model.pkl");
    assert_eq!(first["tags"], json!({"stage": "dev"}));
    assert_eq!(first["properties"], json!({"auc": "0.9"}));
    assert_eq!(first["framework"], "ScikitLearn");
    assert_eq!(first["frameworkVersion"], "1.5");
    assert_eq!(first["experimentName"], "exp");
    assert_eq!(first["runId"], "run-1");
    assert_eq!(first["size"], 2);
    assert!(
        first["contentDigest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let (_, second) = server
        .register_file("digits", "model.pkl", b"v2".to_vec(), json!({}))
        .await;
    assert_eq!(second["id"], "digits:2");
    let (_, other) = server
        .register_file("other", "m.onnx", b"x".to_vec(), json!({}))
        .await;
    assert_eq!(other["version"], 1, "versions count per name");

    let (status, latest) = server.get_json("/v1/models/digits").await;
    assert_eq!(status, 200);
    assert_eq!(latest["version"], 2);
    let (_, exact) = server.get_json("/v1/models/digits/versions/1").await;
    assert_eq!(exact["description"], "first");
    assert_eq!(exact["files"][0]["path"], "model.pkl");
    assert_eq!(exact["files"][0]["size"], 2);

    assert_error(
        &server.get_json("/v1/models/digits/versions/9").await,
        404,
        "not_found",
        "`digits:9` not found",
    );
    assert_error(
        &server.get_json("/v1/models/nothing").await,
        404,
        "not_found",
        "`nothing`",
    );
    assert_error(
        &server.get_json("/v1/models/digits/versions/0").await,
        400,
        "invalid_argument",
        "whole number from 1",
    );
}

#[tokio::test]
async fn invalid_metadata_is_refused_with_every_problem_named() {
    let server = TestServer::start().await;
    let answer = server
        .register_file("-bad name", "model.pkl", b"x".to_vec(), json!({}))
        .await;
    assert_error(
        &answer,
        400,
        "invalid_argument",
        "starting with a letter or digit",
    );
    let answer = server
        .register_file(
            "bad/name",
            "a/b",
            b"x".to_vec(),
            json!({"frameworkVersion": "1.0"}),
        )
        .await;
    assert_error(&answer, 400, "invalid_argument", "3 problems");
    let details = answer.1["details"].to_string();
    for needle in [
        "bad/name",
        "assetName",
        "frameworkVersion` needs `framework",
    ] {
        assert!(details.contains(needle), "{needle} missing in {details}");
    }
    let answer = server
        .register_file("m", "model.pkl", b"x".to_vec(), json!({"colour": "red"}))
        .await;
    assert_error(&answer, 400, "invalid_argument", "unknown field `colour`");
    let (_, list) = server.get_json("/v1/models").await;
    assert_eq!(list["value"], json!([]), "nothing registered");
    assert_eq!(server.blob_count(), 0, "no blob left behind");
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_get_versions_one_to_twenty() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            server
                .register_file("busy", "w.bin", vec![i; 1000], json!({}))
                .await
        }));
    }
    let mut versions = BTreeSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 201, "{body}");
        versions.insert(body["version"].as_u64().unwrap());
    }
    assert_eq!(versions, (1..=20).collect::<BTreeSet<u64>>());
    let (_, list) = server.get_json("/v1/models?name=busy").await;
    assert_eq!(list["value"].as_array().unwrap().len(), 20);
    assert_eq!(server.blob_count(), 20);
}

#[tokio::test]
async fn list_filters_by_name_tag_property_framework_and_latest() {
    let server = TestServer::start().await;
    let reg = |name: &'static str, content: &'static [u8], meta: Value| {
        let server = &server;
        async move {
            let (status, body) = server
                .register_file(name, "m.bin", content.to_vec(), meta)
                .await;
            assert_eq!(status, 201, "{body}");
        }
    };
    reg(
        "a",
        b"1",
        json!({"tags": {"stage": "dev"}, "framework": "Onnx"}),
    )
    .await;
    reg(
        "a",
        b"2",
        json!({"tags": {"stage": "prod", "team": "x"}, "properties": {"data": "v1"}}),
    )
    .await;
    reg("b", b"3", json!({"tags": {"stage": "prod"}})).await;
    reg("b", b"4", json!({"tags": {"team": "y"}})).await;

    let ids = |list: Value| -> Vec<String> {
        list["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let cases: [(&str, &[&str]); 10] = [
        ("", &["b:2", "b:1", "a:2", "a:1"]),
        ("?name=a", &["a:2", "a:1"]),
        ("?tag=stage=prod", &["b:1", "a:2"]),
        ("?tag=team", &["b:2", "a:2"]),
        ("?tag=stage=prod&tag=team", &["a:2"]),
        ("?tags=stage%3Dprod,team", &["a:2"]),
        ("?property=data=v1", &["a:2"]),
        ("?framework=Onnx", &["a:1"]),
        ("?latest=true", &["b:2", "a:2"]),
        ("?latest=true&tag=stage=prod", &["b:1", "a:2"]),
    ];
    for (query, expected) in cases {
        let (status, list) = server.get_json(&format!("/v1/models{query}")).await;
        assert_eq!(status, 200, "{query}: {list}");
        assert_eq!(ids(list), expected, "{query}");
    }
    assert_error(
        &server.get_json("/v1/models?nmae=a").await,
        400,
        "invalid_argument",
        "`nmae`",
    );
    assert_error(
        &server.get_json("/v1/models?latest=maybe").await,
        400,
        "invalid_argument",
        "`maybe`",
    );
}

#[tokio::test]
async fn updates_change_tags_and_description_and_properties_are_add_only() {
    let server = TestServer::start().await;
    server
        .register_file(
            "m",
            "m.bin",
            b"x".to_vec(),
            json!({"tags": {"a": "1", "b": "2"}, "properties": {"p": "1"}, "description": "old"}),
        )
        .await;
    let patch = |body: Value| {
        server
            .request(Method::PATCH, "/v1/models/m/versions/1")
            .json(&body)
            .send()
    };
    let (status, model) = json_of(
        patch(json!({"addTags": {"c": "3"}, "removeTags": ["a"], "addProperties": {"q": "2"}, "description": "new"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{model}");
    assert_eq!(model["tags"], json!({"b": "2", "c": "3"}));
    assert_eq!(model["properties"], json!({"p": "1", "q": "2"}));
    assert_eq!(model["description"], "new");

    let (_, model) = json_of(patch(json!({"tags": {"only": "this"}})).await.unwrap()).await;
    assert_eq!(model["tags"], json!({"only": "this"}));

    let refused = json_of(
        patch(json!({"addProperties": {"p": "changed"}}))
            .await
            .unwrap(),
    )
    .await;
    assert_error(&refused, 400, "invalid_argument", "add-only");
    let (_, model) = server.get_json("/v1/models/m/versions/1").await;
    assert_eq!(
        model["properties"]["p"], "1",
        "refused update changed nothing"
    );

    let unknown = json_of(patch(json!({"tagz": {}})).await.unwrap()).await;
    assert_error(&unknown, 400, "invalid_argument", "unknown field `tagz`");
    let not_json = json_of(
        server
            .request(Method::PATCH, "/v1/models/m/versions/1")
            .body("description=x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&not_json, 415, "unsupported_media_type", "application/json");
    let missing = json_of(
        server
            .request(Method::PATCH, "/v1/models/m/versions/7")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&missing, 404, "not_found", "`m:7`");
}

#[tokio::test]
async fn identical_content_is_stored_once_and_deletes_release_it() {
    let server = TestServer::start().await;
    let content = pseudo_random(100_000, 7);
    server
        .register_file("one", "m.bin", content.clone(), json!({}))
        .await;
    server
        .register_file("two", "other-name.bin", content.clone(), json!({}))
        .await;
    let (status, _) = server
        .register_tar(
            "three",
            "dir",
            tar_of(&[("a.bin", &content), ("b.txt", b"small")]),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        server.blob_count(),
        2,
        "one blob for the shared content, one for b.txt"
    );

    let delete = |path: &'static str| server.request(Method::DELETE, path).send();
    assert_eq!(
        delete("/v1/models/one/versions/1").await.unwrap().status(),
        204
    );
    assert_eq!(
        delete("/v1/models/three/versions/1")
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        server.blob_count(),
        1,
        "the shared blob stays while `two` uses it"
    );
    let again = json_of(delete("/v1/models/one/versions/1").await.unwrap()).await;
    assert_error(&again, 404, "not_found", "`one:1`");
    assert_eq!(
        delete("/v1/models/two/versions/1").await.unwrap().status(),
        204
    );
    assert_eq!(server.blob_count(), 0);

    let (_, model) = server
        .register_file("one", "m.bin", b"new".to_vec(), json!({}))
        .await;
    assert_eq!(
        model["version"], 2,
        "versions are never reused after a delete"
    );
}

#[tokio::test]
async fn downloads_are_byte_identical_for_files_and_folders() {
    let server = TestServer::start().await;
    let content = pseudo_random(3 << 20, 42);
    server
        .register_file("big", "weights.bin", content.clone(), json!({}))
        .await;
    let response = server
        .request(Method::GET, "/v1/models/big/versions/1/content")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("weights.bin")
    );
    assert!(response.bytes().await.unwrap() == content, "file differs");

    let nested = pseudo_random(50_000, 9);
    let (status, model) = server
        .register_tar(
            "folder",
            "my_model",
            tar_of(&[("config.json", b"{}"), ("./sub/dir/w.bin", &nested)]),
        )
        .await;
    assert_eq!(status, 201, "{model}");
    assert_eq!(model["kind"], "folder");
    assert_eq!(model["fileCount"], 2);
    let response = server
        .request(Method::GET, "/v1/models/folder/versions/1/content")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-tar");
    let bytes = response.bytes().await.unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut got = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        got.push((path, data));
    }
    assert_eq!(
        got,
        vec![
            ("my_model/config.json".to_owned(), b"{}".to_vec()),
            ("my_model/sub/dir/w.bin".to_owned(), nested)
        ]
    );
}
