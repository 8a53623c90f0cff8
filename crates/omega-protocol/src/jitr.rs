//! The JITR enrollment exchange (`agent.md` §17, `cloud.md` §16): the body of
//! `POST {api_base_url}/v1/jitr`, its answer, and the `Idempotency-Key` both sides derive.
//!
//! Shared by the agent (which posts) and the cloud (which answers) so the two cannot drift.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The route, under the API's base URL.
pub const PATH: &str = "/v1/jitr";

/// The request body of `POST /v1/jitr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The organisation of the fleet.
    pub org_id: String,
    /// The fleet.
    pub fleet_id: String,
    /// The project, when the device sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// The name the device enrolls under; becomes its device id and certificate CN.
    pub device_name: String,
    /// PEM PKCS#10 certificate signing request (CN = `device_name`).
    pub csr: String,
    /// PEM bootstrap certificate shared by the fleet.
    pub bootstrap_cert_pem: String,
}

/// The success body of `POST /v1/jitr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The device id (equals `device_name`).
    pub device_id: String,
    /// PEM chain: the device certificate first, then the CA that signed it.
    pub pem_cert_chain: String,
    /// The broker the device should use, when the cloud names one.
    pub mqtt_broker_url: Option<String>,
}

/// `Idempotency-Key` of an enrollment: hex of the first 16 bytes of SHA-256 of
/// `{org_id}|{fleet_id}|{device_name}` (`agent.md` §17 item 3).
pub fn idempotency_key(org_id: &str, fleet_id: &str, device_name: &str) -> String {
    let digest = Sha256::digest(format!("{org_id}|{fleet_id}|{device_name}").as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_32_hex_digits_of_the_three_ids() {
        let k = idempotency_key("acme", "presses", "press-07");
        assert_eq!(k.len(), 32);
        let full = hex::encode(Sha256::digest(b"acme|presses|press-07"));
        assert_eq!(k, full[..32]);
        assert_ne!(k, idempotency_key("acme", "presses", "press-08"));
    }

    #[test]
    fn request_refuses_unknown_fields_and_omits_absent_project() {
        let r = EnrollRequest {
            org_id: "o".into(),
            fleet_id: "f".into(),
            project_id: None,
            device_name: "d".into(),
            csr: "c".into(),
            bootstrap_cert_pem: "b".into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("project_id"));
        let back: EnrollRequest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        let extra = text.replacen('{', "{\"x\":1,", 1);
        assert!(serde_json::from_str::<EnrollRequest>(&extra).is_err());
    }
}
