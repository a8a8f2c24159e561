//! Conda environment specs (YAML files, or the `condaDependencies` object of an
//! Azure environment) turned into pip requirements.
//!
//! Berth installs with pip (or uv), not conda: the `pip:` section is used as is,
//! `python=X.Y` selects the interpreter, and every other conda package is
//! installed under the same name with pip, with a warning for each.

use serde::Deserialize;

/// A conda spec's parts Berth uses.
#[derive(Debug, Default, Deserialize)]
pub struct CondaSpec {
    /// Environment name (not used).
    #[serde(default)]
    pub name: Option<String>,
    /// Channels (not used: packages come from pip's index).
    #[serde(default)]
    pub channels: Vec<String>,
    /// Dependencies: conda match specs and `{pip: [...]}` sections.
    #[serde(default)]
    pub dependencies: Vec<CondaDependency>,
}

/// One entry of `dependencies`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CondaDependency {
    /// A conda match spec such as `numpy=1.21`.
    Package(String),
    /// `{pip: [...]}`.
    Pip {
        /// pip requirement lines.
        pip: Vec<String>,
    },
}

/// What a conda spec contributes.
#[derive(Debug, Default, PartialEq)]
pub struct Converted {
    /// `X.Y` or `X.Y.Z` from `python=X.Y...`.
    pub python_version: Option<String>,
    /// pip requirement lines.
    pub requirements: Vec<String>,
    /// What was changed or not used.
    pub warnings: Vec<String>,
}

/// Conda package names whose pip name differs.
const RENAMES: &[(&str, &str)] = &[
    ("pytorch", "torch"),
    ("py-xgboost", "xgboost"),
    ("pytorch-cpu", "torch"),
];

/// Parses a conda environment file.
pub fn parse_yaml(text: &str) -> Result<CondaSpec, String> {
    serde_yaml_ng::from_str(text)
        .map_err(|e| format!("the conda file is not a valid conda environment spec: {e}"))
}

/// Reads a `condaDependencies` JSON object.
pub fn from_json(value: &serde_json::Value) -> Result<CondaSpec, String> {
    serde_json::from_value(value.clone())
        .map_err(|e| format!("`python.condaDependencies` is not a valid conda spec: {e}"))
}

/// Converts a conda spec.
pub fn convert(spec: CondaSpec) -> Result<Converted, String> {
    let mut out = Converted::default();
    if !spec.channels.is_empty() {
        out.warnings.push(format!(
            "conda channels `{}` are not used: packages are installed with pip from its configured index",
            spec.channels.join("`, `")
        ));
    }
    for dependency in spec.dependencies {
        match dependency {
            CondaDependency::Pip { pip } => out.requirements.extend(pip),
            CondaDependency::Package(text) => convert_package(text.trim(), &mut out)?,
        }
    }
    Ok(out)
}

fn convert_package(text: &str, out: &mut Converted) -> Result<(), String> {
    let unqualified = match text.rsplit_once("::") {
        Some((channel, rest)) => {
            out.warnings
                .push(format!("conda channel `{channel}` of `{text}` is not used"));
            rest
        }
        None => text,
    };
    let split = unqualified
        .find(|c: char| "=<>!~ ".contains(c))
        .unwrap_or(unqualified.len());
    let (name, constraint) = unqualified.split_at(split);
    let constraint = constraint.trim();
    if name.is_empty() {
        return Err(format!("conda dependency `{text}` has no package name"));
    }
    if name == "python" {
        let version: String = constraint
            .trim_start_matches(['=', '>', '<', '~', '!'])
            .split(['.', '*', ',', '='])
            .take(3)
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(".");
        if !version.is_empty() {
            out.python_version = Some(version);
        }
        return Ok(());
    }
    if name == "pip" {
        out.warnings.push(
            "conda package `pip` is skipped: every environment comes with its installer".into(),
        );
        return Ok(());
    }
    let pip_name = RENAMES
        .iter()
        .find(|(conda, _)| *conda == name)
        .map(|(_, pip)| *pip)
        .unwrap_or(name);
    let pip_constraint = if let Some(exact) = constraint.strip_prefix("==") {
        format!("=={}", exact.split('=').next().unwrap_or(exact))
    } else if let Some(fuzzy) = constraint.strip_prefix('=').or_else(|| {
        (!constraint.is_empty() && constraint.starts_with(|c: char| c.is_ascii_digit()))
            .then_some(constraint)
    }) {
        let mut parts = fuzzy.splitn(2, ['=', ' ']);
        let version = parts.next().unwrap_or("");
        if let Some(build) = parts.next() {
            out.warnings.push(format!(
                "conda build string `{build}` of `{text}` is not used"
            ));
        }
        if version.ends_with('*') {
            format!("=={version}")
        } else {
            format!("=={version}.*")
        }
    } else {
        constraint.replace(' ', "")
    };
    let requirement = format!("{pip_name}{pip_constraint}");
    out.warnings.push(format!(
        "conda package `{text}` is installed with pip as `{requirement}`"
    ));
    out.requirements.push(requirement);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
name: project_environment
channels:
  - conda-forge
dependencies:
  - python=3.8.5
  - pip
  - numpy=1.21
  - scikit-learn==1.0.2=py38h
  - pytorch>=1.9
  - conda-forge::pandas
  - pip:
    - azureml-defaults
    - joblib==1.1.0
";

    #[test]
    fn conda_files_become_pip_requirements_with_a_warning_each() {
        let converted = convert(parse_yaml(FILE).unwrap()).unwrap();
        assert_eq!(converted.python_version.as_deref(), Some("3.8.5"));
        assert_eq!(
            converted.requirements,
            vec![
                "numpy==1.21.*",
                "scikit-learn==1.0.2",
                "torch>=1.9",
                "pandas",
                "azureml-defaults",
                "joblib==1.1.0"
            ]
        );
        let warnings = converted.warnings.join("\n");
        for needle in [
            "channels `conda-forge`",
            "`pip` is skipped",
            "`numpy=1.21` is installed with pip as `numpy==1.21.*`",
            "`pytorch>=1.9` is installed with pip as `torch>=1.9`",
            "channel `conda-forge` of `conda-forge::pandas`",
        ] {
            assert!(warnings.contains(needle), "{needle} missing in\n{warnings}");
        }
    }

    #[test]
    fn malformed_conda_files_are_refused() {
        assert!(parse_yaml("dependencies: 5").is_err());
        assert!(parse_yaml("dependencies:\n  - {notpip: [a]}").is_err());
    }
}
