//! mTLS against a mosquitto that requires client certificates.

use std::time::Duration;

use omega_agent::transport::TlsFiles;
use omega_testkit::mosquitto::Mosquitto;
use omega_testkit::pki::Pki;
use omega_testkit::ports::free_port;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_flow_over_mutual_tls_with_a_generated_pki() {
    init_logs();
    let device = unique_device("tls");
    let pki = Pki::generate(&device);
    // The first listener requires a certificate; a second, plain one serves the recorder.
    let plain = free_port();
    let broker = Mosquitto::start_with(&format!(
        "{}listener {plain} 127.0.0.1\n",
        pki.mosquitto_tls_lines()
    ));
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    let wire = Wire::record(([127, 0, 0, 1], plain).into(), &device).await;
    let mut cfg = run_config(
        dir.path(),
        &source,
        &device,
        &format!("mqtts://127.0.0.1:{}", broker.addr().port()),
    );
    cfg.mqtt.tls = Some(TlsFiles {
        ca: Some(pki.path("ca.pem")),
        client: Some((pki.path("client.pem"), pki.path("client.key"))),
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(omega_agent::run::run(cfg, async move {
        let _ = stop_rx.await;
    }));
    wait_for_triggers(&source, 12, &agent).await;
    let conn = app_conn(&source);
    conn.execute(
        r#"INSERT INTO "order" (id, item, qty, price) VALUES (1, 'over tls', 2, 9.5)"#,
        [],
    )
    .unwrap();
    let expected = source_rows(&source, &["order"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while wire.mirror() != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "no batch over mTLS within 30 s; broker log:\n{}",
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_that_does_not_match_its_certificate_is_a_clear_error() {
    let device = unique_device("tls-bad");
    let pki = Pki::generate(&device);
    let other = Pki::generate(&device);
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    let mut cfg = run_config(dir.path(), &source, &device, "mqtts://127.0.0.1:1");
    cfg.mqtt.tls = Some(TlsFiles {
        ca: Some(pki.path("ca.pem")),
        client: Some((pki.path("client.pem"), other.path("client.key"))),
    });
    let err = omega_agent::run::run(cfg, std::future::pending::<()>())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("client.key"), "{err}");
}
