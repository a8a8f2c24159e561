//! The rules of a hand-set traffic split (`PUT /v1/services/{name}/traffic`):
//! revision keys, weights from 0 to 100 summing to 100, revision names. The
//! server enforces them; the CLI and the SDK fail early with the same words.
//! Also reads the CLI's `3=90,4=10` and `3=blue` lists.

use std::collections::BTreeMap;

/// Longest revision name (v1 `AksEndpoint` version name).
pub const MAX_REVISION_NAME: usize = 32;

/// Checks a revision key (`"3"`): a whole number ≥ 1, written plainly.
pub fn check_revision_key(key: &str, field: &str) -> Result<u32, String> {
    match key.parse::<u32>() {
        Ok(n) if n >= 1 && n.to_string() == key => Ok(n),
        _ => Err(format!(
            "`{field}` has the key `{key}`: keys are revision numbers (1, 2, ...); `berth service revisions -n NAME` lists them"
        )),
    }
}

/// Every problem of a weights map: bad revision keys, weights over 100, a sum
/// other than 100, nothing listed.
pub fn check_weights(weights: &BTreeMap<String, u32>) -> Vec<String> {
    let mut problems = Vec::new();
    if weights.is_empty() {
        problems.push(
            "`weights` is empty: give each serving revision its percent, e.g. {\"3\": 90, \"4\": 10}"
                .into(),
        );
        return problems;
    }
    for (key, weight) in weights {
        if let Err(e) = check_revision_key(key, "weights") {
            problems.push(e);
        }
        if *weight > 100 {
            problems.push(format!(
                "`weights.{key}` is {weight}: a weight is a percent from 0 to 100"
            ));
        }
    }
    let sum: u64 = weights.values().map(|w| u64::from(*w)).sum();
    if sum != 100 {
        let listed = weights
            .iter()
            .map(|(k, w)| format!("{k}={w}"))
            .collect::<Vec<_>>()
            .join(",");
        problems.push(format!(
            "the weights ({listed}) sum to {sum}: they must sum to 100; change one so the total is 100"
        ));
    }
    problems
}

/// Checks one revision name: 1 to 32 letters, digits, `-`, `_` or `.`,
/// starting with a letter or digit.
pub fn check_revision_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= MAX_REVISION_NAME
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "revision name `{name}` is invalid: use 1 to {MAX_REVISION_NAME} letters, digits, '-', '_' or '.', starting with a letter or digit"
        ))
    }
}

/// Every problem of a names map: bad keys, bad names, one name on two revisions.
pub fn check_names(names: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, name) in names {
        if let Err(e) = check_revision_key(key, "names") {
            problems.push(e);
        }
        if let Err(e) = check_revision_name(name) {
            problems.push(format!("`names.{key}`: {e}"));
        }
        if let Some(other) = seen.insert(name.as_str(), key.as_str()) {
            problems.push(format!(
                "the name `{name}` is given to revisions {other} and {key}: each revision needs its own name"
            ));
        }
    }
    problems
}

/// Reads `3=90,4=10` (also `3:90`, spaces allowed) into revision → weight.
pub fn parse_weights(text: &str) -> Result<BTreeMap<String, u32>, String> {
    let mut out = BTreeMap::new();
    for (key, value) in pairs(text, "3=90,4=10")? {
        let weight = value.parse::<u32>().map_err(|_| {
            format!("`{key}={value}`: the weight `{value}` is not a whole percent from 0 to 100")
        })?;
        if out.insert(key.clone(), weight).is_some() {
            return Err(format!(
                "revision {key} is listed twice in `{text}`: give each revision once"
            ));
        }
    }
    Ok(out)
}

/// Reads `3=blue,4=green` into revision → name.
pub fn parse_names(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (key, value) in pairs(text, "3=blue,4=green")? {
        if out.insert(key.clone(), value).is_some() {
            return Err(format!(
                "revision {key} is named twice in `{text}`: give each revision one name"
            ));
        }
    }
    Ok(out)
}

fn pairs(text: &str, example: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let Some((key, value)) = part.split_once('=').or_else(|| part.split_once(':')) else {
            return Err(format!(
                "`{part}` is not `REVISION=VALUE`: write the list like `{example}`"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        check_revision_key(key, "REVISION")?;
        out.push((key.to_owned(), value.to_owned()));
    }
    if out.is_empty() {
        return Err(format!(
            "`{text}` lists no revision: write the list like `{example}`"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(k, w)| (k.to_string(), *w)).collect()
    }

    #[test]
    fn weights_are_read_from_the_flag() {
        assert_eq!(
            parse_weights("3=90,4=10"),
            Ok(weights(&[("3", 90), ("4", 10)]))
        );
        assert_eq!(parse_weights(" 3 = 100 , "), Ok(weights(&[("3", 100)])));
        assert_eq!(
            parse_weights("7:0,8:100"),
            Ok(weights(&[("7", 0), ("8", 100)]))
        );
        for (text, needle) in [
            ("3=ninety", "is not a whole percent"),
            ("3=-1", "is not a whole percent"),
            ("three=90", "keys are revision numbers"),
            ("0=100", "keys are revision numbers"),
            ("03=100", "keys are revision numbers"),
            ("3", "is not `REVISION=VALUE`"),
            ("3=50,3=50", "listed twice"),
            ("", "lists no revision"),
        ] {
            let err = parse_weights(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn weights_must_sum_to_100() {
        assert!(check_weights(&weights(&[("3", 90), ("4", 10)])).is_empty());
        assert!(check_weights(&weights(&[("3", 100), ("4", 0)])).is_empty());
        let p = check_weights(&weights(&[("3", 90), ("4", 20)])).join("\n");
        assert!(
            p.contains("(3=90,4=20) sum to 110: they must sum to 100"),
            "{p}"
        );
        let p = check_weights(&weights(&[("3", 150)])).join("\n");
        assert!(
            p.contains("`weights.3` is 150: a weight is a percent from 0 to 100"),
            "{p}"
        );
        let p = check_weights(&BTreeMap::new()).join("\n");
        assert!(p.contains("`weights` is empty"), "{p}");
        let p = check_weights(&weights(&[("x", 100)])).join("\n");
        assert!(p.contains("`weights` has the key `x`"), "{p}");
    }

    #[test]
    fn names_are_checked() {
        let names = parse_names("3=blue,4=green").unwrap();
        assert!(check_names(&names).is_empty());
        let twice: BTreeMap<String, String> = [("3", "blue"), ("4", "blue")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(check_names(&twice)[0].contains("given to revisions 3 and 4"));
        let bad: BTreeMap<String, String> = [("3".to_string(), "-x".to_string())].into();
        assert!(check_names(&bad)[0].contains("`names.3`: revision name `-x` is invalid"));
        assert!(check_revision_name(&"a".repeat(33)).is_err());
        assert!(check_revision_name("v1.2_blue-A").is_ok());
    }
}
