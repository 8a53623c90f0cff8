//! The telemetry strategy (`spec/agent.md` §12, `protocol.md` §9): tables read without
//! triggers, in (ts, key) order after a persisted cursor, sent as telemetry batches with a
//! strictly increasing `batch_seq`.
//!
//! - [`ts`]: what instant a stored timestamp names.
//! - [`Cursor`]: a (ts, key…) position, stored exactly in `state.db` as text.
//! - [`read_after`]: the next rows after a cursor, in order; ties on ts are broken by the key,
//!   so equal timestamps never lose rows.
//! - [`build`]: rows → batches within the limits (4,096 samples, 512 KiB).

pub mod ts;

use omega_protocol::message::{
    Record, TelemetryBatch, TelemetrySample, encode_telemetry_sample,
    telemetry_batch_overhead_bound,
};
use rusqlite::{Connection, params_from_iter};

use crate::capture::TableSpec;
use crate::config::TsUnit;
use crate::discover::TelemetryPlan;
use crate::source::cell::Cell;
use crate::sql::{quote_ident, quote_literal};

/// A position in a telemetry table: the ts value as stored, then the key values.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor(pub Vec<Cell>);

impl Cursor {
    /// The exact text form kept in `state.db` (`i:5,r:<bits>,t:<hex>,b:<hex>,n`).
    pub fn encode(&self) -> String {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        self.0
            .iter()
            .map(|c| match c {
                Cell::Null => "n".to_string(),
                Cell::Integer(i) => format!("i:{i}"),
                Cell::Real(r) => format!("r:{:016x}", r.to_bits()),
                Cell::Text(t) => format!("t:{}", hex(t)),
                Cell::Blob(b) => format!("b:{}", hex(b)),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads [`Cursor::encode`]'s form; `None` when it is not one.
    pub fn decode(s: &str) -> Option<Cursor> {
        let unhex = |h: &str| -> Option<Vec<u8>> {
            if !h.len().is_multiple_of(2) {
                return None;
            }
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
                .collect()
        };
        s.split(',')
            .map(|tok| match tok.split_once(':') {
                None if tok == "n" => Some(Cell::Null),
                Some(("i", v)) => v.parse().ok().map(Cell::Integer),
                Some(("r", v)) => u64::from_str_radix(v, 16)
                    .ok()
                    .map(|b| Cell::Real(f64::from_bits(b))),
                Some(("t", v)) => unhex(v).map(Cell::Text),
                Some(("b", v)) => unhex(v).map(Cell::Blob),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(Cursor)
    }
}

/// One row read from a telemetry table.
#[derive(Debug, Clone, PartialEq)]
pub struct TsRow {
    /// Its position (ts as stored, then key values).
    pub cursor: Cursor,
    /// The key values, in key order.
    pub key: Vec<Cell>,
    /// The sent columns' values, in `field_columns` order.
    pub fields: Vec<Cell>,
}

/// The statements of one telemetry table.
#[derive(Debug, Clone)]
pub struct Queries {
    from_start: String,
    after: String,
    last: String,
    keys: usize,
    fields: usize,
}

impl Queries {
    /// The statements for `spec` read as `plan` says.
    pub fn new(spec: &TableSpec, plan: &TelemetryPlan) -> Queries {
        let order: Vec<String> = std::iter::once(&plan.ts_column)
            .chain(&spec.key_columns)
            .map(|c| quote_ident(c))
            .collect();
        let cols: Vec<String> = order
            .iter()
            .cloned()
            .chain(plan.field_columns.iter().map(|c| quote_ident(c)))
            .collect();
        let table = format!("main.{}", quote_ident(&spec.name));
        let ts = quote_ident(&plan.ts_column);
        let select = format!("SELECT {} FROM {table}", cols.join(", "));
        let order_by = order.join(", ");
        let params = (1..=order.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let limit = order.len() + 1;
        Queries {
            from_start: format!("{select} WHERE {ts} IS NOT NULL ORDER BY {order_by} LIMIT ?1"),
            after: format!(
                "{select} WHERE {ts} IS NOT NULL AND ({order_by}) > ({params}) ORDER BY {order_by} LIMIT ?{limit}"
            ),
            last: format!(
                "SELECT {order_by} FROM {table} WHERE {ts} IS NOT NULL ORDER BY {} LIMIT 1",
                order
                    .iter()
                    .map(|c| format!("{c} DESC"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            keys: spec.key_columns.len(),
            fields: plan.field_columns.len(),
        }
    }
}

/// Up to `limit` rows after `cursor` (from the first row when `None`), in (ts, key) order.
/// Rows whose ts is NULL are never read (they have no place in the order).
pub fn read_after(
    conn: &Connection,
    q: &Queries,
    cursor: Option<&Cursor>,
    limit: usize,
) -> rusqlite::Result<Vec<TsRow>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut params: Vec<rusqlite::types::Value> = Vec::new();
    let mut stmt = match cursor {
        None => {
            params.push(limit.into());
            conn.prepare_cached(&q.from_start)?
        }
        Some(c) => {
            for cell in &c.0 {
                params.push(match cell {
                    Cell::Null => rusqlite::types::Value::Null,
                    Cell::Integer(i) => (*i).into(),
                    Cell::Real(r) => (*r).into(),
                    Cell::Text(t) => {
                        rusqlite::types::Value::Text(String::from_utf8_lossy(t).into_owned())
                    }
                    Cell::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
                });
            }
            params.push(limit.into());
            conn.prepare_cached(&q.after)?
        }
    };
    let mut rows = stmt.query(params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let n = 1 + q.keys;
        let mut pos = Vec::with_capacity(n);
        for i in 0..n {
            pos.push(Cell::from_ref(r.get_ref(i)?));
        }
        let mut fields = Vec::with_capacity(q.fields);
        for i in n..n + q.fields {
            fields.push(Cell::from_ref(r.get_ref(i)?));
        }
        out.push(TsRow {
            key: pos[1..].to_vec(),
            cursor: Cursor(pos),
            fields,
        });
    }
    Ok(out)
}

/// The position of the last row (greatest (ts, key)), `None` for an empty table: where a
/// first run without `snapshot_on_first_run` starts, so that only new rows are sent.
pub fn last_position(conn: &Connection, q: &Queries) -> rusqlite::Result<Option<Cursor>> {
    let mut stmt = conn.prepare_cached(&q.last)?;
    let mut rows = stmt.query([])?;
    match rows.next()? {
        Some(r) => {
            let mut pos = Vec::with_capacity(1 + q.keys);
            for i in 0..=q.keys {
                pos.push(Cell::from_ref(r.get_ref(i)?));
            }
            Ok(Some(Cursor(pos)))
        }
        None => Ok(None),
    }
}

/// Whether reading `table` in `ts_column` order can use an index: an index (or the primary
/// key) whose first column is `ts_column`, or `ts_column` being the rowid alias. Without one
/// every flush sorts the table (`omega agent validate` warns, §12).
pub fn ts_indexed(conn: &Connection, table: &str, ts_column: &str) -> rusqlite::Result<bool> {
    let mut idx = conn.prepare(&format!(
        "SELECT name FROM pragma_index_list({})",
        quote_literal(table)
    ))?;
    let names: Vec<String> = idx.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for name in names {
        let first: Option<String> = conn
            .query_row(
                &format!(
                    "SELECT name FROM pragma_index_info({}) WHERE seqno = 0",
                    quote_literal(&name)
                ),
                [],
                |r| r.get(0),
            )
            .ok();
        if first.is_some_and(|c| c.eq_ignore_ascii_case(ts_column)) {
            return Ok(true);
        }
    }
    // An INTEGER PRIMARY KEY column is the rowid: the table is stored in its order.
    let rowid_alias: bool = conn
        .query_row(
            &format!(
                "SELECT count(*) = 1 AND max(pk) = 1 AND upper(max(CASE WHEN pk = 1 THEN type END)) = 'INTEGER'
                   AND max(CASE WHEN pk = 1 THEN lower(name) END) = lower(?1)
                 FROM pragma_table_info({}) WHERE pk > 0",
                quote_literal(table)
            ),
            [ts_column],
            |r| r.get(0),
        )
        .unwrap_or(false);
    Ok(rowid_alias)
}

/// A built telemetry batch: its sequence number, its end cursor, its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltTs {
    /// The batch.
    pub batch: TelemetryBatch,
    /// The cursor after its last row (also past skipped rows before the next batch).
    pub end: Cursor,
    /// Its JSON payload.
    pub payload: Vec<u8>,
}

/// What [`build`] skipped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TsStats {
    /// Rows whose timestamp names no instant (skipped; the cursor passes them).
    pub bad_ts_rows: u64,
    /// TEXT values with invalid UTF-8 replaced by U+FFFD.
    pub invalid_utf8_values: u64,
}

impl TsStats {
    /// The counters by their `status` names.
    pub fn counters(&self) -> [(&'static str, u64); 2] {
        [
            ("bad_ts_rows", self.bad_ts_rows),
            ("invalid_utf8_values", self.invalid_utf8_values),
        ]
    }
}

/// Builds batches from `rows` (in cursor order). `next_seq` gives each batch its
/// `batch_seq`, `new_id` its id; the first carries `schema_columns` when `send_schema` and
/// chains from `prev` (`prev_batch_seq`), each next one from the one before.
/// Returns the batches and the cursor after every row looked at (skipped ones included).
#[allow(clippy::too_many_arguments)]
pub fn build(
    spec: &TableSpec,
    plan: &TelemetryPlan,
    unit: TsUnit,
    rows: &[TsRow],
    send_schema: bool,
    prev: i64,
    mut next_seq: impl FnMut() -> i64,
    mut new_id: impl FnMut() -> String,
    stats: &mut TsStats,
) -> (Vec<BuiltTs>, Option<Cursor>) {
    let mut out = Vec::new();
    let mut schema_due = send_schema;
    let mut samples: Vec<TelemetrySample> = Vec::new();
    let mut size = 0usize;
    let mut overhead =
        telemetry_batch_overhead_bound(&spec.name, schema_due.then_some(&spec.schema));
    let mut last_cursor: Option<Cursor> = None;
    let mut prev = prev;
    let mut flush = |samples: &mut Vec<TelemetrySample>,
                     schema_due: &mut bool,
                     end: &Cursor,
                     out: &mut Vec<BuiltTs>,
                     next_seq: &mut dyn FnMut() -> i64,
                     new_id: &mut dyn FnMut() -> String| {
        let rows = std::mem::take(samples);
        let (lo, hi) = TelemetryBatch::cursor_bounds(&rows).expect("a batch has samples");
        let batch_seq = next_seq();
        let batch = TelemetryBatch {
            batch_id: new_id(),
            batch_seq,
            prev_batch_seq: Some(prev),
            source_table: spec.name.clone(),
            schema_hash: spec.schema_hash.clone(),
            schema_columns: schema_due.then(|| spec.schema.clone()),
            cursor_start_ts: lo,
            cursor_end_ts: hi,
            rows,
        };
        *schema_due = false;
        prev = batch_seq;
        let payload = batch.to_json_bytes();
        out.push(BuiltTs {
            batch,
            end: end.clone(),
            payload,
        });
    };
    for row in rows {
        let Some(at) = ts::instant(&row.cursor.0[0], unit) else {
            stats.bad_ts_rows += 1;
            tracing::error!(table = %spec.name, "telemetry row with no readable timestamp skipped");
            last_cursor = Some(row.cursor.clone());
            continue;
        };
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
            .zip(row.key.iter().map(&mut wire))
            .collect();
        let fields: Record = plan
            .field_columns
            .iter()
            .cloned()
            .zip(row.fields.iter().map(&mut wire))
            .collect();
        let sample = TelemetrySample {
            ts: at,
            row_id: Some(omega_protocol::pk::canonical_pk(&pk)),
            fields,
        };
        let mut bytes = Vec::with_capacity(96);
        encode_telemetry_sample(&sample, &mut bytes);
        let add = bytes.len() + 1;
        if !crate::publish::builder::fits(samples.len(), overhead + size, add) {
            let end = last_cursor.clone().expect("a previous row");
            flush(
                &mut samples,
                &mut schema_due,
                &end,
                &mut out,
                &mut next_seq,
                &mut new_id,
            );
            overhead = telemetry_batch_overhead_bound(&spec.name, None);
            size = 0;
        }
        size += add;
        samples.push(sample);
        last_cursor = Some(row.cursor.clone());
    }
    if !samples.is_empty() {
        let end = last_cursor.clone().expect("a row");
        flush(
            &mut samples,
            &mut schema_due,
            &end,
            &mut out,
            &mut next_seq,
            &mut new_id,
        );
    }
    (out, last_cursor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_protocol::topic::Suffix;
    use omega_protocol::validate::{DeviceMessage, decode_device_message};

    fn setup() -> (Connection, TableSpec, TelemetryPlan, Queries) {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE temps (sensor TEXT NOT NULL, n INTEGER NOT NULL, at TEXT, v REAL,
                                 PRIMARY KEY (sensor, n))",
        )
        .unwrap();
        let spec = TableSpec::read(&conn, "temps").unwrap();
        let plan = TelemetryPlan {
            ts_column: "at".into(),
            field_columns: vec!["sensor".into(), "n".into(), "v".into()],
            ts_unit: TsUnit::Seconds,
        };
        let q = Queries::new(&spec, &plan);
        (conn, spec, plan, q)
    }

    #[test]
    fn an_index_leading_with_the_ts_column_is_found() {
        let (conn, ..) = setup();
        assert!(!ts_indexed(&conn, "temps", "at").unwrap());
        conn.execute_batch("CREATE INDEX temps_at ON temps (at, sensor)")
            .unwrap();
        assert!(ts_indexed(&conn, "temps", "AT").unwrap());
        conn.execute_batch("CREATE TABLE \"o'k\" (t INTEGER PRIMARY KEY, v)")
            .unwrap();
        assert!(
            ts_indexed(&conn, "o'k", "t").unwrap(),
            "the rowid alias is ordered"
        );
        assert!(!ts_indexed(&conn, "o'k", "v").unwrap());
    }

    #[test]
    fn cursors_round_trip_every_storage_class_exactly() {
        let c = Cursor(vec![
            Cell::Text("2026-04-28 09:00:00".as_bytes().to_vec()),
            Cell::Integer(i64::MIN),
            Cell::Real(-0.1),
            Cell::Blob(vec![0, 255, 44]),
            Cell::Text(vec![0xff, b',']),
            Cell::Null,
        ]);
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("x:1"), None);
        assert_eq!(Cursor::decode("t:abc"), None);
    }

    #[test]
    fn equal_timestamps_are_read_in_key_order_across_reads_without_loss() {
        let (conn, _, _, q) = setup();
        for n in 0..10 {
            for s in ["b", "a"] {
                conn.execute(
                    "INSERT INTO temps VALUES (?1, ?2, '2026-04-28 09:00:00', 1.5)",
                    rusqlite::params![s, n],
                )
                .unwrap();
            }
        }
        let mut cursor = None;
        let mut seen = Vec::new();
        loop {
            let rows = read_after(&conn, &q, cursor.as_ref(), 3).unwrap();
            let Some(last) = rows.last() else { break };
            cursor = Some(last.cursor.clone());
            seen.extend(rows.iter().map(|r| r.key.clone()));
        }
        assert_eq!(seen.len(), 20);
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        sorted.dedup();
        assert_eq!(sorted.len(), 20, "no row twice");
        assert_eq!(
            last_position(&conn, &q).unwrap().map(|c| c.0[1].clone()),
            Some(Cell::Text(b"b".to_vec()))
        );
    }

    #[test]
    fn batches_are_valid_ordered_and_skip_unreadable_times() {
        let (conn, spec, plan, q) = setup();
        conn.execute_batch(
            "INSERT INTO temps VALUES ('s', 1, '2026-04-28 09:00:02', 1.0);
             INSERT INTO temps VALUES ('s', 2, 'garbage', 2.0);
             INSERT INTO temps VALUES ('s', 3, '2026-04-28T09:00:01Z', 3.0);
             INSERT INTO temps VALUES ('s', 4, NULL, 4.0);",
        )
        .unwrap();
        let rows = read_after(&conn, &q, None, 100).unwrap();
        assert_eq!(rows.len(), 3, "a NULL time is never read");
        let mut seq = 41;
        let mut stats = TsStats::default();
        let (built, end) = build(
            &spec,
            &plan,
            TsUnit::Seconds,
            &rows,
            true,
            7,
            || {
                seq += 1;
                seq
            },
            omega_protocol::ids::new_v7,
            &mut stats,
        );
        assert_eq!(stats.bad_ts_rows, 1);
        assert_eq!(built.len(), 1);
        assert_eq!(
            end.as_ref(),
            Some(&rows[2].cursor),
            "the cursor passes the bad row"
        );
        let b = match decode_device_message(Suffix::TelemetryBatch, &built[0].payload) {
            Ok(DeviceMessage::TelemetryBatch(b)) => b,
            other => panic!("{other:?}"),
        };
        assert_eq!(b.batch_seq, 42);
        assert_eq!(b.prev_batch_seq, Some(7), "chained from the given point");
        assert_eq!(b.rows.len(), 2);
        assert!(b.schema_columns.is_some());
        assert_eq!(
            omega_protocol::time::format_rfc3339(b.cursor_start_ts),
            "2026-04-28T09:00:01Z"
        );
        // Cursor order is the ts value as stored (TEXT compares as text).
        assert_eq!(b.rows[0].row_id.as_deref(), Some(r#"{"n":1,"sensor":"s"}"#));
    }
}
