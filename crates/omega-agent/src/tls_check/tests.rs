//! TLS checks over certificates generated with rcgen (and fixed RSA keys).

use std::path::Path;

use rcgen::{CertificateParams, DnType, KeyPair};
use time::{Duration, OffsetDateTime};

use super::*;

/// A 2048-bit RSA key in PKCS#8 form (test fixture only).
const RSA_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCtxjTjPWcNpxtj
zfMqKVifXzMUVns0DbibxYNns1+1Fzf/ep8Lv5MTx1oXabMJRuMUrfjET2pVoeRy
6TWAS96ITJQrHWNjz0Q4gAXmMY68t+15VqVBJ54CHNQQsp5DOiRvBNYwn7USCEgy
UXZTTSA3Kkf0g0BqDFNl8SKW8TRsWVP1KergtV6lE+g/SfD2WzyT5ux3hoGZe9AQ
40iQstL8RcnLy0yyv7qpNG1JlHp0LvZdoJNEsi45ONIxP+Box0zCemamW4W2Kd9b
nbaVFpcZ2CM7RdN02hP7FsgguIt4/WEzFy1LBX8Kx1D7EbKr2IoEl+dvBDvw9qLA
v7OcdK9VAgMBAAECggEAE6xSVX2gmpuWDr0Er/vBVD2nX0CRLyn0gfIg988HYU2R
IePEeMSGBqG1kdv+EGlNkQxHExZ4j9xFrDq5u14bgevFhIINvAF9lDXuNQrcQYJD
KM8F43P0QAH6gi9ummbNNCJki1mxWqrEXan6TuD26jfnsIdhdgASOwLLKzKAgFmG
xId+FbgQuZe6tyRFrc2BXO+WTbBK7EFdpNRpyb/pMUDDPGulZ1F5auYf+5KH60vF
ede1oS2SBGZlXxfpP4Wy0pfcWC3SUJBLUE/5Qx6mcRTmV59MsbfTXZFDqijtbfp3
5iSexhgY50+ybkz2U4f8+cgHYh+e0R4Rh+gSuJav6wKBgQDeUQAb7uEnFJ2T8ei2
P7JGE+8X+ESEgibi6aEmFWyaKtPnwSYmB/9X47jVdHvjgyBzMp4FdzAM/NKy6XwC
7HDDhIR2iEGZk05/nGHty3sF7RgkrJTZcuiQz6qSZASElJU2gdRnqoTvsLoxPt18
dUD9NE0LkPg9lN5F858h8zhvlwKBgQDIGmX/AD8PQjE1M5+MlpCzeoA/1BlW5w0X
3LYQHrYaI4NtsFpjPUr2MVb9IN2bGvRves+Bto51SbP81CsE9c9fkZvIMgnlSohL
HDGaaU+a6gIST1rcnB9Uk3s2BAlRIU81JKhe9DH+xGwww0fos3Mu1WYYBO6vTbp0
pOjbwIu18wKBgCM+yDuldYCSniDUW0Z5drPxeRhdvc8cKzoSPAAjqWIPpCS71GZ3
Ih429hixLOr24PAieDb5nF6Svnyq04RLI917Zty74VqNpgZJLqVaexiHbCp0Sezn
cMN0iOBIhwbV34oSry/4MrclV39zLf4LQNBjuEs7In/w2ARTCUmCm9HlAoGAOK/x
0Sm6s5Hm6tFzE5rb51x+1JY7j3jpJqdqFGr+36zL4Nki4hZNFC2qHQ+gd/5M3QAH
pRGYjfWRPcDFZyRT2Rkg7rfuQby5m72i98F5wcMlTxaYAQNhhM47C3RdR1SOYdm+
sRewyiHPHIlV58Bekxf1UjyjeZolhkHpjcegTK0CgYA1PG0jn5VHxEmnTn9oTL3y
6EDnnalXgvbk7XsyDKAFyAJhg0lFqPbJz3kEM5b129wM6MnV2Cj0fNq8EKv6ETQP
LqGpzNlSj5hr5ACOZ7YBidVrzQTIwdwqOB/POIArD1StdIPSQXKdvk+umn2cNlok
zoLf8E+hLO9ikHezJ2qqPA==
-----END PRIVATE KEY-----
";

/// The same key in PKCS#1 form.
const RSA_PKCS1: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEArcY04z1nDacbY83zKilYn18zFFZ7NA24m8WDZ7NftRc3/3qf
C7+TE8daF2mzCUbjFK34xE9qVaHkcuk1gEveiEyUKx1jY89EOIAF5jGOvLfteVal
QSeeAhzUELKeQzokbwTWMJ+1EghIMlF2U00gNypH9INAagxTZfEilvE0bFlT9Snq
4LVepRPoP0nw9ls8k+bsd4aBmXvQEONIkLLS/EXJy8tMsr+6qTRtSZR6dC72XaCT
RLIuOTjSMT/gaMdMwnpmpluFtinfW522lRaXGdgjO0XTdNoT+xbIILiLeP1hMxct
SwV/CsdQ+xGyq9iKBJfnbwQ78PaiwL+znHSvVQIDAQABAoIBABOsUlV9oJqblg69
BK/7wVQ9p19AkS8p9IHyIPfPB2FNkSHjxHjEhgahtZHb/hBpTZEMRxMWeI/cRaw6
ubteG4HrxYSCDbwBfZQ17jUK3EGCQyjPBeNz9EAB+oIvbppmzTQiZItZsVqqxF2p
+k7g9uo357CHYXYAEjsCyysygIBZhsSHfhW4ELmXurckRa3NgVzvlk2wSuxBXaTU
acm/6TFAwzxrpWdReWrmH/uSh+tLxXnXtaEtkgRmZV8X6T+FstKX3Fgt0lCQS1BP
+UMepnEU5lefTLG3012RQ6oo7W36d+YknsYYGOdPsm5M9lOH/PnIB2IfntEeEYfo
EriWr+sCgYEA3lEAG+7hJxSdk/Hotj+yRhPvF/hEhIIm4umhJhVsmirT58EmJgf/
V+O41XR744MgczKeBXcwDPzSsul8Auxww4SEdohBmZNOf5xh7ct7Be0YJKyU2XLo
kM+qkmQEhJSVNoHUZ6qE77C6MT7dfHVA/TRNC5D4PZTeRfOfIfM4b5cCgYEAyBpl
/wA/D0IxNTOfjJaQs3qAP9QZVucNF9y2EB62GiODbbBaYz1K9jFW/SDdmxr0b3rP
gbaOdUmz/NQrBPXPX5GbyDIJ5UqISxwxmmlPmuoCEk9a3JwfVJN7NgQJUSFPNSSo
XvQx/sRsMMNH6LNzLtVmGATur026dKTo28CLtfMCgYAjPsg7pXWAkp4g1FtGeXaz
8XkYXb3PHCs6EjwAI6liD6Qku9RmdyIeNvYYsSzq9uDwIng2+Zxekr58qtOESyPd
e2bcu+FajaYGSS6lWnsYh2wqdEns53DDdIjgSIcG1d+KEq8v+DK3JVd/cy3+C0DQ
Y7hLOyJ/8NgEUwlJgpvR5QKBgDiv8dEpurOR5urRcxOa2+dcftSWO4946SanahRq
/t+sy+DZIuIWTRQtqh0PoHf+TN0AB6URmI31kT3AxWckU9kZIO637kG8uZu9ovfB
ecHDJU8WmAEDYYTOOwt0XUdUjmHZvrEXsMohzxyJVefAXpMX9VI8o3maJYZB6Y3H
oEytAoGANTxtI5+VR8RJp05/aEy98uhA552pV4L25O17MgygBcgCYYNJRaj2yc95
BDOW9dvcDOjJ1dgo9HzavBCr+hE0Dy6hqczZUo+Ya+QAjme2AYnVa80EyMHcKjgf
zziAKw9UrXSD0kFynb5Prpp9nDZaJM6C3/BPoSzvYpB3sydqqjw=
-----END RSA PRIVATE KEY-----
";

/// The same P-256 key in PKCS#8 form (what rcgen reads).
const EC_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJBIfwLpLzI+JJ9EK
PxWeL+4yNBzFQ7XtiZBnYMLh+FahRANCAARY2SJadborIREi9SdlPUpCCcDuMHSu
ESVwP7jTXzDCTsDmFfij/B6X5ZaOHUF3JfcR7HDOnKjR1qCYek/7pBrf
-----END PRIVATE KEY-----
";

/// A P-256 key in SEC1 form (test fixture only).
const EC_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEICQSH8C6S8yPiSfRCj8Vni/uMjQcxUO17YmQZ2DC4fhWoAoGCCqGSM49
AwEHoUQDQgAEWNkiWnW6KyERIvUnZT1KQgnA7jB0rhElcD+4018wwk7A5hX4o/we
l+WWjh1BdyX3Eexwzpyo0dagmHpP+6Qa3w==
-----END EC PRIVATE KEY-----
";

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Writes a self-signed certificate for `cn` valid over [now + from, now + to] and its key.
fn issue(
    dir: &Path,
    name: &str,
    cn: &str,
    key: &KeyPair,
    from: Duration,
    to: Duration,
) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::new(vec![cn.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = now() + from;
    params.not_after = now() + to;
    let cert = params.self_signed(key).unwrap();
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn valid(dir: &Path, name: &str, cn: &str, key: &KeyPair) -> (PathBuf, PathBuf) {
    issue(dir, name, cn, key, Duration::days(-1), Duration::days(90))
}

#[test]
fn a_matching_ecdsa_pair_with_the_device_cn_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = valid(dir.path(), "d", "press-01", &KeyPair::generate().unwrap());
    let r = check_client_pair(&c, &k, Some("press-01"), now()).unwrap();
    assert_eq!(r.certs[0].subject_cn.as_deref(), Some("press-01"));
    assert!(r.warnings.is_empty());
}

#[test]
fn ed25519_keys_are_supported() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let (c, k) = valid(dir.path(), "d", "press-01", &key);
    check_client_pair(&c, &k, Some("press-01"), now()).unwrap();
}

#[test]
fn rsa_keys_are_supported_in_pkcs8_and_pkcs1_form() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::from_pem(RSA_PKCS8).unwrap();
    let (c, k) = valid(dir.path(), "d", "press-01", &key);
    check_client_pair(&c, &k, Some("press-01"), now()).unwrap();
    let k1 = dir.path().join("pkcs1.key");
    std::fs::write(&k1, RSA_PKCS1).unwrap();
    check_client_pair(&c, &k1, Some("press-01"), now()).unwrap();
}

#[test]
fn sec1_ec_keys_are_supported() {
    let dir = tempfile::tempdir().unwrap();
    // rcgen reads the PKCS#8 form; the check reads the SEC1 form of the same key.
    let key = KeyPair::from_pem(EC_PKCS8).unwrap();
    let (c, _) = valid(dir.path(), "d", "press-01", &key);
    let k = dir.path().join("sec1.key");
    std::fs::write(&k, EC_SEC1).unwrap();
    check_client_pair(&c, &k, Some("press-01"), now()).unwrap();
}

#[test]
fn a_key_from_another_pair_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = valid(dir.path(), "a", "press-01", &KeyPair::generate().unwrap());
    let (_, other_key) = valid(dir.path(), "b", "press-01", &KeyPair::generate().unwrap());
    let e = check_client_pair(&c, &other_key, Some("press-01"), now()).unwrap_err();
    assert!(matches!(e, TlsCheckError::KeyMismatch { .. }));
    assert!(
        e.to_string().contains("does not match the certificate"),
        "{e}"
    );
}

#[test]
fn expired_and_future_certificates_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let (c, k) = issue(
        dir.path(),
        "old",
        "press-01",
        &key,
        Duration::days(-30),
        Duration::days(-1),
    );
    let e = check_client_pair(&c, &k, Some("press-01"), now()).unwrap_err();
    assert!(e.to_string().contains("certificate expired on"), "{e}");
    let (c, k) = issue(
        dir.path(),
        "new",
        "press-01",
        &key,
        Duration::days(1),
        Duration::days(30),
    );
    let e = check_client_pair(&c, &k, Some("press-01"), now()).unwrap_err();
    assert!(matches!(e, TlsCheckError::NotYetValid { .. }), "{e}");
}

#[test]
fn a_certificate_ending_within_a_week_warns() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let (c, k) = issue(
        dir.path(),
        "soon",
        "press-01",
        &key,
        Duration::days(-30),
        Duration::days(3),
    );
    let r = check_client_pair(&c, &k, Some("press-01"), now()).unwrap();
    assert!(r.warnings[0].contains("expires in"), "{:?}", r.warnings);
}

#[test]
fn the_cn_must_be_the_device_id() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = valid(dir.path(), "d", "press-02", &KeyPair::generate().unwrap());
    let e = check_client_pair(&c, &k, Some("press-01"), now()).unwrap_err();
    assert!(
        e.to_string()
            .contains("CN `press-02` is not the device id `press-01`"),
        "{e}"
    );
    check_client_pair(&c, &k, None, now()).unwrap();
}

#[test]
fn unreadable_and_malformed_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.crt");
    let e = check_ca_bundle(&missing, now()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read", missing.display())),
        "{e}"
    );

    let empty = dir.path().join("empty.crt");
    std::fs::write(&empty, "hello\n").unwrap();
    assert!(
        check_ca_bundle(&empty, now())
            .unwrap_err()
            .to_string()
            .contains("no PEM CERTIFICATE found")
    );

    let garbage = dir.path().join("garbage.crt");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = check_ca_bundle(&garbage, now()).unwrap_err();
    assert!(
        matches!(
            e,
            TlsCheckError::Certificate { .. } | TlsCheckError::Pem { .. }
        ),
        "{e}"
    );

    let (c, _) = valid(dir.path(), "d", "press-01", &KeyPair::generate().unwrap());
    let e = check_client_pair(&c, &empty, None, now()).unwrap_err();
    assert!(e.to_string().contains("no PEM PRIVATE KEY found"), "{e}");
}

#[test]
fn a_ca_bundle_with_one_valid_certificate_passes_with_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let (good, _) = valid(dir.path(), "good", "ca", &key);
    let (old, _) = issue(
        dir.path(),
        "old",
        "old-ca",
        &key,
        Duration::days(-30),
        Duration::days(-1),
    );
    let bundle = dir.path().join("bundle.pem");
    let text = std::fs::read_to_string(&good).unwrap() + &std::fs::read_to_string(&old).unwrap();
    std::fs::write(&bundle, text).unwrap();
    let r = check_ca_bundle(&bundle, now()).unwrap();
    assert_eq!(r.certs.len(), 2);
    assert!(
        r.warnings[0].contains("certificate #2 of the bundle"),
        "{:?}",
        r.warnings
    );
    assert!(check_ca_bundle(&old, now()).is_err());
}

#[test]
fn a_client_certificate_chains_only_to_its_own_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "device CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(d.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["press-01".to_owned()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "press-01");
    let cert = leaf
        .signed_by(&KeyPair::generate().unwrap(), &issuer)
        .unwrap();
    std::fs::write(d.join("issued.crt"), cert.pem()).unwrap();
    assert_eq!(
        chain_mismatch(&d.join("issued.crt"), &d.join("ca.pem"), now()).unwrap(),
        None
    );
    let (other, _) = valid(d, "other", "press-01", &KeyPair::generate().unwrap());
    let why = chain_mismatch(&other, &d.join("ca.pem"), now())
        .unwrap()
        .expect("a self-signed certificate does not chain to the CA");
    assert!(why.contains("UnknownIssuer"), "{why}");
}
