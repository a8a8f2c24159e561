//! The web console's sessions: sign-in with the workspace token or a one-time
//! link, the cookie's attributes, `/v1` through the cookie, CSRF and Origin
//! checks on changes, sign-out, and what a visitor without a session sees.

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::harness::{TestServer, assert_error, json_of};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `berth_session=<id>` pair from a sign-in answer, and the whole header.
fn session_cookie(response: &reqwest::Response) -> (String, String) {
    let set = response
        .headers()
        .get(header::SET_COOKIE)
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_owned();
    let pair = set.split(';').next().unwrap().trim().to_owned();
    assert!(pair.starts_with("berth_session="), "{set}");
    (pair, set)
}

async fn sign_in(server: &TestServer, http: &reqwest::Client) -> (String, String) {
    let response = http
        .post(server.url("/studio/signin"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, server.endpoint.clone())
        .body(format!("token={}", server.token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/");
    let (cookie, _) = session_cookie(&response);
    let page = http
        .get(server.url("/"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"berth-csrf\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the console page carries the CSRF token")
        .to_owned();
    (cookie, csrf)
}

#[tokio::test]
async fn without_a_session_the_console_is_only_the_sign_in_form() {
    let server = TestServer::start().await;
    let http = no_redirects();
    let response = http.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let page = response.text().await.unwrap();
    assert!(page.contains("name=\"token\""), "{page}");
    assert!(!page.contains("app.js") && !page.contains("berth-csrf"));
    // A made-up cookie is no session.
    let forged = http
        .get(server.url("/"))
        .header(header::COOKIE, "berth_session=0123")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(forged.contains("name=\"token\"") && !forged.contains("berth-csrf"));
    let api = http
        .get(server.url("/v1/services"))
        .header(header::COOKIE, "berth_session=0123")
        .send()
        .await
        .unwrap();
    assert_error(&json_of(api).await, 401, "unauthenticated", "sign in again");
    // A wrong token gets the form again with the reason, and no cookie.
    let wrong = http
        .post(server.url("/studio/signin"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("token=berth_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    assert!(wrong.text().await.unwrap().contains("not this workspace"));
    // The assets are embedded and served.
    for (file, kind) in [("app.js", "javascript"), ("app.css", "text/css")] {
        let asset = http
            .get(server.url(&format!("/studio/assets/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status(), 200);
        assert!(
            asset.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .contains(kind)
        );
    }
}

#[tokio::test]
async fn a_session_reads_with_the_cookie_and_changes_only_with_csrf_proof() {
    let server = TestServer::start().await;
    let http = no_redirects();
    let response = http
        .post(server.url("/studio/signin"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={}", server.token))
        .send()
        .await
        .unwrap();
    let (_, set) = session_cookie(&response);
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: no Secure flag: {set}");
    let (cookie, csrf) = sign_in(&server, &http).await;

    // Reads need only the cookie.
    let read = http
        .get(server.url("/v1/webhooks"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let series = http
        .get(server.url("/v1/timeseries"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(series).await.1, json!({"value": []}));

    let hook = json!({"url": "https://example.com/hook", "events": []});
    // A change without the CSRF header is refused and changes nothing.
    let bare = http
        .post(server.url("/v1/webhooks"))
        .header(header::COOKIE, &cookie)
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_error(&json_of(bare).await, 403, "forbidden", "X-Berth-CSRF");
    // A wrong token, or the right one from another origin, is refused too.
    let wrong = http
        .post(server.url("/v1/webhooks"))
        .header(header::COOKIE, &cookie)
        .header("x-berth-csrf", "0".repeat(64))
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_error(&json_of(wrong).await, 403, "forbidden", "does not match");
    let cross = http
        .post(server.url("/v1/webhooks"))
        .header(header::COOKIE, &cookie)
        .header("x-berth-csrf", &csrf)
        .header(header::ORIGIN, "https://evil.example")
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_error(&json_of(cross).await, 403, "forbidden", "evil.example");
    let (_, listed) = server.get_json("/v1/webhooks").await;
    assert_eq!(
        listed["webhooks"],
        json!([]),
        "refused changes changed nothing"
    );

    // With the header and a same-origin Origin, the change goes through.
    let ok = http
        .post(server.url("/v1/webhooks"))
        .header(header::COOKIE, &cookie)
        .header("x-berth-csrf", &csrf)
        .header(header::ORIGIN, server.endpoint.clone())
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);

    // Sign-out needs the CSRF proof too, then the cookie is worthless.
    let refused = http
        .post(server.url("/studio/signout"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let out = http
        .post(server.url("/studio/signout"))
        .header(header::COOKIE, &cookie)
        .header("x-berth-csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(
        out.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = http
        .get(server.url("/v1/webhooks"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    let page = http
        .get(server.url("/"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("berth-csrf"));
}

#[tokio::test]
async fn a_cross_site_sign_in_form_is_refused() {
    let server = TestServer::start().await;
    let response = no_redirects()
        .post(server.url("/studio/signin"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "https://evil.example")
        .body(format!("token={}", server.token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.headers().get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn studio_login_prints_a_link_that_works_once_and_leaves_no_secret_in_the_url() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = server
        .cli(dir.path())
        .args(["studio", "login"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        url.starts_with(&format!("{}/studio/signin?code=", server.endpoint)),
        "{url}"
    );
    let http = no_redirects();
    let first = http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    // Redirected to the bare console address: the code does not stay in the address bar.
    assert_eq!(first.headers()[header::LOCATION], "/");
    let (cookie, _) = session_cookie(&first);
    let read = http
        .get(server.url("/v1/services"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let again = http.get(&url).send().await.unwrap();
    assert_eq!(again.status(), 401);
    assert!(again.headers().get(header::SET_COOKIE).is_none());
    assert!(again.text().await.unwrap().contains("already used"));

    // Minting needs the workspace token (or a session), like every /v1 call.
    let anonymous = http
        .post(server.url("/v1/studio/codes"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let (status, minted): (u16, Value) = json_of(
        server
            .request(Method::POST, "/v1/studio/codes")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(minted["sessionSeconds"], 12 * 3600);
}
