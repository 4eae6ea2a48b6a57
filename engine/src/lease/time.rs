//! RFC 3339 UTC timestamps (`2026-11-02T10:00:00Z`), as Go's `time.Time` marshals them.
//!
//! Contract: [`format`] writes whole seconds in UTC; [`parse`] reads that form, with optional
//! fractional seconds and a `Z` or `+00:00` zone, and rejects anything else (other offsets,
//! out-of-range fields, times before 1970) with `None`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01 (`civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ` (times before 1970 print as 1970-01-01T00:00:00Z).
pub(crate) fn format(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2));
    let (y, m, d) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    let rem = secs.rem_euclid(SECS_PER_DAY);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses what [`format`] writes (see the module documentation).
pub(crate) fn parse(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let mut n: u32 = frac[..digits].parse().ok()?;
        for _ in digits..9 {
            n *= 10;
        }
        nanos = n;
        rest = &frac[digits..];
    }
    if rest != "Z" && rest != "+00:00" {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    // Reject dates like 02-31 that roll over.
    if civil_from_days(days) != (y, mo, d) {
        return None;
    }
    let secs = days * SECS_PER_DAY + h * 3600 + mi * 60 + se;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_known_values() {
        assert_eq!(format(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_793_529_600); // 2026-11-01T10:40:00Z
        assert_eq!(format(t), "2026-11-01T10:40:00Z");
        assert_eq!(parse("2026-11-01T10:40:00Z"), Some(t));
        assert_eq!(parse("2026-11-01T10:40:00+00:00"), Some(t));
        assert_eq!(
            parse("2026-11-01T10:40:00.5Z"),
            Some(t + Duration::from_millis(500))
        );
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format(leap), "2000-02-29T00:00:00Z");
        assert_eq!(parse("2000-02-29T00:00:00Z"), Some(leap));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "2026-11-01",
            "2026-11-01T10:40:00",
            "2026-11-01T10:40:00+01:00",
            "2026-13-01T10:40:00Z",
            "2026-02-30T10:40:00Z",
            "2026-11-01T24:00:00Z",
            "2026-11-01T10:40:00.Z",
            "1969-12-31T23:59:59Z",
            "2026-1a-01T10:40:00Z",
            "+026-11-01T10:40:00Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
