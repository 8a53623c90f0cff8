//! JITR end to end (`agent.md` §17, `cloud.md` §16) through processes: `omega cloud ca init`
//! and `bootstrap-cert issue` → `omega cloud serve` (HTTP API and ingest) → a private
//! mosquitto whose TLS listener requires a client certificate signed by the fleet's device CA
//! → `omega agent run` with `connection.jitr` enrolls, connects with the issued certificate
//! and its rows reach the mirror. Then: the same request replayed (same Idempotency-Key)
//! answers the same certificate; a second device over the bootstrap certificate's quota exits
//! 1 with `quota_exhausted`; after `bootstrap-cert revoke` a device exits 1 with
//! `invalid_bootstrap_cert`.
//!
//! The cloud reaches the broker over a second, plain loopback listener: cloud→broker TLS is
//! not what this test is about.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use omega_testkit::mosquitto::Mosquitto;
use omega_testkit::pki::Pki;
use omega_testkit::ports::free_port;
use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::{Value, json};

use crate::cloud_e2e::{Proc, Setup, app_writes, omega};

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A device config enrolling as `name`, with its own cert_dir.
fn device_yaml(s: &Setup, tls_port: u16, http: u16, name: &str, ca: &std::path::Path) -> String {
    let text = std::fs::read_to_string(s.path("device.yaml")).unwrap();
    let start = text.find("  server_url:").unwrap();
    let end = text.find("security:").unwrap();
    let connection = format!(
        "  server_url: mqtts://127.0.0.1:{tls_port}\n  root_topic: {root}/{name}\n  mqtt:\n    \
         keep_alive: 5s\n    tls:\n      ca_cert_path: {ca}\n  jitr:\n    api_base_url: \
         http://127.0.0.1:{http}\n    bootstrap_cert_path: boot.crt\n    cert_dir: certs-{name}\n    \
         org_id: acme\n    fleet_id: presses\n    device_name: {name}\n",
        root = s.root,
        ca = ca.display()
    );
    format!("{}{connection}{}", &text[..start], &text[end..])
}

/// `omega agent run` that must fail: its exit status and stderr.
fn failing_agent(s: &Setup, file: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_omega"))
        .args(["agent", "run", "--config"])
        .arg(s.path(file))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One HTTP/1.1 POST on loopback; returns status and JSON body.
fn post(port: u16, path: &str, key: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status: u16 = resp[9..12].parse().unwrap();
    let json = resp.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[test]
fn a_device_enrolls_connects_and_replicates_then_quota_replay_and_revocation() {
    // The broker: TLS listener (device certificates of the fleet's device CA) + plain one.
    let server_pki = Pki::generate("unused");
    let plain = free_port();
    let s0 = tempfile::tempdir().unwrap();
    let fleet_pki = s0.path().join("pki");
    let out = omega(&["cloud", "ca", "init", "--out", fleet_pki.to_str().unwrap()]);
    ok(&out, "ca init");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for k in ["device-ca.key", "bootstrap-ca.key"] {
            let mode = std::fs::metadata(fleet_pki.join(k))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{k}");
        }
    }
    let again = omega(&["cloud", "ca", "init", "--out", fleet_pki.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "ca init never overwrites");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let broker = Mosquitto::start_with(&format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n\
         use_identity_as_username true\nlistener {plain} 127.0.0.1\n",
        fleet_pki.join("device-ca.crt").display(),
        server_pki.path("server.pem").display(),
        server_pki.path("server.key").display(),
    ));
    let tls_port = broker.addr().port();

    let s = Setup::on_broker(
        "jitr",
        None,
        std::net::SocketAddr::from(([127, 0, 0, 1], plain)),
    );
    let http = free_port();
    let mut cloud = std::fs::read_to_string(s.path("cloud.yaml")).unwrap();
    cloud.push_str(&format!(
        "api:\n  listen: 127.0.0.1:{http}\n\
         jitr:\n  ca_cert: {p}/device-ca.crt\n  ca_key_path: {p}/device-ca.key\n  \
         cert_validity: 720h\n  fleets:\n    - org_id: acme\n      fleet_id: presses\n      \
         bootstrap_ca: {p}/bootstrap-ca.crt\n      max_devices: 100\n",
        p = fleet_pki.display()
    ));
    std::fs::write(s.path("cloud.yaml"), cloud).unwrap();
    let cfg = s.path("cloud.yaml");
    let cfg = cfg.to_str().unwrap();
    let boot = s.path("boot.crt");
    let issued = ok(
        &omega(&[
            "cloud",
            "bootstrap-cert",
            "issue",
            "--config",
            cfg,
            "--fleet",
            "presses",
            "--max-devices",
            "1",
            "--out",
            boot.to_str().unwrap(),
        ]),
        "bootstrap-cert issue",
    );
    let serial = issued
        .split("serial ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("issue prints the serial")
        .to_string();

    let _cloud: Proc = s.start_cloud();
    let yaml = device_yaml(&s, tls_port, http, &s.device, &server_pki.path("ca.pem"));
    std::fs::write(s.path("device.yaml"), yaml).unwrap();
    let agent = s.start_agent();
    app_writes(&s.source(), 0, 2);

    // Enrolled: the files, the key's mode, the metadata, CN = device name.
    let certs = s.path(&format!("certs-{}", s.device));
    let chain = std::fs::read_to_string(certs.join("device.crt")).unwrap();
    let key_pem = std::fs::read_to_string(certs.join("device.key")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(certs.join("device.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(certs.join("metadata.json")).unwrap())
            .unwrap();
    assert_eq!(meta, json!({"device_id": s.device}));

    // Connected with the issued certificate: the agent's only broker URL is the TLS listener,
    // which requires a client certificate signed by the fleet's device CA, and the agent holds
    // no certificate but the enrolled one. The rows replicate.
    s.converge();
    // The same request replayed (same key pair, same Idempotency-Key) → the same chain.
    let key = KeyPair::from_pem(&key_pem).unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, s.device.as_str());
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let body = json!({"org_id": "acme", "fleet_id": "presses", "device_name": s.device,
        "csr": csr, "bootstrap_cert_pem": std::fs::read_to_string(&boot).unwrap()});
    let idem = omega_protocol::jitr::idempotency_key("acme", "presses", &s.device);
    let (status, answer) = post(http, "/v1/jitr", &idem, &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["pem_cert_chain"], chain.as_str());
    assert_eq!(answer["device_id"], s.device.as_str());

    // A second device: the bootstrap certificate's quota (1) is used up.
    let second = format!("{}-b", s.device);
    let yaml = device_yaml(&s, tls_port, http, &second, &server_pki.path("ca.pem"));
    std::fs::write(s.path("device-b.yaml"), yaml).unwrap();
    let (code, err) = failing_agent(&s, "device-b.yaml");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("403 quota_exhausted"), "{err}");
    assert!(err.contains("JITR enrollment failed"), "{err}");
    assert!(!s.path(&format!("certs-{second}/device.crt")).exists());

    // Revoked: refused with invalid_bootstrap_cert before the quota is looked at.
    ok(
        &omega(&[
            "cloud",
            "bootstrap-cert",
            "revoke",
            &serial,
            "--config",
            cfg,
        ]),
        "bootstrap-cert revoke",
    );
    let (code, err) = failing_agent(&s, "device-b.yaml");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("400 invalid_bootstrap_cert"), "{err}");
    assert!(err.contains("revoked"), "{err}");
    let unknown = omega(&[
        "cloud",
        "bootstrap-cert",
        "revoke",
        "abcdef",
        "--config",
        cfg,
    ]);
    assert_eq!(unknown.status.code(), Some(1));

    agent.sigterm();
}
