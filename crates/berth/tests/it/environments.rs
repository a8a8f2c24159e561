//! Environments end to end: registration rules, builds with real pip and a
//! wheel built during the test (no network), shared builds, failures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestServer, assert_error, json_of};

async fn register(server: &TestServer, body: Value) -> (u16, Value) {
    json_of(
        server
            .request(Method::POST, "/v1/environments")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Starts a build and waits for it to end; returns the environment.
async fn build(server: &TestServer, name: &str, version: u64) -> Value {
    let path = format!("/v1/environments/{name}/versions/{version}");
    let (status, _) = json_of(
        server
            .request(Method::POST, &format!("{path}/build"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let (_, env) = server.get_json(&path).await;
        let state = env["build"]["state"].as_str().unwrap().to_owned();
        if state == "Succeeded" || state == "Failed" {
            return env;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "build did not end: {env}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes a pure-Python wheel `berthtestpkg-1.0` into `dir` (no build tools, no network).
fn make_wheel(dir: &Path) -> PathBuf {
    let script = r#"
import base64, hashlib, sys, zipfile
out = sys.argv[1] + "/berthtestpkg-1.0-py3-none-any.whl"
files = {
    "berthtestpkg/__init__.py": "VALUE = 42\n",
    "berthtestpkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: berthtestpkg\nVersion: 1.0\n",
    "berthtestpkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: berth-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(out, "w") as z:
    for name, text in files.items():
        data = text.encode()
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("berthtestpkg-1.0.dist-info/RECORD,,")
    z.writestr("berthtestpkg-1.0.dist-info/RECORD", "\n".join(record) + "\n")
print(out)
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

#[tokio::test]
async fn a_local_wheel_installs_with_venv_and_pip_without_network_and_the_build_is_shared() {
    let server = TestServer::start_with(&["--uv", "none"]).await;
    a_local_wheel_installs_and_the_build_is_shared(&server, "pip").await;
}

#[tokio::test]
async fn a_local_wheel_installs_with_uv_without_network_and_the_build_is_shared() {
    let Some(uv) = crate::harness::test_uv(
        "environments::a_local_wheel_installs_with_uv_without_network_and_the_build_is_shared",
    ) else {
        return;
    };
    let server = TestServer::start_with(&["--uv", &uv]).await;
    a_local_wheel_installs_and_the_build_is_shared(&server, "uv").await;
}

/// Registers a spec installing a wheel from a local folder, builds it with `installer`, and
/// checks that equal specs share the build.
async fn a_local_wheel_installs_and_the_build_is_shared(server: &TestServer, installer: &str) {
    let wheels = tempfile::tempdir().unwrap();
    make_wheel(wheels.path());
    let requirements = format!(
        "--no-index\n--find-links {}\nberthtestpkg==1.0  # built by the test\n",
        wheels.path().display()
    );
    let (status, first) = register(
        server,
        json!({"name": "wheel-env", "pipRequirements": requirements, "environmentVariables": {"MODE": "a"}}),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["created"], true);
    assert_eq!(first["environment"]["id"], "wheel-env:1");
    assert_eq!(first["environment"]["build"]["state"], "NotStarted");
    let reqs = &first["environment"]["spec"]["requirements"];
    assert_eq!(reqs[2], "berthtestpkg==1.0", "comments are dropped: {reqs}");

    let env = build(server, "wheel-env", 1).await;
    assert_eq!(env["build"]["state"], "Succeeded", "{env}");
    assert_eq!(env["build"]["installer"], installer);
    let python = env["build"]["pythonPath"].as_str().unwrap().to_owned();
    let out = std::process::Command::new(&python)
        .args(["-c", "import berthtestpkg; print(berthtestpkg.VALUE)"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    // The same spec again: the existing version, not a new one.
    let (status, again) = register(
        server,
        json!({"name": "wheel-env", "pipRequirements": requirements, "environmentVariables": {"MODE": "a"}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again["created"], false);
    assert_eq!(again["environment"]["version"], 1);

    // Another variable: a new version sharing the build.
    let (status, changed) = register(
        server,
        json!({"name": "wheel-env", "pipRequirements": requirements, "environmentVariables": {"MODE": "b"}}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(changed["environment"]["version"], 2);
    assert_eq!(changed["environment"]["build"]["state"], "Succeeded");
    assert_eq!(
        changed["environment"]["build"]["pythonPath"],
        python.as_str()
    );
    assert_eq!(server.log().matches("building environment").count(), 1);
}

#[tokio::test]
async fn concurrent_builds_of_one_spec_build_once_and_empty_specs_need_no_network() {
    let server = TestServer::start_with(&["--uv", "none"]).await;
    for name in ["plain-a", "plain-b"] {
        let (status, _) = register(&server, json!({"name": name})).await;
        assert_eq!(status, 201);
    }
    let (a, b) = tokio::join!(build(&server, "plain-a", 1), build(&server, "plain-b", 1));
    assert_eq!(a["build"]["state"], "Succeeded", "{a}");
    assert_eq!(a["build"]["pythonPath"], b["build"]["pythonPath"]);
    assert_eq!(
        a["build"]["installer"], "venv",
        "no packages: no pip, no network"
    );
    assert_eq!(
        server.log().matches("building environment").count(),
        1,
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn a_failed_build_carries_pip_output_and_the_next_attempt_builds_again() {
    let server = TestServer::start_with(&["--uv", "none"]).await;
    register(
        &server,
        json!({"name": "broken", "pipRequirements": "--no-index\nberth-missing-package==1.0\n"}),
    )
    .await;
    let env = build(&server, "broken", 1).await;
    assert_eq!(env["build"]["state"], "Failed");
    assert!(
        env["build"]["error"]
            .as_str()
            .unwrap()
            .contains("install the requirements")
    );
    let tail = env["build"]["logTail"].to_string();
    assert!(tail.contains("berth-missing-package"), "{tail}");
    let log_path = env["build"]["logPath"].as_str().unwrap();
    assert!(
        std::fs::read_to_string(log_path)
            .unwrap()
            .contains("No matching distribution")
    );
    let again = build(&server, "broken", 1).await;
    assert_eq!(again["build"]["state"], "Failed");
    assert_eq!(
        server.log().matches("building environment").count(),
        2,
        "failed builds are never reused"
    );
}

#[tokio::test]
async fn conda_and_azure_specs_are_normalised_and_invalid_ones_list_every_problem() {
    let server = TestServer::start().await;
    let conda = "name: project_environment\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - numpy=1.26\n  - pip:\n    - azureml-defaults\n    - joblib\n";
    let (status, answer) =
        register(&server, json!({"name": "conda-env", "condaFile": conda})).await;
    assert_eq!(status, 201, "{answer}");
    let env = &answer["environment"];
    assert_eq!(env["spec"]["pythonVersion"], "3.11");
    assert_eq!(
        env["spec"]["requirements"],
        json!(["numpy==1.26.*", "joblib"])
    );
    let warnings = env["warnings"].to_string();
    assert!(
        warnings.contains("installed with pip as `numpy==1.26.*`"),
        "{warnings}"
    );
    assert!(
        warnings.contains("azureml-defaults` is skipped"),
        "{warnings}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("myenv.yml"), conda).unwrap();
    std::fs::write(
        dir.path().join("azureml_environment.json"),
        json!({
            "name": "sklearn", "version": null,
            "environmentVariables": {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"},
            "python": {"userManagedDependencies": false, "interpreterPath": "python",
                       "condaDependenciesFile": "myenv.yml", "baseCondaEnvironment": null,
                       "condaDependencies": null},
            "docker": {"enabled": false, "baseImage": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"},
            "inferencingStackVersion": null
        })
        .to_string(),
    )
    .unwrap();
    let out = server
        .cli(dir.path())
        .args([
            "environment",
            "register",
            "-n",
            "from-azure",
            "-f",
            "azureml_environment.json",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(env["spec"]["pythonVersion"], "3.11");
    assert_eq!(
        env["spec"]["environmentVariables"]["EXAMPLE_ENV_VAR"],
        "EXAMPLE_VALUE"
    );
    assert_eq!(
        env["spec"]["requirements"],
        json!(["numpy==1.26.*", "joblib"])
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: the Azure environment JSON names `sklearn`"),
        "{stderr}"
    );

    let answer = register(
        &server,
        json!({"name": "AzureML-Minimal", "pipRequirements": "-r base.txt", "pythonVersion": "2"}),
    )
    .await;
    assert_error(&answer, 400, "invalid_argument", "3 problems");
    let details = answer.1["details"].to_string();
    for needle in ["reserved", "another file", "`2` is invalid"] {
        assert!(details.contains(needle), "{needle}: {details}");
    }
    let typo = register(&server, json!({"name": "x", "pipRequirement": "numpy"})).await;
    assert_error(
        &typo,
        400,
        "invalid_argument",
        "unknown field `pipRequirement`",
    );
    assert_error(
        &server.get_json("/v1/environments/nope/versions/1").await,
        404,
        "not_found",
        "`nope:1`",
    );
    let (_, list) = server.get_json("/v1/environments?latest=true").await;
    assert_eq!(list["value"].as_array().unwrap().len(), 2);
}
