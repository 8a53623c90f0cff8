//! Wire encoding of what the cloud stores as JSON text (staged rows, quarantined row changes)
//! and the `source_pk_hash` (`protocol.md` §4, §5, §7): thin adapters over `omega-protocol`,
//! so the stored bytes are exactly the wire bytes.

use omega_protocol::json::{self, Json};
use omega_protocol::message::{Op, Record, RowChange, encode_row_change};
use omega_protocol::value::{self, SqlValue};

/// Canonical JSON (§5) of one value, appended to `out`.
pub fn write_value(out: &mut String, v: &SqlValue) {
    let mut bytes = Vec::new();
    value::write_value(v, &mut bytes);
    out.push_str(&String::from_utf8_lossy(&bytes));
}

/// Canonical JSON of a record (`pk`, `row`): members sorted by key bytes (§5.2).
pub fn record_json(rec: &Record) -> String {
    omega_protocol::pk::canonical_pk(rec)
}

/// `source_pk_hash` (§7.1): lowercase hex SHA-256 of the canonical JSON of `pk`.
pub fn source_pk_hash(pk: &Record) -> String {
    omega_protocol::pk::source_pk_hash(pk)
}

/// The wire JSON of one row change (§8.3).
pub fn change_json(commit_seq: i64, op: Op, pk: &Record, row: Option<&Record>) -> String {
    let change = RowChange {
        commit_seq,
        op,
        pk: pk.clone(),
        row: row.cloned(),
    };
    let mut out = Vec::new();
    encode_row_change(&change, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Why stored JSON could not be read back as a record.
#[derive(Debug, thiserror::Error)]
#[error("stored record JSON is invalid: {0}")]
pub struct RecordDecodeError(String);

/// Reads back what [`record_json`] wrote, with the protocol's strict parser (exact integers,
/// tagged reals and BLOBs).
pub fn parse_record(text: &str) -> Result<Record, RecordDecodeError> {
    let parsed = json::parse(text.as_bytes()).map_err(|e| RecordDecodeError(e.to_string()))?;
    let Json::Object(members) = parsed else {
        return Err(RecordDecodeError("not an object".into()));
    };
    members
        .into_iter()
        .map(|(k, v)| {
            let v = SqlValue::from_json(&v).map_err(|e| RecordDecodeError(format!("{k}: {e}")))?;
            Ok((k, v))
        })
        .collect()
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
        ];
        for (pk, want) in cases {
            assert_eq!(source_pk_hash(&pk), want);
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

    #[test]
    fn a_row_change_is_its_wire_form() {
        let pk = rec(&[("id", SqlValue::Integer(7))]);
        assert_eq!(
            change_json(103, Op::Delete, &pk, None),
            r#"{"commit_seq":103,"op":"delete","pk":{"id":7},"row":null}"#
        );
    }
}
