//! Turning a registration request into a normalised [`EnvironmentSpec`], and the
//! two digests derived from it: the spec digest (any change makes a new version)
//! and the build hash (what the build depends on; the cache key).

use std::collections::BTreeMap;

use berth_api::{EnvironmentSpec, RegisterEnvironmentRequest};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::conda;

/// Bumped when the build procedure changes, so old builds are not reused.
const BUILD_RECIPE: &str = "berth-env-v1";

/// Packages Berth's worker replaces; installing them would need the network and
/// add nothing.
const PROVIDED_BY_BERTH: &[&str] = &["azureml-defaults", "azureml-inference-server-http"];

/// Names reserved for curated environments, as in Azure ML.
const RESERVED_PREFIXES: &[&str] = &["Microsoft", "AzureML"];

/// A spec with what normalisation changed or did not use.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalised {
    /// The spec.
    pub spec: EnvironmentSpec,
    /// Warnings for the user.
    pub warnings: Vec<String>,
}

/// Checks an environment name: the model-name rule, and no reserved prefix.
pub fn check_name(name: &str) -> Result<(), String> {
    berth_api::names::check_model_name(name).map_err(|e| {
        e.replace("a model name", "an environment name")
            .replace("model name", "environment name")
    })?;
    if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| name.starts_with(*p)) {
        return Err(format!(
            "environment name `{name}` starts with `{prefix}`, which is reserved for curated environments; pick another name"
        ));
    }
    Ok(())
}

/// Validates and normalises a registration; every problem is listed.
pub fn normalise(request: &RegisterEnvironmentRequest) -> Result<Normalised, Vec<String>> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if let Err(e) = check_name(&request.name) {
        problems.push(e);
    }
    let azure_has_conda = request
        .azure_environment
        .as_ref()
        .and_then(|a| a.pointer("/python/condaDependencies"))
        .is_some_and(|v| !v.is_null());
    let conflicting = (request.pip_requirements.is_some()
        && (request.conda_file.is_some() || request.azure_environment.is_some()))
        || (request.conda_file.is_some() && azure_has_conda);
    if conflicting {
        problems.push(
            "give at most one of `pipRequirements`, `condaFile` and `azureEnvironment` (a `condaFile` may accompany an `azureEnvironment` whose `python.condaDependencies` is null)".into(),
        );
    }
    let mut python_version = None;
    let mut requirement_lines: Vec<String> = Vec::new();
    let mut variables = BTreeMap::new();
    let mut interpreter_path = None;
    if let Some(text) = &request.pip_requirements {
        match requirement_lines_of(text) {
            Ok(lines) => requirement_lines = lines,
            Err(e) => problems.push(e),
        }
    }
    if let Some(text) = &request.conda_file {
        match conda::parse_yaml(text).and_then(conda::convert) {
            Ok(converted) => {
                python_version = converted.python_version;
                requirement_lines.extend(converted.requirements);
                warnings.extend(converted.warnings);
            }
            Err(e) => problems.push(e),
        }
    }
    if let Some(azure) = &request.azure_environment {
        match from_azure(
            azure,
            &request.name,
            request.conda_file.is_some(),
            &mut warnings,
        ) {
            Ok(parts) => {
                python_version = parts.python_version.or(python_version);
                requirement_lines.extend(parts.requirements);
                variables = parts.variables;
                interpreter_path = parts.interpreter_path;
            }
            Err(mut e) => problems.append(&mut e),
        }
    }
    let mut requested_python_version = None;
    if let Some(version) = &request.python_version {
        match normalise_python_version(version) {
            Ok((v, exact, note)) => {
                if let Some(from_spec) = &python_version
                    && from_spec != &v
                    && !from_spec.starts_with(&format!("{v}."))
                {
                    warnings.push(format!(
                        "Python {v} (from `pythonVersion`) replaces {from_spec} (from the spec)"
                    ));
                }
                warnings.extend(note);
                python_version = Some(v);
                requested_python_version = exact;
            }
            Err(e) => problems.push(e),
        }
    } else if let Some(v) = python_version.take() {
        match normalise_python_version(&v) {
            Ok((v, exact, note)) => {
                warnings.extend(note);
                python_version = Some(v);
                requested_python_version = exact;
            }
            Err(e) => problems.push(e),
        }
    }
    for (key, value) in &request.environment_variables {
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            problems.push(format!(
                "environment variable `{key}` is invalid: names are non-empty without `=`, and no value has NUL bytes"
            ));
        }
        variables.insert(key.clone(), value.clone());
    }
    let mut requirements = Vec::new();
    for line in requirement_lines {
        match check_requirement(&line) {
            Ok(Some(skip_reason)) => warnings.push(skip_reason),
            Ok(None) => {
                if !requirements.contains(&line) {
                    requirements.push(line);
                }
            }
            Err(e) => problems.push(e),
        }
    }
    if interpreter_path.is_some() && !requirements.is_empty() {
        warnings.push(
            "packages are not installed into a user-managed interpreter (`userManagedDependencies`); install them yourself".into(),
        );
        requirements.clear();
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Normalised {
        spec: EnvironmentSpec {
            python_version,
            requested_python_version,
            requirements,
            environment_variables: variables,
            interpreter_path,
        },
        warnings,
    })
}

/// `3.X[.Y]` → (`3.X`, `3.X.Y` when a patch is named, a note).
type PythonVersion = (String, Option<String>, Option<String>);

fn normalise_python_version(text: &str) -> Result<PythonVersion, String> {
    let trimmed = text.trim().trim_end_matches(".x").trim_end_matches(".*");
    let parts: Vec<&str> = trimmed.split('.').collect();
    let numeric = parts
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if !numeric || parts.len() < 2 || parts.len() > 3 || parts[0] != "3" {
        return Err(format!(
            "Python version `{text}` is invalid: write `3.X`, for example `3.11`"
        ));
    }
    let short = format!("{}.{}", parts[0], parts[1]);
    let exact = (parts.len() == 3).then(|| parts.join("."));
    let note = exact.as_ref().map(|exact| {
        format!(
            "Python {exact} names a patch level: the server uses {exact} when it has it, else another {short} with a warning"
        )
    });
    Ok((short, exact, note))
}

/// Requirement lines of a `requirements.txt`: comments and blanks dropped,
/// continuations joined.
fn requirement_lines_of(text: &str) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let without_comment = match raw.find(" #") {
            Some(i) => &raw[..i],
            None if raw.trim_start().starts_with('#') => "",
            None => raw,
        };
        let piece = without_comment.trim();
        if let Some(continued) = piece.strip_suffix('\\') {
            pending.push_str(continued.trim());
            pending.push(' ');
            continue;
        }
        pending.push_str(piece);
        let line = pending.trim().to_owned();
        pending.clear();
        if !line.is_empty() {
            lines.push(line);
        }
    }
    if !pending.trim().is_empty() {
        lines.push(pending.trim().to_owned());
    }
    Ok(lines)
}

/// `Ok(Some(warning))` to skip a line, `Ok(None)` to keep it, `Err` to refuse it.
fn check_requirement(line: &str) -> Result<Option<String>, String> {
    let first = line.split_whitespace().next().unwrap_or("");
    match first {
        "-r" | "--requirement" | "-c" | "--constraint" => {
            return Err(format!(
                "requirement line `{line}` refers to another file, which the server cannot read; paste its lines instead"
            ));
        }
        "-e" | "--editable" => {
            return Err(format!(
                "requirement line `{line}` is an editable install of a client-side path; build a wheel and reference it instead"
            ));
        }
        _ => {}
    }
    if first.starts_with('-') {
        return Ok(None);
    }
    let name: String = line
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect::<String>()
        .to_ascii_lowercase()
        .replace('_', "-");
    if PROVIDED_BY_BERTH.contains(&name.as_str()) {
        return Ok(Some(format!(
            "`{line}` is skipped: Berth's worker serves the entry script, so the Azure ML inference server is not needed"
        )));
    }
    Ok(None)
}

struct AzureParts {
    python_version: Option<String>,
    requirements: Vec<String>,
    variables: BTreeMap<String, String>,
    interpreter_path: Option<String>,
}

const AZURE_KEYS: &[&str] = &[
    "name",
    "version",
    "environmentVariables",
    "python",
    "docker",
    "spark",
    "databricks",
    "r",
    "inferencingStackVersion",
    "assetId",
];
const AZURE_PYTHON_KEYS: &[&str] = &[
    "userManagedDependencies",
    "interpreterPath",
    "condaDependenciesFile",
    "baseCondaEnvironment",
    "condaDependencies",
];

fn meaningful(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => o.values().any(|v| meaningful(Some(v))),
        Some(_) => true,
    }
}

fn from_azure(
    value: &Value,
    name: &str,
    conda_supplied: bool,
    warnings: &mut Vec<String>,
) -> Result<AzureParts, Vec<String>> {
    let mut problems = Vec::new();
    let Some(object) = value.as_object() else {
        return Err(vec![
            "`azureEnvironment` must be a JSON object (an Azure ML Environment)".into(),
        ]);
    };
    for key in object.keys() {
        if !AZURE_KEYS.contains(&key.as_str()) {
            problems.push(format!(
                "unknown key `{key}` in the Azure environment JSON; known keys: `{}`",
                AZURE_KEYS.join("`, `")
            ));
        }
    }
    if let Some(file_name) = object.get("name").and_then(Value::as_str)
        && file_name != name
    {
        warnings.push(format!(
            "the Azure environment JSON names `{file_name}`; it is registered as `{name}`"
        ));
    }
    let python = object.get("python").and_then(Value::as_object);
    if python.is_none() && object.keys().all(|k| k == "name" || k == "version") {
        problems.push(
            "the Azure environment JSON has only `name`/`version`: that refers to a registered environment; give its full JSON, or use `--pip-requirements`/`--conda-file`".into(),
        );
    }
    let mut parts = AzureParts {
        python_version: None,
        requirements: Vec::new(),
        variables: BTreeMap::new(),
        interpreter_path: None,
    };
    if let Some(vars) = object.get("environmentVariables").filter(|v| !v.is_null()) {
        match vars.as_object() {
            Some(map) => {
                for (k, v) in map {
                    match v.as_str() {
                        Some(s) => {
                            parts.variables.insert(k.clone(), s.to_owned());
                        }
                        None => problems.push(format!(
                            "environment variable `{k}` must be a string, not `{v}`"
                        )),
                    }
                }
            }
            None => problems.push("`environmentVariables` must be an object of strings".into()),
        }
    }
    if let Some(python) = python {
        for key in python.keys() {
            if !AZURE_PYTHON_KEYS.contains(&key.as_str()) {
                problems.push(format!(
                    "unknown key `python.{key}` in the Azure environment JSON; known keys: `{}`",
                    AZURE_PYTHON_KEYS.join("`, `")
                ));
            }
        }
        let user_managed = python
            .get("userManagedDependencies")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if user_managed {
            let path = python
                .get("interpreterPath")
                .and_then(Value::as_str)
                .unwrap_or("python");
            parts.interpreter_path = Some(path.to_owned());
        }
        if meaningful(python.get("baseCondaEnvironment")) {
            warnings.push(
                "`python.baseCondaEnvironment` is not used: Berth builds environments with pip"
                    .into(),
            );
        }
        match python.get("condaDependencies").filter(|v| !v.is_null()) {
            Some(conda_value) => match conda::from_json(conda_value).and_then(conda::convert) {
                Ok(converted) => {
                    parts.python_version = converted.python_version;
                    parts.requirements = converted.requirements;
                    warnings.extend(converted.warnings);
                }
                Err(e) => problems.push(e),
            },
            None if meaningful(python.get("condaDependenciesFile")) && !conda_supplied => problems.push(
                "`python.condaDependenciesFile` names a file the server cannot read; register with `--conda-file FILE` instead".into(),
            ),
            None => {}
        }
    }
    if let Some(docker) = object.get("docker").and_then(Value::as_object)
        && docker.get("enabled").and_then(Value::as_bool) != Some(false)
    {
        let image = docker
            .get("baseImage")
            .and_then(Value::as_str)
            .unwrap_or("");
        if meaningful(docker.get("baseDockerfile")) || meaningful(docker.get("buildContext")) {
            warnings.push("`docker.baseDockerfile`/`docker.buildContext` are not used: the local compute target runs workers without containers".into());
        } else if !image.is_empty() {
            warnings.push(format!(
                "`docker.baseImage` `{image}` is not used: the local compute target runs workers without containers"
            ));
        }
    }
    for key in ["spark", "databricks"] {
        let section = object.get(key).and_then(Value::as_object);
        let used = section.is_some_and(|s| {
            s.iter()
                .any(|(k, v)| k != "precachePackages" && meaningful(Some(v)))
        });
        if used {
            warnings.push(format!("`{key}` settings are not used by Berth"));
        }
    }
    if meaningful(object.get("r")) {
        warnings.push("`r` settings are not used by Berth".into());
    }
    if meaningful(object.get("inferencingStackVersion")) {
        warnings.push(
            "`inferencingStackVersion` is not needed: Berth's worker is the inference stack".into(),
        );
    }
    if problems.is_empty() {
        Ok(parts)
    } else {
        Err(problems)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Digest of the whole spec: any change makes a new version.
pub fn spec_digest(spec: &EnvironmentSpec) -> String {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    format!("sha256:{}", sha256_hex(&json))
}

/// Digest of what the build depends on: the build cache key.
pub fn build_hash(spec: &EnvironmentSpec) -> String {
    let mut key = serde_json::json!({
        "recipe": BUILD_RECIPE,
        "python": spec.python_version,
        "requirements": spec.requirements,
        "interpreter": spec.interpreter_path,
    });
    // Only when given, so that builds of specs without a patch keep their hash.
    if let Some(exact) = &spec.requested_python_version {
        key["pythonExact"] = serde_json::Value::String(exact.clone());
    }
    sha256_hex(key.to_string().as_bytes())[..32].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str) -> RegisterEnvironmentRequest {
        RegisterEnvironmentRequest {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn requirements_are_cleaned_and_berth_provided_packages_skipped() {
        let mut r = request("env");
        r.pip_requirements = Some(
            "# comment\nnumpy==1.26  # pinned\n\n--no-index\nazureml_defaults>=1.40\nscikit-learn \\\n  >=1.0\nnumpy==1.26\n".into(),
        );
        let n = normalise(&r).unwrap();
        assert_eq!(
            n.spec.requirements,
            vec!["numpy==1.26", "--no-index", "scikit-learn >=1.0"]
        );
        assert!(n.warnings[0].contains("azureml_defaults>=1.40` is skipped"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut r = request("AzureML-Minimal");
        r.pip_requirements = Some("-r other.txt\n-e ./pkg\n".into());
        r.conda_file = Some("dependencies: []".into());
        r.python_version = Some("three".into());
        let problems = normalise(&r).unwrap_err().join("\n");
        for needle in [
            "reserved",
            "at most one",
            "another file",
            "editable",
            "`three` is invalid",
        ] {
            assert!(problems.contains(needle), "{needle} missing:\n{problems}");
        }
    }

    #[test]
    fn azure_environment_json_is_accepted_and_unused_parts_are_named() {
        let mut r = request("sklearn-env");
        r.environment_variables.insert("B".into(), "2".into());
        r.azure_environment = Some(serde_json::json!({
            "name": "other", "version": "3", "assetId": null,
            "environmentVariables": {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE", "B": "1"},
            "python": {
                "userManagedDependencies": false, "interpreterPath": "python",
                "condaDependenciesFile": null, "baseCondaEnvironment": null,
                "condaDependencies": {"name": "project_environment",
                    "dependencies": ["python=3.11.2", {"pip": ["azureml-defaults", "numpy"]}],
                    "channels": ["anaconda", "conda-forge"]}
            },
            "docker": {"enabled": false, "baseImage": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04", "baseDockerfile": null},
            "spark": {"repositories": [], "packages": [], "precachePackages": true},
            "databricks": {"mavenLibraries": [], "pypiLibraries": [], "rcranLibraries": [], "jarLibraries": [], "eggLibraries": []},
            "r": null, "inferencingStackVersion": null
        }));
        let n = normalise(&r).unwrap();
        assert_eq!(n.spec.python_version.as_deref(), Some("3.11"));
        assert_eq!(n.spec.requested_python_version.as_deref(), Some("3.11.2"));
        assert_eq!(n.spec.requirements, vec!["numpy"]);
        assert_eq!(
            n.spec.environment_variables["B"], "2",
            "request variables win"
        );
        assert_eq!(
            n.spec.environment_variables["EXAMPLE_ENV_VAR"],
            "EXAMPLE_VALUE"
        );
        let warnings = n.warnings.join("\n");
        for needle in ["names `other`", "channels", "azureml-defaults` is skipped"] {
            assert!(warnings.contains(needle), "{needle} missing:\n{warnings}");
        }
        assert!(
            !warnings.contains("spark"),
            "default spark settings are not noise"
        );
    }

    #[test]
    fn azure_typos_are_refused() {
        let mut r = request("env");
        r.azure_environment =
            Some(serde_json::json!({"pyhton": {}, "python": {"condaDependencys": {}}}));
        let problems = normalise(&r).unwrap_err().join("\n");
        assert!(problems.contains("`pyhton`") && problems.contains("`python.condaDependencys`"));
    }

    #[test]
    fn build_hash_ignores_variables_but_spec_digest_does_not() {
        let mut a = normalise(&request("e")).unwrap().spec;
        let b = a.clone();
        a.environment_variables.insert("X".into(), "1".into());
        assert_eq!(build_hash(&a), build_hash(&b));
        assert_ne!(spec_digest(&a), spec_digest(&b));
    }
}
