//! `GET /v1/metrics`: Prometheus text (`cloud.md` §19) from the ingest counters and the
//! apply-latency histogram of this process, and store reads of lineages, pending reviews and
//! pending controls. Counters are one table, so adding one is one line.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::ingest::IngestStats;
use crate::lineage::{Lineage, LineageStatus};
use crate::metrics::Exposition;
use crate::schema_review::ReviewStatus;
use crate::store::{LineageFilter, Store, StoreError, StoreTx};
use crate::{lineage, schema_review, with_store};

type Counter = (&'static str, &'static str, fn(&IngestStats) -> &AtomicU64);

/// The ingest counters: (name after `omega_cloud_`, help, field).
#[rustfmt::skip]
const COUNTERS: &[Counter] = &[
    ("messages_received_total", "Messages received on the subscription.", |s| &s.received),
    ("batches_applied_total", "Batches applied (materialized and/or staged).", |s| &s.applied),
    ("batches_quarantined_total", "Messages quarantined.", |s| &s.quarantined),
    ("rows_materialized_total", "Rows and samples of applied batches written.", |s| &s.rows_materialized),
    ("rows_staged_total", "Rows and samples of applied batches staged.", |s| &s.rows_staged),
    ("rows_failed_total", "Rows and samples refused by the fit check and quarantined.", |s| &s.rows_failed),
    ("duplicate_deliveries_total", "Deliveries of a batch already in the ledger.", |s| &s.duplicates),
    ("schema_observations_total", "Schema observations recorded.", |s| &s.observations),
    ("control_acks_total", "Control ACKs received.", |s| &s.control_acks),
    ("unknown_control_acks_total", "Control ACKs naming no control of their device.", |s| &s.unknown_control_acks),
    ("messages_skipped_total", "Messages skipped (own topics, retained).", |s| &s.skipped),
    ("store_retries_total", "Store attempts that failed and were retried.", |s| &s.store_retries),
    ("pubacks_total", "PUBACKs sent.", |s| &s.acked),
    ("subscriptions_total", "Subscriptions the broker confirmed.", |s| &s.subscribed),
    ("receipts_total", "Receipts published.", |s| &s.receipts),
    ("receipt_failures_total", "Receipt sends that failed and were retried.", |s| &s.receipt_failures),
];

/// What the store says, read in one pass.
struct StoreGauges {
    lineages: Vec<Lineage>,
    pending_reviews: usize,
    pending_controls: i64,
}

async fn read_store<S: Store>(s: &S) -> Result<StoreGauges, StoreError> {
    let lineages = lineage::ops::list(s, &LineageFilter::default()).await?;
    let pending_reviews = schema_review::ops::list(s, Some(ReviewStatus::Pending))
        .await?
        .len();
    let mut tx = s.begin().await?;
    let pending_controls = tx.controls_pending().await;
    let _ = tx.rollback().await;
    Ok(StoreGauges {
        lineages,
        pending_reviews,
        pending_controls: pending_controls?,
    })
}

/// `GET /v1/metrics`.
pub(super) async fn metrics(State(state): State<ApiState>) -> Response {
    let mut e = Exposition::default();
    let name = |n: &str| format!("omega_cloud_{n}");
    if let Some(s) = &state.inner.stats {
        for (n, help, field) in COUNTERS {
            e.counter(&name(n), help, field(s).load(Ordering::Relaxed));
        }
        e.histogram(
            &name("apply_latency_seconds"),
            "Seconds from receiving a batch to the commit of its effects.",
            &s.apply_latency.snapshot(),
        );
    }
    let read = with_store!(&state.inner.store, s => read_store(s).await);
    e.gauge(
        &name("store_up"),
        "Whether the last store read succeeded.",
        u8::from(read.is_ok()),
    );
    match read {
        Ok(g) => store_gauges(&mut e, &g),
        Err(err) => tracing::warn!(error = %err, "metrics: store read failed"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        e.finish(),
    )
        .into_response()
}

fn store_gauges(e: &mut Exposition, g: &StoreGauges) {
    let name = |n: &str| format!("omega_cloud_{n}");
    let ls = &g.lineages;
    let by_status = [LineageStatus::Active, LineageStatus::Paused].map(|st| {
        let n = ls.iter().filter(|l| l.status() == st).count();
        (vec![("status", st.as_str())], n)
    });
    e.gauge_family(&name("lineages"), "Lineages by status.", by_status);
    let mut causes: Vec<&str> = ls
        .iter()
        .flat_map(|l| l.pause_causes.iter().map(|c| c.as_str()))
        .collect();
    causes.sort_unstable();
    causes.dedup();
    let by_cause = causes.iter().map(|&c| {
        let n = ls
            .iter()
            .filter(|l| l.pause_causes.iter().any(|x| x.as_str() == c))
            .count();
        (vec![("cause", c)], n)
    });
    e.gauge_family(
        &name("paused_lineages"),
        "Paused lineages by cause.",
        by_cause,
    );
    let sum = |f: fn(&Lineage) -> i64| ls.iter().map(f).sum::<i64>();
    e.gauge(
        &name("staged_rows"),
        "Staged rows and samples over all lineages.",
        sum(|l| l.staged_rows),
    );
    e.gauge(
        &name("staged_bytes"),
        "Staged bytes over all lineages.",
        sum(|l| l.staged_bytes),
    );
    let per_lineage = |f: fn(&Lineage) -> i64| {
        ls.iter().map(move |l| {
            let labels = vec![
                ("device", l.device_id.as_str()),
                ("table", l.source_table.as_str()),
            ];
            (labels, f(l))
        })
    };
    e.gauge_family(
        &name("lineage_staged_rows"),
        "Staged rows and samples of one lineage.",
        per_lineage(|l| l.staged_rows),
    );
    e.gauge_family(
        &name("lineage_staged_bytes"),
        "Staged bytes of one lineage.",
        per_lineage(|l| l.staged_bytes),
    );
    e.gauge(
        &name("pending_reviews"),
        "Reviews awaiting a decision.",
        g.pending_reviews,
    );
    e.gauge(
        &name("controls_pending"),
        "Controls sent or queued and not acknowledged yet.",
        g.pending_controls,
    );
}
