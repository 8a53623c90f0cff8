//! `omega cloud reviews` and `omega cloud review show|approve|reject` (`cloud.md` §8).
//!
//! Exit status: a malformed id, status or column action, and an approval that leaves columns
//! without an action or names a mirror column badly (API 422), exit 2; a review that does
//! not exist or is not pending, a column type conflict (API 404/409) and store failures
//! exit 1.

use std::process::ExitCode;

use omega_cloud::schema_review::decide::{ApproveRequest, ColumnRequest, ReviewError};
use omega_cloud::schema_review::ops::{self, ReviewDetail};
use omega_cloud::schema_review::{Review, ReviewStatus};
use omega_cloud::{view, with_store};
use omega_protocol::time::format_rfc3339;
use uuid::Uuid;

use super::store::{self, Opened};
use super::table::{emit, emit_json, opt, render};
use super::{ReviewApproveArgs, ReviewRejectArgs, ReviewShowArgs, ReviewsArgs};
use crate::exit::UsageError;

fn parse_id(id: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(id)
        .map_err(|_| UsageError(format!("`{id}` is not a review id (a UUID)")).into())
}

/// Exit 2 for what the command line can fix, 1 otherwise.
fn review_error(e: ReviewError) -> anyhow::Error {
    match e {
        ReviewError::IncompleteColumnActions(_)
        | ReviewError::KeyColumnNotMirrored(_)
        | ReviewError::InvalidColumnName(_)
        | ReviewError::InvalidRequest(_) => UsageError(format!("{e} [{}]", e.code())).into(),
        ReviewError::Store(s) => anyhow::Error::new(s).context("the store failed"),
        other => {
            let code = other.code();
            anyhow::Error::new(other).context(format!("refused [{code}]"))
        }
    }
}

/// `omega cloud reviews [--status S] [--json]`.
pub fn list(args: &ReviewsArgs) -> anyhow::Result<ExitCode> {
    let status = match args.status.as_deref() {
        None => None,
        Some(s) => Some(ReviewStatus::parse(s).ok_or_else(|| {
            UsageError(format!(
                "--status `{s}`: want pending, approved or rejected"
            ))
        })?),
    };
    let Opened { store, rt, .. } = store::open(&args.store)?;
    let reviews = rt
        .block_on(async { with_store!(&store, s => ops::list(s, status).await) })
        .map_err(super::inspect::store_failure)?;
    if args.json {
        let items = reviews.iter().map(view::review).collect();
        emit_json(&view::list(items))?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = reviews
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.status.as_str().to_string(),
                r.class.as_str().to_string(),
                r.scope.key(),
                r.source_table.clone(),
                short_hash(&r.schema_hash),
                format_rfc3339(r.created_at),
            ]
        })
        .collect();
    emit(&render(
        &["ID", "STATUS", "CLASS", "SCOPE", "TABLE", "HASH", "CREATED"],
        &rows,
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn short_hash(h: &str) -> String {
    h.chars().take(12).collect()
}

/// `omega cloud review show ID [--json]`.
pub fn show(args: &ReviewShowArgs) -> anyhow::Result<ExitCode> {
    let id = parse_id(&args.id)?;
    let Opened { store, rt, .. } = store::open(&args.store)?;
    let detail = rt
        .block_on(async { with_store!(&store, s => ops::show(s, id).await) })
        .map_err(review_error)?;
    if args.json {
        emit_json(&view::review_detail(&detail))?;
    } else {
        emit(&human_detail(&detail))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `omega cloud review approve ID [--column NAME=mirror|ignore|mirror:NEWNAME ...]
/// [--all-mirror] [--json]`.
pub fn approve(args: &ReviewApproveArgs) -> anyhow::Result<ExitCode> {
    let id = parse_id(&args.id)?;
    let columns = args
        .columns
        .iter()
        .map(|c| ColumnRequest::parse_cli(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(review_error)?;
    let req = ApproveRequest {
        columns,
        all_mirror: args.all_mirror,
    };
    let Opened { store, rt, policy } = store::open(&args.store)?;
    let (review, replayed) = rt
        .block_on(async { with_store!(&store, s => ops::approve(s, &policy, id, &req).await) })
        .map_err(review_error)?;
    if args.json {
        emit_json(&view::review(&review))?;
    } else {
        println!(
            "approved review {} ({} {}): mirror {}; {} staged row(s) replayed{}",
            review.id,
            review.source_table,
            short_hash(&review.schema_hash),
            opt(review.mirror_table.as_deref()),
            replayed.replayed,
            if replayed.failed > 0 {
                format!(
                    ", {} refused (see `omega cloud quarantine`)",
                    replayed.failed
                )
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `omega cloud review reject ID [--reason TEXT] [--json]`.
pub fn reject(args: &ReviewRejectArgs) -> anyhow::Result<ExitCode> {
    let id = parse_id(&args.id)?;
    let Opened { store, rt, .. } = store::open(&args.store)?;
    let reason = args.reason.as_deref();
    let review = rt
        .block_on(async { with_store!(&store, s => ops::reject(s, id, reason).await) })
        .map_err(review_error)?;
    if args.json {
        emit_json(&view::review(&review))?;
    } else {
        println!(
            "rejected review {} ({} {}); its lineages stay paused and staged rows are kept",
            review.id,
            review.source_table,
            short_hash(&review.schema_hash)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn human_detail(d: &ReviewDetail) -> String {
    let r: &Review = &d.review;
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{k:<14} {v}\n"));
    kv("review", r.id.to_string());
    kv("status", r.status.as_str().to_string());
    kv("class", r.class.as_str().to_string());
    kv("scope", r.scope.key());
    kv("table", r.source_table.clone());
    kv("schema_hash", r.schema_hash.clone());
    kv("compared_with", opt(r.compared_hash.as_deref()));
    if let Some(diff) = &r.diff {
        kv(
            "difference",
            format!(
                "added [{}], dropped [{}], changed [{}]",
                diff.added.join(", "),
                diff.dropped.join(", "),
                diff.changed.join(", ")
            ),
        );
    }
    kv("devices", d.devices.join(", "));
    kv("staged_rows", d.staged_rows.to_string());
    kv("decided_by", opt(r.decided_by.map(|b| b.as_str())));
    kv("reason", opt(r.reason.as_deref()));
    kv("mirror", opt(r.mirror_table.as_deref()));
    kv("created_at", format_rfc3339(r.created_at));
    match &r.columns {
        None => out.push_str("\ncolumns unknown until a batch brings schema_columns\n"),
        Some(cols) => {
            out.push('\n');
            let rows: Vec<Vec<String>> = cols
                .columns
                .iter()
                .map(|c| {
                    let decision = r.decisions.iter().find(|d| d.name == c.name);
                    vec![
                        c.name.clone(),
                        c.decl_type_affinity.as_str().to_string(),
                        if c.pk_ordinal > 0 {
                            c.pk_ordinal.to_string()
                        } else {
                            "-".into()
                        },
                        c.not_null.to_string(),
                        decision.map_or_else(
                            || "-".to_string(),
                            |d| match &d.mirror_column {
                                Some(m) => format!("{} as {m}", d.action.as_str()),
                                None => d.action.as_str().to_string(),
                            },
                        ),
                    ]
                })
                .collect();
            out.push_str(&render(
                &["COLUMN", "AFFINITY", "PK", "NOT_NULL", "DECISION"],
                &rows,
            ));
        }
    }
    if !d.samples.is_empty() {
        out.push_str("\nsample staged rows\n");
        for s in &d.samples {
            let row = view::staged_row(s);
            out.push_str(&format!(
                "  {} seq {} {}\n",
                s.op.as_str(),
                s.commit_seq,
                row["row"]
            ));
        }
    }
    out
}
