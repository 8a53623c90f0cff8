//! Start-up errors: each names what is wrong and, where it can, the fix.

use std::io::ErrorKind;

use omega_broker::{Broker, BrokerConfig, BrokerError, TlsFiles};

use crate::support::{Pki, any_port, write};

#[tokio::test]
async fn port_zero_binds_a_real_port() {
    let broker = Broker::bind(BrokerConfig::new(any_port())).await.unwrap();
    assert_ne!(broker.local_addr().port(), 0);
    assert_eq!(broker.url(), format!("mqtt://{}", broker.local_addr()));
    assert!(!broker.is_tls());
}

#[tokio::test]
async fn an_address_in_use_is_a_bind_error_with_a_hint() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Broker::bind(BrokerConfig::new(addr)).await.unwrap_err();
    match &err {
        BrokerError::Bind { addr: a, source } => {
            assert_eq!(*a, addr);
            assert_eq!(source.kind(), ErrorKind::AddrInUse);
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    assert!(err.to_string().contains("--listen"), "{err}");
    assert!(!err.is_configuration());
}

#[tokio::test]
async fn a_tls_address_in_use_is_a_bind_error() {
    let pki = Pki::generate();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = BrokerConfig::new(addr).with_tls(TlsFiles {
        cert: pki.path("server.pem"),
        key: pki.path("server.key"),
        client_ca: None,
    });
    let err = Broker::bind(config).await.unwrap_err();
    assert!(matches!(err, BrokerError::Bind { .. }), "{err:?}");
}

#[tokio::test]
async fn a_missing_tls_file_is_named() {
    let pki = Pki::generate();
    let missing = pki.path("nope.pem");
    let config = BrokerConfig::new(any_port()).with_tls(TlsFiles {
        cert: missing.clone(),
        key: pki.path("server.key"),
        client_ca: None,
    });
    let err = Broker::bind(config).await.unwrap_err();
    assert!(
        matches!(
            err,
            BrokerError::Tls {
                role: "certificate",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    assert!(err.is_configuration());
}

#[tokio::test]
async fn a_file_without_pem_and_a_mismatched_key_are_refused() {
    let pki = Pki::generate();
    let junk = write(pki.dir.path(), "junk.pem", "not a certificate\n");
    let with_ca = |ca| {
        BrokerConfig::new(any_port()).with_tls(TlsFiles {
            cert: pki.path("server.pem"),
            key: pki.path("server.key"),
            client_ca: Some(ca),
        })
    };
    let err = Broker::bind(with_ca(junk)).await.unwrap_err();
    assert!(
        matches!(
            err,
            BrokerError::Tls {
                role: "client CA",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("no PEM certificate"), "{err}");

    let mismatched = BrokerConfig::new(any_port()).with_tls(TlsFiles {
        cert: pki.path("server.pem"),
        key: pki.path("client.key"),
        client_ca: None,
    });
    let err = Broker::bind(mismatched).await.unwrap_err();
    assert!(
        matches!(
            err,
            BrokerError::Tls {
                role: "private key",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_tiny_max_packet_size_is_a_configuration_error() {
    let err = Broker::bind(BrokerConfig::new(any_port()).with_max_packet_size(10))
        .await
        .unwrap_err();
    assert!(err.is_configuration(), "{err:?}");
}
