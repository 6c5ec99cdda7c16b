//! Dates and timestamps as Oracle sends them and Hyper stores them.
//!
//! A date is a day count since 1970-01-01; a timestamp is microseconds since
//! 1970-01-01T00:00:00Z. Parsing accepts what Oracle Fusion emits:
//! `2024-05-02`, `2023-08-07T07:42:06.138+00:00`, `2023-08-07T07:42:06Z`,
//! with or without fractional seconds, any offset. No time-zone database
//! is needed: every accepted text carries its offset or is a plain date.

use std::fmt::Write as _;

/// Why a date or timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind}: {text:?}")]
pub struct TimeError {
    /// `date` or `timestamp`.
    pub kind: &'static str,
    /// The text given.
    pub text: String,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// public-domain `days_from_civil` algorithm).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

fn num(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() {
        return None;
    }
    let mut n = 0u32;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(b - b'0');
    }
    Some(n)
}

fn parse_ymd(bytes: &[u8]) -> Option<i32> {
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = num(&bytes[0..4])? as i32;
    let month = num(&bytes[5..7])?;
    let day = num(&bytes[8..10])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Parses `YYYY-MM-DD` into days since 1970-01-01.
pub fn parse_date(text: &str) -> Result<i32, TimeError> {
    parse_ymd(text.as_bytes()).ok_or_else(|| TimeError {
        kind: "date",
        text: text.to_owned(),
    })
}

/// Parses an ISO 8601 timestamp with offset (`Z` or `±HH:MM`), optional
/// fractional seconds (up to 9 digits; below a microsecond is truncated),
/// into microseconds since the epoch, UTC.
pub fn parse_timestamp(text: &str) -> Result<i64, TimeError> {
    parse_ts(text.as_bytes()).ok_or_else(|| TimeError {
        kind: "timestamp",
        text: text.to_owned(),
    })
}

/// Microseconds per digit of a fraction of a second (below a microsecond
/// digits are dropped).
const FRACTION_WEIGHTS: [i64; 6] = [100_000, 10_000, 1_000, 100, 10, 1];

fn parse_ts(b: &[u8]) -> Option<i64> {
    if b.len() < 20 {
        return None;
    }
    let days = parse_ymd(&b[0..10])?;
    if b[10] != b'T' && b[10] != b't' && b[10] != b' ' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let hour = num(&b[11..13])?;
    let minute = num(&b[14..16])?;
    let second = num(&b[17..19])?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if let Some(weight) = FRACTION_WEIGHTS.get(i - start) {
                micros += i64::from(b[i] - b'0') * weight;
            }
            i += 1;
        }
        if i == start || i - start > 9 {
            return None;
        }
    }
    let offset_secs: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') => {
            let rest = &b[i + 1..];
            let (h, m) = match rest.len() {
                5 if rest[2] == b':' => (num(&rest[0..2])?, num(&rest[3..5])?),
                4 => (num(&rest[0..2])?, num(&rest[2..4])?),
                2 => (num(&rest[0..2])?, 0),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let s = i64::from(h * 3600 + m * 60);
            if *sign == b'-' { -s } else { s }
        }
        _ => return None,
    };
    let secs = i64::from(days) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
        - offset_secs;
    Some(secs * 1_000_000 + micros)
}

/// Formats days since 1970-01-01 as `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Formats microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`
/// (fraction omitted when zero is not wanted: always 3 digits when the
/// value is whole milliseconds, 6 otherwise — Oracle's own style).
pub fn format_timestamp(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400) as i32;
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    if frac % 1000 == 0 {
        let _ = write!(out, ".{:03}", frac / 1000);
    } else {
        let _ = write!(out, ".{frac:06}");
    }
    out.push_str("+00:00");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("2000-03-01").unwrap(), 11_017);
        assert_eq!(
            parse_date("4712-12-31").unwrap(),
            days_from_civil(4712, 12, 31)
        );
        for days in [-600_000, -1, 0, 1, 19_000, 1_000_000] {
            assert_eq!(parse_date(&format_date(days)).unwrap(), days);
        }
        for bad in [
            "2024-02-30",
            "2023-02-29",
            "2024-13-01",
            "24-01-01",
            "2024-1-01",
            "",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        assert!(parse_date("2024-02-29").is_ok());
    }

    #[test]
    fn timestamps_with_offsets_and_fractions() {
        let base = parse_timestamp("2023-08-07T07:42:06+00:00").unwrap();
        assert_eq!(parse_timestamp("2023-08-07T07:42:06Z").unwrap(), base);
        assert_eq!(
            parse_timestamp("2023-08-07T07:42:06.138+00:00").unwrap(),
            base + 138_000
        );
        assert_eq!(
            parse_timestamp("2023-08-07T09:42:06.000001+02:00").unwrap(),
            base + 1
        );
        assert_eq!(parse_timestamp("2023-08-07T00:42:06-0700").unwrap(), base);
        assert_eq!(
            format_timestamp(base + 138_000),
            "2023-08-07T07:42:06.138+00:00"
        );
        assert_eq!(
            parse_timestamp(&format_timestamp(base + 7)).unwrap(),
            base + 7
        );
        for bad in [
            "2023-08-07",
            "2023-08-07T07:42:06",
            "2023-08-07T25:42:06Z",
            "2023-08-07T07:42:06.Z",
            "2023-08-07T07:42:06+0",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fractions_of_every_length() {
        let base = parse_timestamp("2023-08-07T07:42:06Z").unwrap();
        for (fraction, micros) in [
            ("1", 100_000),
            ("12", 120_000),
            ("123", 123_000),
            ("1234", 123_400),
            ("12345", 123_450),
            ("123456", 123_456),
            ("1234567", 123_456),
            ("12345678", 123_456),
            ("123456789", 123_456),
        ] {
            let text = format!("2023-08-07T07:42:06.{fraction}Z");
            assert_eq!(parse_timestamp(&text).unwrap(), base + micros, "{text}");
        }
        assert!(parse_timestamp("2023-08-07T07:42:06.1234567890Z").is_err());
    }

    #[test]
    fn negative_epochs() {
        let t = parse_timestamp("1969-12-31T23:59:59.5Z").unwrap();
        assert_eq!(t, -500_000);
        assert_eq!(format_timestamp(t), "1969-12-31T23:59:59.500+00:00");
    }
}
