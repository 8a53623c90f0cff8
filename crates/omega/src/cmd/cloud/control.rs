//! `omega cloud pause|resume --device D --table T --config FILE`: operator pause and resume
//! (`cloud.md` §6.2, §14). They change the lineage and queue a signed control in one store
//! transaction; a running `omega cloud serve` sends it. They need the signing key, so they
//! take `--config` (its `control.signing_key_path` and `store.url`).

use std::process::ExitCode;

use omega_cloud::controls::{self, ControlError, ControlOutcome};
use omega_cloud::{view, with_store};
use serde_json::json;

use super::store::{self, Opened};
use super::table::emit_json;
use super::{LineageResetArgs, PauseArgs, ResumeArgs, StoreArgs};
use crate::exit::UsageError;

/// `omega cloud pause`.
pub fn pause(args: &PauseArgs) -> anyhow::Result<ExitCode> {
    let (key, opened) = open(&args.config, args.store.as_deref())?;
    let Opened { store, rt, .. } = opened;
    let (d, t, r) = (&args.device, &args.table, args.reason.as_deref());
    let out = rt
        .block_on(async {
            with_store!(&store, s => controls::operator_pause(s, &key, d, t, r).await)
        })
        .map_err(control_error)?;
    report("paused", &out, args.json)
}

/// `omega cloud resume`.
pub fn resume(args: &ResumeArgs) -> anyhow::Result<ExitCode> {
    let (key, opened) = open(&args.config, args.store.as_deref())?;
    let Opened { store, rt, .. } = opened;
    let (d, t) = (&args.device, &args.table);
    let out = rt
        .block_on(async {
            with_store!(&store, s => controls::operator_resume(s, &key, d, t).await)
        })
        .map_err(control_error)?;
    report("resumed", &out, args.json)
}

/// `omega cloud lineage reset ID`.
pub fn reset(args: &LineageResetArgs) -> anyhow::Result<ExitCode> {
    let id = uuid::Uuid::parse_str(&args.id)
        .map_err(|_| UsageError(format!("`{}` is not a lineage id (a UUID)", args.id)))?;
    let (key, opened) = open(&args.config, args.store.as_deref())?;
    let Opened { store, rt, .. } = opened;
    let out = rt
        .block_on(async {
            let all = with_store!(&store, s => {
                omega_cloud::lineage::ops::list(s, &Default::default()).await
            })
            .map_err(controls::ControlError::from)?;
            let Some(l) = all.into_iter().find(|l| l.id == id) else {
                return Ok(None);
            };
            with_store!(&store, s => {
                controls::operator_resume(s, &key, &l.device_id, &l.source_table).await
            })
            .map(Some)
        })
        .map_err(control_error)?;
    match out {
        Some(out) => report("reset", &out, args.json),
        None => {
            eprintln!("error: no lineage {id}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `omega cloud resnapshot`.
pub fn resnapshot(args: &ResumeArgs) -> anyhow::Result<ExitCode> {
    let (key, opened) = open(&args.config, args.store.as_deref())?;
    let Opened { store, rt, .. } = opened;
    let (d, t) = (&args.device, &args.table);
    let out = rt
        .block_on(async {
            with_store!(&store, s => controls::operator_resnapshot(s, &key, d, t).await)
        })
        .map_err(control_error)?;
    report("resnapshot requested for", &out, args.json)
}

fn open(
    config: &std::path::Path,
    store_url: Option<&str>,
) -> anyhow::Result<(omega_protocol::signing::ControlKey, Opened)> {
    let cfg = store::load_config(config)?;
    let key = cfg
        .control
        .read_key(&cfg.file)
        .map_err(|e| UsageError(e.to_string()))?;
    let opened = store::open(&StoreArgs {
        store: store_url.map(str::to_string),
        config: Some(config.to_path_buf()),
    })?;
    Ok((key, opened))
}

fn report(what: &str, out: &ControlOutcome, as_json: bool) -> anyhow::Result<ExitCode> {
    if as_json {
        emit_json(&json!({
            "lineage": view::lineage(&out.lineage),
            "control_id": out.control_id.map(|c| c.to_string()),
        }))?;
    } else {
        let causes: Vec<&str> = out
            .lineage
            .pause_causes
            .iter()
            .map(|c| c.as_str())
            .collect();
        println!(
            "{what} {} {}: status {}, causes [{}], control {}",
            out.lineage.device_id,
            out.lineage.source_table,
            out.lineage.status().as_str(),
            causes.join(", "),
            out.control_id.map_or_else(
                || "none (device already in that state)".to_string(),
                |c| c.to_string()
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A missing lineage or a resume without an operator cause exits 1 with the message.
fn control_error(e: ControlError) -> anyhow::Error {
    anyhow::Error::new(e)
}
