//! Tests of decoding and validation: fixtures and happy paths here, one test per rejection
//! code in `codes`, the order of checks in `order`, cloud-to-device decoding in `cloud`,
//! properties in `props`.

mod cloud;
mod codes;
mod order;
mod props;

use super::*;
use crate::message::Op;
use crate::topic::Suffix;
use crate::value::SqlValue;

pub(super) const ROWS: &str = r#"{
  "format_version": 1,
  "capture_strategy": "sqlite_row_batch_v1",
  "batch_id": "019dd351-1a68-7a21-b3c4-5d6e7f809a1b",
  "journal_epoch": "019dd31a-2800-7000-8000-000000000001",
  "source_table": "device_state",
  "schema_hash": "4d8f17a536ca112722082d44a2dfa63422465223a25d61f95c89302e858ad5e0",
  "schema_columns": {
    "table_name": "device_state",
    "columns": [
      {"name": "id", "decl_type_affinity": "INTEGER", "pk_ordinal": 1, "not_null": true},
      {"name": "mode", "decl_type_affinity": "TEXT", "pk_ordinal": 0, "not_null": false}
    ]
  },
  "first_commit_seq": 101,
  "last_commit_seq": 103,
  "rows": [
    {"commit_seq": 101, "op": "update", "pk": {"id": 1}, "row": {"id": 1, "mode": "cooling"}},
    {"commit_seq": 103, "op": "delete", "pk": {"id": 7}, "row": null}
  ]
}"#;

pub(super) const TELEMETRY: &str = r#"{
  "format_version": 1,
  "capture_strategy": "sqlite_telemetry_batch_v1",
  "batch_id": "019dd351-1e50-7b03-8a11-0c9d8e7f6a5b",
  "batch_seq": 1777366800042,
  "source_table": "temps",
  "schema_hash": "3591a22734304fa2d93aa1103dda6ca5670040e0627f591da004adc778866142",
  "cursor_start_ts": "2026-04-28T09:00:01Z",
  "cursor_end_ts": "2026-04-28T09:00:02.5Z",
  "row_count": 2,
  "rows": [
    {"ts": "2026-04-28T09:00:01Z", "row_id": "{\"id\":41}", "fields": {"id": 41, "value": 22.1}},
    {"ts": "2026-04-28T09:00:02.5Z", "row_id": "{\"id\":42}", "fields": {"id": 42, "value": 22.4}}
  ]
}"#;

pub(super) const SNAPSHOT: &str = r#"{"format_version":1,"capture_strategy":"sqlite_row_batch_v1",
  "batch_id":"019dd351-1a68-7a21-b3c4-5d6e7f809a1b","journal_epoch":"019dd31a-2800-7000-8000-000000000001",
  "source_table":"device_state",
  "schema_hash":"4d8f17a536ca112722082d44a2dfa63422465223a25d61f95c89302e858ad5e0",
  "first_commit_seq":500,"last_commit_seq":500,
  "snapshot":{"id":"019dd351-0000-7000-8000-000000000000","part":1,"last":false},
  "rows":[{"commit_seq":500,"op":"insert","pk":{"id":1},"row":{"id":1,"mode":"a"}},
          {"commit_seq":500,"op":"insert","pk":{"id":2},"row":{"id":2,"mode":"b"}}]}"#;

pub(super) fn rows(text: &str) -> Result<DeviceMessage, Rejection> {
    decode_device_message(Suffix::RowsBatch, text.as_bytes())
}

pub(super) fn telemetry(text: &str) -> Result<DeviceMessage, Rejection> {
    decode_device_message(Suffix::TelemetryBatch, text.as_bytes())
}

/// The rejection of `text` on `suffix`, asserting its code.
pub(super) fn rejected(suffix: Suffix, text: &str, code: RejectionCode) -> Rejection {
    match decode_device_message(suffix, text.as_bytes()) {
        Err(r) => {
            assert_eq!(r.code, code, "{r}");
            r
        }
        Ok(m) => panic!("accepted, expected {code}: {m:?}"),
    }
}

pub(super) fn rows_rejected(text: &str, code: RejectionCode) -> Rejection {
    rejected(Suffix::RowsBatch, text, code)
}

pub(super) fn telemetry_rejected(text: &str, code: RejectionCode) -> Rejection {
    rejected(Suffix::TelemetryBatch, text, code)
}

pub(super) fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in the fixture");
    text.replacen(from, to, 1)
}

/// A row batch of `n` rows with commit_seq 1..=n.
pub(super) fn rows_batch_of(n: usize, pad: usize) -> String {
    let rows: Vec<String> = (1..=n)
        .map(|i| {
            format!(
                r#"{{"commit_seq":{i},"op":"insert","pk":{{"id":{i}}},"row":{{"id":{i},"mode":"{}"}}}}"#,
                "x".repeat(pad)
            )
        })
        .collect();
    let head = ROWS.split("\"schema_columns\"").next().unwrap();
    format!(
        r#"{head}"first_commit_seq":1,"last_commit_seq":{n},"rows":[{}]}}"#,
        rows.join(",")
    )
}

#[test]
fn the_row_batch_example_of_section_8_1_decodes() {
    let Ok(DeviceMessage::RowBatch(b)) = rows(ROWS) else {
        panic!()
    };
    assert_eq!(b.source_table, "device_state");
    assert_eq!(
        (b.first_commit_seq, b.last_commit_seq, b.prev_commit_seq),
        (101, 103, None)
    );
    assert_eq!(b.schema_columns.as_ref().unwrap().hash(), b.schema_hash);
    assert_eq!(
        b.rows[0].row.as_ref().unwrap()[1],
        ("mode".into(), SqlValue::Text("cooling".into()))
    );
    assert_eq!(b.rows[1].op, Op::Delete);
    assert_eq!(b.rows[1].row, None);
    let again = validate_row_batch(&crate::json::parse(&b.to_json_bytes()).unwrap()).unwrap();
    assert_eq!(again, b);
}

#[test]
fn the_telemetry_example_of_section_9_1_decodes() {
    let Ok(DeviceMessage::TelemetryBatch(b)) = telemetry(TELEMETRY) else {
        panic!()
    };
    assert_eq!(b.batch_seq, 1_777_366_800_042);
    assert_eq!(b.rows.len(), 2);
    assert_eq!(b.rows[1].row_id.as_deref(), Some(r#"{"id":42}"#));
    assert_eq!(b.rows[1].fields[1].1, SqlValue::Real(22.4));
    let again = validate_telemetry_batch(&crate::json::parse(&b.to_json_bytes()).unwrap()).unwrap();
    assert_eq!(again, b);
}

#[test]
fn schema_observations_and_acks_decode() {
    let obs = r#"{"format_version": 1, "source_table": "device_state",
        "schema_hash": "4d8f17a536ca112722082d44a2dfa63422465223a25d61f95c89302e858ad5e0",
        "observed_at": "2026-04-28T09:00:00.123456789Z"}"#;
    let Ok(DeviceMessage::SchemaObservation(o)) =
        decode_device_message(Suffix::SchemaObserve, obs.as_bytes())
    else {
        panic!()
    };
    assert_eq!(
        o.to_json_bytes(),
        crate::json::parse(obs.as_bytes()).unwrap().to_compact_vec()
    );
    let ack = r#"{"format_version": 1, "control_id": "019DD351-1680-7C41-9B5E-3F0A6C1D2E4F"}"#;
    let Ok(DeviceMessage::ControlAck(a)) = decode_device_message(Suffix::IngestAck, ack.as_bytes())
    else {
        panic!()
    };
    assert_eq!(a.control_id, "019dd351-1680-7c41-9b5e-3f0a6c1d2e4f");
}

#[test]
fn snapshot_parts_decode_including_an_empty_last_part() {
    let Ok(DeviceMessage::RowBatch(b)) = rows(SNAPSHOT) else {
        panic!()
    };
    assert_eq!(
        b.snapshot.as_ref().map(|s| (s.part, s.last)),
        Some((1, false))
    );
    let empty = r#""rows":[]}"#;
    let text = format!("{}{empty}", SNAPSHOT.split("\"rows\"").next().unwrap());
    let text = replace(&text, r#""last":false"#, r#""last":true"#);
    let Ok(DeviceMessage::RowBatch(b)) = rows(&text) else {
        panic!("{:?}", rows(&text))
    };
    assert!(b.rows.is_empty() && b.snapshot.unwrap().last);
}

#[test]
fn unknown_top_level_keys_are_ignored() {
    let text = replace(
        ROWS,
        "\"format_version\": 1,",
        "\"format_version\": 1, \"later\": {\"x\": [1]},",
    );
    assert!(rows(&text).is_ok());
}

#[test]
fn prev_commit_seq_is_optional_and_must_be_below_first_commit_seq() {
    let with = |p: &str| {
        replace(
            ROWS,
            "\"first_commit_seq\"",
            &format!("\"prev_commit_seq\": {p}, \"first_commit_seq\""),
        )
    };
    let Ok(DeviceMessage::RowBatch(b)) = rows(&with("0")) else {
        panic!()
    };
    assert_eq!(b.prev_commit_seq, Some(0));
    assert!(rows(&with("100")).is_ok());
    rows_rejected(&with("101"), RejectionCode::SeqRangeMismatch);
    rows_rejected(&with("-1"), RejectionCode::MalformedJson);
    rows_rejected(&with("\"5\""), RejectionCode::MalformedJson);
}
