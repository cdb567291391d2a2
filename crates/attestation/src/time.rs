//! RFC 3339 timestamps (`2025-06-25T00:00:00Z`, `2025-06-25T02:00:00+02:00`) to Unix time:
//! the dates of Intel's collateral (`issueDate`, `nextUpdate`) and the CLI's `--now`.

/// A text that is not an RFC 3339 date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected RFC 3339, e.g. 2025-06-25T00:00:00Z{detail}")]
pub struct TimeError {
    detail: &'static str,
}

const NOT_RFC3339: TimeError = TimeError { detail: "" };

/// Parses an RFC 3339 date-time; fractional seconds are accepted and dropped.
pub fn parse_rfc3339(text: &str) -> Result<i64, TimeError> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return Err(NOT_RFC3339);
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, TimeError> {
        let part = text.get(range).ok_or(NOT_RFC3339)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NOT_RFC3339);
        }
        part.parse().map_err(|_| NOT_RFC3339)
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(TimeError {
            detail: ": a field is out of range",
        });
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(NOT_RFC3339);
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let hours: i64 = rest[1..3].parse().map_err(|_| NOT_RFC3339)?;
            let minutes: i64 = rest[4..6].parse().map_err(|_| NOT_RFC3339)?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
        _ => {
            return Err(TimeError {
                detail: ": the zone must be Z or ±HH:MM",
            });
        }
    };
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Unix time `unix` as RFC 3339 in UTC, seconds precision (`2025-06-25T00:00:00Z`), as
/// Intel writes collateral dates.
pub fn format_rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_rfc3339("2025-06-25T00:00:00Z").unwrap(),
            1_750_809_600
        );
        assert_eq!(
            parse_rfc3339("2025-06-25T02:00:00+02:00").unwrap(),
            1_750_809_600
        );
        assert_eq!(
            parse_rfc3339("2025-06-24T19:30:00.123-04:30").unwrap(),
            1_750_809_600
        );
        assert_eq!(parse_rfc3339("2000-02-29T12:00:00Z").unwrap(), 951_825_600);
    }

    #[test]
    fn formatting_reads_back() {
        for unix in [0, 951_825_600, 1_750_809_600, 4_102_444_799, -86_401] {
            let text = format_rfc3339(unix);
            assert_eq!(parse_rfc3339(&text).unwrap(), unix, "{text}");
        }
        assert_eq!(format_rfc3339(1_750_809_600), "2025-06-25T00:00:00Z");
    }

    #[test]
    fn refuses_other_forms() {
        for bad in [
            "",
            "2025-06-25",
            "2025-06-25T00:00:00",
            "2025-13-01T00:00:00Z",
            "2025-06-25T00:00:00+0200",
            "25-06-25T00:00:00Z",
            "2025-06-25T00:00:00.Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
