//! The management API refuses every call without the workspace token.

use reqwest::Method;

use crate::harness::{TestServer, assert_error, json_of};

#[tokio::test]
async fn calls_without_or_with_a_wrong_token_get_401_with_a_hint() {
    let server = TestServer::start().await;
    for path in [
        "/v1/models",
        "/v1/workspace",
        "/v1/openapi.json",
        "/v1/models/m/versions/1",
    ] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"berth\""
        );
        let answer = json_of(response).await;
        assert_error(&answer, 401, "unauthenticated", "none was sent");
        assert!(answer.1["hint"].as_str().unwrap().contains("config.json"));
    }
    let wrong = server
        .http
        .get(server.url("/v1/models"))
        .bearer_auth("berth_0000")
        .send()
        .await
        .unwrap();
    assert_error(
        &json_of(wrong).await,
        401,
        "unauthenticated",
        "not this workspace's token",
    );
    let basic = server
        .http
        .get(server.url("/v1/models"))
        .basic_auth("admin", Some(&server.token))
        .send()
        .await
        .unwrap();
    assert_error(&json_of(basic).await, 401, "unauthenticated", "Bearer");
    // A write without the token changes nothing.
    let post = server
        .http
        .delete(server.url("/v1/models/m/versions/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 401);
}

#[tokio::test]
async fn health_is_open_and_the_openapi_document_describes_the_routes() {
    let server = TestServer::start().await;
    for path in ["/livez", "/readyz"] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let (status, doc) = server.get_json("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}/versions/{version}",
        "/v1/models/{name}/versions/{version}/content",
        "/v1/workspace",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }
    assert!(doc["paths"]["/v1/models"]["post"].is_object());
    assert!(doc["paths"]["/v1/models/{name}/versions/{version}"]["delete"].is_object());
    assert!(doc["components"]["schemas"]["Model"].is_object());
    assert!(doc["components"]["securitySchemes"]["workspace_token"].is_object());
    let (status, info) = server.get_json("/v1/workspace").await;
    assert_eq!(status, 200);
    assert_eq!(info["name"], "default");
    let _ = server.request(Method::GET, "/v1/workspace");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_api_error_format() {
    let server = TestServer::start().await;
    let missing = json_of(
        server
            .request(Method::GET, "/v1/nothing")
            .send()
            .await
            .unwrap(),
    )
    .await;
    crate::harness::assert_error(&missing, 404, "not_found", "/v1/nothing");
    let wrong = json_of(
        server
            .request(Method::DELETE, "/v1/workspace")
            .send()
            .await
            .unwrap(),
    )
    .await;
    crate::harness::assert_error(&wrong, 405, "invalid_argument", "does not accept DELETE");
    let anonymous = server
        .http
        .get(server.url("/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401, "authentication comes first");
}
