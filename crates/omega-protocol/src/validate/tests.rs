use proptest::prelude::*;

use super::*;
use crate::message::{Op, RowBatch, RowChange};
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

const SNAPSHOT: &str = r#"{"format_version":1,"capture_strategy":"sqlite_row_batch_v1",
  "batch_id":"019dd351-1a68-7a21-b3c4-5d6e7f809a1b","journal_epoch":"019dd31a-2800-7000-8000-000000000001",
  "source_table":"device_state",
  "schema_hash":"4d8f17a536ca112722082d44a2dfa63422465223a25d61f95c89302e858ad5e0",
  "first_commit_seq":500,"last_commit_seq":500,
  "snapshot":{"id":"019dd351-0000-7000-8000-000000000000","part":1,"last":false},
  "rows":[{"commit_seq":500,"op":"insert","pk":{"id":1},"row":{"id":1,"mode":"a"}},
          {"commit_seq":500,"op":"insert","pk":{"id":2},"row":{"id":2,"mode":"b"}}]}"#;

fn rows(text: &str) -> Result<DeviceMessage, Rejection> {
    decode_device_message(Suffix::RowsBatch, text.as_bytes())
}

fn telemetry(text: &str) -> Result<DeviceMessage, Rejection> {
    decode_device_message(Suffix::TelemetryBatch, text.as_bytes())
}

/// The rejection of `text` on `suffix`, asserting its code.
fn rejected(suffix: Suffix, text: &str, code: RejectionCode) -> Rejection {
    match decode_device_message(suffix, text.as_bytes()) {
        Err(r) => {
            assert_eq!(r.code, code, "{r}");
            r
        }
        Ok(m) => panic!("accepted, expected {code}: {m:?}"),
    }
}

fn rows_rejected(text: &str, code: RejectionCode) -> Rejection {
    rejected(Suffix::RowsBatch, text, code)
}

fn telemetry_rejected(text: &str, code: RejectionCode) -> Rejection {
    rejected(Suffix::TelemetryBatch, text, code)
}

fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in the fixture");
    text.replacen(from, to, 1)
}

/// A row batch of `n` rows with commit_seq 1..=n.
fn rows_batch_of(n: usize, pad: usize) -> String {
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

// ---- one test per code ----

#[test]
fn code_1_unknown_topic_for_a_suffix_that_is_not_device_to_cloud() {
    for s in [
        Suffix::IngestControl,
        Suffix::IngestReceipt,
        Suffix::IngestRequest,
    ] {
        rejected(s, ROWS, RejectionCode::UnknownTopic);
    }
}

#[test]
fn code_2_malformed_json_for_bytes_that_are_not_a_json_object() {
    for bad in ["", "{", "[]", "\"x\"", "null", "{\"a\":1,\"a\":2}", "{} {}"] {
        rows_rejected(bad, RejectionCode::MalformedJson);
    }
    let r = decode_device_message(Suffix::RowsBatch, b"{\"a\":\"\xc3\x28\"}").unwrap_err();
    assert_eq!(r.code, RejectionCode::MalformedJson);
    assert!(r.message.contains("UTF-8"), "{}", r.message);
}

#[test]
fn code_3_payload_too_large_except_for_a_batch_of_exactly_one_row() {
    let two = rows_batch_of(2, 270_000);
    let r = rows_rejected(&two, RejectionCode::PayloadTooLarge);
    assert_eq!(
        r.batch_id.as_deref(),
        Some("019dd351-1a68-7a21-b3c4-5d6e7f809a1b")
    );
    let one = rows_batch_of(1, 600_000);
    assert!(one.len() > crate::limits::MAX_PAYLOAD_BYTES);
    assert!(rows(&one).is_ok());
    let obs = format!(
        r#"{{"format_version":1,"pad":"{}","rows":[1],"source_table":"t","schema_hash":"{}","observed_at":"2026-04-28T09:00:00Z"}}"#,
        "x".repeat(600_000),
        "0".repeat(64)
    );
    rejected(Suffix::SchemaObserve, &obs, RejectionCode::PayloadTooLarge);
}

#[test]
fn code_4_tenant_keys_at_top_level_but_not_as_column_names() {
    for key in ["device_id", "org_id", "project_id", "fleet_id"] {
        let text = replace(
            ROWS,
            "\"format_version\": 1,",
            &format!("\"format_version\": 1, \"{key}\": \"x\","),
        );
        let r = rows_rejected(&text, RejectionCode::EnvelopeUnstrippedTenantFields);
        assert!(r.message.starts_with(key));
    }
    let cols = replace(
        ROWS,
        "\"mode\": \"cooling\"",
        "\"mode\": \"cooling\", \"org_id\": 5",
    );
    assert!(rows(&cols).is_ok());
}

#[test]
fn code_5_invalid_format_version_when_missing_not_an_integer_or_below_1() {
    for v in ["0", "-1", "1.0", "\"1\"", "null", "true"] {
        let text = replace(
            ROWS,
            "\"format_version\": 1",
            &format!("\"format_version\": {v}"),
        );
        rows_rejected(&text, RejectionCode::InvalidFormatVersion);
    }
    let text = replace(ROWS, "\"format_version\": 1,", "");
    rows_rejected(&text, RejectionCode::InvalidFormatVersion);
}

#[test]
fn code_6_unsupported_format_version_above_1() {
    let text = replace(ROWS, "\"format_version\": 1", "\"format_version\": 2");
    rows_rejected(&text, RejectionCode::UnsupportedFormatVersion);
}

#[test]
fn code_7_malformed_json_for_missing_fields_and_wrong_types_or_forms() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "\"sqlite_row_batch_v1\"",
            "\"sqlite_row_batch_v2\"",
            "capture_strategy",
        ),
        ("\"op\": \"update\"", "\"op\": \"upsert\"", "rows[0].op"),
        (
            "\"schema_hash\": \"4d8f",
            "\"schema_hash\": \"4D8F",
            "schema_hash",
        ),
        ("\"row\": null", "\"row\": {\"id\": 7}", "rows[1].row"),
        (
            "\"row\": {\"id\": 1, \"mode\": \"cooling\"}",
            "\"row\": null",
            "rows[0].row",
        ),
        (
            "\"commit_seq\": 101",
            "\"commit_seq\": 0",
            "rows[0].commit_seq",
        ),
        (
            "\"commit_seq\": 103",
            "\"commit_seq\": 103.0",
            "rows[1].commit_seq",
        ),
        ("\"pk\": {\"id\": 7}", "\"pk\": [7]", "rows[1].pk"),
        ("\"batch_id\": ", "\"batch_idx\": ", "batch_id"),
        (
            "\"source_table\": \"device_state\"",
            "\"source_table\": \"\"",
            "source_table",
        ),
        (
            "\"decl_type_affinity\": \"TEXT\"",
            "\"decl_type_affinity\": \"text\"",
            "schema_columns.columns[1]",
        ),
        (
            "\"not_null\": true",
            "\"not_null\": 1",
            "schema_columns.columns[0].not_null",
        ),
        ("\"rows\": [", "\"rows\": {\"x\": [", "rows"),
    ];
    for (from, to, path) in cases {
        let text = replace(ROWS, from, to);
        let text = if to.ends_with("{\"x\": [") {
            text.replacen("]\n}", "]}\n}", 1)
        } else {
            text
        };
        let r = rows_rejected(&text, RejectionCode::MalformedJson);
        assert!(r.message.starts_with(path), "{path}: {}", r.message);
    }
    let part0 = replace(SNAPSHOT, "\"part\":1", "\"part\":0");
    assert!(
        rows_rejected(&part0, RejectionCode::MalformedJson)
            .message
            .starts_with("snapshot.part")
    );
    let ts = replace(
        TELEMETRY,
        "\"ts\": \"2026-04-28T09:00:01Z\"",
        "\"ts\": \"2026-04-28 9:00\"",
    );
    assert!(
        telemetry_rejected(&ts, RejectionCode::MalformedJson)
            .message
            .starts_with("rows[0].ts")
    );
    let empty = TELEMETRY.split("\"rows\"").next().unwrap().to_owned() + "\"rows\": []}";
    telemetry_rejected(&empty, RejectionCode::MalformedJson);
}

#[test]
fn code_8_invalid_batch_id_for_ids_that_are_not_uuid_v7() {
    let v4 = replace(ROWS, "019dd351-1a68-7a21", "019dd351-1a68-4a21");
    assert!(
        rows_rejected(&v4, RejectionCode::InvalidBatchId)
            .message
            .starts_with("batch_id")
    );
    let epoch = replace(ROWS, "019dd31a-2800-7000-8000", "019dd31a-2800-7000-c000");
    assert!(
        rows_rejected(&epoch, RejectionCode::InvalidBatchId)
            .message
            .starts_with("journal_epoch")
    );
    let snap = replace(SNAPSHOT, "\"id\":\"019dd351-0000", "\"id\":\"x19dd351-0000");
    assert!(
        rows_rejected(&snap, RejectionCode::InvalidBatchId)
            .message
            .starts_with("snapshot.id")
    );
    let t = replace(TELEMETRY, "019dd351-1e50", "019dd351-1e5");
    let r = telemetry_rejected(&t, RejectionCode::InvalidBatchId);
    assert_eq!(r.batch_id, None);
}

#[test]
fn code_9_batch_too_many_rows_above_4096() {
    assert!(rows(&rows_batch_of(4096, 0)).is_ok());
    rows_rejected(&rows_batch_of(4097, 0), RejectionCode::BatchTooManyRows);
    let sample = r#"{"ts": "2026-04-28T09:00:01Z", "fields": {"id": 1}}"#;
    let samples = vec![sample; 4097].join(",");
    let text = TELEMETRY
        .split("\"cursor_end_ts\"")
        .next()
        .unwrap()
        .to_owned()
        + &format!(
            r#""cursor_end_ts": "2026-04-28T09:00:01Z", "row_count": 4097, "rows": [{samples}]}}"#
        );
    telemetry_rejected(&text, RejectionCode::BatchTooManyRows);
}

#[test]
fn code_10_row_count_mismatch() {
    let text = replace(TELEMETRY, "\"row_count\": 2", "\"row_count\": 3");
    telemetry_rejected(&text, RejectionCode::RowCountMismatch);
}

#[test]
fn code_11_seq_range_mismatch_for_each_sequence_rule() {
    let first = replace(
        ROWS,
        "\"first_commit_seq\": 101",
        "\"first_commit_seq\": 100",
    );
    rows_rejected(&first, RejectionCode::SeqRangeMismatch);
    let last = replace(ROWS, "\"last_commit_seq\": 103", "\"last_commit_seq\": 104");
    rows_rejected(&last, RejectionCode::SeqRangeMismatch);
    let order = replace(ROWS, "\"commit_seq\": 103", "\"commit_seq\": 101");
    let order = replace(
        &order,
        "\"last_commit_seq\": 103",
        "\"last_commit_seq\": 101",
    );
    let r = rows_rejected(&order, RejectionCode::SeqRangeMismatch);
    assert!(r.message.starts_with("rows[1].commit_seq"), "{}", r.message);
    let empty = ROWS.split("\"rows\"").next().unwrap().to_owned() + "\"rows\": []}";
    rows_rejected(&empty, RejectionCode::SeqRangeMismatch);
    let op = replace(
        SNAPSHOT,
        "\"op\":\"insert\",\"pk\":{\"id\":2}",
        "\"op\":\"update\",\"pk\":{\"id\":2}",
    );
    assert!(
        rows_rejected(&op, RejectionCode::SeqRangeMismatch)
            .message
            .starts_with("rows[1]")
    );
    let seq = replace(
        SNAPSHOT,
        "{\"commit_seq\":500,\"op\":\"insert\",\"pk\":{\"id\":2}",
        "{\"commit_seq\":499,\"op\":\"insert\",\"pk\":{\"id\":2}",
    );
    rows_rejected(&seq, RejectionCode::SeqRangeMismatch);
}

#[test]
fn code_12_cursor_timestamp_mismatch_compares_instants() {
    let text = replace(
        TELEMETRY,
        "\"cursor_end_ts\": \"2026-04-28T09:00:02.5Z\"",
        "\"cursor_end_ts\": \"2026-04-28T09:00:02Z\"",
    );
    telemetry_rejected(&text, RejectionCode::CursorTimestampMismatch);
    let same_instant = replace(
        TELEMETRY,
        "\"cursor_end_ts\": \"2026-04-28T09:00:02.5Z\"",
        "\"cursor_end_ts\": \"2026-04-28T11:00:02.500+02:00\"",
    );
    assert!(telemetry(&same_instant).is_ok());
}

#[test]
fn code_13_invalid_row_id_when_present_but_not_a_short_non_empty_string() {
    let long = format!("\"{}\"", "x".repeat(1025));
    for bad in ["\"\"", "42", "null", long.as_str()] {
        let text = replace(
            TELEMETRY,
            "\"row_id\": \"{\\\"id\\\":42}\"",
            &format!("\"row_id\": {bad}"),
        );
        let r = telemetry_rejected(&text, RejectionCode::InvalidRowId);
        assert!(r.message.starts_with("rows[1].row_id"), "{}", r.message);
    }
    let absent = replace(TELEMETRY, "\"row_id\": \"{\\\"id\\\":42}\", ", "");
    let Ok(DeviceMessage::TelemetryBatch(b)) = telemetry(&absent) else {
        panic!()
    };
    assert_eq!(b.rows[1].row_id, None);
}

#[test]
fn code_14_invalid_number_encoding_anywhere_in_the_payload() {
    let cases = [
        (
            "\"mode\": \"cooling\"",
            "\"mode\": 1e999",
            "rows[0].row.mode",
        ),
        (
            "\"pk\": {\"id\": 7}",
            "\"pk\": {\"id\": 18446744073709551616}",
            "rows[1].pk.id",
        ),
        (
            "\"format_version\": 1,",
            "\"format_version\": 1, \"extra\": [NaN],",
            "extra[0]",
        ),
        (
            "\"commit_seq\": 103",
            "\"commit_seq\": 99999999999999999999",
            "rows[1].commit_seq",
        ),
        (
            "\"format_version\": 1",
            "\"format_version\": 1e400",
            "format_version",
        ),
    ];
    for (from, to, path) in cases {
        let r = rows_rejected(
            &replace(ROWS, from, to),
            RejectionCode::InvalidNumberEncoding,
        );
        assert!(r.message.starts_with(path), "{path}: {}", r.message);
    }
    let t = replace(TELEMETRY, "\"value\": 22.4", "\"value\": -Infinity");
    telemetry_rejected(&t, RejectionCode::InvalidNumberEncoding);
}

#[test]
fn code_15_invalid_value_encoding_for_bad_values_and_keys() {
    let cases = [
        ("\"mode\": \"cooling\"", "\"mode\": [1]", "rows[0].row.mode"),
        (
            "\"mode\": \"cooling\"",
            "\"mode\": {\"$blob\": \"AP8\"}",
            "rows[0].row.mode",
        ),
        (
            "\"mode\": \"cooling\"",
            "\"mode\": {\"$real\": \"nan\"}",
            "rows[0].row.mode",
        ),
        (
            "\"mode\": \"cooling\"",
            "\"mode\": true",
            "rows[0].row.mode",
        ),
        ("\"pk\": {\"id\": 7}", "\"pk\": {}", "rows[1].pk"),
        (
            "\"pk\": {\"id\": 7}",
            "\"pk\": {\"id\": null}",
            "rows[1].pk.id",
        ),
        ("\"pk\": {\"id\": 7}", "\"pk\": {\"\": 7}", "rows[1].pk"),
        (
            "\"mode\": \"cooling\"",
            "\"mode\": \"cooling\", \"\": 1",
            "rows[0].row",
        ),
        (
            "\"row\": {\"id\": 1,",
            "\"row\": {\"id\": 2,",
            "rows[0].row.id",
        ),
        (
            "\"row\": {\"id\": 1,",
            "\"row\": {\"idx\": 1,",
            "rows[0].row.id",
        ),
    ];
    for (from, to, path) in cases {
        let r = rows_rejected(
            &replace(ROWS, from, to),
            RejectionCode::InvalidValueEncoding,
        );
        assert!(r.message.starts_with(path), "{path}: {}", r.message);
    }
    let t = replace(
        TELEMETRY,
        "\"value\": 22.4",
        "\"value\": {\"$real\": \"inf\", \"x\": 1}",
    );
    let r = telemetry_rejected(&t, RejectionCode::InvalidValueEncoding);
    assert!(
        r.message.starts_with("rows[1].fields.value"),
        "{}",
        r.message
    );
}

#[test]
fn code_16_schema_hash_mismatch_for_another_table_or_hash() {
    let table = replace(
        ROWS,
        "\"table_name\": \"device_state\"",
        "\"table_name\": \"other\"",
    );
    rows_rejected(&table, RejectionCode::SchemaHashMismatch);
    let hash = replace(
        ROWS,
        "\"pk_ordinal\": 0, \"not_null\": false",
        "\"pk_ordinal\": 0, \"not_null\": true",
    );
    rows_rejected(&hash, RejectionCode::SchemaHashMismatch);
    let reordered = replace(ROWS, "\"table_name\": \"device_state\",", "");
    let reordered = replace(&reordered, "\"columns\": [", "\"columns\": [");
    let reordered = replace(
        &reordered,
        "\n    ]\n  },",
        "\n    ], \"table_name\": \"device_state\"\n  },",
    );
    assert!(rows(&reordered).is_ok(), "{:?}", rows(&reordered));
}

#[test]
fn every_code_has_its_exact_snake_case_name() {
    let names: Vec<&str> = RejectionCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "unknown_topic",
            "malformed_json",
            "payload_too_large",
            "envelope_unstripped_tenant_fields",
            "invalid_format_version",
            "unsupported_format_version",
            "invalid_batch_id",
            "batch_too_many_rows",
            "row_count_mismatch",
            "seq_range_mismatch",
            "cursor_timestamp_mismatch",
            "invalid_row_id",
            "invalid_number_encoding",
            "invalid_value_encoding",
            "schema_hash_mismatch",
            "duplicate_batch_seq",
            "stale_batch_seq",
            "materialization_failed",
        ]
    );
    for c in RejectionCode::ALL {
        assert_eq!(RejectionCode::parse(c.as_str()), Some(c));
        assert_eq!(c.to_string(), c.as_str());
    }
    let r = Rejection::new(RejectionCode::InvalidRowId, "rows[0].row_id: x");
    assert_eq!(r.to_string(), "invalid_row_id: rows[0].row_id: x");
}

// ---- order ----

#[test]
fn checks_run_in_table_order_when_two_rules_are_broken() {
    use RejectionCode as C;
    let big = "x".repeat(600_000);
    // 2 before 3: duplicate keys in an oversized payload.
    let dup_big = format!(r#"{{"rows":[1,2],"pad":"{big}","pad":1}}"#);
    rows_rejected(&dup_big, C::MalformedJson);
    // 3 before 4: oversized with a tenant key.
    rows_rejected(
        &format!(r#"{{"device_id":"d","pad":"{big}"}}"#),
        C::PayloadTooLarge,
    );
    // 4 before 5: tenant key and no format_version.
    rows_rejected(r#"{"org_id": 1}"#, C::EnvelopeUnstrippedTenantFields);
    // 5 before 7: bad format_version and nothing else.
    rows_rejected(r#"{"format_version": 0}"#, C::InvalidFormatVersion);
    // 6 before 7.
    rows_rejected(r#"{"format_version": 2}"#, C::UnsupportedFormatVersion);
    // 7 before 8: unknown op and a bad batch_id.
    let t = replace(
        &replace(ROWS, "\"op\": \"update\"", "\"op\": \"merge\""),
        "-7a21-",
        "-4a21-",
    );
    rows_rejected(&t, C::MalformedJson);
    // 8 before 9: bad batch_id and too many rows.
    rows_rejected(
        &replace(&rows_batch_of(4097, 0), "-7a21-", "-4a21-"),
        C::InvalidBatchId,
    );
    // 9 before 11: too many rows and a wrong last_commit_seq.
    let many = replace(
        &rows_batch_of(4097, 0),
        "\"last_commit_seq\":4097",
        "\"last_commit_seq\":1",
    );
    rows_rejected(&many, C::BatchTooManyRows);
    // 10 before 12: row_count and cursor both wrong.
    let t = replace(
        &replace(TELEMETRY, "\"row_count\": 2", "\"row_count\": 1"),
        "02.5Z\",\n  \"row_count",
        "03Z\",\n  \"row_count",
    );
    telemetry_rejected(&t, C::RowCountMismatch);
    // 11 before 14: seq mismatch and a bad number in a value.
    let t = replace(
        &replace(
            ROWS,
            "\"first_commit_seq\": 101",
            "\"first_commit_seq\": 102",
        ),
        "\"mode\": \"cooling\"",
        "\"mode\": 1e999",
    );
    rows_rejected(&t, C::SeqRangeMismatch);
    // 12 before 13: cursor wrong and an empty row_id.
    let t = replace(
        &replace(
            TELEMETRY,
            "\"cursor_start_ts\": \"2026-04-28T09:00:01Z\"",
            "\"cursor_start_ts\": \"2026-04-28T09:00:00Z\"",
        ),
        "\"row_id\": \"{\\\"id\\\":41}\"",
        "\"row_id\": \"\"",
    );
    telemetry_rejected(&t, C::CursorTimestampMismatch);
    // 13 before 14: a bad row_id and a bad number.
    let t = replace(
        &replace(
            TELEMETRY,
            "\"row_id\": \"{\\\"id\\\":41}\"",
            "\"row_id\": \"\"",
        ),
        "22.4",
        "1e999",
    );
    telemetry_rejected(&t, C::InvalidRowId);
    // 14 before 15: a bad number and an array value.
    let t = replace(
        &replace(ROWS, "\"mode\": \"cooling\"", "\"mode\": [1e999]"),
        "\"pk\": {\"id\": 7}",
        "\"pk\": {\"id\": [1]}",
    );
    rows_rejected(&t, C::InvalidNumberEncoding);
    // 15 before 16: a null pk value and a schema for another table.
    let t = replace(
        &replace(ROWS, "\"pk\": {\"id\": 7}", "\"pk\": {\"id\": null}"),
        "\"table_name\": \"device_state\"",
        "\"table_name\": \"x\"",
    );
    rows_rejected(&t, C::InvalidValueEncoding);
}

// ---- cloud-to-device ----

#[test]
fn controls_are_dropped_when_too_large_unparseable_or_of_another_version() {
    let ok = r#"{"format_version":1,"control_id":"019dd351-1680-7c41-9b5e-3f0a6c1d2e4f",
        "control_kind":"pause_lineage","control_seq":7,"source_table":"t","server_watermark":0,
        "issued_at":"2026-04-28T09:00:00Z"}"#;
    let c = decode_control(ok.as_bytes(), 1024).unwrap();
    assert_eq!(
        (c.control_seq, c.server_watermark, c.signature),
        (7, Some(0), None)
    );
    assert_eq!(
        decode_control(ok.as_bytes(), 10).unwrap_err().code,
        RejectionCode::PayloadTooLarge
    );
    assert_eq!(
        decode_control(b"{", 1024).unwrap_err().code,
        RejectionCode::MalformedJson
    );
    let v2 = ok.replace("\"format_version\":1", "\"format_version\":2");
    assert_eq!(
        decode_control(v2.as_bytes(), 1024).unwrap_err().code,
        RejectionCode::UnsupportedFormatVersion
    );
    let no_wm = ok.replace(",\"server_watermark\":0", "");
    assert!(
        decode_control(no_wm.as_bytes(), 1024)
            .unwrap_err()
            .message
            .starts_with("server_watermark")
    );
    let other = no_wm.replace("pause_lineage", "future_kind");
    let c = decode_control(other.as_bytes(), 1024).unwrap();
    assert_eq!(
        c.control_kind,
        crate::message::ControlKind::Other("future_kind".into())
    );
    let unsigned_sig = ok.replace("\"control_seq\":7,", "\"control_seq\":7,\"signature\":1,");
    assert_eq!(
        decode_control(unsigned_sig.as_bytes(), 1024)
            .unwrap_err()
            .code,
        RejectionCode::MalformedJson
    );
}

#[test]
fn receipts_decode_rows_and_telemetry_lineages() {
    let text = r#"{"format_version":1,"issued_at":"2026-04-28T09:00:01Z",
      "lineages":[{"source_table":"device_state","journal_epoch":"019dd31a-2800-7000-8000-000000000001","confirmed_through":103},
                  {"source_table":"temps","batch_seq_through":42}],
      "rejected":[{"batch_id":"019dd351-1a68-7a21-b3c4-5d6e7f809a1b","source_table":"orders","code":"invalid_value_encoding"}]}"#;
    let r = decode_receipt(text.as_bytes()).unwrap();
    assert_eq!(r.lineages.len(), 2);
    assert!(r.snapshots_complete.is_empty());
    assert_eq!(r.rejected[0].code, "invalid_value_encoding");
    let bad = text.replace("\"confirmed_through\":103", "\"confirmed_through\":\"103\"");
    let e = decode_receipt(bad.as_bytes()).unwrap_err();
    assert!(
        e.message.starts_with("lineages[0].confirmed_through"),
        "{}",
        e.message
    );
}

// ---- properties ----

fn arb_row_batch() -> impl Strategy<Value = RowBatch> {
    let change = (
        any::<bool>(),
        crate::value::tests::arb_sql_value(),
        crate::value::tests::arb_sql_value(),
    );
    (
        prop::collection::vec(change, 1..20),
        1i64..1_000_000,
        any::<bool>(),
    )
        .prop_map(|(changes, start, chained)| {
            let rows: Vec<RowChange> = changes
                .into_iter()
                .enumerate()
                .map(|(i, (delete, key, v))| {
                    let key = if key.is_null() {
                        SqlValue::Integer(i as i64)
                    } else {
                        key
                    };
                    let pk = vec![("k€y".to_string(), key)];
                    let row = (!delete).then(|| {
                        let mut r = pk.clone();
                        r.push(("v\n\"".to_string(), v));
                        r
                    });
                    let op = if delete { Op::Delete } else { Op::Update };
                    RowChange {
                        commit_seq: start + 2 * i as i64,
                        op,
                        pk,
                        row,
                    }
                })
                .collect();
            RowBatch {
                batch_id: crate::ids::new_v7(),
                journal_epoch: crate::ids::new_v7(),
                source_table: "t".into(),
                schema_hash: "a".repeat(64),
                schema_columns: None,
                first_commit_seq: rows[0].commit_seq,
                last_commit_seq: rows[rows.len() - 1].commit_seq,
                prev_commit_seq: chained.then_some(start - 1),
                rows,
                snapshot: None,
            }
        })
}

fn same_values(a: &RowBatch, b: &RowBatch) -> bool {
    // Compare through the wire bytes so that -0.0 and 0.0 stay distinct.
    a.to_json_bytes() == b.to_json_bytes()
}

proptest! {
    #[test]
    fn encoded_row_batches_decode_to_the_same_batch(b in arb_row_batch()) {
        let bytes = b.to_json_bytes();
        match decode_device_message(Suffix::RowsBatch, &bytes) {
            Ok(DeviceMessage::RowBatch(back)) => prop_assert!(same_values(&b, &back)),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for s in Suffix::ALL {
            let _ = decode_device_message(s, &bytes);
        }
        let _ = decode_control(&bytes, 1 << 16);
        let _ = decode_receipt(&bytes);
    }

    #[test]
    fn mutated_valid_payloads_never_panic_the_decoder(
        which in 0usize..3, at in any::<prop::sample::Index>(), len in 0usize..8,
        with in prop::collection::vec(any::<u8>(), 0..8)
    ) {
        let base = [ROWS, TELEMETRY, SNAPSHOT][which].as_bytes();
        let start = at.index(base.len());
        let end = (start + len).min(base.len());
        let mut bytes = base[..start].to_vec();
        bytes.extend_from_slice(&with);
        bytes.extend_from_slice(&base[end..]);
        for s in [Suffix::RowsBatch, Suffix::TelemetryBatch, Suffix::SchemaObserve, Suffix::IngestAck] {
            let _ = decode_device_message(s, &bytes);
        }
        let _ = decode_control(&bytes, 1 << 16);
    }
}
