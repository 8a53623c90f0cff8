//! Progress bars of an interactive `omega agent run` (stdout a terminal): one bar per snapshot
//! being sent (parts with their PUBACK) and one per table whose held changes are draining
//! (buffered rows going down after a pause, an outage or a backlog). Drawn from what `omega
//! agent status` reads (`state.db` and the journal, read-only), every half second; the agent
//! itself knows nothing of them. Non-interactive runs get the log lines only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use omega_agent::status::StatusReport;

/// One bar as the report shows it: label, position, length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// `snapshot T` or `draining T`.
    pub label: String,
    /// Done so far.
    pub pos: u64,
    /// Out of.
    pub len: u64,
}

/// Drain state kept between polls: the most rows a table held since it last held none.
#[derive(Debug, Default)]
pub struct Drains {
    peak: BTreeMap<String, u64>,
}

/// The bars a status report calls for. Held changes count as draining once they are above
/// `min_rows` (a few rows in flight are normal, not a backlog).
pub fn bars(report: &StatusReport, drains: &mut Drains, min_rows: u64) -> Vec<Bar> {
    let mut out = Vec::new();
    for t in &report.tables {
        if let Some(s) = &t.snapshot {
            out.push(Bar {
                label: format!("snapshot {}", t.name),
                pos: u64::from(s.parts_published),
                len: u64::from(s.parts.max(1)),
            });
        }
        let held = t
            .pending_rows
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        if held < min_rows {
            drains.peak.remove(&t.name);
            continue;
        }
        let peak = drains.peak.entry(t.name.clone()).or_insert(held);
        *peak = (*peak).max(held);
        let label = if t.paused {
            format!("held {} (paused)", t.name)
        } else {
            format!("draining {}", t.name)
        };
        out.push(Bar {
            label,
            pos: *peak - held,
            len: *peak,
        });
    }
    out
}

/// Draws the bars until `stop` is set, on its own thread.
pub fn spawn(
    state: PathBuf,
    source: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let style =
            ProgressStyle::with_template("{prefix:>32} [{bar:30}] {pos}/{len} {percent:>3}%")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let mut shown: BTreeMap<String, ProgressBar> = BTreeMap::new();
        let mut drains = Drains::default();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(report) = omega_agent::status::collect(&state, &source, 0) {
                let now = bars(&report, &mut drains, 1_000);
                shown.retain(|label, bar| {
                    let keep = now.iter().any(|b| &b.label == label);
                    if !keep {
                        bar.finish_and_clear();
                    }
                    keep
                });
                for b in now {
                    let bar = shown.entry(b.label.clone()).or_insert_with(|| {
                        let bar = multi.add(ProgressBar::new(b.len));
                        bar.set_style(style.clone());
                        bar.set_prefix(b.label.clone());
                        bar
                    });
                    bar.set_length(b.len);
                    bar.set_position(b.pos);
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for bar in shown.values() {
            bar.finish_and_clear();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_agent::status::{SnapshotStatus, TableStatus};

    fn table(name: &str, pending: i64, paused: bool) -> TableStatus {
        TableStatus {
            name: name.into(),
            strategy: "rows".into(),
            schema_hash: None,
            last_published_commit_seq: 0,
            confirmed_commit_seq: 0,
            confirmed_at: None,
            unconfirmed_since: None,
            oldest_unconfirmed_age_s: None,
            pending_rows: Some(pending),
            buffered_rows: Some(pending),
            buffered_bytes: Some(pending * 45),
            paused,
            server_watermark: None,
            pause_reason: None,
            needs_resnapshot: false,
            blocked: None,
            snapshot_due: None,
            snapshot: None,
            telemetry_cursor: None,
            telemetry_confirmed: None,
            next_batch_seq: None,
        }
    }

    fn report(tables: Vec<TableStatus>) -> StatusReport {
        StatusReport {
            device_id: None,
            journal_epoch: None,
            last_control_seq: None,
            buffered_bytes: None,
            local_retention_bytes: 0,
            receipts_seen: true,
            tables,
            counters: Default::default(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn a_snapshot_shows_its_parts_and_a_backlog_drains_from_its_peak() {
        let mut drains = Drains::default();
        let mut t = table("orders", 5_000, true);
        t.snapshot = Some(SnapshotStatus {
            id: "s".into(),
            h: 9,
            rows: 100_000,
            parts: 25,
            parts_published: 10,
            reason: "first run".into(),
            taken_at: "now".into(),
        });
        let b = bars(
            &report(vec![t, table("quiet", 3, false)]),
            &mut drains,
            1_000,
        );
        assert_eq!(
            b,
            vec![
                Bar {
                    label: "snapshot orders".into(),
                    pos: 10,
                    len: 25
                },
                Bar {
                    label: "held orders (paused)".into(),
                    pos: 0,
                    len: 5_000
                },
            ]
        );
        // Resumed: the backlog goes down from its peak.
        let b = bars(
            &report(vec![table("orders", 2_000, false)]),
            &mut drains,
            1_000,
        );
        assert_eq!(
            b,
            vec![Bar {
                label: "draining orders".into(),
                pos: 3_000,
                len: 5_000
            }]
        );
        // Drained: the bar goes, and a later backlog starts a new peak.
        assert!(bars(&report(vec![table("orders", 0, false)]), &mut drains, 1_000).is_empty());
        let b = bars(
            &report(vec![table("orders", 1_500, false)]),
            &mut drains,
            1_000,
        );
        assert_eq!((b[0].pos, b[0].len), (0, 1_500));
    }
}
