//! Encoding row batches (§8).

use super::write::ObjectWriter;
use super::{RowBatch, RowChange, SnapshotMarker};
use crate::FORMAT_VERSION;
use crate::json::write_compact;
use crate::schema::SchemaColumns;
use crate::value::write_record;

/// `capture_strategy` of a row batch.
pub const ROW_BATCH_CAPTURE_STRATEGY: &str = "sqlite_row_batch_v1";

/// Appends the wire form of one row change to `out`:
/// `{"commit_seq":…,"op":"…","pk":{…},"row":{…}|null}`. A batch builder calls this to measure
/// each row; see [`row_batch_overhead_bound`].
pub fn encode_row_change(change: &RowChange, out: &mut Vec<u8>) {
    let mut w = ObjectWriter::new(out);
    w.int("commit_seq", change.commit_seq);
    w.str("op", change.op.as_str());
    write_record(&change.pk, w.key("pk"));
    match &change.row {
        Some(row) => write_record(row, w.key("row")),
        None => w.key("row").extend_from_slice(b"null"),
    }
    w.finish();
}

impl RowBatch {
    /// The compact JSON payload. Envelope fields come first and `rows` last; absent options
    /// are left out.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.rows.len() * 96);
        self.write_json(&mut out);
        out
    }

    /// Appends the compact JSON payload to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json_rows(out, self.rows.len(), |i, rows| {
            encode_row_change(&self.rows[i], rows)
        });
    }

    /// The payload of this batch with its rows already encoded by [`encode_row_change`], so
    /// that a builder that measured each row does not encode it twice: `encoded` are the
    /// rows, in order, and `self.rows` is not read (a builder leaves it empty rather than
    /// hold every row twice). With `encoded[i]` the encoding of `self.rows[i]` the result
    /// equals [`Self::to_json_bytes`].
    pub fn to_json_bytes_with_encoded_rows(&self, encoded: &[&[u8]]) -> Vec<u8> {
        let len: usize = encoded.iter().map(|r| r.len() + 1).sum();
        let mut out = Vec::with_capacity(512 + len);
        self.write_json_rows(&mut out, encoded.len(), |i, rows| {
            rows.extend_from_slice(encoded[i])
        });
        out
    }

    fn write_json_rows(
        &self,
        out: &mut Vec<u8>,
        n: usize,
        mut write_row: impl FnMut(usize, &mut Vec<u8>),
    ) {
        let mut w = ObjectWriter::new(out);
        w.int("format_version", FORMAT_VERSION);
        w.str("capture_strategy", ROW_BATCH_CAPTURE_STRATEGY);
        w.str("batch_id", &self.batch_id);
        w.str("journal_epoch", &self.journal_epoch);
        w.str("source_table", &self.source_table);
        w.str("schema_hash", &self.schema_hash);
        if let Some(cols) = &self.schema_columns {
            write_compact(&cols.to_json(), w.key("schema_columns"));
        }
        w.int("first_commit_seq", self.first_commit_seq);
        w.int("last_commit_seq", self.last_commit_seq);
        w.opt_int("prev_commit_seq", self.prev_commit_seq);
        if let Some(s) = &self.snapshot {
            write_snapshot(s, w.key("snapshot"));
        }
        let rows = w.key("rows");
        rows.push(b'[');
        for i in 0..n {
            if i > 0 {
                rows.push(b',');
            }
            write_row(i, rows);
        }
        rows.push(b']');
        w.finish();
    }
}

fn write_snapshot(s: &SnapshotMarker, out: &mut Vec<u8>) {
    let mut w = ObjectWriter::new(out);
    w.str("id", &s.id);
    w.int("part", i64::from(s.part));
    w.bool("last", s.last);
    w.finish();
}

/// An upper bound on the bytes of a row batch's payload other than its rows, for a batch
/// builder that keeps under [`MAX_PAYLOAD_BYTES`](crate::limits::MAX_PAYLOAD_BYTES):
///
/// `to_json_bytes().len() ≤ row_batch_overhead_bound(t, c) + Σ (encode_row_change(rᵢ).len() + 1)`
///
/// for any batch of table `t` with `schema_columns` `c`, whatever its ids, sequence numbers,
/// `prev_commit_seq` and snapshot marker (each counted at its widest).
pub fn row_batch_overhead_bound(
    source_table: &str,
    schema_columns: Option<&SchemaColumns>,
) -> usize {
    let widest = RowBatch {
        batch_id: "0".repeat(36),
        journal_epoch: "0".repeat(36),
        source_table: source_table.to_owned(),
        schema_hash: "0".repeat(64),
        schema_columns: schema_columns.cloned(),
        first_commit_seq: i64::MIN,
        last_commit_seq: i64::MIN,
        prev_commit_seq: Some(i64::MIN),
        rows: Vec::new(),
        snapshot: Some(SnapshotMarker {
            id: "0".repeat(36),
            part: u32::MAX,
            last: false,
        }),
    };
    widest.to_json_bytes().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Op;
    use crate::schema::{Affinity, ColumnInfo};
    use crate::value::SqlValue;

    fn sample() -> RowBatch {
        RowBatch {
            batch_id: "019dd351-1a68-7a21-b3c4-5d6e7f809a1b".into(),
            journal_epoch: "019dd31a-2800-7000-8000-000000000001".into(),
            source_table: "device_state".into(),
            schema_hash: "4d8f17a536ca112722082d44a2dfa63422465223a25d61f95c89302e858ad5e0".into(),
            schema_columns: Some(SchemaColumns {
                table_name: "device_state".into(),
                columns: vec![
                    ColumnInfo {
                        name: "id".into(),
                        decl_type_affinity: Affinity::Integer,
                        pk_ordinal: 1,
                        not_null: true,
                    },
                    ColumnInfo {
                        name: "mode".into(),
                        decl_type_affinity: Affinity::Text,
                        pk_ordinal: 0,
                        not_null: false,
                    },
                ],
            }),
            first_commit_seq: 101,
            last_commit_seq: 103,
            prev_commit_seq: None,
            rows: vec![
                RowChange {
                    commit_seq: 101,
                    op: Op::Update,
                    pk: vec![("id".into(), SqlValue::Integer(1))],
                    row: Some(vec![
                        ("id".into(), SqlValue::Integer(1)),
                        ("mode".into(), SqlValue::Text("cooling".into())),
                    ]),
                },
                RowChange {
                    commit_seq: 103,
                    op: Op::Delete,
                    pk: vec![("id".into(), SqlValue::Integer(7))],
                    row: None,
                },
            ],
            snapshot: None,
        }
    }

    #[test]
    fn pre_encoded_rows_give_the_same_payload() {
        let b = sample();
        let encoded: Vec<Vec<u8>> = b
            .rows
            .iter()
            .map(|r| {
                let mut v = Vec::new();
                encode_row_change(r, &mut v);
                v
            })
            .collect();
        let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        assert_eq!(b.to_json_bytes_with_encoded_rows(&refs), b.to_json_bytes());
        // The envelope alone (rows left empty, as the agent's builders keep it) gives the
        // same bytes: only `encoded` is read for the rows.
        let envelope = RowBatch {
            rows: Vec::new(),
            ..b.clone()
        };
        assert!(!b.rows.is_empty());
        assert_eq!(
            envelope.to_json_bytes_with_encoded_rows(&refs),
            b.to_json_bytes()
        );
    }

    #[test]
    fn the_example_of_section_8_1_encodes_compactly_with_row_null_for_delete() {
        let text = String::from_utf8(sample().to_json_bytes()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"format_version":1,"capture_strategy":"sqlite_row_batch_v1","#,
                r#""batch_id":"019dd351-1a68-7a21-b3c4-5d6e7f809a1b","#,
                r#""journal_epoch":"019dd31a-2800-7000-8000-000000000001","#,
                r#""source_table":"device_state","#,
                r#""schema_hash":"4d8f17a536ca112722082d44a2dfa63422465223a25d61f95c89302e858ad5e0","#,
                r#""schema_columns":{"table_name":"device_state","columns":["#,
                r#"{"name":"id","decl_type_affinity":"INTEGER","pk_ordinal":1,"not_null":true},"#,
                r#"{"name":"mode","decl_type_affinity":"TEXT","pk_ordinal":0,"not_null":false}]},"#,
                r#""first_commit_seq":101,"last_commit_seq":103,"rows":["#,
                r#"{"commit_seq":101,"op":"update","pk":{"id":1},"row":{"id":1,"mode":"cooling"}},"#,
                r#"{"commit_seq":103,"op":"delete","pk":{"id":7},"row":null}]}"#
            )
        );
    }

    #[test]
    fn snapshot_marker_and_prev_commit_seq_are_written_when_present() {
        let mut b = sample();
        b.prev_commit_seq = Some(0);
        b.snapshot = Some(SnapshotMarker {
            id: b.batch_id.clone(),
            part: 2,
            last: true,
        });
        let text = String::from_utf8(b.to_json_bytes()).unwrap();
        assert!(text.contains(r#""prev_commit_seq":0,"snapshot":{"id":"019dd351-1a68-7a21-b3c4-5d6e7f809a1b","part":2,"last":true},"rows":["#));
    }

    #[test]
    fn overhead_bound_plus_row_sizes_covers_the_encoded_batch() {
        for rows in [0, 1, 2] {
            let mut b = sample();
            b.rows.truncate(rows);
            b.prev_commit_seq = Some(100);
            let bound = row_batch_overhead_bound(&b.source_table, b.schema_columns.as_ref());
            let rows_len: usize = b
                .rows
                .iter()
                .map(|r| {
                    let mut v = Vec::new();
                    encode_row_change(r, &mut v);
                    v.len() + 1
                })
                .sum();
            let actual = b.to_json_bytes().len();
            assert!(
                actual <= bound + rows_len,
                "{actual} > {bound} + {rows_len}"
            );
            assert!(bound + rows_len - actual < 200);
        }
    }
}
