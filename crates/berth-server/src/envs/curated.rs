//! Curated environments: the Azure ML v1 names (`AzureML-sklearn-1.0`, ...) as
//! built-in pip specs with the same Python version and key packages.
//!
//! A curated name is registered in the workspace the first time it is asked for
//! (`GET /v1/environments/{name}`, or a service naming it), so the CLI, the SDK
//! and services all see one ordinary, versioned environment. An unknown name with
//! a reserved prefix gets `not_found` naming the closest curated names.

use std::collections::BTreeMap;

use berth_api::EnvironmentSpec;

use super::spec;
use crate::store::{NewEnvironment, Store, StoreError, StoredEnvironment};

/// One curated environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Curated {
    /// The Azure ML name.
    pub name: &'static str,
    /// Python `major.minor`, as the Azure image has it.
    pub python: &'static str,
    /// pip requirement lines: the image's key packages.
    pub packages: &'static [&'static str],
}

/// Every curated environment Berth knows, in the README's order.
pub const CURATED: &[Curated] = &[
    Curated {
        name: "AzureML-Minimal",
        python: "3.6",
        packages: &[],
    },
    Curated {
        name: "AzureML-Tutorial",
        python: "3.6",
        packages: &["numpy", "pandas", "scipy", "scikit-learn", "matplotlib"],
    },
    Curated {
        name: "AzureML-minimal-ubuntu18.04-py37-cpu-inference",
        python: "3.7",
        packages: &[],
    },
    Curated {
        name: "AzureML-minimal-ubuntu20.04-py38-cpu-inference",
        python: "3.8",
        packages: &[],
    },
    Curated {
        name: "AzureML-sklearn-0.24-ubuntu18.04-py37-cpu",
        python: "3.7",
        packages: &["scikit-learn==0.24.1", "numpy", "pandas", "scipy", "joblib"],
    },
    Curated {
        name: "AzureML-sklearn-0.24.1-ubuntu18.04-py37-cpu-inference",
        python: "3.7",
        packages: &["scikit-learn==0.24.1", "numpy", "pandas", "scipy", "joblib"],
    },
    Curated {
        name: "AzureML-sklearn-1.0",
        python: "3.8",
        packages: &["scikit-learn==1.0.2", "numpy", "pandas", "scipy", "joblib"],
    },
    Curated {
        name: "AzureML-sklearn-1.0-ubuntu20.04-py38-cpu",
        python: "3.8",
        packages: &["scikit-learn==1.0.2", "numpy", "pandas", "scipy", "joblib"],
    },
    Curated {
        name: "AzureML-onnxruntime-1.6-ubuntu18.04-py37-cpu-inference",
        python: "3.7",
        packages: &["onnxruntime==1.6.0", "numpy"],
    },
    Curated {
        name: "AzureML-pytorch-1.9-ubuntu18.04-py37-cuda11-gpu",
        python: "3.7",
        packages: &["torch==1.9.0", "torchvision==0.10.0", "numpy"],
    },
    Curated {
        name: "AzureML-pytorch-1.10-ubuntu18.04-py38-cuda11-gpu",
        python: "3.8",
        packages: &["torch==1.10.0", "torchvision==0.11.1", "numpy"],
    },
    Curated {
        name: "AzureML-tensorflow-2.4-ubuntu18.04-py37-cuda11-gpu",
        python: "3.7",
        packages: &["tensorflow==2.4.1", "numpy"],
    },
    Curated {
        name: "AzureML-tensorflow-2.5-ubuntu20.04-py38-cuda11-gpu",
        python: "3.8",
        packages: &["tensorflow==2.5.0", "numpy"],
    },
    Curated {
        name: "AzureML-lightgbm-3.2-ubuntu18.04-py37-cpu",
        python: "3.7",
        packages: &["lightgbm==3.2.1", "scikit-learn==0.24.1", "numpy", "pandas"],
    },
];

/// Prefixes reserved for curated environments.
const RESERVED: &[&str] = &["azureml", "microsoft"];

/// The curated environment of that name (case-insensitive, as Azure's names are
/// matched), if any.
pub fn lookup(name: &str) -> Option<&'static Curated> {
    CURATED.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

/// Whether `name` uses a prefix reserved for curated environments.
pub fn is_reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    RESERVED.iter().any(|p| lower.starts_with(p))
}

/// Up to three curated names closest to `name`: the longest shared beginning
/// first (`AzureML-sklearn-…` for a sklearn name), then edit distance, then table
/// order.
pub fn closest(name: &str) -> Vec<&'static str> {
    let wanted = name.to_ascii_lowercase();
    let mut scored: Vec<(std::cmp::Reverse<usize>, usize, usize, &'static str)> = CURATED
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let candidate = c.name.to_ascii_lowercase();
            let shared = wanted
                .chars()
                .zip(candidate.chars())
                .take_while(|(a, b)| a == b)
                .count();
            (
                std::cmp::Reverse(shared),
                distance(&wanted, &candidate),
                i,
                c.name,
            )
        })
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, _, _, n)| n).collect()
}

/// Levenshtein distance over chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// The buildable spec of a curated environment.
pub fn spec_of(curated: &Curated) -> EnvironmentSpec {
    EnvironmentSpec {
        python_version: Some(curated.python.to_owned()),
        requested_python_version: None,
        requirements: curated.packages.iter().map(|p| (*p).to_owned()).collect(),
        environment_variables: BTreeMap::new(),
        interpreter_path: None,
    }
}

/// The `not_found` message for a reserved name that is not curated.
pub fn unknown_message(name: &str) -> String {
    format!(
        "environment `{name}` is not one of Berth's curated environments; the closest are `{}` (the README lists them all), or register your own under a name without the `AzureML`/`Microsoft` prefix",
        closest(name).join("`, `")
    )
}

/// Registers the curated environment `curated` (a no-op returning the newest
/// version when it is registered with the same spec already).
pub async fn ensure_registered(
    store: &dyn Store,
    curated: &Curated,
) -> Result<StoredEnvironment, StoreError> {
    let spec = spec_of(curated);
    let packages = if curated.packages.is_empty() {
        "no packages beyond the worker".to_owned()
    } else {
        curated.packages.join(", ")
    };
    let new = NewEnvironment {
        name: curated.name.to_owned(),
        spec_digest: spec::spec_digest(&spec),
        build_hash: spec::build_hash(&spec),
        spec,
        warnings: vec![format!(
            "curated environment: Berth's built-in pip equivalent of Azure ML's `{}` (Python {}; {packages}); the Azure Docker image is not used",
            curated.name, curated.python
        )],
        description: Some(format!(
            "Curated: Python {} with {packages}",
            curated.python
        )),
        created_time: crate::now_rfc3339(),
    };
    store.register_environment(new).await.map(|(_, env)| env)
}

/// An environment version from the store; a curated name not yet in the store is
/// registered first, and an unknown reserved name is `Err(message)` naming the
/// closest curated names. Other store errors pass through.
pub async fn resolve(
    store: &dyn Store,
    name: &str,
    version: Option<u32>,
) -> Result<StoredEnvironment, Resolve> {
    match store.environment(name, version).await {
        Ok(found) => Ok(found),
        Err(StoreError::EnvironmentNotFound(id)) => match lookup(name) {
            Some(curated) => {
                let registered = ensure_registered(store, curated).await?;
                if version.is_none() || version == Some(registered.version) {
                    Ok(registered)
                } else {
                    store
                        .environment(&registered.name, version)
                        .await
                        .map_err(Resolve::Store)
                }
            }
            None if is_reserved(name) => Err(Resolve::UnknownCurated(unknown_message(name))),
            None => Err(Resolve::Store(StoreError::EnvironmentNotFound(id))),
        },
        Err(other) => Err(Resolve::Store(other)),
    }
}

/// Why [`resolve`] found nothing.
#[derive(Debug, thiserror::Error)]
pub enum Resolve {
    /// A reserved name that is not curated; the message names the closest.
    #[error("{0}")]
    UnknownCurated(String),
    /// The store's answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_reserved_and_carry_a_python_version() {
        let mut seen = std::collections::BTreeSet::new();
        for c in CURATED {
            assert!(seen.insert(c.name.to_ascii_lowercase()), "{} twice", c.name);
            assert!(is_reserved(c.name), "{}", c.name);
            assert!(
                spec::check_name(c.name).is_err(),
                "users cannot register {}",
                c.name
            );
            let (major, minor) = c.python.split_once('.').expect("X.Y");
            assert_eq!(major, "3");
            assert!(minor.parse::<u32>().is_ok(), "{}", c.python);
        }
    }

    #[test]
    fn lookup_is_case_insensitive_and_specs_pin_python_and_packages() {
        let c = lookup("azureml-sklearn-1.0").expect("curated");
        assert_eq!(c.name, "AzureML-sklearn-1.0");
        let spec = spec_of(c);
        assert_eq!(spec.python_version.as_deref(), Some("3.8"));
        assert!(
            spec.requirements
                .contains(&"scikit-learn==1.0.2".to_owned())
        );
        let old = spec_of(lookup("AzureML-sklearn-0.24-ubuntu18.04-py37-cpu").expect("curated"));
        assert_eq!(old.python_version.as_deref(), Some("3.7"));
        assert!(lookup("AzureML-nope").is_none());
        assert!(!is_reserved("my-env"));
    }

    #[test]
    fn the_readme_table_lists_every_curated_environment() {
        let readme = include_str!("../../../../README.md");
        for c in CURATED {
            let row = format!("| `{}` | {} |", c.name, c.python);
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }

    #[test]
    fn closest_names_a_near_miss_first() {
        assert_eq!(closest("AzureML-sklearn-1.1")[0], "AzureML-sklearn-1.0");
        let sklearn = closest("AzureML-sklearn-9.9");
        assert!(
            sklearn.iter().all(|n| n.starts_with("AzureML-sklearn-")),
            "{sklearn:?}"
        );
        assert_eq!(closest("azureml-minimal")[0], "AzureML-Minimal");
        let message = unknown_message("AzureML-tensorflow-2.9");
        assert!(message.contains("AzureML-tensorflow-2."), "{message}");
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
