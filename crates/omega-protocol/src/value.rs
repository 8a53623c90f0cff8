//! SQLite values and their wire encoding (`protocol.md` §4).
//!
//! | Storage class | JSON |
//! |---|---|
//! | INTEGER | integer token, exact |
//! | REAL finite | number with `.` or exponent (§5.4) |
//! | REAL ±∞ | `{"$real":"inf"}` / `{"$real":"-inf"}` |
//! | TEXT | string |
//! | BLOB | `{"$blob":"<padded standard base64>"}` |
//! | NULL | `null` |

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::json::{Json, write_real, write_string};
use crate::message::Record;

/// One SQLite value, by storage class. This is what the agent reads from the source and what
/// the cloud writes into a mirror; [`SqlValue`] ⇄ JSON is lossless.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// NULL → `null`.
    Null,
    /// INTEGER → a JSON integer, exact over the whole i64 range.
    Integer(i64),
    /// REAL → a JSON number with `.` or exponent; ±∞ → `{"$real":"inf"|"-inf"}`. Never NaN.
    Real(f64),
    /// TEXT → a JSON string.
    Text(String),
    /// BLOB → `{"$blob":"<base64>"}`.
    Blob(Vec<u8>),
}

/// Tag of the ±∞ REAL form.
pub const REAL_TAG: &str = "$real";
/// Tag of the BLOB form.
pub const BLOB_TAG: &str = "$blob";

/// Why a JSON value is not a column value (§4.5, `invalid_value_encoding`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// An array or a boolean.
    #[error("{0} is not a column value")]
    Shape(&'static str),
    /// An object that is neither tagged form.
    #[error("object is neither {{\"$real\":…}} nor {{\"$blob\":…}}")]
    UntaggedObject,
    /// A tagged object with more than its one key.
    #[error("tagged object has extra keys")]
    ExtraKeys,
    /// `$real` with something other than `"inf"` or `"-inf"`.
    #[error("$real must be \"inf\" or \"-inf\"")]
    BadReal,
    /// `$blob` that is not a string of padded standard base64.
    #[error("$blob is not padded standard base64")]
    BadBlob,
}

impl SqlValue {
    /// The wire form (§4.1) as a JSON tree. NaN, which SQLite never stores, becomes `null`.
    pub fn to_json(&self) -> Json {
        match self {
            SqlValue::Null => Json::Null,
            SqlValue::Integer(i) => Json::Integer(*i),
            SqlValue::Real(r) if r.is_nan() => Json::Null,
            SqlValue::Real(r) if r.is_infinite() => {
                let tag = if *r > 0.0 { "inf" } else { "-inf" };
                Json::Object(vec![(REAL_TAG.to_owned(), Json::from(tag))])
            }
            SqlValue::Real(r) => Json::Real(*r),
            SqlValue::Text(s) => Json::String(s.clone()),
            SqlValue::Blob(b) => {
                Json::Object(vec![(BLOB_TAG.to_owned(), Json::String(BASE64.encode(b)))])
            }
        }
    }

    /// Reads a wire value (§4.1); any other shape is a [`ValueError`] (§4.5).
    pub fn from_json(json: &Json) -> Result<SqlValue, ValueError> {
        match json {
            Json::Null => Ok(SqlValue::Null),
            Json::Integer(i) => Ok(SqlValue::Integer(*i)),
            Json::Real(r) => Ok(SqlValue::Real(*r)),
            Json::String(s) => Ok(SqlValue::Text(s.clone())),
            Json::Bool(_) => Err(ValueError::Shape("a boolean")),
            Json::Array(_) => Err(ValueError::Shape("an array")),
            Json::Object(members) => {
                let [(tag, inner)] = members.as_slice() else {
                    return Err(
                        if members.iter().any(|(k, _)| k == REAL_TAG || k == BLOB_TAG) {
                            ValueError::ExtraKeys
                        } else {
                            ValueError::UntaggedObject
                        },
                    );
                };
                match tag.as_str() {
                    REAL_TAG => match inner.as_str() {
                        Some("inf") => Ok(SqlValue::Real(f64::INFINITY)),
                        Some("-inf") => Ok(SqlValue::Real(f64::NEG_INFINITY)),
                        _ => Err(ValueError::BadReal),
                    },
                    BLOB_TAG => {
                        let text = inner.as_str().ok_or(ValueError::BadBlob)?;
                        BASE64
                            .decode(text)
                            .map(SqlValue::Blob)
                            .map_err(|_| ValueError::BadBlob)
                    }
                    _ => Err(ValueError::UntaggedObject),
                }
            }
        }
    }

    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, SqlValue::Null)
    }
}

/// Writes the wire form of `value` straight into `out`, without building a tree. The bytes
/// equal the canonical (and compact) JSON of [`SqlValue::to_json`].
pub fn write_value(value: &SqlValue, out: &mut Vec<u8>) {
    match value {
        SqlValue::Null => out.extend_from_slice(b"null"),
        SqlValue::Integer(i) => crate::json::write_integer(*i, out),
        SqlValue::Real(r) if r.is_nan() => out.extend_from_slice(b"null"),
        SqlValue::Real(r) if r.is_infinite() => out.extend_from_slice(if *r > 0.0 {
            br#"{"$real":"inf"}"#
        } else {
            br#"{"$real":"-inf"}"#
        }),
        SqlValue::Real(r) => write_real(*r, out),
        SqlValue::Text(s) => write_string(s, out),
        SqlValue::Blob(b) => {
            out.extend_from_slice(br#"{"$blob":""#);
            let start = out.len();
            out.resize(start + base64::encoded_len(b.len(), true).unwrap_or(0), 0);
            let written = BASE64.encode_slice(b, &mut out[start..]).unwrap_or(0);
            out.truncate(start + written);
            out.extend_from_slice(b"\"}");
        }
    }
}

/// Writes a record as a JSON object, columns in the record's order (compact form).
pub fn write_record(record: &Record, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (name, value)) in record.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(name, out);
        out.push(b':');
        write_value(value, out);
    }
    out.push(b'}');
}

/// A record as a JSON object, columns in the record's order.
pub fn record_to_json(record: &Record) -> Json {
    Json::Object(
        record
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect(),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::json::{parse, to_canonical_vec};

    fn decode(text: &str) -> Result<SqlValue, ValueError> {
        SqlValue::from_json(&parse(text.as_bytes()).unwrap())
    }

    fn encode(v: &SqlValue) -> String {
        let mut out = Vec::new();
        write_value(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_storage_class_has_the_wire_form_of_section_4_1() {
        let cases = [
            (SqlValue::Integer(9_007_199_254_740_993), "9007199254740993"),
            (SqlValue::Real(21.0), "21.0"),
            (SqlValue::Real(0.1), "0.1"),
            (SqlValue::Real(1.5e-7), "1.5e-7"),
            (SqlValue::Real(f64::INFINITY), r#"{"$real":"inf"}"#),
            (SqlValue::Real(f64::NEG_INFINITY), r#"{"$real":"-inf"}"#),
            (SqlValue::Text("naïve \"x\"".into()), r#""naïve \"x\"""#),
            (SqlValue::Blob(vec![0, 255]), r#"{"$blob":"AP8="}"#),
            (SqlValue::Blob(vec![]), r#"{"$blob":""}"#),
            (SqlValue::Null, "null"),
        ];
        for (value, wire) in cases {
            assert_eq!(encode(&value), wire);
            assert_eq!(to_canonical_vec(&value.to_json()), wire.as_bytes());
            assert_eq!(decode(wire).unwrap(), value);
        }
    }

    #[test]
    fn nan_is_written_as_null_because_sqlite_stores_it_as_null() {
        assert_eq!(encode(&SqlValue::Real(f64::NAN)), "null");
        assert_eq!(SqlValue::Real(f64::NAN).to_json(), Json::Null);
    }

    #[test]
    fn a_whole_real_token_stays_a_real_and_an_integer_token_an_integer() {
        assert_eq!(decode("3.0").unwrap(), SqlValue::Real(3.0));
        assert_eq!(decode("3").unwrap(), SqlValue::Integer(3));
    }

    #[test]
    fn other_shapes_are_invalid_value_encodings() {
        let cases = [
            ("[1]", ValueError::Shape("an array")),
            ("true", ValueError::Shape("a boolean")),
            ("{}", ValueError::UntaggedObject),
            (r#"{"x":1}"#, ValueError::UntaggedObject),
            (r#"{"$real":"inf","x":1}"#, ValueError::ExtraKeys),
            (r#"{"$blob":"","$real":"inf"}"#, ValueError::ExtraKeys),
            (r#"{"$real":"Infinity"}"#, ValueError::BadReal),
            (r#"{"$real":"nan"}"#, ValueError::BadReal),
            (r#"{"$real":1.0}"#, ValueError::BadReal),
            (r#"{"$blob":"AP8"}"#, ValueError::BadBlob),
            (r#"{"$blob":"AP9="}"#, ValueError::BadBlob),
            (r#"{"$blob":"AP-_"}"#, ValueError::BadBlob),
            (r#"{"$blob":"AP8=\n"}"#, ValueError::BadBlob),
            (r#"{"$blob":null}"#, ValueError::BadBlob),
        ];
        for (wire, err) in cases {
            assert_eq!(decode(wire), Err(err), "{wire}");
        }
    }

    #[test]
    fn records_are_written_in_column_order() {
        let r: Record = vec![
            ("b".into(), SqlValue::Integer(1)),
            ("a".into(), SqlValue::Blob(vec![1])),
        ];
        let mut out = Vec::new();
        write_record(&r, &mut out);
        assert_eq!(out, br#"{"b":1,"a":{"$blob":"AQ=="}}"#);
        assert_eq!(crate::json::to_compact_vec(&record_to_json(&r)), out);
    }

    pub(crate) fn arb_sql_value() -> impl Strategy<Value = SqlValue> {
        prop_oneof![
            Just(SqlValue::Null),
            any::<i64>().prop_map(SqlValue::Integer),
            prop_oneof![Just(i64::MIN), Just(i64::MAX)].prop_map(SqlValue::Integer),
            any::<f64>()
                .prop_filter("not NaN", |r| !r.is_nan())
                .prop_map(SqlValue::Real),
            prop_oneof![
                Just(-0.0),
                Just(5e-324),
                Just(f64::MIN_POSITIVE / 3.0),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
            ]
            .prop_map(SqlValue::Real),
            any::<String>().prop_map(SqlValue::Text),
            "[\\x00-\\x1f\"\\\\]{0,8}".prop_map(SqlValue::Text),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(SqlValue::Blob),
        ]
    }

    fn same(a: &SqlValue, b: &SqlValue) -> bool {
        match (a, b) {
            (SqlValue::Real(x), SqlValue::Real(y)) => x.to_bits() == y.to_bits(),
            _ => a == b,
        }
    }

    proptest! {
        #[test]
        fn any_value_survives_the_wire_bit_for_bit(v in arb_sql_value()) {
            let bytes = encode(&v);
            let canonical = to_canonical_vec(&v.to_json());
            prop_assert_eq!(bytes.as_bytes(), canonical.as_slice());
            let back = SqlValue::from_json(&parse(bytes.as_bytes()).unwrap()).unwrap();
            prop_assert!(same(&v, &back), "{:?} -> {} -> {:?}", v, bytes, back);
        }
    }
}
