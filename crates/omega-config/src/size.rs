//! Sizes: plain bytes or a number and a unit (`agent.md` §2.1 rule 7).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::duration::ParseError;

const UNITS: [(&str, u64); 8] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("kB", 1_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
];

const UNIT_LIST: &str = "B, KiB, MiB, GiB (powers of 1024) or kB, KB, MB, GB (powers of 1000)";

/// Parses `1048576`, `256 MiB`, `512KiB`, `1.5 GiB`, `64 kB`. A fractional number must come to
/// a whole number of bytes. Units are case-sensitive (`mb` is refused, with a suggestion).
pub fn parse_size(text: &str) -> Result<u64, ParseError> {
    let s = text.trim();
    let num_len = s.len()
        - s.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .len();
    let (number, unit) = s.split_at(num_len);
    let unit = unit.trim_start();
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(ParseError::new(format!(
            "not a size: write bytes (`1048576`) or a number and a unit {UNIT_LIST}, e.g. `256 MiB`"
        )));
    }
    let multiplier = if unit.is_empty() {
        1
    } else if let Some(&(_, m)) = UNITS.iter().find(|(u, _)| *u == unit) {
        m
    } else {
        let hint = crate::suggest::closest(unit, UNITS.iter().map(|(u, _)| *u))
            .map(|u| format!("; did you mean `{u}`?"))
            .unwrap_or_default();
        return Err(ParseError::new(format!(
            "unknown size unit `{unit}`: use {UNIT_LIST}{hint}"
        )));
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.contains('.') {
        return Err(ParseError::new(
            "not a size: more than one `.` in the number",
        ));
    }
    let too_large = || ParseError::new("size too large");
    let int: u128 = int.parse().map_err(|_| too_large())?;
    let scale = 10u128
        .checked_pow(u32::try_from(frac.len()).map_err(|_| too_large())?)
        .ok_or_else(too_large)?;
    let frac_val: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| too_large())?
    };
    let numerator = int
        .checked_mul(scale)
        .and_then(|v| v.checked_add(frac_val))
        .and_then(|v| v.checked_mul(u128::from(multiplier)))
        .ok_or_else(too_large)?;
    if !numerator.is_multiple_of(scale) {
        return Err(ParseError::new("a size must be a whole number of bytes"));
    }
    u64::try_from(numerator / scale).map_err(|_| too_large())
}

/// Writes a size as `N GiB`, `N MiB` or `N KiB` when that is exact, else as plain bytes.
/// [`parse_size`] reads the result back.
pub fn format_size(bytes: u64) -> String {
    for (unit, per) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes != 0 && bytes.is_multiple_of(per) {
            return format!("{} {unit}", bytes / per);
        }
    }
    bytes.to_string()
}

/// A configuration size in bytes: deserializes from integers and `"256 MiB"`-style strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse_size(s).map(ByteSize)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as `256 MiB` or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse()
                    .map_err(|e: ParseError| E::custom(format_args!("`{v}`: {e}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format_args!("`{v}`: a size cannot be negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
                Err(E::custom(format_args!(
                    "`{v}`: a size must be a whole number of bytes"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_bytes_and_every_unit_parse() {
        assert_eq!(parse_size("1048576").unwrap(), 1_048_576);
        assert_eq!(parse_size("256 MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("10 B").unwrap(), 10);
        assert_eq!(parse_size("64 kB").unwrap(), 64_000);
        assert_eq!(parse_size("64KB").unwrap(), 64_000);
        assert_eq!(parse_size("3 MB").unwrap(), 3_000_000);
        assert_eq!(parse_size("2 GB").unwrap(), 2_000_000_000);
    }

    #[test]
    fn fractions_must_come_to_whole_bytes() {
        assert_eq!(parse_size("1.5 KiB").unwrap(), 1536);
        assert_eq!(parse_size("0.5 MB").unwrap(), 500_000);
        assert!(
            parse_size("1.5 B")
                .unwrap_err()
                .reason
                .contains("whole number")
        );
        assert!(parse_size("1.5").is_err());
    }

    #[test]
    fn wrong_case_units_are_refused_with_a_suggestion() {
        let e = parse_size("256 mib").unwrap_err();
        assert!(e.reason.contains("unknown size unit `mib`"), "{e}");
        assert!(e.reason.contains("did you mean `MiB`?"), "{e}");
        assert!(parse_size("1 TiB").is_err());
        assert!(parse_size("1 Kb").is_err());
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "", "MiB", "-1", "1..5 MiB", ".5 MiB", "5. MiB", "1 2 MiB", "1.2.3",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            parse_size("99999999999 GiB").unwrap_err().reason,
            "size too large"
        );
    }

    #[test]
    fn formatting_prefers_binary_units_when_exact() {
        assert_eq!(format_size(256 << 20), "256 MiB");
        assert_eq!(format_size(64 << 10), "64 KiB");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(0), "0");
    }

    #[test]
    fn deserializing_integers_and_strings() {
        let a: ByteSize = serde_yaml_ng::from_str("1048576").unwrap();
        let b: ByteSize = serde_yaml_ng::from_str("256 MiB").unwrap();
        assert_eq!((a.bytes(), b.bytes()), (1 << 20, 256 << 20));
        assert!(serde_yaml_ng::from_str::<ByteSize>("-1").is_err());
        assert!(serde_yaml_ng::from_str::<ByteSize>("1.5").is_err());
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(n in any::<u64>()) {
            prop_assert_eq!(parse_size(&format_size(n)).unwrap(), n);
        }

        #[test]
        fn every_unit_round_trips(n in 0u64..1_000_000, i in 0usize..UNITS.len(), space in any::<bool>()) {
            let (unit, per) = UNITS[i];
            let text = format!("{n}{}{unit}", if space { " " } else { "" });
            let bytes = parse_size(&text).unwrap();
            prop_assert_eq!(bytes, n * per);
            prop_assert_eq!(parse_size(&format_size(bytes)).unwrap(), bytes);
        }
    }
}
