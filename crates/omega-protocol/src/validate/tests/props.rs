use proptest::prelude::*;

use super::*;
use crate::message::{RowBatch, RowChange};

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
