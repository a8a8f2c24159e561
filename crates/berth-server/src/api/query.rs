//! Query-string parsing that keeps repeated keys and refuses unknown ones.

use crate::error::ApiError;

/// The query's key/value pairs in order; keys outside `allowed` are refused.
pub fn parse_query(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let unknown: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| !allowed.contains(&k.as_str()))
        .map(|(k, _)| format!("`{k}`"))
        .collect();
    if unknown.is_empty() {
        Ok(pairs)
    } else {
        Err(ApiError::invalid(format!(
            "unknown query parameter(s) {}; accepted: `{}`",
            unknown.join(", "),
            allowed.join("`, `")
        )))
    }
}

/// Parses a boolean query value.
pub fn parse_bool(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "" | "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(ApiError::invalid(format!(
            "query parameter `{key}` is `{other}`: use `true` or `false`"
        ))),
    }
}

/// Parses a `{version}` path segment: a whole number from 1.
pub fn version_param(what: &str, text: &str) -> Result<u32, ApiError> {
    text.parse::<u32>().ok().filter(|v| *v >= 1).ok_or_else(|| {
        ApiError::invalid(format!(
            "{what} version `{text}` is invalid: a version is a whole number from 1"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_kept_and_unknown_keys_refused() {
        let pairs = parse_query(Some("tag=a&tag=b%3D1&name=m"), &["tag", "name"]).unwrap();
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[1], ("tag".into(), "b=1".into()));
        let err = parse_query(Some("tags=a"), &["tag"]).unwrap_err();
        assert!(err.to_string().contains("`tags`"));
    }
}
