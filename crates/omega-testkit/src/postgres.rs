//! A fresh PostgreSQL database per test, dropped after (sqlx's `#[sqlx::test]` habit).
//!
//! Connects to the machine's server on `127.0.0.1:5432` as user `postgres` (trust auth),
//! creates `omega_test_<random>` and hands out its URL. Dropping the guard drops the database
//! with `WITH (FORCE)`, so connections a test left open do not keep it alive.
//!
//! A missing or unreachable server is a test failure with an install hint, never a skip.
//!
//! The work runs on a private thread with its own single-threaded runtime, so the guard can be
//! created and dropped from sync tests and from inside `#[tokio::test]` alike (a runtime cannot
//! be blocked on from within another one).

use std::future::Future;

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

const INSTALL_HINT: &str = "PostgreSQL must answer on 127.0.0.1:5432 for user `postgres` with \
     trust auth: install it with `apt-get install -y postgresql` and start it with \
     `pg_ctlcluster <version> main start` (CI's .ci/run does both)";

/// A database that exists for the lifetime of this guard.
#[derive(Debug)]
pub struct PostgresDb {
    name: String,
    url: String,
}

impl PostgresDb {
    /// Creates a fresh, empty database. Panics with an install hint when the server does not
    /// answer or refuses the login.
    pub fn fresh() -> Self {
        let name = format!("omega_test_{}", uuid::Uuid::now_v7().simple());
        let sql = format!("CREATE DATABASE \"{name}\"");
        if let Err(e) = run_admin(sql) {
            panic!("cannot create a test database on 127.0.0.1:5432: {e}. {INSTALL_HINT}");
        }
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        PostgresDb { name, url }
    }

    /// `postgres://postgres@127.0.0.1:5432/omega_test_…`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        if std::env::var_os("OMEGA_KEEP_TEST_DB").is_some() {
            eprintln!(
                "omega-testkit: keeping test database {} (OMEGA_KEEP_TEST_DB)",
                self.name
            );
            return;
        }
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = run_admin(sql) {
            // Dropping must not panic during unwinding; a leftover database is only clutter.
            eprintln!(
                "omega-testkit: could not drop test database {}: {e}",
                self.name
            );
        }
    }
}

/// Runs one statement on the `postgres` maintenance database, on a private thread.
fn run_admin(sql: String) -> Result<(), String> {
    on_private_runtime(async move {
        let (client, connection) = tokio_postgres::connect(ADMIN_URL, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let conn = tokio::spawn(connection);
        let result = client.batch_execute(&sql).await.map_err(|e| e.to_string());
        drop(client);
        let _ = conn.await;
        result
    })
}

fn on_private_runtime<F>(fut: F) -> Result<(), String>
where
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(fut)
    })
    .join()
    .map_err(|_| "the PostgreSQL admin thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_exists_until_dropped() {
        let db = PostgresDb::fresh();
        let url = db.url().to_string();
        assert!(url.ends_with(db.name()));
        on_private_runtime(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let handle = tokio::spawn(conn);
            client
                .batch_execute("CREATE TABLE t (x int)")
                .await
                .map_err(|e| e.to_string())?;
            drop(client);
            let _ = handle.await;
            Ok(())
        })
        .unwrap();
        drop(db);
    }
}
