//! Certificates of the JITR service, made with rcgen (ECDSA P-256): the two CAs of
//! `omega cloud ca init`, the bootstrap certificates of `omega cloud bootstrap-cert issue`,
//! and the device certificates signed for `POST /v1/jitr`.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber, SubjectPublicKeyInfo,
};
use time::{Duration, OffsetDateTime};

use super::check::serial_hex;

/// A PKI failure: the message says which file or step.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PkiError(pub String);

fn err(what: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError(format!("{what}: {e}"))
}

/// A certificate and its key, as PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM PKCS#8 private key (empty for device certificates: the device keeps its key).
    pub key_pem: String,
    /// Serial ([`serial_hex`]).
    pub serial: String,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

/// 16 random bytes, top bit clear (a positive INTEGER of at most 16 bytes).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| PkiError(format!("random serial: {e}")))?;
    b[0] &= 0x7f;
    b[0] |= 0x01;
    Ok(SerialNumber::from_slice(&b))
}

fn base_params(
    dn: &[(DnType, &str)],
    now: OffsetDateTime,
    validity: Duration,
) -> Result<(CertificateParams, String), PkiError> {
    let mut p = CertificateParams::default();
    let mut name = DistinguishedName::new();
    for (t, v) in dn {
        name.push(t.clone(), *v);
    }
    p.distinguished_name = name;
    p.not_before = now - Duration::minutes(5);
    p.not_after = now + validity;
    let serial = random_serial()?;
    let hex = serial_hex(serial.as_ref());
    p.serial_number = Some(serial);
    Ok((p, hex))
}

/// A self-signed CA (`CN = common_name`) valid for `validity`.
pub fn new_ca(
    common_name: &str,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<Issued, PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err("generating a key"))?;
    let (mut p, serial) = base_params(&[(DnType::CommonName, common_name)], now, validity)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&key).map_err(err("signing the CA"))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        serial,
        not_after: p.not_after,
    })
}

/// A CA read from its PEM certificate and key, ready to sign.
pub struct Signer {
    ca_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// From PEM texts; fails if either does not parse or they do not belong together.
    pub fn new(ca_pem: &str, key_pem: &str) -> Result<Signer, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(err("the CA key"))?;
        Issuer::from_ca_cert_pem(ca_pem, &key).map_err(err("the CA certificate"))?;
        let der = super::check::pem_block(ca_pem, "CERTIFICATE").map_err(PkiError)?;
        let (_, ca) =
            <x509_parser::prelude::X509Certificate<'_> as x509_parser::prelude::FromDer<
                '_,
                x509_parser::error::X509Error,
            >>::from_der(&der)
            .map_err(|e| PkiError(format!("the CA certificate: {e}")))?;
        if ca.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice() {
            return Err(PkiError(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        Ok(Signer {
            ca_pem: ca_pem.to_string(),
            key,
        })
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, PkiError> {
        Issuer::from_ca_cert_pem(&self.ca_pem, &self.key).map_err(err("the CA certificate"))
    }

    /// A bootstrap certificate for a fleet (`CN = bootstrap {org}/{fleet}`, `O = org`,
    /// `OU = fleet`), with a fresh key (returned: it is not needed to enroll).
    pub fn bootstrap(
        &self,
        org_id: &str,
        fleet_id: &str,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<Issued, PkiError> {
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err("generating a key"))?;
        let cn = format!("bootstrap {org_id}/{fleet_id}");
        let (mut p, serial) = base_params(
            &[
                (DnType::CommonName, &cn),
                (DnType::OrganizationName, org_id),
                (DnType::OrganizationalUnitName, fleet_id),
            ],
            now,
            validity,
        )?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        let cert = p
            .signed_by(&key, &self.issuer()?)
            .map_err(err("signing the bootstrap certificate"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
            not_after: p.not_after,
        })
    }

    /// A device certificate for the public key `spki_der` (`CN = device_name`, client-auth
    /// usage, valid for `validity`). `cert_pem` is the chain: device certificate, then CA.
    pub fn device(
        &self,
        spki_der: &[u8],
        device_name: &str,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<Issued, PkiError> {
        let public = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(err("the CSR's public key is not supported"))?;
        let (mut p, serial) = base_params(&[(DnType::CommonName, device_name)], now, validity)?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        let cert = p
            .signed_by(&public, &self.issuer()?)
            .map_err(err("signing the device certificate"))?;
        let mut chain = cert.pem();
        if !chain.ends_with('\n') {
            chain.push('\n');
        }
        chain.push_str(&self.ca_pem);
        Ok(Issued {
            cert_pem: chain,
            key_pem: String::new(),
            serial,
            not_after: p.not_after,
        })
    }
}
