//! Naming rules shared by the server (which enforces them) and clients (which
//! can fail early with the same words).

/// The model-name rule, stated as users read it in errors.
pub const MODEL_NAME_RULE: &str =
    "1 to 255 characters: letters, digits, '-', '.' and '_', starting with a letter or digit";

/// Checks a model name against the Azure ML rule `^[a-zA-Z0-9][a-zA-Z0-9\-\._]{0,254}$`.
pub fn check_model_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = match chars.next() {
        Some(first) if first.is_ascii_alphanumeric() => {
            name.len() <= 255
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "model name `{name}` is invalid: a model name has {MODEL_NAME_RULE}"
        ))
    }
}

/// Checks an inference config's `sourceDirectoryName`: one plain folder name
/// (the source is laid out under it, next to `azureml-models`).
pub fn check_source_directory_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name != "azureml-models"
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if plain {
        Ok(())
    } else {
        Err(format!(
            "`inferenceConfig.sourceDirectoryName` `{}` must be a plain folder name (1 to 255 characters, no `/`, `\\`, `.`, `..` or `azureml-models`), e.g. `src`",
            name.escape_debug()
        ))
    }
}

/// Longest `assetName` of a model, in bytes (a file name).
pub const MAX_ASSET_NAME_BYTES: usize = 255;
/// Most tags, or properties, on one model or service.
pub const MAX_KEY_VALUES: usize = 100;
/// Longest tag or property key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest tag or property value, in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;

/// Checks the count and sizes of a tag or property map; `what` is `tags` or
/// `properties`. Every problem names the limit.
pub fn check_key_values(
    what: &str,
    map: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if map.len() > MAX_KEY_VALUES {
        problems.push(format!(
            "`{what}` has {} entries: at most {MAX_KEY_VALUES} are allowed",
            map.len()
        ));
    }
    for (key, value) in map {
        let shown: String = key.chars().take(40).collect();
        if key.len() > MAX_KEY_BYTES {
            problems.push(format!(
                "`{what}` key `{shown}...` is {} bytes: keys have at most {MAX_KEY_BYTES} bytes",
                key.len()
            ));
        }
        if value.len() > MAX_VALUE_BYTES {
            problems.push(format!(
                "`{what}.{shown}` is {} bytes: values have at most {MAX_VALUE_BYTES} bytes",
                value.len()
            ));
        }
    }
    problems
}

/// The service-name rule, stated as users read it in errors.
pub const SERVICE_NAME_RULE: &str = "3 to 32 characters: lowercase letters, digits and '-', starting with a letter and not ending with '-'";

/// Checks a service name: `^[a-z]([-a-z0-9]*[a-z0-9])?$`, 3 to 32 characters.
pub fn check_service_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let valid = (3..=32).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.last() != Some(&b'-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "service name `{name}` is invalid: a service name has {SERVICE_NAME_RULE}"
        ))
    }
}

/// The alias every model has: its newest version. It cannot be set.
pub const LATEST_ALIAS: &str = "latest";

/// Checks an alias name you can set: the model-name rule, and not `latest`.
pub fn check_alias_name(alias: &str) -> Result<(), String> {
    if alias == LATEST_ALIAS {
        return Err(format!(
            "alias `{LATEST_ALIAS}` is reserved: `NAME@{LATEST_ALIAS}` always means the newest version; pick another alias name, e.g. `champion`"
        ));
    }
    check_model_name(alias).map_err(|_| {
        format!("alias name `{alias}` is invalid: an alias name has {MODEL_NAME_RULE}")
    })
}

/// A model reference as users write it: `name:version`, `name` or
/// `name:latest` for the newest version, `name@alias`, or `name@latest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// Model name.
    pub name: String,
    /// A specific version, or `None` for the latest (or the alias's version).
    pub version: Option<u32>,
    /// `name@alias` (`latest` included): the reference follows the alias.
    pub alias: Option<String>,
}

impl ModelRef {
    /// Whether the reference follows an alias (`name@alias` or `name@latest`).
    pub fn follows(&self) -> bool {
        self.alias.is_some()
    }

    /// Parses `name`, `name:version`, `name:latest`, `name@alias` or `name@latest`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some((name, alias)) = text.split_once('@') {
            check_model_name(name)?;
            if alias != LATEST_ALIAS {
                check_model_name(alias).map_err(|_| {
                    format!(
                        "model reference `{text}` has alias `{alias}`: an alias name has {MODEL_NAME_RULE} (or `latest`)"
                    )
                })?;
            }
            return Ok(Self {
                name: name.to_owned(),
                version: None,
                alias: Some(alias.to_owned()),
            });
        }
        let (name, version) = match text.rsplit_once(':') {
            None => (text, None),
            Some((name, "latest")) => (name, None),
            Some((name, version)) => {
                let parsed = version.parse::<u32>().ok().filter(|v| *v >= 1).ok_or_else(|| {
                    format!(
                        "model reference `{text}` has version `{version}`: a version is a whole number from 1, or `latest`"
                    )
                })?;
                (name, Some(parsed))
            }
        };
        check_model_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            version,
            alias: None,
        })
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.alias, self.version) {
            (Some(alias), _) => write!(f, "{}@{alias}", self.name),
            (None, Some(v)) => write!(f, "{}:{v}", self.name),
            (None, None) => f.write_str(&self.name),
        }
    }
}

/// Parses a `key=value` pair (tags, properties). A bare `key` has an empty value
/// only when `allow_bare` is set.
pub fn parse_key_value(text: &str, allow_bare: bool) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some(("", _)) => Err(format!("`{text}` has an empty key: write `key=value`")),
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None if allow_bare && !text.is_empty() => Ok((text.to_owned(), String::new())),
        None => Err(format!(
            "`{text}` is not `key=value`: write it as `key=value`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_maps_are_bounded_and_errors_name_the_limit() {
        let mut map = std::collections::BTreeMap::new();
        assert!(check_key_values("tags", &map).is_empty());
        for i in 0..=MAX_KEY_VALUES {
            map.insert(format!("k{i}"), "v".to_owned());
        }
        let problems = check_key_values("tags", &map);
        assert!(problems[0].contains("at most 100"), "{problems:?}");
        let mut map = std::collections::BTreeMap::new();
        map.insert(
            "k".repeat(MAX_KEY_BYTES + 1),
            "v".repeat(MAX_VALUE_BYTES + 1),
        );
        let problems = check_key_values("properties", &map);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("256") && problems[1].contains("4096"));
    }

    #[test]
    fn source_directory_names_are_plain_folder_names() {
        for good in ["src", "my.app", "a b", &"x".repeat(255)] {
            assert!(check_source_directory_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/tmp/x",
            "a/b",
            "a\\b",
            "azureml-models",
            "a\nb",
            &"x".repeat(256),
        ] {
            let err = check_source_directory_name(bad).unwrap_err();
            assert!(err.contains("sourceDirectoryName"), "{err}");
        }
    }

    #[test]
    fn model_names_follow_the_reference_rule() {
        for good in ["a", "Model-1", "sk.learn_v2", "9lives", &"x".repeat(255)] {
            assert!(check_model_name(good).is_ok(), "{good} should be valid");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "a b",
            "a/b",
            "a:b",
            "é",
            &"x".repeat(256),
        ] {
            let err = check_model_name(bad).expect_err(bad);
            assert!(err.contains("starting with a letter or digit"), "{err}");
        }
    }

    #[test]
    fn service_names_follow_the_reference_rule() {
        for good in ["abc", "my-svc-1", &"a".repeat(32)] {
            assert!(check_service_name(good).is_ok(), "{good}");
        }
        for bad in ["ab", "1abc", "Abc", "abc-", "a_bc", &"a".repeat(33)] {
            assert!(check_service_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn model_refs_parse_name_version_and_latest() {
        assert_eq!(ModelRef::parse("m").unwrap().version, None);
        assert_eq!(ModelRef::parse("m:latest").unwrap().version, None);
        assert_eq!(ModelRef::parse("m:12").unwrap().version, Some(12));
        assert!(ModelRef::parse("m:0").unwrap_err().contains("from 1"));
        assert!(ModelRef::parse("m:x").is_err());
        assert!(ModelRef::parse(":3").is_err());
    }

    #[test]
    fn model_refs_parse_aliases_and_latest() {
        let r = ModelRef::parse("m@champion").unwrap();
        assert_eq!(
            (r.name.as_str(), r.version, r.alias.as_deref()),
            ("m", None, Some("champion"))
        );
        assert!(r.follows());
        assert_eq!(r.to_string(), "m@champion");
        let r = ModelRef::parse("m@latest").unwrap();
        assert_eq!(r.alias.as_deref(), Some("latest"));
        assert!(!ModelRef::parse("m:3").unwrap().follows());
        let err = ModelRef::parse("m@bad alias").unwrap_err();
        assert!(err.contains("alias `bad alias`"), "{err}");
        assert!(ModelRef::parse("m@").is_err());
        assert!(ModelRef::parse("@x").is_err());
        assert!(ModelRef::parse("m@a@b").is_err());
    }

    #[test]
    fn alias_names_follow_the_model_name_rule_and_latest_is_reserved() {
        for good in ["champion", "prod-2", "v1.0_rc"] {
            assert!(check_alias_name(good).is_ok(), "{good}");
        }
        let err = check_alias_name("latest").unwrap_err();
        assert!(err.contains("reserved"), "{err}");
        for bad in ["", "-x", "a b", "a@b", "a:b"] {
            let err = check_alias_name(bad).unwrap_err();
            assert!(err.contains("alias name"), "{err}");
        }
    }

    #[test]
    fn key_values_need_a_key() {
        assert_eq!(
            parse_key_value("a=b=c", false).unwrap(),
            ("a".into(), "b=c".into())
        );
        assert!(parse_key_value("=v", false).is_err());
        assert!(parse_key_value("k", false).is_err());
        assert_eq!(parse_key_value("k", true).unwrap(), ("k".into(), "".into()));
    }
}
