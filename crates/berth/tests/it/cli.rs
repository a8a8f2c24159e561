//! The `berth model` commands end to end: output, files written, exit codes.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::harness::{TestServer, berth_bin};

fn run(server: &TestServer, cwd: &Path, args: &[&str]) -> Output {
    server.cli(cwd).args(args).output().expect("run berth")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    out
}

#[tokio::test]
async fn register_writes_the_metadata_file_and_list_show_update_delete_work() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("model.pkl"), b"pickled").unwrap();
    let out = ok(run(
        &server,
        cwd,
        &[
            "model",
            "register",
            "-n",
            "sklearn-mnist",
            "--model-path",
            "model.pkl",
            "--tag",
            "stage=dev",
            "--property",
            "auc=0.97",
            "-d",
            "first cut",
            "--model-framework",
            "ScikitLearn",
            "--model-framework-version",
            "1.5",
            "--experiment-name",
            "exp1",
            "--output-metadata-file",
            "modelinfo.json",
            "-o",
            "json",
        ],
    ));
    assert!(stderr(&out).contains("Registering model sklearn-mnist"));
    let model: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(model["id"], "sklearn-mnist:1");
    assert_eq!(model["framework"], "ScikitLearn");
    assert_eq!(model["experimentName"], "exp1");
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("modelinfo.json")).unwrap())
            .unwrap();
    assert_eq!(
        info,
        serde_json::json!({
            "modelId": "sklearn-mnist:1",
            "modelName": "sklearn-mnist",
            "modelVersion": 1,
            "workspaceName": "default"
        })
    );

    std::fs::create_dir_all(cwd.join("bundle/nested")).unwrap();
    std::fs::write(cwd.join("bundle/a.txt"), b"A").unwrap();
    std::fs::write(cwd.join("bundle/nested/b.bin"), [0u8, 1, 2, 255]).unwrap();
    ok(run(
        &server,
        cwd,
        &[
            "model",
            "register",
            "-n",
            "sklearn-mnist",
            "--asset-path",
            "bundle",
        ],
    ));

    let table = stdout(&ok(run(&server, cwd, &["model", "list"])));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("NAME") && lines[0].contains("VERSION"),
        "{table}"
    );
    assert!(
        lines[1].contains("sklearn-mnist") && lines[1].contains("folder"),
        "{table}"
    );
    assert!(lines[2].contains("stage=dev"), "{table}");
    let latest = stdout(&ok(run(
        &server,
        cwd,
        &["model", "list", "--tag", "stage", "-o", "json"],
    )));
    let latest: Value = serde_json::from_str(&latest).unwrap();
    assert_eq!(latest.as_array().unwrap().len(), 1);

    let shown = stdout(&ok(run(
        &server,
        cwd,
        &["model", "show", "-n", "sklearn-mnist"],
    )));
    assert!(
        shown.contains("sklearn-mnist:2") && shown.contains("nested/b.bin"),
        "{shown}"
    );

    ok(run(
        &server,
        cwd,
        &["model", "download", "-i", "sklearn-mnist:1", "-t", "out"],
    ));
    assert_eq!(
        std::fs::read(cwd.join("out/model.pkl")).unwrap(),
        b"pickled"
    );
    ok(run(
        &server,
        cwd,
        &["model", "download", "-i", "sklearn-mnist:2", "-t", "out"],
    ));
    assert_eq!(
        std::fs::read(cwd.join("out/bundle/nested/b.bin")).unwrap(),
        [0u8, 1, 2, 255]
    );
    let again = run(
        &server,
        cwd,
        &["model", "download", "-i", "sklearn-mnist:1", "-t", "out"],
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("already exists") && stderr(&again).contains("--overwrite"));
    ok(run(
        &server,
        cwd,
        &[
            "model",
            "download",
            "-i",
            "sklearn-mnist:1",
            "-t",
            "out",
            "--overwrite",
        ],
    ));

    let updated = stdout(&ok(run(
        &server,
        cwd,
        &[
            "model",
            "update",
            "-i",
            "sklearn-mnist:1",
            "--add-tag",
            "stage=prod",
            "-d",
            "better",
            "-o",
            "json",
        ],
    )));
    let updated: Value = serde_json::from_str(&updated).unwrap();
    assert_eq!(updated["tags"]["stage"], "prod");
    assert_eq!(updated["description"], "better");
    let refused = run(
        &server,
        cwd,
        &[
            "model",
            "update",
            "-i",
            "sklearn-mnist:1",
            "--add-property",
            "auc=1",
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("add-only"),
        "{}",
        stderr(&refused)
    );

    ok(run(
        &server,
        cwd,
        &["model", "delete", "-i", "sklearn-mnist:1"],
    ));
    let gone = run(&server, cwd, &["model", "show", "-i", "sklearn-mnist:1"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).starts_with("error: cannot show model `sklearn-mnist:1`"));
    assert!(stderr(&gone).contains("Caused by: Model `sklearn-mnist:1` not found"));
}

#[tokio::test]
async fn usage_errors_exit_2_and_missing_workspaces_explain_where_they_looked() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let missing = run(
        &server,
        cwd,
        &["model", "register", "-n", "m", "--asset-path", "nope.pkl"],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("`nope.pkl` cannot be read"));
    let bad_tag = run(
        &server,
        cwd,
        &[
            "model", "register", "-n", "m", "-p", ".", "--tag", "novalue",
        ],
    );
    assert_eq!(bad_tag.status.code(), Some(2));
    assert!(stderr(&bad_tag).contains("key=value"));
    let no_version = run(&server, cwd, &["model", "delete", "-i", "m"]);
    assert_eq!(no_version.status.code(), Some(2));
    assert!(stderr(&no_version).contains("exact `name:version`"));

    let lost = std::process::Command::new(berth_bin())
        .current_dir(cwd)
        .env("HOME", cwd)
        .env_remove("BERTH_CONFIG")
        .env_remove("BERTH_DATA")
        .env_remove("BERTH_ENDPOINT")
        .env_remove("BERTH_TOKEN")
        .args(["model", "list"])
        .output()
        .unwrap();
    assert_eq!(lost.status.code(), Some(2));
    let text = stderr(&lost);
    assert!(
        text.contains("no workspace found") && text.contains(".berth/config.json"),
        "{text}"
    );
    assert!(text.contains("hint: start `berth server`"), "{text}");

    // Explicit endpoint and token work without any config file; a wrong token is a failure.
    let explicit = std::process::Command::new(berth_bin())
        .current_dir(cwd)
        .env("HOME", cwd)
        .env_remove("BERTH_CONFIG")
        .args([
            "model",
            "list",
            "--endpoint",
            &server.endpoint,
            "--token",
            &server.token,
        ])
        .output()
        .unwrap();
    assert!(explicit.status.success(), "{}", stderr(&explicit));
    let wrong = std::process::Command::new(berth_bin())
        .current_dir(cwd)
        .env("HOME", cwd)
        .args([
            "model",
            "list",
            "--endpoint",
            &server.endpoint,
            "--token",
            "berth_wrong",
        ])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("hint: send the workspace token"),
        "{}",
        stderr(&wrong)
    );
}
