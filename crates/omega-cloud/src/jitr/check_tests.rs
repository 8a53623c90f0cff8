use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use time::macros::datetime;

use super::*;
use crate::jitr::pki::{Signer, new_ca};

const NOW: OffsetDateTime = datetime!(2026-05-01 12:00 UTC);

fn ca(cn: &str) -> Signer {
    let c = new_ca(cn, NOW, Duration::days(3650)).unwrap();
    Signer::new(&c.cert_pem, &c.key_pem).unwrap()
}

fn der(pem: &str) -> Vec<u8> {
    pem_block(pem, "CERTIFICATE").unwrap()
}

fn csr(cn: &str) -> (String, KeyPair) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    (p.serialize_request(&key).unwrap().pem().unwrap(), key)
}

fn request(name: &str, csr: &str) -> EnrollRequest {
    EnrollRequest {
        org_id: "acme".into(),
        fleet_id: "presses".into(),
        project_id: None,
        device_name: name.into(),
        csr: csr.into(),
        bootstrap_cert_pem: String::new(),
    }
}

#[test]
fn bootstrap_chains_to_its_ca_only() {
    let boot_ca = ca("bootstrap CA");
    let other = ca("other CA");
    let b = boot_ca
        .bootstrap("acme", "presses", NOW, Duration::days(30))
        .unwrap();
    let ok = verify_bootstrap(&b.cert_pem, &der(boot_ca.ca_pem()), NOW).unwrap();
    assert_eq!(ok.serial, b.serial);
    let e = verify_bootstrap(&b.cert_pem, &der(other.ca_pem()), NOW).unwrap_err();
    assert_eq!(e.code(), "invalid_bootstrap_cert");
    assert!(e.to_string().contains("does not chain"), "{e}");
    // A certificate signed by another key under the same subject does not chain either.
    let twin = ca("bootstrap CA");
    let forged = twin
        .bootstrap("acme", "presses", NOW, Duration::days(30))
        .unwrap();
    let e = verify_bootstrap(&forged.cert_pem, &der(boot_ca.ca_pem()), NOW).unwrap_err();
    assert!(e.to_string().contains("does not chain"), "{e}");
}

#[test]
fn bootstrap_validity_is_checked() {
    let boot_ca = ca("bootstrap CA");
    let b = boot_ca
        .bootstrap("acme", "presses", NOW, Duration::days(1))
        .unwrap();
    let ca_der = der(boot_ca.ca_pem());
    let e = verify_bootstrap(&b.cert_pem, &ca_der, NOW + Duration::days(2)).unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    let e = verify_bootstrap(&b.cert_pem, &ca_der, NOW - Duration::days(1)).unwrap_err();
    assert!(e.to_string().contains("not valid before"), "{e}");
    let e = verify_bootstrap("garbage", &ca_der, NOW).unwrap_err();
    assert_eq!(e.status(), 400);
}

fn record(revoked: bool) -> BootstrapRecord {
    BootstrapRecord {
        serial: "ab".into(),
        org_id: "acme".into(),
        fleet_id: "presses".into(),
        max_devices: 2,
        not_after: NOW,
        issued_at: NOW,
        revoked_at: revoked.then_some(NOW),
    }
}

#[test]
fn revocation_from_config_or_store_and_fleet_binding() {
    let boot = Bootstrap {
        serial: "ab".into(),
        not_after: NOW,
    };
    check_standing(&boot, None, "acme", "presses", &[]).unwrap();
    check_standing(&boot, Some(&record(false)), "acme", "presses", &[]).unwrap();
    let e = check_standing(&boot, None, "acme", "presses", &["ab".into()]).unwrap_err();
    assert_eq!(e.code(), "invalid_bootstrap_cert");
    assert!(e.to_string().contains("revoked"), "{e}");
    let e = check_standing(&boot, Some(&record(true)), "acme", "presses", &[]).unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");
    let e = check_standing(&boot, Some(&record(false)), "acme", "lathes", &[]).unwrap_err();
    assert!(
        e.to_string().contains("issued for fleet `acme/presses`"),
        "{e}"
    );
}

#[test]
fn csr_signature_and_cn_are_checked() {
    let (pem, key) = csr("press-07");
    let c = verify_csr(&pem, "press-07").unwrap();
    assert_eq!(
        c.spki_der,
        rcgen::PublicKeyData::subject_public_key_info(&key)
    );
    let e = verify_csr(&pem, "press-08").unwrap_err();
    assert_eq!(e.code(), "invalid_csr");
    assert!(e.to_string().contains("CN `press-07`"), "{e}");
    // Flip one byte of the signature: it no longer verifies.
    let mut d = pem_block(&pem, "CERTIFICATE REQUEST").unwrap();
    let n = d.len();
    d[n - 3] ^= 0x01;
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &d);
    let tampered =
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n");
    let e = verify_csr(&tampered, "press-07").unwrap_err();
    assert_eq!(e.code(), "invalid_csr");
    assert!(verify_csr("not a csr", "press-07").is_err());
}

#[test]
fn replay_within_24h_for_the_same_key_pair_only() {
    let (pem, _) = csr("press-07");
    let c = verify_csr(&pem, "press-07").unwrap();
    let req = request("press-07", &pem);
    let digest = request_digest(&req, &c);
    let stored = StoredAnswer {
        request_digest: digest.clone(),
        status: 200,
        response: serde_json::json!({"device_id": "press-07"}),
        created_at: NOW,
    };
    assert_eq!(
        replay(Some(stored.clone()), &digest, NOW + Duration::hours(23)).unwrap(),
        Replay::Stored(serde_json::json!({"device_id": "press-07"}))
    );
    assert_eq!(
        replay(Some(stored.clone()), &digest, NOW + Duration::hours(25)).unwrap(),
        Replay::Fresh
    );
    assert_eq!(replay(None, &digest, NOW).unwrap(), Replay::Fresh);
    let (other, _) = csr("press-07");
    let other_digest = request_digest(&req, &verify_csr(&other, "press-07").unwrap());
    assert_ne!(other_digest, digest);
    let e = replay(Some(stored), &other_digest, NOW).unwrap_err();
    assert_eq!(e.code(), "device_name_in_use");
}

#[test]
fn name_is_free_or_renewed_by_its_own_key() {
    let (pem, _) = csr("press-07");
    let c = verify_csr(&pem, "press-07").unwrap();
    let req = request("press-07", &pem);
    assert!(!name_free(None, &req, &c).unwrap());
    let mut e = EnrollmentRecord {
        device_id: "press-07".into(),
        org_id: "acme".into(),
        fleet_id: "presses".into(),
        project_id: None,
        bootstrap_serial: "ab".into(),
        public_key_sha256: c.key_digest(),
        cert_serial: "cd".into(),
        enrolled_at: NOW,
    };
    assert!(name_free(Some(&e), &req, &c).unwrap());
    e.public_key_sha256 = "00".into();
    let err = name_free(Some(&e), &req, &c).unwrap_err();
    assert_eq!((err.status(), err.code()), (409, "device_name_in_use"));
}

#[test]
fn quotas_of_fleet_and_certificate() {
    check_quota(None, 1000, None, 1000, "ab").unwrap();
    check_quota(Some(2), 1, Some(2), 1, "ab").unwrap();
    let e = check_quota(Some(2), 2, None, 0, "ab").unwrap_err();
    assert_eq!((e.status(), e.code()), (403, "quota_exhausted"));
    assert!(e.to_string().contains("max_devices 2"), "{e}");
    let e = check_quota(Some(10), 2, Some(2), 2, "ab").unwrap_err();
    assert!(e.to_string().contains("bootstrap certificate ab"), "{e}");
}

#[test]
fn request_parsing_names_the_problem() {
    let e = parse_request(b"{").unwrap_err();
    assert_eq!(e.code(), "invalid_request");
    let body = serde_json::json!({"org_id": "acme", "fleet_id": "presses", "device_name": "",
        "csr": "x", "bootstrap_cert_pem": "y"});
    let e = parse_request(body.to_string().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("device_name"), "{e}");
    let body = serde_json::json!({"org_id": "acme", "fleet_id": "presses", "device_name": "a/b",
        "csr": "x", "bootstrap_cert_pem": "y"});
    assert!(parse_request(body.to_string().as_bytes()).is_err());
}

#[test]
fn device_certificate_has_the_name_the_key_and_the_chain() {
    let dev_ca = ca("device CA");
    let (pem, _) = csr("press-07");
    let c = verify_csr(&pem, "press-07").unwrap();
    let issued = dev_ca
        .device(&c.spki_der, "press-07", NOW, Duration::days(90))
        .unwrap();
    assert!(issued.cert_pem.ends_with(dev_ca.ca_pem()));
    let leaf = pem_block(&issued.cert_pem, "CERTIFICATE").unwrap();
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "press-07"
    );
    assert_eq!(cert.public_key().raw, c.spki_der.as_slice());
    let ca_der = der(dev_ca.ca_pem());
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    assert_eq!(serial_hex(cert.raw_serial()), issued.serial);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth);
}

#[test]
fn signer_refuses_a_key_of_another_ca() {
    let a = new_ca("a", NOW, Duration::days(1)).unwrap();
    let b = new_ca("b", NOW, Duration::days(1)).unwrap();
    let e = Signer::new(&a.cert_pem, &b.key_pem).unwrap_err();
    assert!(e.to_string().contains("does not belong"), "{e}");
}

#[test]
fn serials_are_normalized() {
    assert_eq!(serial_hex(&[0x00, 0x0a, 0xbc]), "abc");
    assert_eq!(serial_hex(&[0]), "0");
}

#[test]
fn the_clouds_broker_identity_cannot_enroll_as_a_device() {
    let body = serde_json::json!({"org_id": "acme", "fleet_id": "presses",
        "device_name": crate::broker_acl::DEFAULT_CLOUD_IDENTITY, "csr": "x",
        "bootstrap_cert_pem": "y"});
    let e = parse_request(body.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.code(), "invalid_request");
    assert!(e.to_string().contains("broker identity"), "{e}");
}
