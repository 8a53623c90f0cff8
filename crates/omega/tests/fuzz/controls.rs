//! Control envelopes and delivery receipts near the valid ones → `decode_control`,
//! `decode_receipt` (what the agent reads from the cloud, before verifying signatures).

use omega_protocol::message::{
    ControlEnvelope, ControlKind, Receipt, ReceiptLineage, RejectedBatch, Signature,
    SnapshotComplete,
};
use omega_protocol::validate::{decode_control, decode_receipt};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use time::OffsetDateTime;

use crate::mutate::{self, Mutation, TextMutation};
use crate::{Tally, fuzz};

fn instant() -> impl Strategy<Value = OffsetDateTime> {
    (0i64..4_000_000_000, 0u32..1000).prop_map(|(s, ms)| {
        OffsetDateTime::from_unix_timestamp(s).unwrap() + time::Duration::milliseconds(ms.into())
    })
}

fn signature() -> impl Strategy<Value = Option<Signature>> {
    prop::option::of(
        (
            prop_oneof![Just("ed25519".to_string()), Just("hmac-sha256".to_string())],
            "[0-9a-f]{16}",
            "[A-Za-z0-9+/]{86}==",
        )
            .prop_map(|(alg, key_id, value)| Signature { alg, key_id, value }),
    )
}

fn control() -> impl Strategy<Value = ControlEnvelope> {
    (
        prop_oneof![
            Just(ControlKind::PauseLineage),
            Just(ControlKind::ResumeLineage),
            Just(ControlKind::ResnapshotTable),
            Just(ControlKind::UrlGrant),
            "[a-z_]{1,12}".prop_map(ControlKind::Other),
        ],
        1i64..1_000_000,
        prop::option::of("\\PC{1,12}"),
        prop::option::of(0i64..1_000_000),
        prop::option::of("\\PC{0,20}"),
        instant(),
        signature(),
    )
        .prop_map(
            |(kind, seq, table, watermark, reason, issued_at, signature)| {
                let table = table.or_else(|| kind.needs_table().then(|| "t".to_string()));
                let watermark = watermark.or_else(|| kind.needs_watermark().then_some(0));
                ControlEnvelope {
                    control_id: omega_protocol::ids::new_v7(),
                    control_kind: kind,
                    control_seq: seq,
                    source_table: table,
                    server_watermark: watermark,
                    reason,
                    issued_at,
                    signature,
                    raw: None,
                }
            },
        )
}

fn receipt() -> impl Strategy<Value = Receipt> {
    let lineage = prop_oneof![
        ("\\PC{1,8}", 0i64..1_000_000).prop_map(|(t, c)| ReceiptLineage::Rows {
            source_table: t,
            journal_epoch: omega_protocol::ids::new_v7(),
            confirmed_through: c,
        }),
        ("\\PC{1,8}", 0i64..1_000_000).prop_map(|(t, b)| ReceiptLineage::Telemetry {
            source_table: t,
            batch_seq_through: b,
        }),
    ];
    (
        instant(),
        prop::collection::vec(lineage, 0..4),
        prop::collection::vec("\\PC{1,8}", 0..3),
        prop::collection::vec((prop::option::of("\\PC{1,8}"), "[a-z_]{3,20}"), 0..3),
        signature(),
    )
        .prop_map(
            |(issued_at, lineages, snaps, rejected, signature)| Receipt {
                issued_at,
                lineages,
                snapshots_complete: snaps
                    .into_iter()
                    .map(|t| SnapshotComplete {
                        source_table: t,
                        snapshot_id: omega_protocol::ids::new_v7(),
                    })
                    .collect(),
                rejected: rejected
                    .into_iter()
                    .map(|(t, code)| RejectedBatch {
                        batch_id: omega_protocol::ids::new_v7(),
                        source_table: t,
                        code,
                    })
                    .collect(),
                signature,
                raw: None,
            },
        )
}

fn mutated(json: &[u8], muts: &[Mutation], text: &TextMutation) -> Result<Vec<u8>, TestCaseError> {
    let mut doc: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| TestCaseError::fail(format!("the encoder wrote invalid JSON: {e}")))?;
    for m in muts {
        mutate::apply(&mut doc, m);
    }
    Ok(mutate::render(&doc, text))
}

/// The fields of a control, without the raw object it was read from.
fn fields(c: &ControlEnvelope) -> ControlEnvelope {
    ControlEnvelope {
        raw: None,
        ..c.clone()
    }
}

#[test]
fn near_valid_controls_are_accepted_whole_or_refused_with_a_code() {
    let tally = Tally::default();
    let strategy = (
        control(),
        prop::collection::vec(mutate::mutation(), 0..=3),
        mutate::text_mutation(),
    );
    fuzz("controls", strategy, &tally, |(c, muts, text)| {
        let bytes = mutated(&c.to_json_bytes(), &muts, &text)?;
        match decode_control(&bytes, 1 << 16) {
            Ok(got) => {
                prop_assert!(got.control_seq >= 1, "control_seq {}", got.control_seq);
                prop_assert!(
                    !got.control_kind.needs_table() || got.source_table.is_some(),
                    "{got:?}"
                );
                prop_assert!(
                    !got.control_kind.needs_watermark()
                        || got.server_watermark.is_some_and(|w| w >= 0),
                    "{got:?}"
                );
                let again = fields(&got).to_json_bytes();
                match decode_control(&again, 1 << 16) {
                    Ok(back) => prop_assert_eq!(fields(&back), fields(&got)),
                    Err(r) => prop_assert!(false, "re-encoded control refused: {r:?}"),
                }
                tally.count("accepted");
            }
            Err(r) => crate::refused(&tally, &r)?,
        }
        Ok(())
    });
    assert!(
        tally.get("accepted") > 0,
        "no generated control was accepted"
    );
    assert!(
        tally.outcomes() >= 3,
        "the mutations reach few rejection codes"
    );
}

#[test]
fn near_valid_receipts_are_accepted_whole_or_refused_with_a_code() {
    let tally = Tally::default();
    let strategy = (
        receipt(),
        prop::collection::vec(mutate::mutation(), 0..=3),
        mutate::text_mutation(),
    );
    fuzz("receipts", strategy, &tally, |(r, muts, text)| {
        let bytes = mutated(&r.to_json_bytes(), &muts, &text)?;
        match decode_receipt(&bytes) {
            Ok(got) => {
                let strip = |r: &Receipt| Receipt {
                    raw: None,
                    ..r.clone()
                };
                let again = strip(&got).to_json_bytes();
                match decode_receipt(&again) {
                    Ok(back) => prop_assert_eq!(strip(&back), strip(&got)),
                    Err(e) => prop_assert!(false, "re-encoded receipt refused: {e:?}"),
                }
                tally.count("accepted");
            }
            Err(e) => crate::refused(&tally, &e)?,
        }
        Ok(())
    });
    assert!(
        tally.get("accepted") > 0,
        "no generated receipt was accepted"
    );
    assert!(
        tally.outcomes() >= 3,
        "the mutations reach few rejection codes"
    );
}
