use super::*;

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
