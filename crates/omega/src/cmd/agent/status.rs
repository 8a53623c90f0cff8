//! `omega agent status` (`agent.md` §20): reads state.db and, read-only, the source.

use std::process::ExitCode;

use omega_agent::config::AgentConfig;
use omega_agent::status::{StatusReport, collect};
use omega_config::process_env;

use super::StatusArgs;
use crate::exit::UsageError;

/// Prints the report; exit 1 when state.db cannot be read.
pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let config = AgentConfig::load(&args.config, &process_env).map_err(|errors| {
        let lines: Vec<String> = errors.errors().iter().map(ToString::to_string).collect();
        UsageError(lines.join("\n"))
    })?;
    let r = &config.replication;
    if !r.state_db_path.exists() {
        anyhow::bail!(
            "{}: no state.db yet (the agent has not run with this configuration)",
            r.state_db_path.display()
        );
    }
    let report = collect(&r.state_db_path, &r.source_db_path, r.local_retention_bytes)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}

fn human(r: &StatusReport) -> String {
    let mut out = String::new();
    out.push_str(&format!("device         {}\n", opt(&r.device_id)));
    out.push_str(&format!("journal_epoch  {}\n", opt(&r.journal_epoch)));
    out.push_str(&format!("last control   {}\n", opt(&r.last_control_seq)));
    out.push_str(&format!(
        "buffered bytes {} of {}\n",
        opt(&r.buffered_bytes),
        r.local_retention_bytes
    ));
    if !r.receipts_seen {
        out.push_str("receipts       none received yet (with delivery: receipts nothing is pruned until the cloud confirms)\n");
    }
    out.push_str("\ntable                          strategy   published   confirmed   pending  buffered  state\n");
    for t in &r.tables {
        let state = if let Some(b) = &t.blocked {
            format!("blocked: {b}")
        } else if t.paused {
            format!(
                "paused at {} ({})",
                opt(&t.server_watermark),
                opt(&t.pause_reason)
            )
        } else {
            "active".to_string()
        };
        out.push_str(&format!(
            "{:<30} {:<10} {:>9} {:>11} {:>9} {:>9}  {}{}\n",
            t.name,
            t.strategy,
            t.last_published_commit_seq,
            t.confirmed_commit_seq,
            opt(&t.pending_rows),
            opt(&t.buffered_rows),
            state,
            if t.needs_resnapshot {
                ", needs resnapshot"
            } else {
                ""
            }
        ));
        if let Some(s) = &t.snapshot {
            out.push_str(&format!(
                "  snapshot {}: {}/{} parts published, {} rows at commit_seq {} ({}, taken {})\n",
                s.id, s.parts_published, s.parts, s.rows, s.h, s.reason, s.taken_at
            ));
        } else if let Some(why) = &t.snapshot_due {
            out.push_str(&format!("  snapshot due: {why}\n"));
        }
    }
    if !r.counters.is_empty() {
        out.push_str("\ncounters\n");
        for (k, v) in &r.counters {
            out.push_str(&format!("  {k:<24} {v}\n"));
        }
    }
    for w in &r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}
