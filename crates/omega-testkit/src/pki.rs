//! A throwaway PKI for TLS tests, generated with rcgen: a CA, a server certificate for
//! 127.0.0.1 and localhost, and a client certificate whose CN is the device id.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// The files live in a temporary directory: `ca.pem`, `server.pem`, `server.key`,
/// `client.pem`, `client.key`.
pub struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// Generates the PKI; the client certificate's CN (and DNS SAN) is `client_cn`.
    pub fn generate(client_cn: &str) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(DnType::CommonName, "omega test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
        let issuer = Issuer::new(ca, ca_key);
        for (name, cn) in [("server", "localhost"), ("client", client_cn)] {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(vec![cn.to_string()]).expect("params");
            if name == "server" {
                params
                    .subject_alt_names
                    .push(SanType::IpAddress([127, 0, 0, 1].into()));
            }
            params.distinguished_name.push(DnType::CommonName, cn);
            let cert = params.signed_by(&key, &issuer).expect("sign");
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).expect("write cert");
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem())
                .expect("write key");
        }
        Pki { dir, issuer }
    }

    /// Issues one more client certificate from this CA into `{name}.pem` and `{name}.key`,
    /// CN (and DNS SAN) `cn`. With `expired`, its validity ended in 2021.
    pub fn issue_client(&self, name: &str, cn: &str, expired: bool) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec![cn.to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (cert_path, key_path) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    /// A file of the PKI.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Mosquitto lines that make the listener before them require a client certificate
    /// signed by this CA and take the certificate's CN as the username.
    pub fn mosquitto_tls_lines(&self) -> String {
        format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\n",
            self.path("ca.pem").display(),
            self.path("server.pem").display(),
            self.path("server.key").display()
        )
    }
}
