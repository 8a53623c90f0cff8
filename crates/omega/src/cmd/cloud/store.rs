//! Opening the store for the store commands: `--store URL` or `--config FILE` (its
//! `store.url`, overridden by `--store`, and its policy).

use std::path::PathBuf;

use anyhow::Context;
use omega_cloud::config::{CloudConfig, StoreUrl};
use omega_cloud::policy::Policy;
use omega_cloud::store::{AnyStore, StoreError};
use omega_config::process_env;

use super::StoreArgs;
use crate::exit::UsageError;

/// Connections a store command needs.
const POOL: usize = 2;

/// An open store with the policy that goes with it.
pub struct Opened {
    /// The store.
    pub store: AnyStore,
    /// The config's policy, or the defaults with `--store` alone.
    pub policy: Policy,
    /// The runtime the store lives on.
    pub rt: tokio::runtime::Runtime,
}

/// Loads `cloud.yaml`; every error found is a usage error (exit 2).
pub fn load_config(path: &std::path::Path) -> anyhow::Result<CloudConfig> {
    CloudConfig::load(path, &process_env).map_err(|errors| {
        let lines: Vec<String> = errors.errors().iter().map(ToString::to_string).collect();
        UsageError(lines.join("\n")).into()
    })
}

/// Resolves and opens the store of `args`. A store URL that is not `postgres://…` or
/// `sqlite://PATH`, or a SQLite file that does not exist, is a usage error: these commands
/// never create a store.
pub fn open(args: &StoreArgs) -> anyhow::Result<Opened> {
    let (url, policy) = if let Some(path) = &args.config {
        let mut cfg = load_config(path)?;
        cfg.apply_overrides(None, args.store.as_deref(), None, None)
            .map_err(|e| UsageError(e.to_string()))?;
        (cfg.store.clone(), cfg.policy.schema)
    } else if let Some(url) = &args.store {
        (parse_url(url)?, Policy::default())
    } else {
        return Err(UsageError(
            "no store given: use --store URL (postgres://… or sqlite://PATH) or --config FILE"
                .into(),
        )
        .into());
    };
    if let StoreUrl::Sqlite(path) = &url
        && !path.exists()
    {
        return Err(UsageError(format!(
            "store {}: no such file (`omega cloud serve` creates it)",
            path.display()
        ))
        .into());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let store = rt
        .block_on(omega_cloud::store::open_config(&url, POOL))
        .map_err(store_error)?;
    Ok(Opened { store, policy, rt })
}

/// `postgres://…`, `postgresql://…` or `sqlite://PATH` (relative to the working directory).
fn parse_url(url: &str) -> anyhow::Result<StoreUrl> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(StoreUrl::Postgres(url.to_string()));
    }
    match url.strip_prefix("sqlite://") {
        Some(path) if !path.is_empty() => Ok(StoreUrl::Sqlite(PathBuf::from(path))),
        _ => Err(UsageError(format!(
            "--store `{url}`: want postgres://… or sqlite://PATH"
        ))
        .into()),
    }
}

/// A bad URL exits 2; anything else (unreachable, migration failed) exits 1.
pub fn store_error(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Url { .. } => UsageError(e.to_string()).into(),
        other => anyhow::Error::new(other).context("opening the store"),
    }
}
