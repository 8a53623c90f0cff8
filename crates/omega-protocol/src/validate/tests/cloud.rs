use super::*;

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
