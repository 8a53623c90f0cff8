use super::*;

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
fn code_11_a_telemetry_prev_batch_seq_not_below_batch_seq() {
    let seq: i64 = 1_777_366_800_042; // the fixture's batch_seq
    assert!(TELEMETRY.contains(&format!("\"batch_seq\": {seq}")));
    for prev in [seq, seq + 1] {
        let text = TELEMETRY.replacen(
            "\"batch_seq\"",
            &format!("\"prev_batch_seq\": {prev}, \"batch_seq\""),
            1,
        );
        telemetry_rejected(&text, RejectionCode::SeqRangeMismatch);
    }
    let ok = TELEMETRY.replacen(
        "\"batch_seq\"",
        &format!("\"prev_batch_seq\": {}, \"batch_seq\"", seq - 1),
        1,
    );
    let b = crate::validate::validate_telemetry_batch(&crate::json::parse(ok.as_bytes()).unwrap())
        .unwrap();
    assert_eq!(b.prev_batch_seq, Some(seq - 1));
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
