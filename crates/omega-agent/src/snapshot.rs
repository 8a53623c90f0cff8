//! Snapshots (`spec/agent.md` §11, `protocol.md` §8.5): a whole table as of one point H of
//! the commit order, sent as `insert` rows with `commit_seq` = H in parts marked
//! `snapshot {id, part, last}`.
//!
//! [`PartBuilder`] is the I/O-free part: rows in, finished parts out, each within the batch
//! limits (4,096 rows, 512 KiB), part 1 carrying `schema_columns`, the final part marked
//! `last` (an empty table gives one empty part). [`read_table`] streams a table's rows in key
//! order into it inside the caller's read transaction, writing each part to the spool as it is
//! finished, so a table of any size needs one part of memory.

use omega_protocol::limits::MAX_PAYLOAD_BYTES;
use omega_protocol::message::{
    Op, Record, RowBatch, RowChange, SnapshotMarker, encode_row_change, row_batch_overhead_bound,
};
use rusqlite::Connection;

use crate::capture::TableSpec;
use crate::publish::builder::{BuildStats, fits};
use crate::source::cell::Cell;
use crate::sql::quote_ident;
use crate::state::StateError;
use crate::state::spool::{SpoolPart, SpoolWriter};

/// Builds the parts of one snapshot from its rows.
#[derive(Debug)]
pub struct PartBuilder<'a> {
    spec: &'a TableSpec,
    journal_epoch: &'a str,
    snapshot_id: &'a str,
    h: i64,
    key_index: Vec<usize>,
    next_part: u32,
    /// The open part's rows, encoded back to back (`ends[k]`: where row k ends); their
    /// `RowChange`s are not kept.
    encoded: Vec<u8>,
    ends: Vec<usize>,
    size: usize,
    /// Counters (`null_key_rows`, `invalid_utf8_values`, `oversized_rows`).
    pub stats: BuildStats,
}

impl<'a> PartBuilder<'a> {
    /// A builder for the snapshot `snapshot_id` of `spec` at H = `h`.
    pub fn new(spec: &'a TableSpec, journal_epoch: &'a str, snapshot_id: &'a str, h: i64) -> Self {
        let key_index = spec
            .key_columns
            .iter()
            .map(|k| spec.columns.iter().position(|c| c == k).unwrap_or(0))
            .collect();
        let mut b = PartBuilder {
            spec,
            journal_epoch,
            snapshot_id,
            h,
            key_index,
            next_part: 1,
            encoded: Vec::new(),
            ends: Vec::new(),
            size: 0,
            stats: BuildStats::default(),
        };
        b.size = b.overhead();
        b
    }

    fn overhead(&self) -> usize {
        let schema = (self.next_part == 1).then_some(&self.spec.schema);
        row_batch_overhead_bound(&self.spec.name, schema)
    }

    /// Adds one row (every column in declaration order). Returns the part it closed when
    /// this row did not fit in it.
    pub fn push(&mut self, row: &[Cell], new_id: impl FnOnce() -> String) -> Option<SpoolPart> {
        if self.key_index.iter().any(|&i| matches!(row[i], Cell::Null)) {
            self.stats.null_key_rows += 1;
            tracing::error!(table = %self.spec.name, "snapshot row with a NULL key value is not published");
            return None;
        }
        let mut wire = |cell: &Cell| {
            let (v, replaced) = cell.to_wire();
            if replaced {
                self.stats.invalid_utf8_values += 1;
            }
            v
        };
        let values: Vec<_> = row.iter().map(&mut wire).collect();
        let pk: Record = self
            .key_index
            .iter()
            .zip(&self.spec.key_columns)
            .map(|(&i, k)| (k.clone(), values[i].clone()))
            .collect();
        let change = RowChange {
            commit_seq: self.h,
            op: Op::Insert,
            pk,
            row: Some(self.spec.columns.iter().cloned().zip(values).collect()),
        };
        let at = self.encoded.len();
        encode_row_change(&change, &mut self.encoded);
        let add = self.encoded.len() - at + 1;
        let full = !fits(self.ends.len(), self.size, add);
        let closed = full.then(|| self.close(false, new_id(), at));
        if self.ends.is_empty() && self.size + add > MAX_PAYLOAD_BYTES {
            self.stats.oversized_rows += 1;
            tracing::error!(table = %self.spec.name, bytes = self.size + add,
                "snapshot row over 512 KiB on its own: sent alone");
        }
        self.size += add;
        self.ends.push(self.encoded.len());
        closed
    }

    /// Closes the final part (`last: true`; empty when the table was).
    pub fn finish(mut self, batch_id: String) -> SpoolPart {
        let end = self.encoded.len();
        self.close(true, batch_id, end)
    }

    /// Closes the open part: the rows encoded before byte `end` of the buffer (any bytes
    /// after it are the next row, moved to the start).
    fn close(&mut self, last: bool, batch_id: String, end: usize) -> SpoolPart {
        let part = self.next_part;
        let batch = RowBatch {
            batch_id: batch_id.clone(),
            journal_epoch: self.journal_epoch.to_string(),
            source_table: self.spec.name.clone(),
            schema_hash: self.spec.schema_hash.clone(),
            schema_columns: (part == 1).then(|| self.spec.schema.clone()),
            first_commit_seq: self.h,
            last_commit_seq: self.h,
            prev_commit_seq: None,
            rows: Vec::new(),
            snapshot: Some(SnapshotMarker {
                id: self.snapshot_id.to_string(),
                part,
                last,
            }),
        };
        let refs: Vec<&[u8]> = (0..self.ends.len())
            .map(|k| &self.encoded[if k == 0 { 0 } else { self.ends[k - 1] }..self.ends[k]])
            .collect();
        let payload = batch.to_json_bytes_with_encoded_rows(&refs);
        let rows = self.ends.len();
        self.ends.clear();
        self.encoded.drain(..end);
        self.next_part += 1;
        self.size = self.overhead();
        SpoolPart {
            part,
            batch_id,
            rows,
            payload,
        }
    }
}

/// Errors of [`read_table`].
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading the source failed.
    #[error(transparent)]
    Source(#[from] rusqlite::Error),
    /// Writing the spool failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// `SELECT <every column> FROM "t" ORDER BY <key>`.
pub fn select_all_sql(spec: &TableSpec) -> String {
    let order = spec
        .key_columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {} FROM main.{} ORDER BY {order}",
        spec.column_list(),
        quote_ident(&spec.name)
    )
}

/// Reads every row of `spec`'s table through `conn` (inside the caller's read transaction,
/// the one that fixed H) into parts written to `spool`. Returns the builder's counters.
pub fn read_table(
    conn: &Connection,
    builder: PartBuilder<'_>,
    spool: &mut SpoolWriter<'_>,
    mut new_id: impl FnMut() -> String,
) -> Result<BuildStats, ReadError> {
    let mut builder = builder;
    let n = builder.spec.columns.len();
    let mut stmt = conn.prepare(&select_all_sql(builder.spec))?;
    let mut rows = stmt.query([])?;
    let mut row = Vec::with_capacity(n);
    while let Some(r) = rows.next()? {
        row.clear();
        for i in 0..n {
            row.push(Cell::from_ref(r.get_ref(i)?));
        }
        if let Some(part) = builder.push(&row, &mut new_id) {
            spool.push(&part)?;
        }
    }
    let stats = builder.stats;
    spool.push(&builder.finish(new_id()))?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_protocol::limits::MAX_ROWS_PER_BATCH;
    use omega_protocol::topic::Suffix;
    use omega_protocol::validate::{DeviceMessage, decode_device_message};

    fn spec() -> TableSpec {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE \"o\"\"t\" (k INTEGER PRIMARY KEY, v TEXT, b BLOB)")
            .unwrap();
        TableSpec::read(&conn, "o\"t").unwrap()
    }

    fn ids() -> impl FnMut() -> String {
        || omega_protocol::ids::new_v7()
    }

    fn decode(p: &SpoolPart) -> RowBatch {
        match decode_device_message(Suffix::RowsBatch, &p.payload).expect("a valid batch") {
            DeviceMessage::RowBatch(b) => b,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_table_is_one_empty_last_part_with_the_schema() {
        let spec = spec();
        let id = omega_protocol::ids::new_v7();
        let b = PartBuilder::new(&spec, "0196b4d0-0000-7000-8000-000000000000", &id, 7);
        let part = b.finish(omega_protocol::ids::new_v7());
        let batch = decode(&part);
        assert_eq!(part.part, 1);
        assert!(batch.rows.is_empty());
        assert!(batch.schema_columns.is_some());
        assert_eq!(
            batch.snapshot,
            Some(SnapshotMarker {
                id,
                part: 1,
                last: true
            })
        );
        assert_eq!((batch.first_commit_seq, batch.last_commit_seq), (7, 7));
        assert_eq!(batch.prev_commit_seq, None);
    }

    #[test]
    fn parts_respect_both_limits_number_without_gaps_and_only_the_first_has_the_schema() {
        let spec = spec();
        let id = omega_protocol::ids::new_v7();
        let epoch = omega_protocol::ids::new_v7();
        let mut b = PartBuilder::new(&spec, &epoch, &id, 42);
        let mut parts = Vec::new();
        let mut next = ids();
        // Small rows first (the row limit closes parts), then 100 KiB rows (the size limit).
        for k in 0..9_000i64 {
            let row = [Cell::Integer(k), Cell::Text(b"v".to_vec()), Cell::Null];
            parts.extend(b.push(&row, &mut next));
        }
        for k in 9_000..9_020i64 {
            let row = [
                Cell::Integer(k),
                Cell::Null,
                Cell::Blob(vec![7; 100 * 1024]),
            ];
            parts.extend(b.push(&row, &mut next));
        }
        parts.push(b.finish(next()));
        let mut total = 0;
        for (i, p) in parts.iter().enumerate() {
            let batch = decode(p);
            assert_eq!(p.part as usize, i + 1);
            assert!(
                p.payload.len() <= MAX_PAYLOAD_BYTES,
                "part {} too big",
                p.part
            );
            assert!(batch.rows.len() <= MAX_ROWS_PER_BATCH);
            assert_eq!(batch.schema_columns.is_some(), i == 0);
            let marker = batch.snapshot.unwrap();
            assert_eq!(marker.last, i + 1 == parts.len());
            assert!(
                batch
                    .rows
                    .iter()
                    .all(|r| r.commit_seq == 42 && r.op == Op::Insert)
            );
            total += batch.rows.len();
        }
        assert_eq!(total, 9_020);
        assert!(parts.len() >= 3 + 20 / 5, "{} parts", parts.len());
    }

    #[test]
    fn a_null_key_row_is_counted_and_left_out() {
        let spec = spec();
        let id = omega_protocol::ids::new_v7();
        let epoch = omega_protocol::ids::new_v7();
        let mut b = PartBuilder::new(&spec, &epoch, &id, 1);
        assert!(
            b.push(&[Cell::Null, Cell::Null, Cell::Null], ids())
                .is_none()
        );
        assert_eq!(b.stats.null_key_rows, 1);
        let part = b.finish(omega_protocol::ids::new_v7());
        assert_eq!(part.rows, 0);
    }
}
