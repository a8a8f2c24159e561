//! Durations as people write them in configs and flags: `90` (seconds), `15s`,
//! `2m`, `1h`, and sums like `1m30s`. Shared by the server (deployment
//! configs) and the CLI (`--bake`), so both accept and refuse the same text.

/// What a duration looks like, for error messages.
pub const DURATION_RULE: &str =
    "whole seconds (`90`) or a number with `s`, `m` or `h` (`15s`, `2m`, `1h`, `1m30s`)";

/// Parses `text` into whole seconds.
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let bad = || format!("`{text}` is not a duration: write {DURATION_RULE}");
    if trimmed.is_empty() {
        return Err(bad());
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed.parse::<u64>().map_err(|_| bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_unit = u64::MAX;
    for c in trimmed.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' | 'S' => 1,
            'm' | 'M' => 60,
            'h' | 'H' => 3600,
            _ => return Err(bad()),
        };
        // Each part needs its number, and units go from larger to smaller once.
        if digits.is_empty() || unit >= last_unit {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(bad)?;
        digits.clear();
        last_unit = unit;
    }
    if !digits.is_empty() {
        // `1m30` — a trailing number without its unit.
        return Err(bad());
    }
    Ok(total)
}

/// Formats seconds the way [`parse_seconds`] reads them back: `45s`, `2m`,
/// `1m30s`, `1h`, `0s`.
pub fn format_seconds(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".into();
    }
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    let mut out = String::new();
    for (n, unit) in [(h, 'h'), (m, 'm'), (s, 's')] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_written() {
        for (text, seconds) in [
            ("90", 90),
            ("0", 0),
            ("15s", 15),
            ("2m", 120),
            ("1h", 3600),
            ("1m30s", 90),
            ("1h5m", 3900),
            (" 45S ", 45),
            ("0s", 0),
        ] {
            assert_eq!(parse_seconds(text), Ok(seconds), "{text}");
        }
    }

    #[test]
    fn bad_durations_name_the_text_and_the_rule() {
        for text in [
            "",
            "s",
            "15x",
            "1.5m",
            "-5",
            "1m30",
            "30s1m",
            "1s1s",
            "m5",
            "99999999999999999999h",
        ] {
            let err = parse_seconds(text).unwrap_err();
            assert!(err.contains(&format!("`{text}`")), "{err}");
            assert!(err.contains("`15s`"), "{err}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for seconds in [0, 1, 59, 60, 90, 3600, 3661, 86_400] {
            assert_eq!(parse_seconds(&format_seconds(seconds)), Ok(seconds));
        }
        assert_eq!(format_seconds(90), "1m30s");
        assert_eq!(format_seconds(7200), "2h");
    }
}
