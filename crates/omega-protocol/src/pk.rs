//! The primary-key hash and the telemetry row id (`protocol.md` §7).

use crate::ids::sha256_hex;
use crate::json::write_string;
use crate::limits::MAX_ROW_ID_BYTES;
use crate::message::Record;
use crate::value::write_value;

/// The canonical JSON (§5) of a `pk` object: columns sorted by name as UTF-8 bytes, values in
/// the encoding of §4.
pub fn canonical_pk(pk: &Record) -> String {
    let mut cols: Vec<&(String, crate::value::SqlValue)> = pk.iter().collect();
    cols.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = Vec::with_capacity(16 * cols.len() + 2);
    out.push(b'{');
    for (i, (name, value)) in cols.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(name, &mut out);
        out.push(b':');
        write_value(value, &mut out);
    }
    out.push(b'}');
    // Only valid UTF-8 was written (strings, ASCII punctuation, numbers, base64).
    String::from_utf8(out).unwrap_or_default()
}

/// `source_pk_hash` (§7.1): lowercase hex SHA-256 of [`canonical_pk`].
pub fn source_pk_hash(pk: &Record) -> String {
    sha256_hex(canonical_pk(pk).as_bytes())
}

/// A telemetry `row_id` (§7.3): the canonical pk, or `sha256:` + its `source_pk_hash` when the
/// canonical pk is longer than [`MAX_ROW_ID_BYTES`].
pub fn telemetry_row_id(pk: &Record) -> String {
    let canonical = canonical_pk(pk);
    if canonical.len() <= MAX_ROW_ID_BYTES {
        canonical
    } else {
        format!("sha256:{}", sha256_hex(canonical.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::SqlValue;

    fn rec(cols: &[(&str, SqlValue)]) -> Record {
        cols.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn the_four_vectors_of_section_7_2_hash_as_published() {
        let cases = [
            (
                rec(&[("id", SqlValue::Integer(1))]),
                r#"{"id":1}"#,
                "037c9214eef74cc3887f3a4f085b4e17d76280dafd273b0ee160c09c4ba1cfd4",
            ),
            (
                rec(&[
                    ("site", SqlValue::Text("a\"b".into())),
                    ("id", SqlValue::Integer(9_007_199_254_740_993)),
                ]),
                r#"{"id":9007199254740993,"site":"a\"b"}"#,
                "9e7a53af9df954ae8f669d44ee0bf5e4f5f7ba629be50c0a15214206620a94fc",
            ),
            (
                rec(&[("k", SqlValue::Blob(vec![0x00, 0xff]))]),
                r#"{"k":{"$blob":"AP8="}}"#,
                "e95c020464522c8b7f6111f4f767390f494d429cb925f329dc75b3d393059994",
            ),
            (
                rec(&[
                    ("név", SqlValue::Text("x".into())),
                    ("Zed", SqlValue::Integer(2)),
                ]),
                r#"{"Zed":2,"név":"x"}"#,
                "8fe4d29ed9ce0326c527b5ff1f4b3339c9bfb2d080e9bcfc783a428da36339b1",
            ),
        ];
        for (pk, canonical, hash) in cases {
            assert_eq!(canonical_pk(&pk), canonical);
            assert_eq!(source_pk_hash(&pk), hash);
            assert_eq!(telemetry_row_id(&pk), canonical);
        }
    }

    #[test]
    fn row_id_is_the_canonical_pk_up_to_1024_bytes_and_a_hash_beyond() {
        // {"k":"…"} is 8 bytes of framing.
        let at_limit = rec(&[("k", SqlValue::Text("x".repeat(MAX_ROW_ID_BYTES - 8)))]);
        assert_eq!(telemetry_row_id(&at_limit).len(), MAX_ROW_ID_BYTES);
        let over = rec(&[("k", SqlValue::Text("x".repeat(MAX_ROW_ID_BYTES - 7)))]);
        let id = telemetry_row_id(&over);
        assert_eq!(id, format!("sha256:{}", source_pk_hash(&over)));
        assert_eq!(id.len(), 71);
    }
}
