//! The PostgreSQL store.

use super::*;

/// PostgreSQL store (stub).
#[derive(Clone)]
pub struct PgStore;
impl PgStore {
    /// Opens.
    pub async fn open(_url: &str, _n: usize) -> StoreResult<Self> {
        todo!()
    }
}
