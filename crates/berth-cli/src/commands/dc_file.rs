//! Reading a `--dc deploymentconfig.json` file as `az ml` does: `sslCertificate`
//! and `sslKey` name PEM files relative to the file (PEM text is still taken as
//! is), and `sslCname` is another name for `cname`.

use std::path::Path;

use serde_json::{Map, Value};

use crate::args::UsageError;

fn usage(message: String, hint: Option<String>) -> UsageError {
    UsageError { message, hint }
}

/// Reads the deployment config at `path`, with PEM files read in.
pub fn read(path: &Path) -> Result<Value, UsageError> {
    let value = super::deploy::json_file(path, "deployment config")?;
    let Value::Object(mut object) = value else {
        return Err(usage(
            format!(
                "deployment config `{}` must be a JSON object",
                path.display()
            ),
            None,
        ));
    };
    let base = path.parent().unwrap_or(Path::new("."));
    resolve(&mut object, base, path)?;
    Ok(Value::Object(object))
}

/// Replaces PEM file paths by their text and `sslCname` by `cname`.
fn resolve(object: &mut Map<String, Value>, base: &Path, file: &Path) -> Result<(), UsageError> {
    if let Some(cname) = object.remove("sslCname") {
        match object.get("cname") {
            Some(existing) if !existing.is_null() && existing != &cname => {
                return Err(usage(
                    format!(
                        "deployment config `{}` gives both `sslCname` ({cname}) and `cname` ({existing}): keep one",
                        file.display()
                    ),
                    None,
                ));
            }
            _ => {
                object.insert("cname".into(), cname);
            }
        }
    }
    for key in ["sslCertificate", "sslKey"] {
        let Some(Value::String(text)) = object.get(key) else {
            continue;
        };
        if text.is_empty() || text.contains("-----BEGIN") {
            continue;
        }
        let given = Path::new(text);
        let full = if given.is_absolute() {
            given.to_path_buf()
        } else {
            base.join(given)
        };
        let pem = std::fs::read_to_string(&full).map_err(|e| {
            usage(
                format!(
                    "`{key}` in deployment config `{}` names `{text}`, which cannot be read as `{}`: {e}",
                    file.display(),
                    full.display()
                ),
                Some(format!(
                    "`{key}` is a PEM file path relative to the deployment config file (as in `az ml`), or the PEM text itself"
                )),
            )
        })?;
        object.insert(key.into(), Value::String(pem));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_paths_are_read_relative_to_the_file_and_sslcname_becomes_cname() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        std::fs::write(
            dir.path().join("certs/cert.pem"),
            "-----BEGIN CERTIFICATE-----\nA\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("key.pem"),
            "-----BEGIN PRIVATE KEY-----\nB\n",
        )
        .unwrap();
        let dc = dir.path().join("deploymentconfig.json");
        std::fs::write(
            &dc,
            r#"{"computeType": "aci", "sslEnabled": true, "sslCertificate": "certs/cert.pem",
                "sslKey": "key.pem", "sslCname": "svc.example.com"}"#,
        )
        .unwrap();
        let value = read(&dc).unwrap();
        assert_eq!(value["sslCertificate"], "-----BEGIN CERTIFICATE-----\nA\n");
        assert_eq!(value["sslKey"], "-----BEGIN PRIVATE KEY-----\nB\n");
        assert_eq!(value["cname"], "svc.example.com");
        assert!(value.get("sslCname").is_none());
    }

    #[test]
    fn pem_text_is_kept_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let dc = dir.path().join("dc.json");
        std::fs::write(
            &dc,
            r#"{"computeType": "aci", "sslCertificate": "-----BEGIN CERTIFICATE-----\nX\n", "sslKey": "nope.pem"}"#,
        )
        .unwrap();
        let err = read(&dc).unwrap_err();
        assert!(err.message.contains("`sslKey`"), "{}", err.message);
        assert!(err.message.contains("nope.pem"), "{}", err.message);
        std::fs::write(
            &dc,
            r#"{"computeType": "aci", "sslCertificate": "-----BEGIN CERTIFICATE-----\nX\n"}"#,
        )
        .unwrap();
        assert_eq!(
            read(&dc).unwrap()["sslCertificate"],
            "-----BEGIN CERTIFICATE-----\nX\n"
        );
        std::fs::write(
            &dc,
            r#"{"sslCname": "a.example.com", "cname": "b.example.com"}"#,
        )
        .unwrap();
        assert!(read(&dc).unwrap_err().message.contains("keep one"));
    }
}
