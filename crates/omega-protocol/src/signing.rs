//! Signatures of controls and receipts (`protocol.md` §12.4, `receipts.md` §4.1).
//!
//! The signed bytes are the canonical JSON (§5) of the object without its `signature` member
//! and with `"device_id"` added: the id of the device the object is addressed to. So an
//! object captured on one device's topic fails verification on any other. Every other member
//! present is covered, including ones the verifier does not know.
//!
//! `key_id` is the first 16 lowercase hex characters of SHA-256 of the key material: the raw
//! 32-byte Ed25519 public key, or the HMAC secret's bytes.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::sha256_hex;
use crate::json::{Json, to_canonical_vec};
use crate::message::Signature;

type HmacSha256 = Hmac<Sha256>;

/// A signature algorithm (§12.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlg {
    /// `ed25519`, the default.
    Ed25519,
    /// `hmac-sha256`, with a secret shared by the cloud and the device.
    HmacSha256,
}

impl SignatureAlg {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureAlg::Ed25519 => "ed25519",
            SignatureAlg::HmacSha256 => "hmac-sha256",
        }
    }

    /// Reads a wire name.
    pub fn parse(s: &str) -> Option<SignatureAlg> {
        match s {
            "ed25519" => Some(SignatureAlg::Ed25519),
            "hmac-sha256" => Some(SignatureAlg::HmacSha256),
            _ => None,
        }
    }
}

impl fmt::Display for SignatureAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key could not be loaded or made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The PEM text is not a PKCS#8 Ed25519 private key.
    #[error("not a PKCS#8 Ed25519 private key in PEM: {0}")]
    PrivatePem(String),
    /// The PEM text is not a SubjectPublicKeyInfo Ed25519 public key.
    #[error("not a SubjectPublicKeyInfo Ed25519 public key in PEM: {0}")]
    PublicPem(String),
    /// 32 bytes that are not an Ed25519 public key.
    #[error("not an Ed25519 public key")]
    PublicBytes,
    /// An empty HMAC secret.
    #[error("the HMAC secret must not be empty")]
    EmptySecret,
    /// The operating system gave no random bytes.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// A key could not be written as PEM.
    #[error("cannot encode the key as PEM: {0}")]
    Encode(String),
}

/// Why an object's signature does not verify (`agent.md` §13.1 drop reasons).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The value is not a JSON object.
    #[error("not a JSON object")]
    NotAnObject,
    /// No `signature` member.
    #[error("missing signature")]
    MissingSignature,
    /// `signature` is not an object of three strings.
    #[error("malformed signature: {0}")]
    MalformedSignature(&'static str),
    /// `signature.alg` is not the configured one.
    #[error("wrong alg {got:?}, expected {expected}")]
    WrongAlg {
        /// The configured algorithm.
        expected: SignatureAlg,
        /// What the object named.
        got: String,
    },
    /// `signature.key_id` is not the configured key's.
    #[error("wrong key_id {got:?}, expected {expected}")]
    WrongKeyId {
        /// The configured key's id.
        expected: String,
        /// What the object named.
        got: String,
    },
    /// The signature does not match the signed bytes.
    #[error("bad signature")]
    BadSignature,
}

/// `key_id` of key material (§12.4.4): first 16 hex characters of its SHA-256.
pub fn key_id_of(material: &[u8]) -> String {
    let mut id = sha256_hex(material);
    id.truncate(16);
    id
}

/// The signed bytes (§12.4.1): the canonical JSON of `members` without `signature` (and
/// without any `device_id` member, which is never transmitted) plus `"device_id"`.
pub fn signed_bytes(members: &[(String, Json)], device_id: &str) -> Vec<u8> {
    let mut m: Vec<(String, Json)> = members
        .iter()
        .filter(|(k, _)| k != "signature" && k != "device_id")
        .cloned()
        .collect();
    m.push(("device_id".into(), Json::from(device_id)));
    to_canonical_vec(&Json::Object(m))
}

enum SignerKind {
    Ed25519(Box<SigningKey>),
    Hmac(Vec<u8>),
}

/// A key that signs controls and receipts (the cloud side).
pub struct ControlKey {
    kind: SignerKind,
    key_id: String,
}

impl fmt::Debug for ControlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlKey")
            .field("alg", &self.alg())
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ControlKey {
    /// An Ed25519 key from its 32-byte secret (seed).
    pub fn ed25519_from_secret(secret: &[u8; 32]) -> ControlKey {
        let key = SigningKey::from_bytes(secret);
        let key_id = key_id_of(key.verifying_key().as_bytes());
        ControlKey {
            kind: SignerKind::Ed25519(Box::new(key)),
            key_id,
        }
    }

    /// An Ed25519 key from PKCS#8 PEM text (`-----BEGIN PRIVATE KEY-----`).
    pub fn ed25519_from_pkcs8_pem(pem: &str) -> Result<ControlKey, KeyError> {
        let key =
            SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError::PrivatePem(e.to_string()))?;
        Ok(ControlKey::ed25519_from_secret(&key.to_bytes()))
    }

    /// An HMAC-SHA256 key; the secret is the UTF-8 bytes shared with the device (§12.4.5).
    pub fn hmac(secret: &[u8]) -> Result<ControlKey, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        Ok(ControlKey {
            kind: SignerKind::Hmac(secret.to_vec()),
            key_id: key_id_of(secret),
        })
    }

    /// The algorithm.
    pub fn alg(&self) -> SignatureAlg {
        match self.kind {
            SignerKind::Ed25519(_) => SignatureAlg::Ed25519,
            SignerKind::Hmac(_) => SignatureAlg::HmacSha256,
        }
    }

    /// The key id (§12.4.4).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The matching verifier.
    pub fn verifier(&self) -> ControlVerifier {
        let kind = match &self.kind {
            SignerKind::Ed25519(k) => VerifierKind::Ed25519(k.verifying_key()),
            SignerKind::Hmac(s) => VerifierKind::Hmac(s.clone()),
        };
        ControlVerifier {
            kind,
            key_id: self.key_id.clone(),
        }
    }

    /// The public key as SubjectPublicKeyInfo PEM (Ed25519 only).
    pub fn public_key_pem(&self) -> Option<String> {
        match &self.kind {
            SignerKind::Ed25519(k) => k.verifying_key().to_public_key_pem(LineEnding::LF).ok(),
            SignerKind::Hmac(_) => None,
        }
    }

    /// The raw signature (64 bytes) or tag (32 bytes) of `message`.
    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        match &self.kind {
            SignerKind::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
            SignerKind::Hmac(secret) => hmac_tag(secret, message),
        }
    }

    /// The signature of an object addressed to `device_id`.
    pub fn signature(&self, members: &[(String, Json)], device_id: &str) -> Signature {
        let raw = self.sign_bytes(&signed_bytes(members, device_id));
        Signature {
            alg: self.alg().as_str().to_owned(),
            key_id: self.key_id.clone(),
            value: BASE64.encode(raw),
        }
    }

    /// The `signature` object (`{"alg","key_id","value"}`) of an object addressed to
    /// `device_id`; add it to the object as member `signature`.
    pub fn sign_object(&self, members: &[(String, Json)], device_id: &str) -> Json {
        self.signature(members, device_id).to_json()
    }
}

fn hmac_tag(secret: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

#[derive(Clone)]
enum VerifierKind {
    Ed25519(VerifyingKey),
    Hmac(Vec<u8>),
}

/// A key that verifies controls and receipts (the device side).
#[derive(Clone)]
pub struct ControlVerifier {
    kind: VerifierKind,
    key_id: String,
}

impl fmt::Debug for ControlVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlVerifier")
            .field("alg", &self.alg())
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ControlVerifier {
    /// An Ed25519 verifier from the raw 32-byte public key.
    pub fn ed25519_from_public_bytes(public: &[u8; 32]) -> Result<ControlVerifier, KeyError> {
        let key = VerifyingKey::from_bytes(public).map_err(|_| KeyError::PublicBytes)?;
        Ok(ControlVerifier {
            kind: VerifierKind::Ed25519(key),
            key_id: key_id_of(public),
        })
    }

    /// An Ed25519 verifier from SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn ed25519_from_public_pem(pem: &str) -> Result<ControlVerifier, KeyError> {
        let key = VerifyingKey::from_public_key_pem(pem)
            .map_err(|e| KeyError::PublicPem(e.to_string()))?;
        ControlVerifier::ed25519_from_public_bytes(key.as_bytes())
    }

    /// An HMAC-SHA256 verifier with the shared secret's bytes.
    pub fn hmac(secret: &[u8]) -> Result<ControlVerifier, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        Ok(ControlVerifier {
            kind: VerifierKind::Hmac(secret.to_vec()),
            key_id: key_id_of(secret),
        })
    }

    /// The algorithm.
    pub fn alg(&self) -> SignatureAlg {
        match self.kind {
            VerifierKind::Ed25519(_) => SignatureAlg::Ed25519,
            VerifierKind::Hmac(_) => SignatureAlg::HmacSha256,
        }
    }

    /// The key id (§12.4.4).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Verifies an object (a control envelope or a receipt, as parsed) addressed to
    /// `device_id`, in the order of `agent.md` §13.1: a `signature` is present, its `alg` is
    /// this verifier's, its `key_id` is this key's, and the signature matches.
    pub fn verify(&self, object: &Json, device_id: &str) -> Result<(), VerifyError> {
        let members = object.as_object().ok_or(VerifyError::NotAnObject)?;
        self.verify_members(members, device_id)
    }

    /// [`verify`](Self::verify) on an object's members.
    pub fn verify_members(
        &self,
        members: &[(String, Json)],
        device_id: &str,
    ) -> Result<(), VerifyError> {
        let sig = crate::json::member(members, "signature").ok_or(VerifyError::MissingSignature)?;
        let sig = Signature::from_json(sig).ok_or(VerifyError::MalformedSignature(
            "expected an object with string alg, key_id, value",
        ))?;
        if SignatureAlg::parse(&sig.alg) != Some(self.alg()) {
            return Err(VerifyError::WrongAlg {
                expected: self.alg(),
                got: sig.alg,
            });
        }
        if sig.key_id != self.key_id {
            return Err(VerifyError::WrongKeyId {
                expected: self.key_id.clone(),
                got: sig.key_id,
            });
        }
        let raw = BASE64
            .decode(&sig.value)
            .map_err(|_| VerifyError::MalformedSignature("value is not padded standard base64"))?;
        let message = signed_bytes(members, device_id);
        match &self.kind {
            VerifierKind::Ed25519(key) => {
                let bytes: [u8; 64] = raw
                    .as_slice()
                    .try_into()
                    .map_err(|_| VerifyError::BadSignature)?;
                let signature = ed25519_dalek::Signature::from_bytes(&bytes);
                key.verify_strict(&message, &signature)
                    .map_err(|_| VerifyError::BadSignature)
            }
            VerifierKind::Hmac(secret) => {
                let mut mac =
                    HmacSha256::new_from_slice(secret).map_err(|_| VerifyError::BadSignature)?;
                mac.update(&message);
                mac.verify_slice(&raw)
                    .map_err(|_| VerifyError::BadSignature)
            }
        }
    }
}

/// A new Ed25519 key pair, for `omega cloud keygen`.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedKeyPair {
    /// The private key as PKCS#8 PEM; keep it secret.
    pub private_pem: String,
    /// The public key as SubjectPublicKeyInfo PEM; install it on devices.
    pub public_pem: String,
    /// The key id (§12.4.4).
    pub key_id: String,
}

impl fmt::Debug for GeneratedKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKeyPair")
            .field("public_pem", &self.public_pem)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Generates a new Ed25519 key pair from the operating system's randomness.
pub fn generate_ed25519() -> Result<GeneratedKeyPair, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let private_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Encode(e.to_string()))?
        .to_string();
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Encode(e.to_string()))?;
    Ok(GeneratedKeyPair {
        private_pem,
        public_pem,
        key_id: key_id_of(key.verifying_key().as_bytes()),
    })
}

#[cfg(test)]
mod tests;
