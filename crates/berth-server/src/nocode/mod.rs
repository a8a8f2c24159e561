//! No-code deployment: a service created without an inference config, for one
//! model registered with framework `Onnx`, `ScikitLearn` or `TensorFlow`, runs
//! a built-in entry script (shipped in the binary, like the worker shim) in a
//! built-in pip environment, as Azure ML's no-code deployment does.
//!
//! The scorers (`onnx_score.py`, `sklearn_score.py`, `tensorflow_score.py`)
//! answer input they cannot take with 400 and the reason.

use std::io::Write as _;

/// A built-in scorer and its environment.
#[derive(Debug, PartialEq, Eq)]
pub struct NoCode {
    /// The framework name as registered (`Onnx`, ...).
    pub framework: &'static str,
    /// The entry script's file name in its snapshot.
    pub entry_script: &'static str,
    /// Its text.
    pub script: &'static str,
    /// The built-in environment's name.
    pub environment: &'static str,
    /// Its pip requirements.
    pub requirements: &'static [&'static str],
}

/// The built-in scorers.
pub const SCORERS: &[NoCode] = &[
    NoCode {
        framework: "Onnx",
        entry_script: "score.py",
        script: include_str!("onnx_score.py"),
        environment: "berth-nocode-onnx",
        requirements: &["onnxruntime", "numpy"],
    },
    NoCode {
        framework: "ScikitLearn",
        entry_script: "score.py",
        script: include_str!("sklearn_score.py"),
        environment: "berth-nocode-sklearn",
        requirements: &["scikit-learn", "numpy", "joblib"],
    },
    NoCode {
        framework: "TensorFlow",
        entry_script: "score.py",
        script: include_str!("tensorflow_score.py"),
        environment: "berth-nocode-tensorflow",
        requirements: &["tensorflow", "numpy"],
    },
];

/// The scorer for the framework a model was registered with (any case).
pub fn for_framework(model: &str, framework: Option<&str>) -> Result<&'static NoCode, String> {
    let supported = SCORERS
        .iter()
        .map(|s| s.framework)
        .collect::<Vec<_>>()
        .join("`, `");
    let Some(framework) = framework else {
        return Err(format!(
            "no inference config was given and model `{model}` has no framework: a deployment without an inference config (no-code) needs one model registered with `modelFramework` `{supported}`; register it with a framework, or give an inference config (entry script + environment)"
        ));
    };
    SCORERS
        .iter()
        .find(|s| s.framework.eq_ignore_ascii_case(framework))
        .ok_or_else(|| {
            format!(
                "no inference config was given and model `{model}` has framework `{framework}`: a deployment without an inference config (no-code) supports `{supported}`; give an inference config (entry script + environment)"
            )
        })
}

/// The scorer whose built-in environment is `environment` (`name:version`), if any.
pub fn for_environment(environment: &str) -> Option<&'static NoCode> {
    let name = environment.rsplit_once(':').map_or(environment, |(n, _)| n);
    SCORERS.iter().find(|s| s.environment == name)
}

impl NoCode {
    /// An uncompressed tar holding the entry script: the snapshot the service runs.
    pub fn archive(&self) -> std::io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(self.script.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, self.entry_script, self.script.as_bytes())?;
        let mut bytes = builder.into_inner()?;
        bytes.flush()?;
        Ok(bytes)
    }

    /// The environment's `requirements.txt` text.
    pub fn requirements_text(&self) -> String {
        let mut text = self.requirements.join("\n");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frameworks_match_in_any_case_and_others_are_refused_with_the_fix() {
        assert_eq!(
            for_framework("m:1", Some("onnx")).unwrap().framework,
            "Onnx"
        );
        assert_eq!(
            for_framework("m:1", Some("ScikitLearn"))
                .unwrap()
                .environment,
            "berth-nocode-sklearn"
        );
        let err = for_framework("m:1", Some("PyTorch")).unwrap_err();
        assert!(
            err.contains("`PyTorch`") && err.contains("inference config"),
            "{err}"
        );
        let err = for_framework("m:1", None).unwrap_err();
        assert!(err.contains("no framework"), "{err}");
        assert_eq!(
            for_environment("berth-nocode-onnx:3").unwrap().framework,
            "Onnx"
        );
        assert!(for_environment("mine:1").is_none());
    }

    #[test]
    fn the_archive_holds_the_script() {
        let bytes = SCORERS[0].archive().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("score.py"));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        assert!(text.contains("onnxruntime"));
        assert!(entries.next().is_none());
    }
}
