//! TLS: the whole listener over rustls, per-service certificates by SNI, bad
//! certificates refused, and slow clients cut off.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{TestServer, assert_error, berth_bin, https_client, json_of};

const ECHO: &[u8] = b"def init():\n    pass\ndef run(raw):\n    return raw\n";

/// A CA and leaf certificates signed by it, made with the `openssl` CLI.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let pki = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        pki.openssl(&[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Berth Test CA",
        ]);
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Issues `<name>.pem` / `<name>.key` for `san` (`DNS:x,IP:y`).
    fn leaf(&self, name: &str, cn: &str, san: &str) {
        let ext = format!(
            "subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        );
        std::fs::write(self.path(&format!("{name}.ext")), ext).unwrap();
        let (key, csr, pem, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &format!("{}", std::process::id() as u64 * 1000 + name.len() as u64),
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &extfile,
        ]);
    }

    fn server_flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path("server.pem").display().to_string(),
            "--tls-key".into(),
            self.path("server.key").display().to_string(),
        ]
    }
}

fn server_pki() -> Pki {
    let pki = Pki::new();
    pki.leaf("server", "localhost", "DNS:localhost,IP:127.0.0.1");
    pki
}

async fn start_tls(pki: &Pki, extra: &[&str]) -> TestServer {
    let mut flags = pki.server_flags();
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    TestServer::start_tls(&flags, pki.read("ca.pem").as_bytes()).await
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn peer_cert(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("peer certificate")
        .to_vec()
}

fn port_of(server: &TestServer) -> u16 {
    server.endpoint.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn management_api_is_served_over_tls_and_plain_http_is_refused() {
    let pki = server_pki();
    let server = start_tls(&pki, &[]).await;
    assert!(
        server.endpoint.starts_with("https://127.0.0.1:"),
        "{}",
        server.endpoint
    );

    let response = server
        .request(Method::GET, "/v1/models")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(peer_cert(&response), der_of(&pki.read("server.pem")));

    let plain = format!("http://127.0.0.1:{}/readyz", port_of(&server));
    let result = reqwest::Client::new()
        .get(&plain)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(
        result.is_err(),
        "plain HTTP to the TLS port answered: {result:?}"
    );

    // A client that does not trust the CA is refused too.
    let untrusting = https_client(pki.read("server.pem").as_bytes(), &[]);
    assert!(untrusting.get(server.url("/readyz")).send().await.is_err());

    // The CLI reaches the https endpoint from config.json when told which CA to trust.
    let cwd = tempfile::tempdir().unwrap();
    let trusted = server
        .cli(cwd.path())
        .args(["workspace", "show", "--ca-cert"])
        .arg(pki.path("ca.pem"))
        .output()
        .unwrap();
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(String::from_utf8_lossy(&trusted.stdout).contains("https://127.0.0.1:"));
    let refused = server
        .cli(cwd.path())
        .args(["workspace", "show"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot reach"));
}

fn start_failure(args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(berth_bin())
        .arg("server")
        .arg("--data")
        .arg(data.path())
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env_remove("BERTH_DATA")
        .env_remove("BERTH_TLS_CERT")
        .env_remove("BERTH_TLS_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success(), "server started with {args:?}");
    assert!(
        !data.path().join("config.json").exists(),
        "config.json written before TLS was checked"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn bad_certificates_are_refused_at_startup_naming_the_file() {
    let pki = server_pki();
    let cert = pki.path("server.pem").display().to_string();
    let key = pki.path("server.key").display().to_string();
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let garbage = garbage.display().to_string();
    let missing = pki.path("missing.pem").display().to_string();

    let stderr = start_failure(&["--tls-cert", &garbage, "--tls-key", &key]);
    assert!(
        stderr.contains(&garbage) && stderr.contains("no PEM certificate"),
        "{stderr}"
    );

    let stderr = start_failure(&["--tls-cert", &cert, "--tls-key", &garbage]);
    assert!(
        stderr.contains(&garbage) && stderr.contains("private key"),
        "{stderr}"
    );

    let stderr = start_failure(&["--tls-cert", &missing, "--tls-key", &key]);
    assert!(
        stderr.contains(&missing) && stderr.contains("cannot read"),
        "{stderr}"
    );

    let stderr = start_failure(&["--tls-cert", &cert]);
    assert!(stderr.contains("--tls-key"), "{stderr}");

    pki.leaf("other", "other", "DNS:other");
    let other_key = pki.path("other.key").display().to_string();
    let stderr = start_failure(&["--tls-cert", &cert, "--tls-key", &other_key]);
    assert!(stderr.contains("do not match"), "{stderr}");
}

fn ssl_config(pki: &Pki, cert: &str, key: &str, cname: &str) -> serde_json::Value {
    json!({
        "computeType": "aci",
        "sslEnabled": true,
        "sslCertificate": pki.read(cert),
        "sslKey": pki.read(key),
        "cname": cname,
    })
}

#[tokio::test]
async fn a_service_certificate_is_served_for_its_cname() {
    let pki = server_pki();
    pki.leaf("svc", "svc.example.test", "DNS:svc.example.test");
    let server = start_tls(&pki, &[]).await;
    server
        .deploy(
            "secure",
            &[("score.py", ECHO)],
            &[],
            ssl_config(&pki, "svc.pem", "svc.key", "svc.example.test"),
        )
        .await;

    // The key never leaves the server.
    let (status, service) = server.get_json("/v1/services/secure").await;
    assert_eq!(status, 200);
    let text = service.to_string();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    assert!(!server.log().contains("PRIVATE KEY"));

    let port = port_of(&server);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let client = https_client(pki.read("ca.pem").as_bytes(), &[("svc.example.test", addr)]);
    let response = client
        .post(format!(
            "https://svc.example.test:{port}/api/v1/service/secure/score"
        ))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(peer_cert(&response), der_of(&pki.read("svc.pem")));

    // Other names get the server certificate.
    let response = server.score("secure", "hello").await;
    assert_eq!(response.status(), 200);
    assert_eq!(peer_cert(&response), der_of(&pki.read("server.pem")));

    // Deleting the service takes its certificate away.
    let (status, accepted) = json_of(
        server
            .request(Method::DELETE, "/v1/services/secure")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        status == 200 || status == 202 || status == 204,
        "{accepted}"
    );
    if let Some(id) = accepted["operation"]["id"].as_str() {
        server.wait_operation(id).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let client = https_client(pki.read("ca.pem").as_bytes(), &[("svc.example.test", addr)]);
        // The server certificate does not name svc.example.test: verification fails.
        if client
            .get(format!("https://svc.example.test:{port}/readyz"))
            .send()
            .await
            .is_err()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service certificate is still served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bad_service_certificates_are_refused_naming_the_key() {
    let pki = server_pki();
    pki.leaf("svc", "svc.example.test", "DNS:svc.example.test");
    pki.leaf("other", "other.example.test", "DNS:other.example.test");
    let server = start_tls(&pki, &[]).await;
    let files: &[(&str, &[u8])] = &[("score.py", ECHO)];

    let mut dc = ssl_config(&pki, "svc.pem", "svc.key", "svc.example.test");
    dc["sslCertificate"] =
        json!("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n");
    let created = server.create_service("bad-cert", files, &[], dc).await;
    assert_error(&created, 400, "invalid_argument", "sslCertificate");

    let mut dc = ssl_config(&pki, "svc.pem", "svc.key", "svc.example.test");
    dc["sslKey"] = json!("not a key");
    let created = server.create_service("bad-key", files, &[], dc).await;
    assert_error(&created, 400, "invalid_argument", "sslKey");

    let dc = ssl_config(&pki, "svc.pem", "other.key", "svc.example.test");
    let created = server.create_service("mismatch", files, &[], dc).await;
    assert_error(&created, 400, "invalid_argument", "do not match");

    let mut dc = ssl_config(&pki, "svc.pem", "svc.key", "svc.example.test");
    dc.as_object_mut().unwrap().remove("cname");
    let created = server.create_service("no-cname", files, &[], dc).await;
    assert_error(&created, 400, "invalid_argument", "cname");
}

#[tokio::test]
async fn ssl_services_need_a_tls_server() {
    let pki = server_pki();
    pki.leaf("svc", "svc.example.test", "DNS:svc.example.test");
    let server = TestServer::start().await;
    let created = server
        .create_service(
            "secure",
            &[("score.py", ECHO)],
            &[],
            ssl_config(&pki, "svc.pem", "svc.key", "svc.example.test"),
        )
        .await;
    assert_error(&created, 400, "invalid_argument", "--tls-cert");
}

/// Reads until the server closes the connection; how long that took.
async fn time_to_close(stream: &mut tokio::net::TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept a slow client for 15 s"),
        }
    }
}

#[tokio::test]
async fn slow_clients_are_disconnected_after_the_header_timeout() {
    let server = TestServer::start_with(&["--header-read-timeout-secs", "1"]).await;
    let addr = server.endpoint.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let waited = time_to_close(&mut stream).await;
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // Normal requests still work (on a new connection: the timeout also ends idle keep-alives).
    let ready = reqwest::Client::new()
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // Over TLS, a client that never finishes the handshake is cut off too.
    let pki = server_pki();
    let server = start_tls(&pki, &["--header-read-timeout-secs", "1"]).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port_of(&server)))
        .await
        .unwrap();
    stream.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let waited = time_to_close(&mut stream).await;
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[tokio::test]
async fn the_console_session_cookie_is_secure_over_tls() {
    let pki = server_pki();
    let server = start_tls(&pki, &[]).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(pki.read("ca.pem").as_bytes()).unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = http
        .post(server.url("/studio/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", server.endpoint.clone())
        .body(format!("token={}", server.token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.ends_with("; Secure"),
        "{cookie}"
    );
    // Over TLS the console's origin is https: a plain-http Origin is another site.
    let session = cookie.split(';').next().unwrap().to_owned();
    let cross = http
        .delete(server.url("/v1/webhooks/wh-none"))
        .header("cookie", &session)
        .header("x-berth-csrf", "x")
        .header("origin", server.endpoint.replace("https://", "http://"))
        .send()
        .await
        .unwrap();
    assert_error(
        &json_of(cross).await,
        403,
        "forbidden",
        "not from this server",
    );
}
