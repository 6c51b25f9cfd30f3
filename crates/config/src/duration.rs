//! Go-style durations (`300ms`, `10s`, `1h30m`, `168h`), the format registry:2 uses for every
//! time value in `config.yml` because it decodes them with Go's `time.ParseDuration`.

use std::time::Duration;

/// Nanoseconds per unit, for each unit Go's `time.ParseDuration` accepts.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000), // U+00B5 micro sign
    ("μs", 1_000), // U+03BC greek small letter mu
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go duration string such as `"300ms"`, `"10s"`, `"1h30m"`, `"1.5h"` or `"0"`.
///
/// The grammar is Go's `time.ParseDuration`: an optional sign, then one or more decimal numbers
/// (with optional fraction) each followed by a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`); the
/// bare `"0"` needs no unit. Negative durations are rejected because no registry:2 setting gives
/// them a meaning. The error is a short human explanation, without the key name.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let original = text;
    let invalid = || format!("invalid duration {original:?}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(format!(
                "invalid duration {original:?}: missing unit (use ns, us, ms, s, m or h)"
            ));
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!(
                "invalid duration {original:?}: unknown unit {unit:?} (use ns, us, ms, s, m or h)"
            ));
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(scale).ok_or_else(invalid)?;
        // The fraction contributes digits * scale / 10^len, truncated like Go does.
        let mut divisor: u128 = 1;
        let mut frac_value: u128 = 0;
        for digit in frac_part.bytes().take(30) {
            frac_value = frac_value * 10 + u128::from(digit - b'0');
            divisor *= 10;
        }
        value += frac_value * scale / divisor;
        total = total.checked_add(value).ok_or_else(invalid)?;
    }
    if total > u128::from(u64::MAX) {
        return Err(format!("invalid duration {original:?}: too large"));
    }
    if negative && total > 0 {
        return Err(format!(
            "invalid duration {original:?}: negative durations are not allowed"
        ));
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration compactly in Go syntax (`168h`, `1h30m`, `10s`, `1.5s`, `300ms`), so that
/// [`parse_go_duration`] and registry:2 both read it back to the same value.
pub fn format_go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let nanos = d.subsec_nanos();
    if d.as_secs() == 0 {
        return match (nanos % 1_000_000, nanos % 1_000) {
            (0, _) => format!("{}ms", nanos / 1_000_000),
            (_, 0) => format!("{}us", nanos / 1_000),
            _ => format!("{nanos}ns"),
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || nanos > 0 {
        out.push_str(&s.to_string());
        if nanos > 0 {
            let frac = format!("{nanos:09}");
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        out.push('s');
    }
    out
}

/// Serde support for `Duration` fields as Go duration strings (`#[serde(with = "...")]`).
pub mod go_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration as a Go duration string such as `"10s"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_go_duration(*d))
    }

    /// Reads a Go duration string such as `"10s"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_go_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde support for `Option<Duration>` fields as optional Go duration strings.
pub mod go_duration_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `Some` as a Go duration string and `None` as null.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_go_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads an optional Go duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => super::parse_go_duration(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_go_examples() {
        assert_eq!(parse_go_duration("300ms"), Ok(ms(300)));
        assert_eq!(parse_go_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_go_duration("168h"),
            Ok(Duration::from_secs(168 * 3600))
        );
        assert_eq!(parse_go_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration(".5s"), Ok(ms(500)));
        assert_eq!(
            parse_go_duration("2h45m10.25s"),
            Ok(Duration::from_secs(9910) + ms(250))
        );
        assert_eq!(parse_go_duration("1us"), Ok(Duration::from_micros(1)));
        assert_eq!(parse_go_duration("1µs"), Ok(Duration::from_micros(1)));
        assert_eq!(parse_go_duration("1μs"), Ok(Duration::from_micros(1)));
        assert_eq!(parse_go_duration("15ns"), Ok(Duration::from_nanos(15)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("+5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_go_duration("-0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "", "banana", "10", "1.5", "s", ".s", "1x", "1 s", "3000 s", "1h-5m", "-", "1..5s",
        ] {
            assert!(
                parse_go_duration(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        let missing = parse_go_duration("60").expect_err("no unit");
        assert!(missing.contains("missing unit"), "{missing}");
        let unit = parse_go_duration("5d").expect_err("bad unit");
        assert!(unit.contains("unknown unit \"d\""), "{unit}");
        assert!(parse_go_duration("-5s")
            .expect_err("negative")
            .contains("negative"));
        assert!(parse_go_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn formats_compactly_and_round_trips() {
        let cases = [
            (Duration::ZERO, "0s"),
            (ms(300), "300ms"),
            (Duration::from_micros(7), "7us"),
            (Duration::from_nanos(15), "15ns"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(168 * 3600), "168h"),
            (ms(1500), "1.5s"),
            (Duration::from_secs(7200) + ms(500), "2h0.5s"),
        ];
        for (d, text) in cases {
            assert_eq!(format_go_duration(d), text);
            assert_eq!(parse_go_duration(text), Ok(d), "{text}");
        }
    }
}
