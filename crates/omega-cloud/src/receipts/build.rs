//! Building signed receipts (`receipts.md` §4): the entries a device's lineages contribute,
//! and the split into payloads of at most 512 KiB, each signed like a control
//! (`protocol.md` §12.4, bound to the device id). Pure: no store, no network.

use std::collections::BTreeSet;

use omega_protocol::message::{Receipt, ReceiptLineage, RejectedBatch, SnapshotComplete};
use omega_protocol::signing::ControlKey;
use time::OffsetDateTime;

use crate::lineage::Lineage;

/// Largest receipt payload (`receipts.md` §4.5).
pub const MAX_RECEIPT_BYTES: usize = omega_protocol::limits::MAX_PAYLOAD_BYTES;

/// The `lineages` entries of the lineages in `tables`:
///
/// - a rows entry `{source_table, journal_epoch, confirmed_through}` when the lineage carries
///   rows and its point in the current epoch is above 0 (`receipts.md` §3.1–§3.4);
/// - a telemetry entry `{source_table, batch_seq_through}` when it carries telemetry: the
///   point of the `prev_batch_seq` chain (**[Omega]**; `batch_seq` alone may have gaps, so the
///   chain is what tells a lost batch from a skipped number), or, for a device that sends no
///   `prev_batch_seq`, the highest `batch_seq` accepted; see `docs/cloud.md`.
pub fn lineage_entries<'a>(
    lineages: impl IntoIterator<Item = &'a Lineage>,
    tables: &BTreeSet<String>,
) -> Vec<ReceiptLineage> {
    let mut out = Vec::new();
    for l in lineages {
        if !tables.contains(&l.source_table) {
            continue;
        }
        if l.kinds.rows
            && let Some(epoch) = l.journal_epoch
            && l.confirmed_through > 0
        {
            out.push(ReceiptLineage::Rows {
                source_table: l.source_table.clone(),
                journal_epoch: epoch.to_string(),
                confirmed_through: l.confirmed_through,
            });
        }
        // The chained point once the device sends `prev_batch_seq`; the highest accepted
        // number for an agent that does not (it cannot tell a gap from a loss).
        if l.kinds.telemetry
            && let Some(seq) = l.last_batch_seq
        {
            out.push(ReceiptLineage::Telemetry {
                source_table: l.source_table.clone(),
                batch_seq_through: if l.batch_seq_through != 0 {
                    l.batch_seq_through.max(0)
                } else {
                    seq
                },
            });
        }
    }
    out
}

/// What one receipt (or its parts) says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptContent {
    /// Lineages whose point may have moved.
    pub lineages: Vec<ReceiptLineage>,
    /// Snapshots with every part stored.
    pub snapshots_complete: Vec<SnapshotComplete>,
    /// Batches rejected since the last receipt.
    pub rejected: Vec<RejectedBatch>,
}

impl ReceiptContent {
    /// Nothing to say: no receipt is sent.
    pub fn is_empty(&self) -> bool {
        self.lineages.is_empty() && self.snapshots_complete.is_empty() && self.rejected.is_empty()
    }

    fn len(&self) -> usize {
        self.lineages.len() + self.snapshots_complete.len() + self.rejected.len()
    }

    /// Splits the entries in two halves, in order (lineages, then snapshots, then rejected).
    fn halves(self) -> (ReceiptContent, ReceiptContent) {
        let half = self.len() / 2;
        let mut first = ReceiptContent::default();
        let mut second = ReceiptContent::default();
        let (l, s, r) = (
            self.lineages.len(),
            self.snapshots_complete.len(),
            self.rejected.len(),
        );
        let cut = |before: usize, n: usize| half.saturating_sub(before).min(n);
        let (nl, ns, nr) = (cut(0, l), cut(l, s), cut(l + s, r));
        let mut lineages = self.lineages;
        second.lineages = lineages.split_off(nl);
        first.lineages = lineages;
        let mut snapshots = self.snapshots_complete;
        second.snapshots_complete = snapshots.split_off(ns);
        first.snapshots_complete = snapshots;
        let mut rejected = self.rejected;
        second.rejected = rejected.split_off(nr);
        first.rejected = rejected;
        (first, second)
    }
}

/// The signed payloads for `device`: one receipt when it fits in `max_bytes`, otherwise as
/// many as needed, each a valid receipt on its own. An empty content gives no payload.
pub fn signed_payloads(
    content: ReceiptContent,
    key: &ControlKey,
    device: &str,
    issued_at: OffsetDateTime,
    max_bytes: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut todo = vec![content];
    while let Some(c) = todo.pop() {
        if c.is_empty() {
            continue;
        }
        let n = c.len();
        let bytes = sign(&c, key, device, issued_at);
        if bytes.len() <= max_bytes || n == 1 {
            // One entry cannot be split further; table names are bounded, so a single entry
            // is far below the limit in practice.
            out.push(bytes);
        } else {
            let (a, b) = c.halves();
            // Depth first, first half first: payloads keep the entries' order.
            todo.push(b);
            todo.push(a);
        }
    }
    out
}

fn sign(c: &ReceiptContent, key: &ControlKey, device: &str, issued_at: OffsetDateTime) -> Vec<u8> {
    let mut receipt = Receipt {
        issued_at,
        lineages: c.lineages.clone(),
        snapshots_complete: c.snapshots_complete.clone(),
        rejected: c.rejected.clone(),
        signature: None,
        raw: None,
    };
    receipt.signature = Some(key.signature(&receipt.unsigned_members(), device));
    receipt.to_json_bytes()
}

#[cfg(test)]
mod tests {
    use omega_protocol::validate::decode_receipt;
    use uuid::Uuid;

    use super::*;

    fn key() -> ControlKey {
        ControlKey::ed25519_from_secret(&[7; 32])
    }

    fn t0() -> OffsetDateTime {
        omega_protocol::time::parse_rfc3339("2026-04-28T09:00:01Z").unwrap()
    }

    /// A UUIDv7 ordered by `n`.
    fn v7(n: u128) -> Uuid {
        Uuid::from_u128((n << 80) | (0x7u128 << 76) | (0x8u128 << 60) | 1)
    }

    fn rows_lineage(table: &str, confirmed: i64) -> Lineage {
        let mut l = Lineage::new("d1", table, OffsetDateTime::UNIX_EPOCH);
        l.accept_row_batch(v7(5), confirmed, "h", OffsetDateTime::UNIX_EPOCH);
        l.confirmed_through = confirmed;
        l
    }

    fn tables(t: &[&str]) -> BTreeSet<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn entries_name_touched_lineages_with_a_point_and_both_kinds() {
        let a = rows_lineage("a", 10);
        let untouched = rows_lineage("b", 3);
        let nothing_confirmed = rows_lineage("c", 0);
        let mut both = rows_lineage("d", 4);
        both.kinds.telemetry = true;
        both.last_batch_seq = Some(42);
        let got = lineage_entries(
            [&a, &untouched, &nothing_confirmed, &both],
            &tables(&["a", "c", "d"]),
        );
        assert_eq!(
            got,
            vec![
                ReceiptLineage::Rows {
                    source_table: "a".into(),
                    journal_epoch: v7(5).to_string(),
                    confirmed_through: 10
                },
                ReceiptLineage::Rows {
                    source_table: "d".into(),
                    journal_epoch: v7(5).to_string(),
                    confirmed_through: 4
                },
                ReceiptLineage::Telemetry {
                    source_table: "d".into(),
                    batch_seq_through: 42
                },
            ]
        );
    }

    #[test]
    fn a_receipt_is_signed_for_its_device_and_decodes() {
        let content = ReceiptContent {
            lineages: lineage_entries([&rows_lineage("a", 10)], &tables(&["a"])),
            snapshots_complete: vec![SnapshotComplete {
                source_table: "a".into(),
                snapshot_id: v7(9).to_string(),
            }],
            rejected: vec![RejectedBatch {
                batch_id: v7(11).to_string(),
                source_table: None,
                code: "malformed_json".into(),
            }],
        };
        let payloads = signed_payloads(content.clone(), &key(), "d1", t0(), MAX_RECEIPT_BYTES);
        assert_eq!(payloads.len(), 1);
        let r = decode_receipt(&payloads[0]).unwrap();
        assert_eq!(r.lineages, content.lineages);
        assert_eq!(r.snapshots_complete, content.snapshots_complete);
        assert_eq!(r.rejected, content.rejected);
        let v = key().verifier();
        v.verify(r.raw.as_ref().unwrap(), "d1").unwrap();
        assert!(
            v.verify(r.raw.as_ref().unwrap(), "d2").is_err(),
            "bound to the device id"
        );
    }

    #[test]
    fn nothing_to_say_sends_nothing() {
        assert!(signed_payloads(ReceiptContent::default(), &key(), "d1", t0(), 1000).is_empty());
    }

    #[test]
    fn a_receipt_over_the_limit_is_split_into_valid_signed_parts_keeping_every_entry() {
        let ls: Vec<Lineage> = (0..200)
            .map(|i| rows_lineage(&format!("table_{i:03}"), i + 1))
            .collect();
        let all: BTreeSet<String> = ls.iter().map(|l| l.source_table.clone()).collect();
        let content = ReceiptContent {
            lineages: lineage_entries(&ls, &all),
            snapshots_complete: vec![],
            rejected: (0..50)
                .map(|i| RejectedBatch {
                    batch_id: v7(i).to_string(),
                    source_table: Some("x".into()),
                    code: "malformed_json".into(),
                })
                .collect(),
        };
        let max = 4096;
        let payloads = signed_payloads(content.clone(), &key(), "d1", t0(), max);
        assert!(payloads.len() > 1);
        let mut lineages = Vec::new();
        let mut rejected = Vec::new();
        for p in &payloads {
            assert!(p.len() <= max, "{} bytes", p.len());
            let r = decode_receipt(p).unwrap();
            key()
                .verifier()
                .verify(r.raw.as_ref().unwrap(), "d1")
                .unwrap();
            lineages.extend(r.lineages);
            rejected.extend(r.rejected);
        }
        assert_eq!(lineages, content.lineages);
        assert_eq!(rejected, content.rejected);
    }
}
