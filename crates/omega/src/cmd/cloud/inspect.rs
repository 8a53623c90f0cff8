//! `omega cloud lineages`, `rows` and `quarantine`: store reads, printed as tables or as the
//! API's JSON (`cloud.md` §18).

use std::process::ExitCode;

use omega_cloud::lineage::ops::{self as lineage_ops, RowsError, RowsQuery};
use omega_cloud::quarantine::{self, QuarantineFilter};
use omega_cloud::store::{LineageFilter, StoreError};
use omega_cloud::ts_read::{self, LineageSamples, RowsView};
use omega_cloud::{view, with_store};
use omega_protocol::time::format_rfc3339;

use super::store::{self, Opened};
use super::table::{self, cut, emit, emit_json, opt, render};
use super::{LineagesArgs, QuarantineArgs, RowsArgs};

/// `omega cloud lineages [--device D] [--table T] [--json]`.
pub fn lineages(args: &LineagesArgs) -> anyhow::Result<ExitCode> {
    let Opened { store, rt, .. } = store::open(&args.store)?;
    let filter = LineageFilter {
        device_id: args.device.clone(),
        source_table: args.table.clone(),
        status: None,
    };
    let list =
        rt.block_on(async { with_store!(&store, s => lineage_ops::list(s, &filter).await) })?;
    if args.json {
        emit_json(&view::list(list.iter().map(view::lineage).collect()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|l| {
            let causes: Vec<&str> = l.pause_causes.iter().map(|c| c.as_str()).collect();
            vec![
                l.device_id.clone(),
                l.source_table.clone(),
                l.kinds.names().join("+"),
                if causes.is_empty() {
                    l.status().as_str().to_string()
                } else {
                    format!("{} ({})", l.status().as_str(), causes.join(", "))
                },
                opt(l.journal_epoch),
                opt(l.last_commit_seq.or(l.last_batch_seq)),
                l.confirmed_through.to_string(),
                l.staged_rows.to_string(),
                l.staged_bytes.to_string(),
                opt(l.mirror_table.as_deref()),
                opt(l.last_batch_at.map(format_rfc3339)),
            ]
        })
        .collect();
    emit(&render(
        &[
            "DEVICE",
            "TABLE",
            "KINDS",
            "STATUS",
            "EPOCH",
            "LAST_SEQ",
            "CONFIRMED",
            "STAGED_ROWS",
            "STAGED_BYTES",
            "MIRROR",
            "LAST_BATCH_AT",
        ],
        &rows,
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `omega cloud rows --device D --table T [--limit N] [--include-deleted] [--json]`.
pub fn rows(args: &RowsArgs) -> anyhow::Result<ExitCode> {
    let Opened { store, rt, .. } = store::open(&args.store)?;
    let query = RowsQuery {
        include_deleted: args.include_deleted,
        limit: Some(args.limit),
    };
    let read = rt.block_on(async {
        with_store!(&store, s => ts_read::read(s, &args.device, &args.table, query).await)
    });
    let r = match read {
        Ok(r) => r,
        Err(RowsError::Store(e)) => return Err(store_failure(e)),
        Err(e) => return Err(e.into()),
    };
    if args.json {
        emit_json(&view::rows_view(&r))?;
        return Ok(ExitCode::SUCCESS);
    }
    let r = match r {
        RowsView::Rows(r) => r,
        RowsView::Samples(s) => return samples(args, &s),
    };
    let mut headers: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
    headers.extend(["_omega_seq", "_omega_deleted"]);
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            let mut cells: Vec<String> = row
                .key
                .iter()
                .chain(&row.values)
                .map(|v| cut(&table::value(v), 60))
                .collect();
            cells.push(row.seq.to_string());
            cells.push(row.deleted.to_string());
            cells
        })
        .collect();
    emit(&format!(
        "mirror {} (device {}, table {}): {} row(s){}\n",
        r.mirror.name,
        args.device,
        args.table,
        r.rows.len(),
        if r.rows.len() == args.limit {
            format!(", first {} shown (--limit)", args.limit)
        } else {
            String::new()
        }
    ))?;
    emit(&render(&headers, &rows))?;
    Ok(ExitCode::SUCCESS)
}

/// The table form of a telemetry lineage's samples.
fn samples(args: &RowsArgs, r: &LineageSamples) -> anyhow::Result<ExitCode> {
    let mut headers: Vec<&str> = vec!["row_id", "event_ts"];
    headers.extend(
        r.columns
            .iter()
            .map(|c| c.source.as_deref().unwrap_or(c.name.as_str())),
    );
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            let mut cells = vec![cut(&row.row_id, 40), format_rfc3339(row.event_ts)];
            cells.extend(row.values.iter().map(|v| cut(&table::value(v), 60)));
            cells
        })
        .collect();
    emit(&format!(
        "telemetry table {} (device {}, table {}): {} sample(s){}\n",
        r.table.name,
        args.device,
        args.table,
        r.rows.len(),
        if r.rows.len() == args.limit {
            format!(", first {} shown (--limit)", args.limit)
        } else {
            String::new()
        }
    ))?;
    emit(&render(&headers, &rows))?;
    Ok(ExitCode::SUCCESS)
}

/// `omega cloud quarantine [--device D] [--code C] [--limit N] [--json]`.
pub fn quarantine(args: &QuarantineArgs) -> anyhow::Result<ExitCode> {
    let Opened { store, rt, .. } = store::open(&args.store)?;
    let filter = QuarantineFilter {
        device_id: args.device.clone(),
        code: args.code.clone(),
        limit: Some(i64::try_from(args.limit).unwrap_or(i64::MAX)),
    };
    let list = rt
        .block_on(async { with_store!(&store, s => quarantine::list(s, &filter).await) })
        .map_err(store_failure)?;
    if args.json {
        emit_json(&view::list(list.iter().map(view::quarantine).collect()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|q| {
            vec![
                format_rfc3339(q.received_at),
                q.code.clone(),
                opt(q.device_id.as_deref()),
                opt(q.batch_id),
                q.payload_bytes.to_string(),
                cut(&q.message, 100),
            ]
        })
        .collect();
    emit(&render(
        &["RECEIVED", "CODE", "DEVICE", "BATCH", "BYTES", "MESSAGE"],
        &rows,
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// A store read that failed (exit 1).
pub fn store_failure(e: StoreError) -> anyhow::Error {
    anyhow::Error::new(e).context("reading the store")
}
