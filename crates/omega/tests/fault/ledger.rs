//! The cloud's batch ledger (`omega_batches`, `cloud.md` §2), read straight from PostgreSQL.

use std::collections::BTreeMap;

/// One ledger row: (status, deliveries).
pub(crate) type Entry = (String, i64);

/// The ledger of `device`: batch id → (status, deliveries).
pub(crate) fn of(url: &str, device: &str) -> BTreeMap<String, Entry> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to the store {url}: {e}"));
        let task = tokio::spawn(conn);
        let rows = client
            .query(
                "SELECT batch_id::text, status, deliveries FROM omega_batches WHERE device_id = $1",
                &[&device],
            )
            .await
            .expect("read omega_batches");
        drop(client);
        let _ = task.await;
        rows.iter()
            .map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2))))
            .collect()
    })
}

/// Every batch the cloud recorded for `device` was accepted (none rejected or quarantined by
/// a fault), and the ledger holds each batch id once (its primary key): a re-delivery only
/// counts a delivery.
pub(crate) fn assert_clean(url: &str, device: &str) {
    let ledger = of(url, device);
    assert!(!ledger.is_empty(), "the ledger of {device} is empty");
    let rejected: Vec<_> = ledger
        .iter()
        .filter(|(_, (status, _))| status != "accepted")
        .collect();
    assert!(rejected.is_empty(), "batches not accepted: {rejected:?}");
}
