//! Row batches near the valid ones → `decode_device_message`.

use omega_protocol::message::{Op, RowBatch, RowChange, SnapshotMarker};
use omega_protocol::topic::Suffix;
use omega_protocol::validate::{DeviceMessage, decode_device_message};
use omega_protocol::value::SqlValue;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::mutate::{self, Mutation, TextMutation};
use crate::{Tally, fuzz};

fn value() -> impl Strategy<Value = SqlValue> {
    prop_oneof![
        Just(SqlValue::Null),
        any::<i64>().prop_map(SqlValue::Integer),
        prop_oneof![
            Just(0.1f64),
            Just(-0.0),
            Just(f64::INFINITY),
            Just(f64::MIN_POSITIVE),
            -1e12f64..1e12
        ]
        .prop_map(SqlValue::Real),
        "\\PC{0,16}".prop_map(SqlValue::Text),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(SqlValue::Blob),
    ]
}

fn key() -> impl Strategy<Value = SqlValue> {
    prop_oneof![
        any::<i64>().prop_map(SqlValue::Integer),
        "\\PC{1,8}".prop_map(SqlValue::Text),
        prop::collection::vec(any::<u8>(), 1..8).prop_map(SqlValue::Blob),
    ]
}

/// A batch as the agent builds one: 1..=12 changes with rising `commit_seq`, one or two key
/// columns, values of every type; sometimes chained, sometimes a snapshot part.
fn batch() -> impl Strategy<Value = RowBatch> {
    let change = (
        0u8..3,
        prop::collection::vec(key(), 1..=2),
        prop::collection::vec(value(), 0..4),
        1i64..4,
    );
    (
        prop::collection::vec(change, 1..=12),
        1i64..1_000_000,
        any::<bool>(),
        0u8..4,
    )
        .prop_map(|(changes, start, chained, snapshot)| {
            let snapshot = (snapshot == 0).then(|| SnapshotMarker {
                id: omega_protocol::ids::new_v7(),
                part: 1,
                last: true,
            });
            let mut seq = start;
            let rows: Vec<RowChange> = changes
                .into_iter()
                .enumerate()
                .map(|(i, (op, keys, values, step))| {
                    let pk: Vec<(String, SqlValue)> = keys
                        .into_iter()
                        .enumerate()
                        .map(|(j, k)| (format!("k{j}"), k))
                        .collect();
                    let op = if snapshot.is_some() {
                        Op::Insert
                    } else {
                        [Op::Insert, Op::Update, Op::Delete][usize::from(op)]
                    };
                    let row = (op != Op::Delete).then(|| {
                        let mut r = pk.clone();
                        r.extend(
                            values
                                .into_iter()
                                .enumerate()
                                .map(|(j, v)| (format!("c{j} ✓"), v)),
                        );
                        r
                    });
                    if snapshot.is_none() && i > 0 {
                        seq += step;
                    }
                    RowChange {
                        commit_seq: seq,
                        op,
                        pk,
                        row,
                    }
                })
                .collect();
            RowBatch {
                batch_id: omega_protocol::ids::new_v7(),
                journal_epoch: omega_protocol::ids::new_v7(),
                source_table: "t \"1\"".into(),
                schema_hash: "ab".repeat(32),
                schema_columns: None,
                first_commit_seq: rows[0].commit_seq,
                last_commit_seq: rows[rows.len() - 1].commit_seq,
                prev_commit_seq: (chained && snapshot.is_none()).then_some(start - 1),
                rows,
                snapshot,
            }
        })
}

/// What a consumer relies on in an accepted batch (`protocol.md` §8, §14 code 11).
fn invariants(b: &RowBatch) -> Result<(), String> {
    if b.rows.len() > 4096 {
        return Err(format!("{} rows accepted", b.rows.len()));
    }
    if b.snapshot.is_none() {
        if b.rows.is_empty() {
            return Err("an empty live batch accepted".into());
        }
        if b.rows
            .windows(2)
            .any(|w| w[0].commit_seq >= w[1].commit_seq)
        {
            return Err("commit_seq not strictly increasing".into());
        }
        if b.first_commit_seq != b.rows[0].commit_seq
            || b.last_commit_seq != b.rows[b.rows.len() - 1].commit_seq
        {
            return Err("first/last_commit_seq are not the rows' bounds".into());
        }
    }
    if let Some(p) = b.prev_commit_seq
        && p >= b.first_commit_seq
    {
        return Err(format!(
            "prev_commit_seq {p} not below first_commit_seq {}",
            b.first_commit_seq
        ));
    }
    for r in &b.rows {
        if r.pk.is_empty() || r.pk.iter().any(|(k, v)| k.is_empty() || v.is_null()) {
            return Err(format!(
                "a pk with no column, an empty name or NULL: {:?}",
                r.pk
            ));
        }
        if let Some(row) = &r.row {
            for (k, v) in &r.pk {
                if !row.iter().any(|(c, rv)| c == k && rv == v) {
                    return Err(format!("pk column {k} not in row with its value"));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn near_valid_row_batches_are_accepted_whole_or_refused_with_a_code() {
    let tally = Tally::default();
    let strategy = (
        batch(),
        prop::collection::vec(mutate::mutation(), 0..=3),
        mutate::text_mutation(),
    );
    fuzz(
        "row batches",
        strategy,
        &tally,
        |(b, muts, text): (RowBatch, Vec<Mutation>, TextMutation)| {
            let mut doc: serde_json::Value = serde_json::from_slice(&b.to_json_bytes())
                .map_err(|e| TestCaseError::fail(format!("the encoder wrote invalid JSON: {e}")))?;
            for m in &muts {
                mutate::apply(&mut doc, m);
            }
            let bytes = mutate::render(&doc, &text);
            match decode_device_message(Suffix::RowsBatch, &bytes) {
                Ok(DeviceMessage::RowBatch(got)) => {
                    invariants(&got).map_err(|e| {
                        TestCaseError::fail(format!(
                            "{e}\npayload: {}",
                            String::from_utf8_lossy(&bytes)
                        ))
                    })?;
                    // What was accepted encodes to a payload accepted as the same batch.
                    let again = got.to_json_bytes();
                    match decode_device_message(Suffix::RowsBatch, &again) {
                        Ok(DeviceMessage::RowBatch(back)) if back.to_json_bytes() == again => {}
                        other => {
                            return Err(TestCaseError::fail(format!(
                                "re-encoded batch not accepted as itself: {other:?}"
                            )));
                        }
                    }
                    tally.count("accepted");
                }
                Ok(other) => {
                    return Err(TestCaseError::fail(format!("not a row batch: {other:?}")));
                }
                Err(r) => crate::refused(&tally, &r)?,
            }
            Ok(())
        },
    );
    assert!(tally.get("accepted") > 0, "no generated batch was accepted");
    assert!(
        tally.outcomes() >= 6,
        "the mutations reach few rejection codes"
    );
}
