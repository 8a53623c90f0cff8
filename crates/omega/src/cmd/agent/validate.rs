//! `omega agent validate` (`agent.md` §19): every check the agent makes before it starts,
//! without connecting to anything. Exit 0 when the agent could start, 2 otherwise.

use std::path::Path;
use std::process::ExitCode;

use omega_agent::config::{AgentConfig, Connection, SignedControl};
use omega_agent::discover::{self, Verdict};
use omega_agent::tls_check::{self, TlsCheckError};
use omega_config::{ValueSource, process_env};
use time::OffsetDateTime;

use super::ValidateArgs;
use super::report::{Report, TableRow};

/// A JITR certificate valid for less than this is renewed at startup (`agent.md` §17.1).
const JITR_MIN_VALIDITY_SECS: i64 = 24 * 3600;

/// Runs the checks and prints the report.
pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let report = check(&args.config, OffsetDateTime::now_utc());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.human());
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Every check of §19, in order; never fails, every problem is a finding.
pub fn check(path: &Path, now: OffsetDateTime) -> Report {
    let mut r = Report::new(path.display().to_string());
    let config = match AgentConfig::load(path, &process_env) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors.errors() {
                r.error(e.path(), e.message());
            }
            return r;
        }
    };
    config_findings(&mut r, &config);
    connection(&mut r, &config.connection, now);
    security(&mut r, &config);
    source(&mut r, &config);
    state_db(&mut r, &config);
    r
}

fn config_findings(r: &mut Report, c: &AgentConfig) {
    for v in &c.template_vars {
        r.info(
            None,
            format!("line {}: `{{{{ {} }}}}` is set", v.line, v.name),
        );
    }
    for u in &c.findings.env_uses {
        let msg = match (&u.variable, u.source) {
            (Some(var), ValueSource::Variable) => format!("from variable {var}"),
            (Some(var), src) => format!("variable {var} is not set; {} used", src.as_str()),
            (None, src) => format!("{} value", src.as_str()),
        };
        let msg = if u.secret {
            format!("{msg} (secret, not shown)")
        } else {
            msg
        };
        r.info(Some(&u.path), msg);
    }
    for w in c.warnings() {
        r.warn(Some(&w.path), &w.message);
    }
}

fn tls_path(e: &TlsCheckError, cert: &Path, key: &Path, cert_key: &str, key_key: &str) -> String {
    let on_key = match e {
        TlsCheckError::Read { path, .. }
        | TlsCheckError::NoPem { path, .. }
        | TlsCheckError::Pem { path, .. } => path == key && path != cert,
        TlsCheckError::Key { .. } | TlsCheckError::KeyMismatch { .. } => true,
        _ => false,
    };
    if on_key { key_key } else { cert_key }.to_owned()
}

fn connection(r: &mut Report, c: &Connection, now: OffsetDateTime) {
    r.info(
        Some("connection.server_url"),
        format!(
            "{} (device id `{}`, root topic `{}`)",
            c.server_url, c.device_id, c.root_topic
        ),
    );
    let tls = "connection.mqtt.tls";
    match &c.mqtt.tls.ca_cert_path {
        Some(ca) => match tls_check::check_ca_bundle(ca, now) {
            Ok(rep) => {
                r.info(
                    Some(&format!("{tls}.ca_cert_path")),
                    format!("{}: {} certificate(s)", ca.display(), rep.certs.len()),
                );
                for w in rep.warnings {
                    r.warn(Some(&format!("{tls}.ca_cert_path")), w);
                }
            }
            Err(e) => r.error(Some(&format!("{tls}.ca_cert_path")), e.to_string()),
        },
        None if c.server_url.scheme.is_secure() => {
            r.info(
                Some(&format!("{tls}.ca_cert_path")),
                "unset: the system roots verify the broker",
            );
        }
        None => {}
    }
    if let Some(j) = &c.jitr {
        jitr(r, c, j, now);
    } else if let Some(pair) = &c.mqtt.tls.client {
        let (ck, kk) = (
            format!("{tls}.client_cert_path"),
            format!("{tls}.client_key_path"),
        );
        match tls_check::check_client_pair(&pair.cert_path, &pair.key_path, Some(&c.device_id), now)
        {
            Ok(rep) => {
                let leaf = &rep.certs[0];
                r.info(
                    Some(&ck),
                    format!(
                        "{}: CN `{}`, key matches, valid until {}",
                        pair.cert_path.display(),
                        c.device_id,
                        leaf.not_after.date()
                    ),
                );
                for w in rep.warnings {
                    r.warn(Some(&ck), w);
                }
                if let Some(ca) = &c.mqtt.tls.ca_cert_path {
                    match tls_check::chain_mismatch(&pair.cert_path, ca, now) {
                        Ok(None) => {}
                        Ok(Some(why)) => r.warn(
                            Some(&ck),
                            format!(
                                "{}: not issued by a CA in {} ({why}): a broker that trusts only \
                                 that CA refuses this certificate",
                                pair.cert_path.display(),
                                ca.display()
                            ),
                        ),
                        Err(e) => r.warn(Some(&ck), e.to_string()),
                    }
                }
            }
            Err(e) => {
                let p = tls_path(&e, &pair.cert_path, &pair.key_path, &ck, &kk);
                r.error(Some(&p), e.to_string());
            }
        }
    }
}

fn jitr(r: &mut Report, c: &Connection, j: &omega_agent::config::Jitr, now: OffsetDateTime) {
    let p = "connection.jitr";
    match tls_check::check_ca_bundle(&j.bootstrap_cert_path, now) {
        Ok(rep) => {
            r.info(
                Some(&format!("{p}.bootstrap_cert_path")),
                format!("{}: parses", j.bootstrap_cert_path.display()),
            );
            for w in rep.warnings {
                r.warn(Some(&format!("{p}.bootstrap_cert_path")), w);
            }
        }
        Err(e) => r.error(Some(&format!("{p}.bootstrap_cert_path")), e.to_string()),
    }
    match writable_dir(&j.cert_dir) {
        Ok(note) => r.info(Some(&format!("{p}.cert_dir")), note),
        Err(e) => r.error(Some(&format!("{p}.cert_dir")), e),
    }
    let (cert, key) = (j.cert_path(), j.key_path());
    let verdict = if !cert.exists() || !key.exists() {
        "no certificate in cert_dir yet: enrollment would run at startup".to_owned()
    } else {
        match tls_check::check_client_pair(&cert, &key, Some(&c.device_id), now) {
            Ok(rep) if (rep.certs[0].not_after - now).whole_seconds() > JITR_MIN_VALIDITY_SECS => {
                "a valid certificate is in cert_dir: enrollment would not run".to_owned()
            }
            Ok(_) => {
                "the certificate in cert_dir ends within 24 h: enrollment would run".to_owned()
            }
            Err(e) => format!("enrollment would run at startup: {e}"),
        }
    };
    r.info(Some(p), verdict);
}

fn security(r: &mut Report, c: &AgentConfig) {
    let p = "security.signed_control.public_key_path";
    match &c.security.signed_control {
        SignedControl::Ed25519 { public_key_path } => {
            match std::fs::read_to_string(public_key_path) {
                Ok(pem) => {
                    match omega_protocol::signing::ControlVerifier::ed25519_from_public_pem(&pem) {
                        Ok(v) => r.info(
                            Some(p),
                            format!(
                                "{}: Ed25519 key, key_id {}",
                                public_key_path.display(),
                                v.key_id()
                            ),
                        ),
                        Err(e) => r.error(
                            Some(p),
                            format!(
                                "{}: not an Ed25519 public key (SubjectPublicKeyInfo PEM): {e}",
                                public_key_path.display()
                            ),
                        ),
                    }
                }
                Err(e) => r.error(
                    Some(p),
                    format!("{}: cannot read: {e}", public_key_path.display()),
                ),
            }
        }
        SignedControl::HmacSha256 { .. } => {
            r.info(Some("security.auth_token_env"), "HMAC secret is set")
        }
        SignedControl::Disabled => {}
    }
}

fn source(r: &mut Report, c: &AgentConfig) {
    let p = "sqlite-replication.source_db_path";
    let repl = &c.replication;
    let conn = match discover::open_read_only(&repl.source_db_path) {
        Ok(conn) => conn,
        Err(e) => {
            r.error(Some(p), e.to_string());
            return;
        }
    };
    match discover::journal_mode(&conn) {
        Ok(mode) if mode == "wal" => r.info(Some(p), format!("{}: opened read-only, journal mode wal", repl.source_db_path.display())),
        Ok(mode) => r.warn(
            Some(p),
            format!("journal mode is `{mode}`, not WAL: in rollback-journal mode a snapshot's long read blocks the application's writers"),
        ),
        Err(e) => r.error(Some(p), e.to_string()),
    }
    let tables = match discover::discover(&conn, &repl.table_strategies) {
        Ok(t) => t,
        Err(e) => {
            r.error(Some(p), e.to_string());
            return;
        }
    };
    for t in &tables {
        let key = format!(
            "sqlite-replication.table_strategies.{}",
            t.strategy_key.as_deref().unwrap_or(&t.name)
        );
        for w in &t.warnings {
            r.warn(Some(&key), format!("table `{}`: {w}", t.name));
        }
        if let Verdict::Skipped(s) = &t.verdict {
            let msg = format!("table `{}` is skipped: {}: {}", t.name, s.reason, s.fix);
            if s.config_error {
                r.error(Some(&key), msg)
            } else {
                r.warn(Some(&key), msg)
            }
        }
        if let Verdict::Telemetry(plan) = &t.verdict {
            match omega_agent::telemetry::ts_indexed(&conn, &t.name, &plan.ts_column) {
                Ok(true) => {}
                Ok(false) => r.warn(
                    Some(&key),
                    format!(
                        "telemetry table `{}`: ts_column `{}` has no index, so every flush sorts the table; run: CREATE INDEX {} ON {} ({})",
                        t.name,
                        plan.ts_column,
                        omega_agent::sql::quote_ident(&format!("{}_{}_idx", t.name, plan.ts_column)),
                        omega_agent::sql::quote_ident(&t.name),
                        omega_agent::sql::quote_ident(&plan.ts_column),
                    ),
                ),
                Err(e) => r.error(Some(&key), format!("table `{}`: {e}", t.name)),
            }
        }
        let (reason, fix) = match &t.verdict {
            Verdict::Skipped(s) => (Some(s.reason.clone()), Some(s.fix.clone())),
            _ => (None, None),
        };
        r.tables.push(TableRow {
            name: t.name.clone(),
            action: t.verdict.action(),
            schema_hash: t.verdict.is_enrolled().then(|| t.schema_hash.clone()),
            reason,
            fix,
        });
    }
    for e in discover::unmatched_strategy_keys(&tables, &repl.table_strategies) {
        r.warn(Some(&e.yaml_path()), "no such table");
    }
}

fn state_db(r: &mut Report, c: &AgentConfig) {
    let p = "sqlite-replication.state_db_path";
    let state = &c.replication.state_db_path;
    let dir = match state.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => ".".into(),
    };
    match writable_dir(&dir) {
        Ok(note) => r.info(Some(p), note),
        Err(e) => r.error(Some(p), e),
    }
    if !state.exists() {
        return;
    }
    // The state format is owned by `omega_agent::state`; only its `meta.device_id` is read.
    match state_device_id(state) {
        Ok(Some(id)) if id != c.connection.device_id => r.error(
            Some(p),
            format!(
                "{} belongs to device `{id}`, not `{}`: the agent refuses a foreign state.db",
                state.display(),
                c.connection.device_id
            ),
        ),
        Ok(Some(id)) => r.info(Some(p), format!("{}: device id `{id}`", state.display())),
        Ok(None) => r.info(
            Some(p),
            format!("{}: no device id recorded yet", state.display()),
        ),
        Err(e) => r.error(Some(p), format!("{}: cannot read: {e}", state.display())),
    }
}

fn state_device_id(path: &Path) -> Result<Option<String>, String> {
    let conn = discover::open_read_only(path).map_err(|e| e.to_string())?;
    let has_meta: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
            [],
            |row| row.get(0),
        )
        .map_err(|e| e.to_string())?;
    if !has_meta {
        return Ok(None);
    }
    match conn.query_row(
        "SELECT value FROM meta WHERE key = 'device_id'",
        [],
        |row| row.get(0),
    ) {
        Ok(v) => Ok(Some(v)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether the agent could write in `dir` (or create it): probes with a temporary file.
fn writable_dir(dir: &Path) -> Result<String, String> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    let probe = existing.join(format!(".omega-validate-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("{} is not writable: {e}", existing.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(if existing == dir {
        format!("{} is writable", dir.display())
    } else {
        format!(
            "{} will be created (under writable {})",
            dir.display(),
            existing.display()
        )
    })
}
