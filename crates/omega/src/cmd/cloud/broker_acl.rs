//! `omega cloud broker-acl` (`cloud.md` §17): prints (or writes into `--out DIR`) the
//! Mosquitto listener fragment and ACL file built by [`omega_cloud::broker_acl`].
//!
//! With `--out DIR` the files are `omega-listener.conf` and `omega.acl` (never overwritten),
//! and the fragment's `acl_file` points at the written ACL unless `--acl-file` says otherwise.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use omega_cloud::broker_acl::{AclRules, DEFAULT_CLOUD_IDENTITY, Listener};
use omega_protocol::topic::{DEFAULT_DEVICE_TOPIC, DeviceTopicTemplate};

use crate::exit::UsageError;

/// The listener fragment's file name under `--out`.
pub const CONF_FILE: &str = "omega-listener.conf";
/// The ACL file's name under `--out`.
pub const ACL_FILE: &str = "omega.acl";

/// Arguments of `omega cloud broker-acl`.
#[derive(Debug, Args)]
pub struct BrokerAclArgs {
    /// The cloud's `ingest.device_topic` template, e.g. `omega/{device}`.
    #[arg(long, value_name = "T", default_value = DEFAULT_DEVICE_TOPIC)]
    pub device_topic: String,
    /// The cloud's MQTT identity (its certificate CN), granted every device's topics.
    #[arg(long, visible_alias = "cloud-user", value_name = "NAME", default_value = DEFAULT_CLOUD_IDENTITY)]
    pub cloud_identity: String,
    /// The listener's port.
    #[arg(long, value_name = "PORT", default_value_t = 8883)]
    pub port: u16,
    /// The listener's bind address (every interface when unset).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// The CA bundle that signs device and cloud certificates (listener `cafile`).
    #[arg(long, value_name = "PATH")]
    pub cafile: Option<String>,
    /// The broker's certificate (listener `certfile`).
    #[arg(long, value_name = "PATH")]
    pub certfile: Option<String>,
    /// The broker's private key (listener `keyfile`).
    #[arg(long, value_name = "PATH")]
    pub keyfile: Option<String>,
    /// Where the broker finds the ACL file (default: DIR/omega.acl with --out, else
    /// /etc/mosquitto/omega.acl).
    #[arg(long, value_name = "PATH")]
    pub acl_file: Option<String>,
    /// Write omega-listener.conf and omega.acl into DIR (created if missing) instead of
    /// printing them. Existing files are never overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Builds both texts and prints or writes them.
pub fn run(args: &BrokerAclArgs) -> anyhow::Result<ExitCode> {
    let template = DeviceTopicTemplate::parse(&args.device_topic)
        .map_err(|e| UsageError(format!("--device-topic `{}`: {e}", args.device_topic)))?;
    let acl = AclRules::new(&template, &args.cloud_identity)
        .map_err(|e| UsageError(e.to_string()))?
        .mosquitto_acl();
    let out_dir = match &args.out {
        Some(d) => Some(absolute(d)?),
        None => None,
    };
    let defaults = Listener::default();
    let listener = Listener {
        port: args.port,
        bind: args.bind.clone(),
        cafile: args.cafile.clone().unwrap_or(defaults.cafile),
        certfile: args.certfile.clone().unwrap_or(defaults.certfile),
        keyfile: args.keyfile.clone().unwrap_or(defaults.keyfile),
        acl_file: match (&args.acl_file, &out_dir) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) => d.join(ACL_FILE).display().to_string(),
            (None, None) => defaults.acl_file,
        },
    };
    let conf = listener
        .mosquitto_conf()
        .map_err(|e| UsageError(format!("--{e}")))?;
    let Some(dir) = out_dir else {
        print!("# ---- mosquitto.conf fragment ----\n{conf}\n# ---- {ACL_FILE} ----\n{acl}");
        return Ok(ExitCode::SUCCESS);
    };
    let (conf_path, acl_path) = (dir.join(CONF_FILE), dir.join(ACL_FILE));
    for p in [&conf_path, &acl_path] {
        if p.exists() {
            return Err(UsageError(format!(
                "{} already exists: broker-acl never overwrites (move it away or choose another --out)",
                p.display()
            ))
            .into());
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_new(&acl_path, &acl)?;
    write_new(&conf_path, &conf)?;
    println!(
        "wrote {} (include it in mosquitto.conf) and {}",
        conf_path.display(),
        acl_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("reading the current directory")?
        .join(p))
}

fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
