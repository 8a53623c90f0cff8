//! JITR enrollment through [`JitrService`] on both stores (`cloud.md` §16): enroll, replay
//! within 24 h, another key pair under a taken name, both quotas, renewal with the kept key,
//! store revocation, unknown fleet. Real certificates and CSRs (rcgen), real stores.

use std::time::Duration;

use omega_cloud::config::{Fleet, JitrConfig};
use omega_cloud::jitr::JitrService;
use omega_cloud::jitr::check::JitrError;
use omega_cloud::jitr::pki::{Signer, new_ca};
use omega_cloud::store::jitr::{BootstrapRecord, JitrTx};
use omega_cloud::store::{Store, StoreTx};
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use serde_json::{Value, json};

fn csr(key: &KeyPair, cn: &str) -> String {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serialize_request(key).unwrap().pem().unwrap()
}

fn body(name: &str, key: &KeyPair, boot: &str, fleet: &str) -> Vec<u8> {
    json!({"org_id": "acme", "fleet_id": fleet, "device_name": name,
        "csr": csr(key, name), "bootstrap_cert_pem": boot})
    .to_string()
    .into_bytes()
}

fn code(r: Result<Value, JitrError>) -> &'static str {
    r.map(|v| panic!("expected a refusal, got {v}"))
        .unwrap_or_else(|e| e.code())
}

async fn enrollment_rules<S>(store: S)
where
    S: Store,
    S::Tx: JitrTx,
{
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let long = time::Duration::days(365);
    let device_ca = new_ca("device CA", now, long).unwrap();
    let boot_ca = new_ca("bootstrap CA", now, long).unwrap();
    for (n, t) in [
        ("device-ca.crt", &device_ca.cert_pem),
        ("device-ca.key", &device_ca.key_pem),
        ("bootstrap-ca.crt", &boot_ca.cert_pem),
    ] {
        std::fs::write(dir.path().join(n), t).unwrap();
    }
    let service = JitrService::load(&JitrConfig {
        ca_cert: dir.path().join("device-ca.crt"),
        ca_key_path: dir.path().join("device-ca.key"),
        cert_validity: Duration::from_secs(30 * 86_400),
        fleets: vec![Fleet {
            org_id: "acme".into(),
            fleet_id: "presses".into(),
            bootstrap_ca: dir.path().join("bootstrap-ca.crt"),
            max_devices: Some(10),
            revoked_serials: vec![],
        }],
    })
    .unwrap();
    let signer = Signer::new(&boot_ca.cert_pem, &boot_ca.key_pem).unwrap();
    let boot = signer
        .bootstrap("acme", "presses", now, time::Duration::days(30))
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.bootstrap_insert(&BootstrapRecord {
        serial: boot.serial.clone(),
        org_id: "acme".into(),
        fleet_id: "presses".into(),
        max_devices: 2,
        not_after: boot.not_after,
        issued_at: now,
        revoked_at: None,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let b = boot.cert_pem.as_str();

    // Enroll, then replay with a fresh CSR of the same key: the same answer.
    let k1 = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let first = service
        .enroll(&store, Some("key-d1"), &body("d1", &k1, b, "presses"))
        .await
        .unwrap();
    assert_eq!(first["device_id"], "d1");
    assert!(first["mqtt_broker_url"].is_null());
    let again = service
        .enroll(&store, Some("key-d1"), &body("d1", &k1, b, "presses"))
        .await
        .unwrap();
    assert_eq!(again, first, "replayed within 24 h");
    // The same key and name with another key pair: the name is taken.
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let r = service
        .enroll(&store, Some("key-d1"), &body("d1", &other, b, "presses"))
        .await;
    assert_eq!(code(r), "device_name_in_use");
    let r = service
        .enroll(&store, None, &body("d1", &other, b, "presses"))
        .await;
    assert_eq!(code(r), "device_name_in_use");

    // The certificate's quota is 2: d2 fits, d3 does not.
    let k2 = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    service
        .enroll(&store, None, &body("d2", &k2, b, "presses"))
        .await
        .unwrap();
    let k3 = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let r = service
        .enroll(&store, None, &body("d3", &k3, b, "presses"))
        .await;
    assert_eq!(code(r), "quota_exhausted");

    // Renewal with the kept key: a new certificate, not counted again.
    let renewed = service
        .enroll(&store, None, &body("d1", &k1, b, "presses"))
        .await
        .unwrap();
    assert_ne!(renewed["pem_cert_chain"], first["pem_cert_chain"]);
    let r = service
        .enroll(&store, None, &body("d3", &k3, b, "presses"))
        .await;
    assert_eq!(code(r), "quota_exhausted");

    // Revoked in the store: refused before the quota is looked at.
    let mut tx = store.begin().await.unwrap();
    let now2 = tx.now();
    assert!(tx.bootstrap_revoke(&boot.serial, now2).await.unwrap());
    assert!(!tx.bootstrap_revoke("ffff", now2).await.unwrap());
    tx.commit().await.unwrap();
    let r = service
        .enroll(&store, None, &body("d3", &k3, b, "presses"))
        .await;
    assert_eq!(code(r), "invalid_bootstrap_cert");

    let r = service
        .enroll(&store, None, &body("d3", &k3, b, "lathes"))
        .await;
    assert_eq!(code(r), "unknown_fleet");

    let mut tx = store.begin().await.unwrap();
    let e = tx.enrollment_get("d1").await.unwrap().unwrap();
    assert_eq!(e.bootstrap_serial, boot.serial);
    assert_eq!(
        tx.enrollment_counts("acme", "presses", &boot.serial)
            .await
            .unwrap(),
        (2, 2)
    );
    tx.rollback().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitr_enrollment_rules_sqlite() {
    let (store, _guard) = crate::support::sqlite_store().await;
    enrollment_rules(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitr_enrollment_rules_postgres() {
    let (store, _guard) = crate::support::postgres_store().await;
    enrollment_rules(store).await;
}
