//! Event-time helpers: epoch milliseconds to and from RFC 3339.
//!
//! Formatting is hand-written (civil-from-days) because the simulator and the sinks
//! format millions of timestamps a second; parsing takes a fast path for the
//! `YYYY-MM-DDTHH:MM:SS[.fff]Z` form and falls back to chrono for offsets.

use chrono::DateTime;

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Earliest epoch millisecond RFC 3339 can represent (0000-01-01T00:00:00Z).
pub const MIN_RFC3339_MS: i64 = -62_167_219_200_000;
/// Latest epoch millisecond RFC 3339 can represent (9999-12-31T23:59:59.999Z).
pub const MAX_RFC3339_MS: i64 = 253_402_300_799_999;

#[inline]
fn two(buf: &mut [u8], at: usize, v: u32) {
    buf[at] = b'0' + (v / 10) as u8;
    buf[at + 1] = b'0' + (v % 10) as u8;
}

/// `YYYY-MM-DDTHH:MM:SS.fffZ` (24 bytes) for `ms`, clamped to years 0000..=9999,
/// without allocating.
pub fn rfc3339_ms_bytes(ms: i64) -> [u8; 24] {
    let ms = ms.clamp(MIN_RFC3339_MS, MAX_RFC3339_MS);
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let y = y as u32;
    two(&mut b, 0, y / 100);
    two(&mut b, 2, y % 100);
    two(&mut b, 5, mo);
    two(&mut b, 8, d);
    let secs = (in_day / 1000) as u32;
    two(&mut b, 11, secs / 3600);
    two(&mut b, 14, secs / 60 % 60);
    two(&mut b, 17, secs % 60);
    let milli = (in_day % 1000) as u32;
    b[20] = b'0' + (milli / 100) as u8;
    two(&mut b, 21, milli % 100);
    b
}

/// Append `ms` as `YYYY-MM-DDTHH:MM:SS.fffZ`.
pub fn write_rfc3339_ms(out: &mut Vec<u8>, ms: i64) {
    out.extend_from_slice(&rfc3339_ms_bytes(ms));
}

/// `ms` as an RFC 3339 string with milliseconds and `Z`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let mut v = Vec::with_capacity(24);
    write_rfc3339_ms(&mut v, ms);
    String::from_utf8(v).expect("ASCII")
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn parse_fast_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let y = digits(&b[0..4])? as i64;
    let mo = digits(&b[5..7])?;
    let d = digits(&b[8..10])?;
    let h = digits(&b[11..13])?;
    let mi = digits(&b[14..16])?;
    let se = digits(&b[17..19])?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59
    {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    let ms = match frac {
        [] => 0,
        [b'.', rest @ ..] if !rest.is_empty() && rest.len() <= 9 => {
            let n = digits(rest)?;
            // Keep milliseconds, truncating finer digits.
            let scale = 10u32.pow(rest.len() as u32);
            (n as u64 * 1000 / scale as u64) as i64
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(days * 86_400_000 + (h as i64 * 3600 + mi as i64 * 60 + se as i64) * 1000 + ms)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parse an RFC 3339 timestamp (any offset) to epoch milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    parse_fast_utc(s).or_else(|| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis())
    })
}

/// Serde adapter: epoch ms on the inside, RFC 3339 on the wire.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Serialize epoch ms as RFC 3339.
    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_rfc3339_ms(*ms))
    }

    /// Deserialize RFC 3339 into epoch ms.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_rfc3339_ms(&s).ok_or_else(|| D::Error::custom(format!("not RFC 3339: {s}")))
    }
}

/// Serde adapter for optional timestamps (null when absent).
pub mod rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Serialize optional epoch ms as RFC 3339 or null.
    pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_str(&super::format_rfc3339_ms(*ms)),
            None => s.serialize_none(),
        }
    }

    /// Deserialize RFC 3339 or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        s.map(|s| {
            super::parse_rfc3339_ms(&s)
                .ok_or_else(|| D::Error::custom(format!("not RFC 3339: {s}")))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SecondsFormat, TimeZone, Utc};
    use proptest::prelude::*;

    // Years 0001..=9999 in ms (chrono's RFC 3339 output is defined there).
    const LO: i64 = -62_135_596_800_000;
    const HI: i64 = MAX_RFC3339_MS;

    proptest! {
        #[test]
        fn format_matches_chrono(ms in LO..HI) {
            let ours = format_rfc3339_ms(ms);
            let theirs = Utc.timestamp_millis_opt(ms).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true);
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(parse_rfc3339_ms(&ours), Some(ms));
        }

        #[test]
        fn days_round_trip(days in -800_000i64..2_900_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn parses_offsets_and_fractions() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.123456Z"), Some(1123));
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339_ms("2024-02-30T00:00:00Z"), None);
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        assert_eq!(parse_rfc3339_ms(""), None);
    }
}
