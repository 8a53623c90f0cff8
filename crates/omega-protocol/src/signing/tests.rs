use super::*;
use crate::json::parse;
use crate::validate::decode_control;

const ENVELOPE: &str = r#"{
  "format_version": 1,
  "control_id": "019dd351-1680-7c41-9b5e-3f0a6c1d2e4f",
  "control_kind": "pause_lineage",
  "control_seq": 7,
  "source_table": "device_state",
  "server_watermark": 103,
  "reason": "backpressure: staged rows over cap",
  "issued_at": "2026-04-28T09:00:00Z",
  "signature": {
    "alg": "ed25519",
    "key_id": "21fe31dfa154a261",
    "value": "Z3aXprD9Yr4KJfP2WeteywYA4lr+sSonYFdAfKFxk+eMB2TmJMauPOa5RxCmozLm3vv+Yb32ni6FgnLcC1ZPDw=="
  }
}"#;

const CANONICAL: &str = r#"{"control_id":"019dd351-1680-7c41-9b5e-3f0a6c1d2e4f","control_kind":"pause_lineage","control_seq":7,"device_id":"gw-07","format_version":1,"issued_at":"2026-04-28T09:00:00Z","reason":"backpressure: staged rows over cap","server_watermark":103,"source_table":"device_state"}"#;

fn rfc8032_key() -> ControlKey {
    let secret: [u8; 32] =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
    ControlKey::ed25519_from_secret(&secret)
}

fn members(json: &Json) -> Vec<(String, Json)> {
    json.as_object().unwrap().to_vec()
}

fn with_signature(mut m: Vec<(String, Json)>, sig: Json) -> Json {
    m.retain(|(k, _)| k != "signature");
    m.push(("signature".into(), sig));
    Json::Object(m)
}

#[test]
fn the_test_vector_of_section_12_4_canonicalizes_to_273_bytes() {
    let env = parse(ENVELOPE.as_bytes()).unwrap();
    let bytes = signed_bytes(&members(&env), "gw-07");
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), CANONICAL);
    assert_eq!(bytes.len(), 273);
    assert_eq!(
        sha256_hex(&bytes),
        "c95fde4ade04add9826e77d74a2b4cf53d57c6c43f3f4b0d6009b42bee48e352"
    );
}

#[test]
fn the_rfc_8032_key_signs_the_vector_as_published_and_verifies() {
    let key = rfc8032_key();
    assert_eq!(key.key_id(), "21fe31dfa154a261");
    let env = parse(ENVELOPE.as_bytes()).unwrap();
    let sig = key.sign_object(&members(&env), "gw-07");
    assert_eq!(sig, env.get("signature").unwrap().clone());
    let public: [u8; 32] =
        hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .unwrap()
            .try_into()
            .unwrap();
    let verifier = ControlVerifier::ed25519_from_public_bytes(&public).unwrap();
    assert_eq!(verifier.key_id(), "21fe31dfa154a261");
    assert_eq!(verifier.verify(&env, "gw-07"), Ok(()));
}

#[test]
fn the_hmac_secret_test_secret_gives_the_published_value() {
    let key = ControlKey::hmac(b"test-secret").unwrap();
    assert_eq!(key.key_id(), "9caf06bb4436cdbf");
    let env = parse(ENVELOPE.as_bytes()).unwrap();
    let sig = key.signature(&members(&env), "gw-07");
    assert_eq!(sig.alg, "hmac-sha256");
    assert_eq!(sig.value, "1l26P8PoU7+o19PV41agU5yFeLLhkARHMsk8kOje1QE=");
    let signed = with_signature(members(&env), sig.to_json());
    let verifier = ControlVerifier::hmac(b"test-secret").unwrap();
    assert_eq!(verifier.verify(&signed, "gw-07"), Ok(()));
    assert_eq!(
        verifier.verify(&signed, "gw-08"),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn a_control_for_another_device_or_with_a_changed_member_fails_verification() {
    let verifier = rfc8032_key().verifier();
    let env = parse(ENVELOPE.as_bytes()).unwrap();
    assert_eq!(
        verifier.verify(&env, "gw-08"),
        Err(VerifyError::BadSignature)
    );
    let mut m = members(&env);
    m[3].1 = Json::Integer(8); // control_seq
    assert_eq!(
        verifier.verify(&Json::Object(m), "gw-07"),
        Err(VerifyError::BadSignature)
    );
    let mut extra = members(&env);
    extra.push(("x_unknown".into(), Json::Bool(true)));
    assert_eq!(
        verifier.verify(&Json::Object(extra), "gw-07"),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn unknown_members_are_covered_by_the_signature() {
    let key = rfc8032_key();
    let mut m = members(&parse(ENVELOPE.as_bytes()).unwrap());
    m.retain(|(k, _)| k != "signature");
    m.push(("future_field".into(), Json::Array(vec![Json::Null])));
    let signed = with_signature(m, key.sign_object(&[], "unused"));
    assert_eq!(
        key.verifier().verify(&signed, "gw-07"),
        Err(VerifyError::BadSignature)
    );
    let good = with_signature(
        members(&signed),
        key.sign_object(&members(&signed), "gw-07"),
    );
    assert_eq!(key.verifier().verify(&good, "gw-07"), Ok(()));
}

#[test]
fn verification_names_missing_signature_wrong_alg_and_wrong_key_id() {
    let env = parse(ENVELOPE.as_bytes()).unwrap();
    let mut unsigned = members(&env);
    unsigned.retain(|(k, _)| k != "signature");
    let ed = rfc8032_key().verifier();
    assert_eq!(
        ed.verify(&Json::Object(unsigned.clone()), "gw-07"),
        Err(VerifyError::MissingSignature)
    );
    assert_eq!(
        ed.verify(&Json::Null, "gw-07"),
        Err(VerifyError::NotAnObject)
    );

    let hmac = ControlVerifier::hmac(b"test-secret").unwrap();
    assert!(matches!(
        hmac.verify(&env, "gw-07"),
        Err(VerifyError::WrongAlg { .. })
    ));

    let other = ControlKey::ed25519_from_secret(&[7; 32]);
    let signed = with_signature(unsigned.clone(), other.sign_object(&unsigned, "gw-07"));
    assert!(matches!(
        ed.verify(&signed, "gw-07"),
        Err(VerifyError::WrongKeyId { .. })
    ));

    let bad = with_signature(unsigned.clone(), Json::from("x"));
    assert!(matches!(
        ed.verify(&bad, "gw-07"),
        Err(VerifyError::MalformedSignature(_))
    ));
    let mut sig = Signature::from_json(env.get("signature").unwrap()).unwrap();
    sig.value = "AAAA".into();
    let short = with_signature(unsigned, sig.to_json());
    assert_eq!(ed.verify(&short, "gw-07"), Err(VerifyError::BadSignature));
}

#[test]
fn generated_key_pairs_round_trip_through_pem() {
    let pair = generate_ed25519().unwrap();
    assert!(pair.private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(pair.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let key = ControlKey::ed25519_from_pkcs8_pem(&pair.private_pem).unwrap();
    let verifier = ControlVerifier::ed25519_from_public_pem(&pair.public_pem).unwrap();
    assert_eq!(key.key_id(), pair.key_id);
    assert_eq!(verifier.key_id(), pair.key_id);
    assert_eq!(key.public_key_pem().unwrap(), pair.public_pem);
    let m = vec![("a".to_string(), Json::Integer(1))];
    let signed = with_signature(m.clone(), key.sign_object(&m, "dev"));
    assert_eq!(verifier.verify(&signed, "dev"), Ok(()));
    assert_ne!(generate_ed25519().unwrap().key_id, pair.key_id);
    assert!(!format!("{pair:?}").contains("PRIVATE"));
}

#[test]
fn bad_key_material_is_rejected() {
    assert!(matches!(
        ControlKey::ed25519_from_pkcs8_pem("nope"),
        Err(KeyError::PrivatePem(_))
    ));
    assert!(matches!(
        ControlVerifier::ed25519_from_public_pem("nope"),
        Err(KeyError::PublicPem(_))
    ));
    assert_eq!(ControlKey::hmac(b"").unwrap_err(), KeyError::EmptySecret);
    assert_eq!(
        ControlVerifier::hmac(b"").unwrap_err(),
        KeyError::EmptySecret
    );
}

#[test]
fn a_decoded_control_verifies_through_its_raw_object() {
    let c = decode_control(
        ENVELOPE.as_bytes(),
        crate::limits::DEFAULT_MAX_CONTROL_BYTES,
    )
    .unwrap();
    let verifier = rfc8032_key().verifier();
    assert_eq!(verifier.verify(c.raw.as_ref().unwrap(), "gw-07"), Ok(()));
    assert_eq!(c.signature.as_ref().unwrap().key_id, "21fe31dfa154a261");
    // Re-encoding a decoded control keeps the raw members, so it still verifies.
    let again = parse(&c.to_json_bytes()).unwrap();
    assert_eq!(verifier.verify(&again, "gw-07"), Ok(()));
}

#[test]
fn receipts_are_signed_and_verified_like_controls() {
    let key = rfc8032_key();
    let mut r = crate::message::Receipt {
        issued_at: crate::time::parse_rfc3339("2026-04-28T09:00:01Z").unwrap(),
        lineages: vec![crate::message::ReceiptLineage::Telemetry {
            source_table: "temps".into(),
            batch_seq_through: 42,
        }],
        snapshots_complete: vec![],
        rejected: vec![],
        signature: None,
        raw: None,
    };
    r.signature = Some(key.signature(&r.unsigned_members(), "gw-07"));
    let bytes = r.to_json_bytes();
    let back = crate::validate::decode_receipt(&bytes).unwrap();
    assert_eq!(back.lineages, r.lineages);
    assert_eq!(
        key.verifier().verify(back.raw.as_ref().unwrap(), "gw-07"),
        Ok(())
    );
    assert_eq!(
        key.verifier().verify(back.raw.as_ref().unwrap(), "gw-08"),
        Err(VerifyError::BadSignature)
    );
}
