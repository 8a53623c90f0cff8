//! MQTT over QUIC end to end (issue #12): `omega agent run` → `omega broker --quic` (mutual
//! TLS on the QUIC listener) → `omega cloud serve` (plain TCP on the same broker, or QUIC with
//! mutual TLS too) → a fresh PostgreSQL database. Also: a client certificate from another CA is
//! refused, a broker killed with SIGKILL mid-stream and restarted on the same ports loses
//! nothing (receipts), a `cloud serve` restarted over QUIC takes what the broker queued for its
//! session (manual acks survive), and an unreachable `quic://` falls back to `ssl://` on a
//! private mosquitto.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use omega_testkit::pki::Pki;
use omega_testkit::postgres::PostgresDb;

use crate::cloud_e2e::{CONVERGE, Proc, Setup, app_writes, omega};

/// `omega broker` with a plain TCP listener and a QUIC listener whose TLS files come from
/// `pki`; `client_ca` is the CA client certificates must be signed by.
struct QuicBroker {
    proc: Option<Proc>,
    tcp: SocketAddr,
    quic: SocketAddr,
    args: Vec<String>,
}

impl QuicBroker {
    fn start(pki: &Pki, client_ca: &Path) -> QuicBroker {
        let args = vec![
            "--quic-cert".to_string(),
            pki.path("server.pem").display().to_string(),
            "--quic-key".into(),
            pki.path("server.key").display().to_string(),
            "--quic-ca".into(),
            client_ca.display().to_string(),
        ];
        let (proc, tcp, quic) = spawn_broker("127.0.0.1:0", "127.0.0.1:0", &args);
        QuicBroker {
            proc: Some(proc),
            tcp,
            quic,
            args,
        }
    }

    /// SIGKILL, then a new process on the same TCP and UDP ports.
    fn kill9_and_restart(&mut self) {
        self.proc.take().unwrap().kill9();
        let (proc, tcp, quic) =
            spawn_broker(&self.tcp.to_string(), &self.quic.to_string(), &self.args);
        assert_eq!((tcp, quic), (self.tcp, self.quic));
        self.proc = Some(proc);
    }
}

/// Starts `omega broker` and reads its two `listening on` lines.
fn spawn_broker(listen: &str, quic: &str, tls: &[String]) -> (Proc, SocketAddr, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_omega"))
        .args(["broker", "--listen", listen, "--quic", quic])
        .args(tls)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start omega broker");
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(Some(child));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let addr = |scheme: &str| {
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("omega broker printed its listening lines within 30 s");
        url.strip_prefix(scheme)
            .unwrap_or_else(|| panic!("{url} is not {scheme}"))
            .parse::<SocketAddr>()
            .unwrap()
    };
    let tcp = addr("mqtt://");
    let quic = addr("quics://");
    (proc, tcp, quic)
}

/// Points the agent of `setup` at `server_url` (and `fallback_url`) with the CA and client
/// certificate of `pki`.
fn use_urls(setup: &Setup, broker: SocketAddr, server_url: &str, fallback: &str, pki: &Pki) {
    let path = setup.path("device.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let from = format!("  server_url: mqtt://{broker}\n");
    assert!(text.contains(&from), "{text}");
    let to = format!(
        "  server_url: {server_url}\n{fallback}",
        fallback = if fallback.is_empty() {
            String::new()
        } else {
            format!("  fallback_url: {fallback}\n")
        }
    );
    let tls = format!(
        "    keep_alive: 5s\n    tls:\n      ca_cert_path: {}\n      client_cert_path: {}\n      client_key_path: {}\n",
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client.key").display()
    );
    let text = text
        .replace(&from, &to)
        .replace("    keep_alive: 5s\n", &tls);
    std::fs::write(&path, text).unwrap();
}

/// Starts `omega agent run` at INFO with its log in `agent.log`, and waits until its capture
/// triggers are installed on every table (they are, before the first connection attempt).
fn start_agent_logged(setup: &Setup) -> (Proc, std::path::PathBuf) {
    let log = setup.path("agent.log");
    let child = Command::new(env!("CARGO_BIN_EXE_omega"))
        .args(["agent", "run", "--config"])
        .arg(setup.path("device.yaml"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start omega agent run");
    let agent = Proc(Some(child));
    setup.wait_captured();
    (agent, log)
}

/// A broker with a QUIC listener that requires client certificates of `pki`'s CA, a setup
/// whose agent dials it over QUIC with `pki`'s client certificate.
fn quic_setup(prefix: &str, db: &PostgresDb, pki: &Pki) -> (QuicBroker, Setup) {
    let broker = QuicBroker::start(pki, &pki.path("ca.pem"));
    let setup = Setup::with_agent_lines(prefix, Some(db.url()), broker.tcp, "");
    use_urls(
        &setup,
        broker.tcp,
        &format!("quic://{}", broker.quic),
        "",
        pki,
    );
    (broker, setup)
}

/// Points the cloud of `setup` at the broker's QUIC listener `quic`, with `pki`'s CA and
/// client certificate (`broker.tls`).
fn cloud_over_quic(setup: &Setup, tcp: SocketAddr, quic: SocketAddr, pki: &Pki) {
    let path = setup.path("cloud.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let from = format!("broker:\n  url: mqtt://{tcp}\n");
    assert!(text.contains(&from), "{text}");
    let to = format!(
        "broker:\n  url: quic://{quic}\n  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client.key").display()
    );
    std::fs::write(&path, text.replace(&from, &to)).unwrap();
}

/// Sets the agent's `receipt_timeout`, so that a test can tell a delivery from a re-send.
fn receipt_timeout(setup: &Setup, timeout: &str) {
    let path = setup.path("device.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let from = "  receipt_timeout: 5s\n";
    assert!(text.contains(from), "{text}");
    let text = text.replace(from, &format!("  receipt_timeout: {timeout}\n"));
    std::fs::write(&path, text).unwrap();
}

#[test]
fn quic_with_mutual_tls_mirrors_the_source_exactly_on_postgres() {
    let db = PostgresDb::fresh();
    let pki = Pki::generate("omega-quic-device");
    let (_broker, setup) = quic_setup("quic", &db, &pki);
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 8);
    setup.converge();
    app_writes(&setup.source(), 3, 4);
    setup.converge();
    agent.sigterm();
    cloud.sigterm();
}

#[test]
fn agent_and_cloud_both_over_quic_mirror_the_source_through_broker_kills() {
    let db = PostgresDb::fresh();
    let pki = Pki::generate("omega-quic-device");
    let (mut broker, setup) = quic_setup("quicboth", &db, &pki);
    cloud_over_quic(&setup, broker.tcp, broker.quic, &pki);
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 8);
    setup.converge();
    // The broker's sessions are in memory: after the kill both links come back to a broker
    // that lost them (the cloud's QUIC client subscribes again by itself).
    broker.kill9_and_restart();
    app_writes(&setup.source(), 8, 4);
    setup.converge();
    agent.sigterm();
    cloud.sigterm();
}

#[test]
fn a_cloud_restarted_over_quic_takes_what_the_broker_queued_for_its_session() {
    let db = PostgresDb::fresh();
    let pki = Pki::generate("omega-quic-device");
    let (broker, setup) = quic_setup("quicresume", &db, &pki);
    cloud_over_quic(&setup, broker.tcp, broker.quic, &pki);
    // No re-send within the test: what reaches the mirror after the restart is what the broker
    // kept in the cloud's session and delivered to the new process.
    receipt_timeout(&setup, "1h");
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 4);
    setup.converge();
    cloud.sigterm();
    app_writes(&setup.source(), 4, 6);
    setup.wait_broker_took_everything();
    let cloud = setup.start_cloud();
    setup.converge();
    agent.sigterm();
    cloud.sigterm();
}

/// Sets the cloud's `control.resend_after`, so that a test can tell a delivery from a re-send.
fn control_resend_after(setup: &Setup, after: &str) {
    let path = setup.path("cloud.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let from = "  resend_after: 2s\n";
    assert!(text.contains(from), "{text}");
    std::fs::write(
        &path,
        text.replace(from, &format!("  resend_after: {after}\n")),
    )
    .unwrap();
}

#[test]
fn an_agent_restarted_over_quic_takes_the_control_the_broker_queued_for_its_session() {
    let db = PostgresDb::fresh();
    let pki = Pki::generate("omega-quic-device");
    let (_broker, setup) = quic_setup("quicctl", &db, &pki);
    // No re-send within the test: the pause reaches the restarted agent only as the message
    // the broker kept in the agent's session and delivers right after its CONNACK.
    control_resend_after(&setup, "1h");
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 4);
    setup.converge();
    agent.sigterm();
    let out = omega(&[
        "cloud",
        "pause",
        "--device",
        &setup.device,
        "--table",
        "readings",
        "--config",
        setup.path("cloud.yaml").to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "omega cloud pause: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pause: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = pause["control_id"]
        .as_str()
        .expect("a control id")
        .to_string();
    // The cloud published it while the agent was away: the broker holds it in the session.
    omega_testkit::wait::until_true("the cloud sent the pause once", CONVERGE, || {
        let out = Command::new("psql")
            .args([db.url(), "-tAc"])
            .arg(format!(
                "SELECT attempts FROM omega_controls WHERE control_id = '{id}'"
            ))
            .output()
            .expect("psql (apt-get install postgresql-client)");
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    });
    let agent = setup.start_agent();
    omega_testkit::wait::until_true(
        "the restarted agent recorded the pause queued while it was away",
        Duration::from_secs(30),
        || setup.table_status("readings")["paused"] == true,
    );
    agent.sigterm();
    cloud.sigterm();
}

#[test]
fn a_client_certificate_from_another_ca_is_refused_over_quic() {
    let db = PostgresDb::fresh();
    let pki = Pki::generate("omega-quic-device");
    let other = Pki::generate("omega-quic-device");
    // The broker wants client certificates of `other`'s CA; the agent has `pki`'s (and
    // verifies the broker's certificate with `pki`'s CA, which signed it).
    let broker = QuicBroker::start(&pki, &other.path("ca.pem"));
    let setup = Setup::with_agent_lines("quicca", Some(db.url()), broker.tcp, "");
    use_urls(
        &setup,
        broker.tcp,
        &format!("quic://{}", broker.quic),
        "",
        &pki,
    );
    let (agent, log) = start_agent_logged(&setup);
    omega_testkit::wait::until_true("two refused connection attempts", CONVERGE, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("cannot connect to broker")
            .count()
            >= 2
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("connected to broker"), "{text}");
    agent.sigterm();
}

#[test]
fn a_quic_broker_killed_mid_stream_and_restarted_loses_nothing() {
    let db = PostgresDb::fresh();
    let pki = Pki::generate("omega-quic-device");
    let (mut broker, setup) = quic_setup("quickill", &db, &pki);
    let cloud = setup.start_cloud();
    let (agent, log) = start_agent_logged(&setup);
    let source = setup.source();
    let writer = std::thread::spawn(move || {
        for round in 0..30 {
            app_writes(&source, round, 1);
            // The application's pace: batches keep flowing while the broker dies.
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(400));
        broker.kill9_and_restart();
    }
    writer.join().unwrap();
    setup.converge();
    // The kills really cut the agent's QUIC connection, and it came back.
    let text = std::fs::read_to_string(&log).unwrap();
    let lost = text.find("broker connection lost");
    assert!(
        lost.is_some_and(|at| text[at..].contains("connected to broker")),
        "{text}"
    );
    agent.sigterm();
    cloud.sigterm();
}

#[test]
fn an_unreachable_quic_url_falls_back_to_ssl_on_mosquitto() {
    let db = PostgresDb::fresh();
    let pki = Pki::generate("omega-quic-device");
    // A plain listener for the cloud, a TLS listener (client certificates of the CA) for the
    // agent's fallback.
    let tls_port = omega_testkit::ports::free_port();
    let mosquitto = omega_testkit::mosquitto::Mosquitto::start_with(&format!(
        "listener {tls_port} 127.0.0.1\n{}",
        pki.mosquitto_tls_lines()
    ));
    // Nothing listens on this UDP port.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let quic = dead.local_addr().unwrap();
    drop(dead);
    let setup = Setup::with_agent_lines("quicfb", Some(db.url()), mosquitto.addr(), "");
    use_urls(
        &setup,
        mosquitto.addr(),
        &format!("quic://{quic}"),
        &format!("ssl://127.0.0.1:{tls_port}"),
        &pki,
    );
    let cloud = setup.start_cloud();
    let (agent, log) = start_agent_logged(&setup);
    app_writes(&setup.source(), 0, 4);
    // The fallback, then a connection on it (the only way in: nothing answers on the QUIC
    // port).
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(at) = text.find("falling back to connection.fallback_url")
            && text[at..].contains("connected to broker")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no fallback connection within {CONVERGE:?}; agent log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    setup.converge();
    agent.sigterm();
    cloud.sigterm();
}
