//! `omega cloud ca init` and `omega cloud bootstrap-cert issue|revoke` (`cli.md`,
//! `cloud.md` §16): the PKI of JITR enrollment.
//!
//! - `ca init --out DIR` writes two CAs: `device-ca.crt`/`.key` (signs device certificates;
//!   `jitr.ca_cert` and `ca_key_path`, and the broker's `cafile`) and `bootstrap-ca.crt`/`.key`
//!   (signs bootstrap certificates; `jitr.fleets[].bootstrap_ca`). Two CAs, so that a
//!   bootstrap certificate is never accepted by the broker as a device identity. Keys are
//!   mode 0600; nothing is overwritten.
//! - `bootstrap-cert issue` signs a bootstrap certificate for a configured fleet with the
//!   fleet's bootstrap CA key and records its serial and `--max-devices` quota in the store.
//! - `bootstrap-cert revoke SERIAL` records the revocation in the store; the next enrollment
//!   presenting that certificate is refused with `invalid_bootstrap_cert`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use omega_cloud::jitr::pki::{Signer, new_ca};
use omega_cloud::store::jitr::{BootstrapRecord, JitrTx};
use omega_cloud::store::{Store, StoreTx};
use omega_cloud::with_store;

use super::keygen::write_new;
use super::store::{load_config, store_error};
use crate::exit::UsageError;

/// `omega cloud ca …`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Write the device CA and the bootstrap CA for JITR enrollment (keys mode 0600; never
    /// overwrites).
    Init(CaInitArgs),
}

/// Arguments of `omega cloud ca init`.
#[derive(Debug, Args)]
pub struct CaInitArgs {
    /// Directory for device-ca.crt, device-ca.key, bootstrap-ca.crt and bootstrap-ca.key;
    /// created if missing.
    #[arg(long, value_name = "DIR", default_value = "pki")]
    pub out: PathBuf,
    /// Validity of both CAs.
    #[arg(long, value_name = "DURATION", default_value = "87600h")]
    pub validity: String,
}

/// `omega cloud bootstrap-cert …`.
#[derive(Debug, Subcommand)]
pub enum BootstrapCommand {
    /// Issue a fleet's bootstrap certificate with a device quota.
    Issue(IssueArgs),
    /// Revoke a bootstrap certificate by serial.
    Revoke(RevokeArgs),
}

/// Arguments of `omega cloud bootstrap-cert issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The cloud configuration file (jitr.fleets and store.url).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The fleet (a `jitr.fleets[].fleet_id`).
    #[arg(long, value_name = "F")]
    pub fleet: String,
    /// The fleet's organisation; needed only when two orgs have a fleet of that name.
    #[arg(long, value_name = "O")]
    pub org: Option<String>,
    /// Most devices this certificate may enroll.
    #[arg(long, value_name = "N")]
    pub max_devices: u32,
    /// Where to write the certificate (PEM); default `bootstrap-{fleet}.crt`. Never
    /// overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The bootstrap CA's private key; default: the fleet's bootstrap_ca with `.key`.
    #[arg(long, value_name = "FILE")]
    pub ca_key: Option<PathBuf>,
    /// Validity of the certificate.
    #[arg(long, value_name = "DURATION", default_value = "8760h")]
    pub validity: String,
}

/// Arguments of `omega cloud bootstrap-cert revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The serial, hex (colons allowed), as `bootstrap-cert issue` printed it.
    pub serial: String,
    /// The cloud configuration file (store.url).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

fn duration(flag: &str, text: &str) -> anyhow::Result<time::Duration> {
    let d = omega_config::parse_duration(text)
        .map_err(|e| UsageError(format!("--{flag} `{text}`: {e}")))?;
    Ok(time::Duration::try_from(d).map_err(|e| UsageError(format!("--{flag} `{text}`: {e}")))?)
}

/// `omega cloud ca init`.
pub fn ca_init(args: &CaInitArgs) -> anyhow::Result<ExitCode> {
    let validity = duration("validity", &args.validity)?;
    let dir = &args.out;
    let names = [
        "device-ca.crt",
        "device-ca.key",
        "bootstrap-ca.crt",
        "bootstrap-ca.key",
    ];
    for n in names {
        let p = dir.join(n);
        if p.exists() {
            return Err(UsageError(format!(
                "{} already exists: ca init never overwrites (move it away or choose another --out)",
                p.display()
            ))
            .into());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let now = time::OffsetDateTime::now_utc();
    let device = new_ca("Omega device CA", now, validity)?;
    let boot = new_ca("Omega bootstrap CA", now, validity)?;
    write_new(&dir.join(names[1]), device.key_pem.as_bytes(), 0o600)?;
    write_new(&dir.join(names[0]), device.cert_pem.as_bytes(), 0o644)?;
    write_new(&dir.join(names[3]), boot.key_pem.as_bytes(), 0o600)?;
    write_new(&dir.join(names[2]), boot.cert_pem.as_bytes(), 0o644)?;
    println!(
        "wrote {dir}/device-ca.crt and device-ca.key (jitr.ca_cert, jitr.ca_key_path; the broker's \
         cafile) and {dir}/bootstrap-ca.crt and bootstrap-ca.key (jitr.fleets[].bootstrap_ca); \
         keep the .key files secret",
        dir = dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn default_key(ca: &Path) -> PathBuf {
    ca.with_extension("key")
}

/// `omega cloud bootstrap-cert issue`.
pub fn issue(args: &IssueArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(&args.config)?;
    let Some(jitr) = &cfg.jitr else {
        return Err(UsageError(format!(
            "{}: no `jitr` block: configure the enrollment service first (cloud.md §16)",
            args.config.display()
        ))
        .into());
    };
    let matches: Vec<_> = jitr
        .fleets
        .iter()
        .filter(|f| f.fleet_id == args.fleet && args.org.as_ref().is_none_or(|o| &f.org_id == o))
        .collect();
    let fleet = match matches.as_slice() {
        [f] => *f,
        [] => {
            return Err(UsageError(format!(
                "--fleet {}: no such fleet in jitr.fleets of {}",
                args.fleet,
                args.config.display()
            ))
            .into());
        }
        _ => {
            return Err(UsageError(format!(
                "--fleet {}: several orgs have this fleet; add --org",
                args.fleet
            ))
            .into());
        }
    };
    if args.max_devices == 0 {
        return Err(UsageError("--max-devices must be at least 1".into()).into());
    }
    let validity = duration("validity", &args.validity)?;
    let key_path = args
        .ca_key
        .clone()
        .unwrap_or_else(|| default_key(&fleet.bootstrap_ca));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("bootstrap-{}.crt", fleet.fleet_id)));
    if out.exists() {
        return Err(UsageError(format!(
            "{} already exists: choose another --out",
            out.display()
        ))
        .into());
    }
    let ca_pem = std::fs::read_to_string(&fleet.bootstrap_ca)
        .with_context(|| format!("reading {}", fleet.bootstrap_ca.display()))?;
    let key_pem = std::fs::read_to_string(&key_path).with_context(|| {
        format!(
            "reading {} (the bootstrap CA key; --ca-key)",
            key_path.display()
        )
    })?;
    let signer = Signer::new(&ca_pem, &key_pem)
        .map_err(|e| UsageError(format!("{}: {e}", fleet.bootstrap_ca.display())))?;
    let now = time::OffsetDateTime::now_utc();
    let issued = signer.bootstrap(&fleet.org_id, &fleet.fleet_id, now, validity)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let store = omega_cloud::store::open_config(&cfg.store, 1)
            .await
            .map_err(store_error)?;
        let record = BootstrapRecord {
            serial: issued.serial.clone(),
            org_id: fleet.org_id.clone(),
            fleet_id: fleet.fleet_id.clone(),
            max_devices: i64::from(args.max_devices),
            not_after: issued.not_after,
            issued_at: now,
            revoked_at: None,
        };
        with_store!(&store, s => async {
            let mut tx = s.begin().await?;
            tx.bootstrap_insert(&record).await?;
            tx.commit().await
        }.await)
        .context("recording the bootstrap certificate in the store")
    })?;
    write_new(&out, issued.cert_pem.as_bytes(), 0o644)?;
    println!(
        "wrote {} for fleet {}/{}: serial {}, max {} devices, valid until {}; install it on the \
         devices (connection.jitr.bootstrap_cert_path)",
        out.display(),
        fleet.org_id,
        fleet.fleet_id,
        issued.serial,
        args.max_devices,
        issued.not_after
    );
    Ok(ExitCode::SUCCESS)
}

/// `omega cloud bootstrap-cert revoke SERIAL`.
pub fn revoke(args: &RevokeArgs) -> anyhow::Result<ExitCode> {
    let cleaned: String = args
        .serial
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if cleaned.is_empty() || !cleaned.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(UsageError(format!("`{}` is not a hex serial", args.serial)).into());
    }
    let serial = match cleaned.trim_start_matches('0') {
        "" => "0".to_string(),
        t => t.to_string(),
    };
    let cfg = load_config(&args.config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let found = rt.block_on(async {
        let store = omega_cloud::store::open_config(&cfg.store, 1)
            .await
            .map_err(store_error)?;
        with_store!(&store, s => async {
            let mut tx = s.begin().await?;
            let now = tx.now();
            let found = tx.bootstrap_revoke(&serial, now).await?;
            tx.commit().await?;
            Ok::<_, omega_cloud::store::StoreError>(found)
        }.await)
        .context("recording the revocation in the store")
    })?;
    if !found {
        anyhow::bail!(
            "no bootstrap certificate with serial {serial} was issued by `omega cloud \
             bootstrap-cert issue` into this store; for a certificate issued elsewhere, list \
             the serial in jitr.fleets[].revoked_serials"
        );
    }
    println!("revoked bootstrap certificate {serial}: enrollments presenting it are refused");
    Ok(ExitCode::SUCCESS)
}
