//! Telemetry batches (§9).

use ::time::OffsetDateTime;

use super::Record;
use super::write::ObjectWriter;
use crate::FORMAT_VERSION;
use crate::json::write_compact;
use crate::schema::SchemaColumns;
use crate::time::format_rfc3339;
use crate::value::write_record;

/// `capture_strategy` of a telemetry batch.
pub const TELEMETRY_BATCH_CAPTURE_STRATEGY: &str = "sqlite_telemetry_batch_v1";

/// One sample of a telemetry batch (§9.2).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySample {
    /// The sample time (UTC on the wire).
    pub ts: OffsetDateTime,
    /// The canonical pk (§7.3); the Omega agent always sends it.
    pub row_id: Option<String>,
    /// Sent columns → values.
    pub fields: Record,
}

/// A telemetry batch on `sync/telemetry/batch` (§9).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryBatch {
    /// UUIDv7, new for every built batch.
    pub batch_id: String,
    /// Strictly increasing per (device, table), never reused.
    pub batch_seq: i64,
    /// **[Omega]** The `batch_seq` of the batch the agent built before this one for the table
    /// (0 for its first, or the confirmed point it re-sends from): a chain like rows'
    /// `prev_commit_seq`, so the cloud can tell a lost batch from a number skipped by a crash
    /// (`receipts.md` §3.5). Optional; absent in batches of older agents.
    pub prev_batch_seq: Option<i64>,
    /// Source table name.
    pub source_table: String,
    /// Hash of the whole table's schema.
    pub schema_hash: String,
    /// The hash input, when due.
    pub schema_columns: Option<SchemaColumns>,
    /// The earliest `rows[].ts`.
    pub cursor_start_ts: OffsetDateTime,
    /// The latest `rows[].ts`.
    pub cursor_end_ts: OffsetDateTime,
    /// The samples in cursor order (ts, then pk). `row_count` on the wire is their number.
    pub rows: Vec<TelemetrySample>,
}

impl TelemetryBatch {
    /// The earliest and latest `ts` of `rows`, for `cursor_start_ts`/`cursor_end_ts`.
    pub fn cursor_bounds(rows: &[TelemetrySample]) -> Option<(OffsetDateTime, OffsetDateTime)> {
        let first = rows.first()?.ts;
        Some(
            rows.iter()
                .fold((first, first), |(lo, hi), s| (lo.min(s.ts), hi.max(s.ts))),
        )
    }

    /// The compact JSON payload; `rows` last.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.rows.len() * 96);
        self.write_json(&mut out);
        out
    }

    /// Appends the compact JSON payload to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        w.int("format_version", FORMAT_VERSION);
        w.str("capture_strategy", TELEMETRY_BATCH_CAPTURE_STRATEGY);
        w.str("batch_id", &self.batch_id);
        w.int("batch_seq", self.batch_seq);
        w.opt_int("prev_batch_seq", self.prev_batch_seq);
        w.str("source_table", &self.source_table);
        w.str("schema_hash", &self.schema_hash);
        if let Some(cols) = &self.schema_columns {
            write_compact(&cols.to_json(), w.key("schema_columns"));
        }
        w.str("cursor_start_ts", &format_rfc3339(self.cursor_start_ts));
        w.str("cursor_end_ts", &format_rfc3339(self.cursor_end_ts));
        w.int(
            "row_count",
            i64::try_from(self.rows.len()).unwrap_or(i64::MAX),
        );
        let rows = w.key("rows");
        rows.push(b'[');
        for (i, sample) in self.rows.iter().enumerate() {
            if i > 0 {
                rows.push(b',');
            }
            encode_telemetry_sample(sample, rows);
        }
        rows.push(b']');
        w.finish();
    }
}

/// Appends the wire form of one sample: `{"ts":"…","row_id":"…","fields":{…}}` (`row_id`
/// left out when absent). See [`telemetry_batch_overhead_bound`].
pub fn encode_telemetry_sample(sample: &TelemetrySample, out: &mut Vec<u8>) {
    let mut w = ObjectWriter::new(out);
    w.str("ts", &format_rfc3339(sample.ts));
    w.opt_str("row_id", sample.row_id.as_deref());
    write_record(&sample.fields, w.key("fields"));
    w.finish();
}

/// An upper bound on the bytes of a telemetry batch's payload other than its rows:
///
/// `to_json_bytes().len() ≤ telemetry_batch_overhead_bound(t, c) + Σ (encode_telemetry_sample(sᵢ).len() + 1)`
///
/// whatever the batch's id, `batch_seq`, cursor times and `row_count`.
pub fn telemetry_batch_overhead_bound(
    source_table: &str,
    schema_columns: Option<&SchemaColumns>,
) -> usize {
    // The widest wire time: 4-digit year and 9 fraction digits.
    let widest_ts = OffsetDateTime::from_unix_timestamp_nanos(1_777_366_800_123_456_789)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let widest = TelemetryBatch {
        batch_id: "0".repeat(36),
        batch_seq: i64::MIN,
        prev_batch_seq: Some(i64::MIN),
        source_table: source_table.to_owned(),
        schema_hash: "0".repeat(64),
        schema_columns: schema_columns.cloned(),
        cursor_start_ts: widest_ts,
        cursor_end_ts: widest_ts,
        rows: Vec::new(),
    };
    // `row_count` is written as 0 here; allow for the widest count.
    widest.to_json_bytes().len() + 19
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;
    use crate::value::SqlValue;

    fn sample(ts: &str, id: i64, value: f64) -> TelemetrySample {
        TelemetrySample {
            ts: parse_rfc3339(ts).unwrap(),
            row_id: Some(format!("{{\"id\":{id}}}")),
            fields: vec![
                ("id".into(), SqlValue::Integer(id)),
                ("value".into(), SqlValue::Real(value)),
            ],
        }
    }

    fn example() -> TelemetryBatch {
        let rows = vec![
            sample("2026-04-28T09:00:01Z", 41, 22.1),
            sample("2026-04-28T09:00:02.5Z", 42, 22.4),
        ];
        let (start, end) = TelemetryBatch::cursor_bounds(&rows).unwrap();
        TelemetryBatch {
            batch_id: "019dd351-1e50-7b03-8a11-0c9d8e7f6a5b".into(),
            batch_seq: 1_777_366_800_042,
            prev_batch_seq: None,
            source_table: "temps".into(),
            schema_hash: "3591a22734304fa2d93aa1103dda6ca5670040e0627f591da004adc778866142".into(),
            schema_columns: None,
            cursor_start_ts: start,
            cursor_end_ts: end,
            rows,
        }
    }

    #[test]
    fn the_example_of_section_9_1_encodes_compactly() {
        assert_eq!(
            String::from_utf8(example().to_json_bytes()).unwrap(),
            concat!(
                r#"{"format_version":1,"capture_strategy":"sqlite_telemetry_batch_v1","#,
                r#""batch_id":"019dd351-1e50-7b03-8a11-0c9d8e7f6a5b","batch_seq":1777366800042,"#,
                r#""source_table":"temps","#,
                r#""schema_hash":"3591a22734304fa2d93aa1103dda6ca5670040e0627f591da004adc778866142","#,
                r#""cursor_start_ts":"2026-04-28T09:00:01Z","cursor_end_ts":"2026-04-28T09:00:02.5Z","#,
                r#""row_count":2,"rows":["#,
                r#"{"ts":"2026-04-28T09:00:01Z","row_id":"{\"id\":41}","fields":{"id":41,"value":22.1}},"#,
                r#"{"ts":"2026-04-28T09:00:02.5Z","row_id":"{\"id\":42}","fields":{"id":42,"value":22.4}}]}"#
            )
        );
    }

    #[test]
    fn overhead_bound_plus_sample_sizes_covers_the_encoded_batch() {
        let b = example();
        let bound = telemetry_batch_overhead_bound(&b.source_table, None);
        let rows: usize = b
            .rows
            .iter()
            .map(|s| {
                let mut v = Vec::new();
                encode_telemetry_sample(s, &mut v);
                v.len() + 1
            })
            .sum();
        assert!(b.to_json_bytes().len() <= bound + rows);
    }
}
