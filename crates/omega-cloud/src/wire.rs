//! Wire encoding of values for what the cloud stores as JSON text (staged rows, quarantined row
//! changes) and the `source_pk_hash` (`protocol.md` §4, §5, §7).
//!
//! TODO(protocol): swap for `omega_protocol::json` (canonical writer, strict parser) and
//! `omega_protocol::pk::source_pk_hash` once they land; the forms below follow the same
//! sections so the stored bytes do not change.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use omega_protocol::message::Record;
use omega_protocol::value::SqlValue;
use sha2::{Digest, Sha256};

/// Canonical JSON (§5) of one value.
pub fn write_value(out: &mut String, v: &SqlValue) {
    match v {
        SqlValue::Null => out.push_str("null"),
        SqlValue::Integer(i) => out.push_str(&i.to_string()),
        SqlValue::Real(r) if r.is_infinite() => out.push_str(if *r > 0.0 {
            r#"{"$real":"inf"}"#
        } else {
            r#"{"$real":"-inf"}"#
        }),
        SqlValue::Real(r) => write_real(out, *r),
        SqlValue::Text(s) => write_string(out, s),
        SqlValue::Blob(b) => {
            out.push_str(r#"{"$blob":""#);
            out.push_str(&B64.encode(b));
            out.push_str("\"}");
        }
    }
}

/// §5.4: shortest round-trip digits; plain decimal for 1e-5 ≤ |v| < 1e16 (or 0), else
/// exponent form. Always carries a `.` or an exponent. NaN (impossible on the wire) is `null`.
fn write_real(out: &mut String, r: f64) {
    if r.is_nan() {
        out.push_str("null");
        return;
    }
    let a = r.abs();
    if a == 0.0 || (1e-5..1e16).contains(&a) {
        let s = format!("{r}");
        out.push_str(&s);
        if !s.contains('.') {
            out.push_str(".0");
        }
    } else {
        let s = format!("{r:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => {
                out.push_str(m);
                out.push_str("e+");
                out.push_str(e);
            }
            _ => out.push_str(&s),
        }
    }
}

/// §5.3 string escaping.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Canonical JSON of a record (`pk`, `row`): members sorted by key bytes.
pub fn record_json(rec: &Record) -> String {
    let mut sorted: Vec<&(String, SqlValue)> = rec.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::from("{");
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, k);
        out.push(':');
        write_value(&mut out, v);
    }
    out.push('}');
    out
}

/// `source_pk_hash` (§7.1): lowercase hex SHA-256 of the canonical JSON of `pk`.
pub fn source_pk_hash(pk: &Record) -> String {
    hex::encode(Sha256::digest(record_json(pk).as_bytes()))
}

/// Why stored JSON could not be read back as a record.
#[derive(Debug, thiserror::Error)]
#[error("stored record JSON is invalid: {0}")]
pub struct RecordDecodeError(String);

/// Reads back what [`record_json`] wrote.
pub fn parse_record(text: &str) -> Result<Record, RecordDecodeError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| RecordDecodeError(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| RecordDecodeError("not an object".into()))?;
    obj.iter()
        .map(|(k, v)| Ok((k.clone(), parse_value(v)?)))
        .collect()
}

fn parse_value(v: &serde_json::Value) -> Result<SqlValue, RecordDecodeError> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => SqlValue::Null,
        J::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(
                n.as_f64()
                    .ok_or_else(|| RecordDecodeError(format!("number {n}")))?,
            ),
        },
        J::String(s) => SqlValue::Text(s.clone()),
        J::Object(m) if m.len() == 1 => match (m.get("$real"), m.get("$blob")) {
            (Some(J::String(s)), _) if s == "inf" => SqlValue::Real(f64::INFINITY),
            (Some(J::String(s)), _) if s == "-inf" => SqlValue::Real(f64::NEG_INFINITY),
            (_, Some(J::String(b))) => SqlValue::Blob(
                B64.decode(b)
                    .map_err(|e| RecordDecodeError(e.to_string()))?,
            ),
            _ => return Err(RecordDecodeError(format!("tagged value {v}"))),
        },
        other => return Err(RecordDecodeError(format!("value {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(items: &[(&str, SqlValue)]) -> Record {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn pk_hash_matches_the_protocol_test_vectors() {
        let cases = [
            (
                rec(&[("id", SqlValue::Integer(1))]),
                "037c9214eef74cc3887f3a4f085b4e17d76280dafd273b0ee160c09c4ba1cfd4",
            ),
            (
                rec(&[
                    ("site", SqlValue::Text("a\"b".into())),
                    ("id", SqlValue::Integer(9007199254740993)),
                ]),
                "9e7a53af9df954ae8f669d44ee0bf5e4f5f7ba629be50c0a15214206620a94fc",
            ),
            (
                rec(&[("k", SqlValue::Blob(vec![0, 255]))]),
                "e95c020464522c8b7f6111f4f767390f494d429cb925f329dc75b3d393059994",
            ),
            (
                rec(&[
                    ("név", SqlValue::Text("x".into())),
                    ("Zed", SqlValue::Integer(2)),
                ]),
                "8fe4d29ed9ce0326c527b5ff1f4b3339c9bfb2d080e9bcfc783a428da36339b1",
            ),
        ];
        for (pk, want) in cases {
            assert_eq!(source_pk_hash(&pk), want);
        }
    }

    #[test]
    fn reals_always_carry_a_point_or_exponent() {
        let cases = [
            (21.0, "21.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e-7, "1.5e-7"),
        ];
        for (v, want) in cases {
            let mut s = String::new();
            write_real(&mut s, v);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn records_round_trip_exactly() {
        let r = rec(&[
            ("a", SqlValue::Integer(i64::MIN)),
            ("b", SqlValue::Integer(i64::MAX)),
            ("c", SqlValue::Real(f64::INFINITY)),
            ("d", SqlValue::Real(f64::NEG_INFINITY)),
            ("e", SqlValue::Real(21.0)),
            ("f", SqlValue::Text("naïve \"x\"\n\u{1}".into())),
            ("g", SqlValue::Blob(vec![])),
            ("h", SqlValue::Null),
            ("i", SqlValue::Real(1e300)),
        ]);
        assert_eq!(parse_record(&record_json(&r)).unwrap(), r);
    }
}
