//! Journal entries + current row images → row batches (`protocol.md` §8, §13;
//! `spec/agent.md` §8.3–§8.4, §8.6).

use std::collections::HashMap;

use omega_protocol::limits::{MAX_PAYLOAD_BYTES, MAX_ROWS_PER_BATCH};
use omega_protocol::message::{
    Op, Record, RowBatch, RowChange, encode_row_change, row_batch_overhead_bound,
};

use crate::capture::TableSpec;
use crate::source::cell::Cell;
use crate::source::journal::OP_DELETE;

/// One journal entry with the image read for its key in the same read transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `commit_seq`.
    pub seq: i64,
    /// Journal op (1 insert, 2 update, 3 delete).
    pub op: i64,
    /// Key values, in key order.
    pub key: Vec<Cell>,
    /// The row now, every column in declaration order; `None` if it no longer exists.
    pub image: Option<Vec<Cell>>,
}

/// Counters the builder produces for `status`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BuildStats {
    /// Changes whose key held NULL (not published).
    pub null_key_rows: u64,
    /// TEXT values with invalid UTF-8 replaced by U+FFFD.
    pub invalid_utf8_values: u64,
    /// Single rows over the payload limit, sent alone.
    pub oversized_rows: u64,
}

impl BuildStats {
    /// The counters by their `status` names.
    pub fn counters(&self) -> [(&'static str, u64); 3] {
        [
            ("null_key_rows", self.null_key_rows),
            ("invalid_utf8_values", self.invalid_utf8_values),
            ("oversized_rows", self.oversized_rows),
        ]
    }
}

/// A built batch and its encoded bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// The batch's envelope: every field but `rows`, which is left empty (the rows are in
    /// `payload` only, so a flush does not hold each row twice).
    pub batch: RowBatch,
    /// Rows in the batch.
    pub rows: usize,
    /// Its JSON payload.
    pub payload: Vec<u8>,
}

/// Fixed facts every batch of one build shares.
#[derive(Debug, Clone)]
pub struct BatchContext<'a> {
    /// The table.
    pub spec: &'a TableSpec,
    /// Current epoch.
    pub journal_epoch: &'a str,
    /// Attach `schema_columns` to the first batch built.
    pub send_schema_columns: bool,
    /// `prev_commit_seq` of the first batch (`receipts.md` §2); `None` to leave it out.
    pub prev_commit_seq: Option<i64>,
}

/// Whether a row of `add` bytes (its encoding and the separating comma) still fits a batch
/// that already holds `rows` rows in `size` bytes (envelope bound included): at most 4,096
/// rows and 512 KiB — except that an empty batch takes any row, so one too big on its own goes
/// alone (`spec/agent.md` §8.6). The rule of row batches, snapshot parts and telemetry batches.
pub fn fits(rows: usize, size: usize, add: usize) -> bool {
    rows == 0 || (rows < MAX_ROWS_PER_BATCH && size + add <= MAX_PAYLOAD_BYTES)
}

/// Builds batches from `changes` (ascending `seq`): several changes of one key are merged
/// into the last (`protocol.md` §8.4.2); a change whose row is gone, or whose last op is a
/// delete, travels as `delete`; each batch is filled until the next row would pass 4,096
/// rows or 512 KiB; a row too big on its own goes alone. `new_id` gives each batch its id.
pub fn build(
    ctx: &BatchContext<'_>,
    changes: &[Change],
    new_id: impl FnMut() -> String,
    stats: &mut BuildStats,
) -> Vec<Built> {
    build_at_most(ctx, changes, usize::MAX, new_id, stats).0
}

/// [`build`], stopping after `max` batches: rows past the last of them are neither converted
/// nor encoded (the engine builds only what the in-flight window can take now). The flag says
/// whether rows were left; the batches are those [`build`] would give first.
pub fn build_at_most(
    ctx: &BatchContext<'_>,
    changes: &[Change],
    max: usize,
    mut new_id: impl FnMut() -> String,
    stats: &mut BuildStats,
) -> (Vec<Built>, bool) {
    // Keep only the last change of each key.
    let mut last_of: HashMap<&[Cell], usize> = HashMap::with_capacity(changes.len());
    for (i, c) in changes.iter().enumerate() {
        last_of.insert(c.key.as_slice(), i);
    }
    let mut kept = changes
        .iter()
        .enumerate()
        .filter(|(i, c)| last_of.get(c.key.as_slice()) == Some(i))
        .map(|(_, c)| c);

    // The next row to place, with its `commit_seq`, encoded once; its `RowChange` is dropped at
    // once, so a build holds one batch's encoded rows and the payloads, not a decoded copy of
    // every row as well.
    let mut next_row = |stats: &mut BuildStats| -> Option<(i64, Vec<u8>)> {
        for c in kept.by_ref() {
            if c.key.iter().any(|k| matches!(k, Cell::Null)) {
                stats.null_key_rows += 1;
                tracing::error!(table = %ctx.spec.name, commit_seq = c.seq, "change with a NULL key value is not published");
                continue;
            }
            let change = to_row_change(ctx.spec, c, stats);
            let mut bytes = Vec::with_capacity(64);
            encode_row_change(&change, &mut bytes);
            return Some((change.commit_seq, bytes));
        }
        None
    };

    let mut out = Vec::new();
    let mut prev = ctx.prev_commit_seq;
    let mut schema_due = ctx.send_schema_columns;
    let mut pending = next_row(stats);
    while pending.is_some() && out.len() < max {
        let schema = schema_due.then(|| ctx.spec.schema.clone());
        let overhead = row_batch_overhead_bound(&ctx.spec.name, schema.as_ref());
        let mut seqs: Vec<i64> = Vec::new();
        let mut rows: Vec<Vec<u8>> = Vec::new();
        let mut size = overhead;
        while let Some((_, bytes)) = &pending {
            let add = bytes.len() + 1;
            if !fits(rows.len(), size, add) {
                break;
            }
            size += add;
            let (seq, bytes) = pending.take().expect("just matched");
            seqs.push(seq);
            rows.push(bytes);
            pending = next_row(stats);
        }
        let (first, last) = (seqs[0], seqs[seqs.len() - 1]);
        if rows.len() == 1 && size > MAX_PAYLOAD_BYTES {
            stats.oversized_rows += 1;
            tracing::error!(table = %ctx.spec.name, commit_seq = first, bytes = size,
                "row over 512 KiB on its own: sent alone");
        }
        let batch = RowBatch {
            batch_id: new_id(),
            journal_epoch: ctx.journal_epoch.to_string(),
            source_table: ctx.spec.name.clone(),
            schema_hash: ctx.spec.schema_hash.clone(),
            schema_columns: schema,
            first_commit_seq: first,
            last_commit_seq: last,
            prev_commit_seq: prev,
            rows: Vec::new(),
            snapshot: None,
        };
        let encoded: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
        let payload = batch.to_json_bytes_with_encoded_rows(&encoded);
        prev = prev.map(|_| last);
        schema_due = false;
        out.push(Built {
            batch,
            rows: rows.len(),
            payload,
        });
    }
    (out, pending.is_some())
}

fn to_row_change(spec: &TableSpec, c: &Change, stats: &mut BuildStats) -> RowChange {
    let mut wire = |cell: &Cell| {
        let (v, replaced) = cell.to_wire();
        if replaced {
            stats.invalid_utf8_values += 1;
        }
        v
    };
    let pk: Record = spec
        .key_columns
        .iter()
        .cloned()
        .zip(c.key.iter().map(&mut wire))
        .collect();
    match (&c.image, c.op) {
        (Some(image), op) if op != OP_DELETE => {
            let row: Record = spec
                .columns
                .iter()
                .cloned()
                .zip(image.iter().map(&mut wire))
                .collect();
            // The key as the row holds it now (equal to the journaled key by construction).
            let pk = spec
                .key_columns
                .iter()
                .map(|k| {
                    let i = spec.columns.iter().position(|c| c == k).unwrap_or(0);
                    (k.clone(), row[i].1.clone())
                })
                .collect();
            let op = if op == crate::source::journal::OP_INSERT {
                Op::Insert
            } else {
                Op::Update
            };
            RowChange {
                commit_seq: c.seq,
                op,
                pk,
                row: Some(row),
            }
        }
        _ => RowChange {
            commit_seq: c.seq,
            op: Op::Delete,
            pk,
            row: None,
        },
    }
}

// `Cell` holds f64, so `Hash`/`Eq` are written by hand: keys compare by storage class and
// value (SQLite never stores NaN; 0.0 and -0.0 hash alike because they compare equal).
impl std::hash::Hash for Cell {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Cell::Null => 0u8.hash(state),
            Cell::Integer(i) => (1u8, i).hash(state),
            Cell::Real(f) => (2u8, if *f == 0.0 { 0 } else { f.to_bits() }).hash(state),
            Cell::Text(t) => (3u8, t).hash(state),
            Cell::Blob(b) => (4u8, b).hash(state),
        }
    }
}

impl Eq for Cell {}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_protocol::value::SqlValue;

    fn spec() -> TableSpec {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v BLOB)")
            .unwrap();
        TableSpec::read(&conn, "t").unwrap()
    }

    fn change(seq: i64, op: i64, id: i64, v: Option<Vec<u8>>) -> Change {
        Change {
            seq,
            op,
            key: vec![Cell::Integer(id)],
            image: v.map(|b| vec![Cell::Integer(id), Cell::Blob(b)]),
        }
    }

    /// The batch as the cloud reads it from the payload.
    fn decode(b: &Built) -> RowBatch {
        use omega_protocol::topic::Suffix;
        use omega_protocol::validate::{DeviceMessage, decode_device_message};
        match decode_device_message(Suffix::RowsBatch, &b.payload).expect("a valid batch") {
            DeviceMessage::RowBatch(batch) => batch,
            other => panic!("{other:?}"),
        }
    }

    fn ids() -> impl FnMut() -> String {
        omega_protocol::ids::new_v7
    }

    /// A journal epoch as the engine makes them (a UUIDv7).
    const EPOCH: &str = "0196b4d0-0000-7000-8000-000000000000";

    #[test]
    fn repeated_keys_merge_into_the_last_change() {
        let spec = spec();
        let ctx = BatchContext {
            spec: &spec,
            journal_epoch: EPOCH,
            send_schema_columns: true,
            prev_commit_seq: Some(0),
        };
        let mut stats = BuildStats::default();
        let out = build(
            &ctx,
            &[
                change(1, 1, 7, Some(vec![1])),
                change(2, 2, 7, Some(vec![2])),
                change(3, 1, 8, None),
            ],
            ids(),
            &mut stats,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rows, 2);
        let b = &decode(&out[0]);
        assert_eq!(b.rows.len(), 2);
        assert_eq!(
            RowBatch {
                rows: Vec::new(),
                ..b.clone()
            },
            out[0].batch,
            "the envelope is the batch without its rows"
        );
        assert_eq!((b.rows[0].commit_seq, b.rows[0].op), (2, Op::Update));
        assert_eq!(
            (b.rows[1].commit_seq, b.rows[1].op),
            (3, Op::Delete),
            "row gone → delete"
        );
        assert_eq!(
            (b.first_commit_seq, b.last_commit_seq, b.prev_commit_seq),
            (2, 3, Some(0))
        );
        assert!(b.schema_columns.is_some());
    }

    #[test]
    fn batches_split_at_the_byte_limit_and_chain() {
        let spec = spec();
        let ctx = BatchContext {
            spec: &spec,
            journal_epoch: EPOCH,
            send_schema_columns: true,
            prev_commit_seq: Some(5),
        };
        let mut stats = BuildStats::default();
        let changes: Vec<Change> = (0..40)
            .map(|i| change(10 + i, 1, i, Some(vec![7u8; 40_000])))
            .collect();
        let out = build(&ctx, &changes, ids(), &mut stats);
        assert!(out.len() >= 4, "{}", out.len());
        for b in &out {
            assert!(b.payload.len() <= MAX_PAYLOAD_BYTES, "{}", b.payload.len());
        }
        assert_eq!(out[0].batch.prev_commit_seq, Some(5));
        for w in out.windows(2) {
            assert_eq!(w[1].batch.prev_commit_seq, Some(w[0].batch.last_commit_seq));
            assert!(w[1].batch.schema_columns.is_none());
        }
        assert_eq!(out.iter().map(|b| b.rows).sum::<usize>(), 40);
        for b in &out {
            assert_eq!(decode(b).rows.len(), b.rows);
        }
    }

    #[test]
    fn building_at_most_n_gives_the_first_n_batches_and_says_rows_were_left() {
        let spec = spec();
        let ctx = BatchContext {
            spec: &spec,
            journal_epoch: "e",
            send_schema_columns: true,
            prev_commit_seq: Some(5),
        };
        let changes: Vec<Change> = (0..40)
            .map(|i| change(10 + i, 1, i, Some(vec![7u8; 40_000])))
            .collect();
        let n = |i: usize| {
            let mut k = 0;
            move || {
                k += 1;
                format!("id-{i}-{k}")
            }
        };
        let all = build(&ctx, &changes, n(0), &mut BuildStats::default());
        assert!(all.len() >= 4);
        for max in [0, 1, 2, all.len(), all.len() + 3] {
            let (some, left) = build_at_most(&ctx, &changes, max, n(0), &mut BuildStats::default());
            assert_eq!(some.len(), max.min(all.len()), "max {max}");
            assert_eq!(some[..], all[..some.len()], "max {max}");
            assert_eq!(left, max < all.len(), "max {max}");
        }
    }

    #[test]
    fn a_row_too_big_alone_is_sent_alone_and_counted() {
        let spec = spec();
        let ctx = BatchContext {
            spec: &spec,
            journal_epoch: EPOCH,
            send_schema_columns: false,
            prev_commit_seq: None,
        };
        let mut stats = BuildStats::default();
        let out = build(
            &ctx,
            &[
                change(1, 1, 1, Some(vec![1; 10])),
                change(2, 1, 2, Some(vec![0; 600_000])),
            ],
            ids(),
            &mut stats,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].rows, 1);
        assert_eq!(decode(&out[1]).rows.len(), 1);
        assert_eq!(stats.oversized_rows, 1);
    }

    #[test]
    fn null_keys_are_counted_not_sent() {
        let spec = spec();
        let ctx = BatchContext {
            spec: &spec,
            journal_epoch: EPOCH,
            send_schema_columns: false,
            prev_commit_seq: None,
        };
        let mut stats = BuildStats::default();
        let c = Change {
            seq: 1,
            op: 1,
            key: vec![Cell::Null],
            image: None,
        };
        assert!(build(&ctx, &[c], ids(), &mut stats).is_empty());
        assert_eq!(stats.null_key_rows, 1);
    }

    #[test]
    fn values_reach_the_wire_exactly() {
        let spec = spec();
        let ctx = BatchContext {
            spec: &spec,
            journal_epoch: EPOCH,
            send_schema_columns: false,
            prev_commit_seq: None,
        };
        let mut stats = BuildStats::default();
        let out = build(
            &ctx,
            &[change(1, 1, i64::MAX, Some(vec![0, 255]))],
            ids(),
            &mut stats,
        );
        let batch = decode(&out[0]);
        let row = batch.rows[0].row.as_ref().unwrap();
        assert_eq!(row[0].1, SqlValue::Integer(i64::MAX));
        assert_eq!(row[1].1, SqlValue::Blob(vec![0, 255]));
    }
}
