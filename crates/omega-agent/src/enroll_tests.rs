use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use time::macros::datetime;

use super::*;

const NOW: OffsetDateTime = datetime!(2026-05-01 12:00 UTC);

fn jitr(dir: &Path) -> Jitr {
    Jitr {
        api_base_url: "http://127.0.0.1:1".into(),
        bootstrap_cert_path: dir.join("boot.crt"),
        cert_dir: dir.join("certs"),
        org_id: "acme".into(),
        fleet_id: "presses".into(),
        project_id: None,
        device_name: "press-07".into(),
    }
}

/// Writes device.crt for `key` (CN `cn`) valid until `until`, signed by a throwaway CA.
fn write_cert(j: &Jitr, key: &KeyPair, cn: &str, until: OffsetDateTime) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "ca");
    let issuer = Issuer::new(ca, ca_key);
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = NOW - time::Duration::days(1);
    p.not_after = until;
    let cert = p.signed_by(key, &issuer).unwrap();
    std::fs::create_dir_all(&j.cert_dir).unwrap();
    std::fs::write(j.cert_path(), cert.pem()).unwrap();
    std::fs::write(j.key_path(), key.serialize_pem()).unwrap();
}

#[test]
fn a_certificate_is_current_only_with_more_than_24h_left() {
    let dir = tempfile::tempdir().unwrap();
    let j = jitr(dir.path());
    assert_eq!(current_certificate(&j, NOW), None, "no files");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    write_cert(&j, &key, "press-07", NOW + time::Duration::days(30));
    assert_eq!(
        current_certificate(&j, NOW),
        Some(NOW + time::Duration::days(30))
    );
    write_cert(&j, &key, "press-07", NOW + time::Duration::hours(23));
    assert_eq!(current_certificate(&j, NOW), None, "under 24 h left");
    write_cert(&j, &key, "press-08", NOW + time::Duration::days(30));
    assert_eq!(current_certificate(&j, NOW), None, "another CN");
    write_cert(&j, &key, "press-07", NOW + time::Duration::days(30));
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(j.key_path(), other.serialize_pem()).unwrap();
    assert_eq!(current_certificate(&j, NOW), None, "key does not match");
}

#[test]
fn the_key_is_written_0600_before_use_and_then_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("device.key");
    let a = device_key(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let b = device_key(&path).unwrap();
    assert_eq!(a.public_key_pem(), b.public_key_pem());
    std::fs::write(&path, "junk").unwrap();
    let c = device_key(&path).unwrap();
    assert_ne!(a.public_key_pem(), c.public_key_pem());
}

#[test]
fn the_csr_names_the_device() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let pem = make_csr(&key, "press-07").unwrap();
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    assert_eq!(block.label, "CERTIFICATE REQUEST");
    let (_, csr) = <x509_parser::certification_request::X509CertificationRequest<'_> as
        x509_parser::prelude::FromDer<'_, x509_parser::error::X509Error>>::from_der(&block.contents)
    .unwrap();
    let info = &csr.certification_request_info;
    let cn = info
        .subject
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert_eq!(cn, "press-07");
    assert_eq!(
        info.subject_pki.raw,
        rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
    );
}

#[test]
fn refusals_carry_the_code_and_message() {
    let body = br#"{"error":{"code":"quota_exhausted","message":"the fleet's quota is used up"}}"#;
    let e = read_answer("http://x/v1/jitr", 403, body).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("403 quota_exhausted"), "{text}");
    assert!(text.contains("quota is used up"), "{text}");
    let e = read_answer("http://x/v1/jitr", 502, b"bad gateway").unwrap_err();
    assert!(e.to_string().contains("502 unknown: bad gateway"), "{e}");
    let ok = read_answer(
        "u",
        200,
        br#"{"device_id":"d","pem_cert_chain":"p","mqtt_broker_url":null}"#,
    )
    .unwrap();
    assert_eq!(ok.device_id, "d");
    assert_eq!(metadata(&ok), "{\"device_id\":\"d\"}\n");
}

#[test]
fn urls_split_into_host_port_and_path() {
    let t = Target::parse("http://127.0.0.1:8080/v1/jitr").unwrap();
    assert_eq!(
        (t.tls, t.host.as_str(), t.port, t.path.as_str()),
        (false, "127.0.0.1", 8080, "/v1/jitr")
    );
    let t = Target::parse("https://cloud.example/base/v1/jitr").unwrap();
    assert_eq!(
        (t.tls, t.port, t.path.as_str()),
        (true, 443, "/base/v1/jitr")
    );
    let t = Target::parse("http://[::1]:9/v1/jitr").unwrap();
    assert_eq!((t.host.as_str(), t.port), ("::1", 9));
    assert!(Target::parse("ftp://x/").is_err());
    assert!(Target::parse("http://h:port/").is_err());
}

#[tokio::test]
async fn an_unreachable_cloud_is_an_error_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = jitr(dir.path());
    std::fs::write(&j.bootstrap_cert_path, "x").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    j.api_base_url = format!("http://127.0.0.1:{port}");
    let e = ensure_enrolled(&j, None, NOW).await.unwrap_err();
    assert!(
        e.to_string().contains(&format!("127.0.0.1:{port}/v1/jitr")),
        "{e}"
    );
    assert!(
        j.key_path().exists(),
        "the key is written before the request"
    );
}
