//! Timestamps as Go's `encoding/json` writes a `time.Time` (`time.RFC3339Nano`), which is what
//! registry:2 receivers parse.

use std::time::SystemTime;

/// Go's `time.RFC3339Nano` in UTC: `2024-05-01T10:20:30.1234Z` (trailing zeros trimmed).
pub fn format_timestamp(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let mut s = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let nanos = since.subsec_nanos();
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        s.push('.');
        s.push_str(fraction.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_go_rfc3339_nano() {
        let at = |secs, nanos| SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
        assert_eq!(format_timestamp(at(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_timestamp(at(1_136_214_245, 0)),
            "2006-01-02T15:04:05Z"
        );
        assert_eq!(
            format_timestamp(at(1_709_210_096, 120_000_000)),
            "2024-02-29T12:34:56.12Z"
        );
        assert_eq!(
            format_timestamp(at(951_782_400, 1)),
            "2000-02-29T00:00:00.000000001Z"
        );
    }
}
