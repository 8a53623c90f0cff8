//! Sample times (`spec/agent.md` §12.4): TEXT in ISO 8601 (`YYYY-MM-DD HH:MM:SS[.f]` or with
//! `T`, optional `Z` or `±HH:MM`; no offset means UTC), or INTEGER/REAL seconds or
//! milliseconds since the Unix epoch. Anything else — NULL, BLOB, NaN, ±Inf, a date outside
//! years 0–9999, an unreadable string — has no time, and the row is skipped.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::config::TsUnit;
use crate::source::cell::Cell;

/// The instant a stored timestamp names, in UTC; `None` when it names none.
pub fn instant(cell: &Cell, unit: TsUnit) -> Option<OffsetDateTime> {
    let t = match cell {
        Cell::Integer(i) => {
            let nanos = match unit {
                TsUnit::Seconds => i128::from(*i) * 1_000_000_000,
                TsUnit::Millis => i128::from(*i) * 1_000_000,
            };
            OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?
        }
        Cell::Real(r) => {
            if !r.is_finite() {
                return None;
            }
            let per: i128 = match unit {
                TsUnit::Seconds => 1_000_000_000,
                TsUnit::Millis => 1_000_000,
            };
            // Whole units and the fraction apart: `r * 1e9` would lose the fraction's
            // precision at today's epoch seconds.
            let whole = r.floor();
            if whole.abs() > 1e15 {
                return None;
            }
            let frac = ((r - whole) * per as f64).round() as i128;
            OffsetDateTime::from_unix_timestamp_nanos(whole as i128 * per + frac).ok()?
        }
        Cell::Text(bytes) => parse_text(std::str::from_utf8(bytes).ok()?.trim())?,
        Cell::Null | Cell::Blob(_) => return None,
    };
    let t = t.to_offset(UtcOffset::UTC);
    (0..=9999).contains(&t.year()).then_some(t)
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn parse_text(s: &str) -> Option<OffsetDateTime> {
    // Date: YYYY-MM-DD
    let (date, rest) = (s.get(..10)?, s.get(10..)?);
    let year = digits(date.get(..4)?, 4)?;
    let month = digits(date.get(5..7)?, 2)?;
    let day = digits(date.get(8..10)?, 2)?;
    if date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' {
        return None;
    }
    let date = Date::from_calendar_date(
        i32::try_from(year).ok()?,
        Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    // Separator, then HH:MM:SS
    let sep = rest.as_bytes().first()?;
    if !matches!(sep, b' ' | b'T' | b't') {
        return None;
    }
    let rest = &rest[1..];
    let hms = rest.get(..8)?;
    let (h, m, sec) = (
        digits(hms.get(..2)?, 2)?,
        digits(hms.get(3..5)?, 2)?,
        digits(hms.get(6..8)?, 2)?,
    );
    if hms.as_bytes()[2] != b':' || hms.as_bytes()[5] != b':' {
        return None;
    }
    let mut rest = &rest[8..];
    // Optional fraction, up to nanoseconds (more digits are cut).
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let kept = &frac[..n.min(9)];
        nanos = kept.parse::<u32>().ok()? * 10u32.pow(9 - kept.len() as u32);
        rest = &frac[n..];
    }
    let time = Time::from_hms_nano(
        u8::try_from(h).ok()?,
        u8::try_from(m).ok()?,
        u8::try_from(sec).ok()?,
        nanos,
    )
    .ok()?;
    let offset = match rest {
        "" | "Z" | "z" => UtcOffset::UTC,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1i8,
                b'-' => -1i8,
                _ => return None,
            };
            let body = &rest[1..];
            let (oh, om) = match body.len() {
                5 if body.as_bytes()[2] == b':' => (digits(&body[..2], 2)?, digits(&body[3..], 2)?),
                4 => (digits(&body[..2], 2)?, digits(&body[2..], 2)?),
                _ => return None,
            };
            UtcOffset::from_hms(
                sign * i8::try_from(oh).ok()?,
                sign * i8::try_from(om).ok()?,
                0,
            )
            .ok()?
        }
    };
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_protocol::time::format_rfc3339;

    fn text(s: &str) -> Option<String> {
        instant(&Cell::Text(s.as_bytes().to_vec()), TsUnit::Seconds).map(format_rfc3339)
    }

    #[test]
    fn iso_8601_text_in_every_allowed_shape() {
        assert_eq!(
            text("2026-04-28 09:00:01").as_deref(),
            Some("2026-04-28T09:00:01Z")
        );
        assert_eq!(
            text("2026-04-28T09:00:01.5Z").as_deref(),
            Some("2026-04-28T09:00:01.5Z")
        );
        assert_eq!(
            text("2026-04-28T11:00:01.123456789+02:00").as_deref(),
            Some("2026-04-28T09:00:01.123456789Z")
        );
        assert_eq!(
            text("2026-04-28 08:30:00-0030").as_deref(),
            Some("2026-04-28T09:00:00Z")
        );
        assert_eq!(
            text("2026-04-28 09:00:00.1234567891").as_deref(),
            Some("2026-04-28T09:00:00.123456789Z"),
            "digits past nanoseconds are cut"
        );
    }

    #[test]
    fn unreadable_text_has_no_time() {
        for s in [
            "",
            "yesterday",
            "2026-13-01 00:00:00",
            "2026-02-30 00:00:00",
            "2026-04-28",
            "2026-04-28 25:00:00",
            "2026-04-28 09:00:01+2",
            "2026-04-28 09:00:01.",
            "2026-04-28 09:00:01 UTC",
        ] {
            assert_eq!(text(s), None, "{s}");
        }
        assert_eq!(
            instant(&Cell::Text(vec![0xff, 0xfe]), TsUnit::Seconds),
            None
        );
    }

    #[test]
    fn numbers_in_seconds_or_milliseconds() {
        let s = |c: Cell, u| instant(&c, u).map(format_rfc3339);
        assert_eq!(
            s(Cell::Integer(1_777_366_801), TsUnit::Seconds).as_deref(),
            Some("2026-04-28T09:00:01Z")
        );
        assert_eq!(
            s(Cell::Integer(1_777_366_801_500), TsUnit::Millis).as_deref(),
            Some("2026-04-28T09:00:01.5Z")
        );
        assert_eq!(
            s(Cell::Real(1_777_366_801.25), TsUnit::Seconds).as_deref(),
            Some("2026-04-28T09:00:01.25Z")
        );
        for bad in [
            Cell::Real(f64::NAN),
            Cell::Real(f64::INFINITY),
            Cell::Real(1e300),
            Cell::Integer(i64::MAX),
            Cell::Null,
            Cell::Blob(vec![1]),
        ] {
            assert_eq!(instant(&bad, TsUnit::Seconds), None, "{bad:?}");
        }
    }
}
