//! A fresh, empty database per test on either backend, removed when the test is done.
//!
//! SQLite: a file in a temporary directory. PostgreSQL: a database `kaarma_test_<uuid>`
//! created through the server's `postgres` database (trust auth on 127.0.0.1:5432) and
//! dropped `WITH (FORCE)` on drop, which also ends the connections a failed test left open.

use std::time::Duration;

use kaarma_relay::store::Backend;
use sqlx::{Connection, Executor, PgConnection};

/// Where PostgreSQL listens on this machine; tests connect as `postgres`.
pub const POSTGRES_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A database that exists for one test.
pub struct TestDatabase {
    /// The URL a relay or a store opens it with.
    pub url: String,
    /// Which backend it is on.
    pub backend: Backend,
    /// The PostgreSQL database to drop, if it is one.
    postgres_name: Option<String>,
    /// The directory holding the SQLite file, if it is one.
    dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// Creates an empty database on `backend`. Panics, naming the server, if PostgreSQL is
    /// not reachable: the tests need it (`.ci/run` starts it).
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Self {
                    url: format!("sqlite://{}", dir.path().join("relay.db").display()),
                    backend,
                    postgres_name: None,
                    dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let name = format!("kaarma_test_{}", uuid::Uuid::new_v4().simple());
                create_postgres_database(&name).await;
                Self {
                    url: format!("{POSTGRES_SERVER}/{name}"),
                    backend,
                    postgres_name: Some(name),
                    dir: None,
                }
            }
        }
    }

    /// A directory the test may use for other files (the SQLite database's own, or a new
    /// one kept as long as the database).
    pub fn dir(&mut self) -> &std::path::Path {
        self.dir
            .get_or_insert_with(|| tempfile::tempdir().unwrap())
            .path()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on: the statement
        // runs on a thread of its own with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(drop_postgres_database(&name))
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop a test database: {error}");
        }
    }
}

/// A connection to the server's `postgres` database, for creating and dropping others.
pub async fn postgres_admin_connection() -> PgConnection {
    let url = format!("{POSTGRES_SERVER}/postgres");
    PgConnection::connect(&url).await.unwrap_or_else(|error| {
        panic!("PostgreSQL is needed at {url} (start it, e.g. with .ci/run): {error}")
    })
}

/// Creates database `name`, retrying while another session is copying the template (a
/// concurrent `CREATE DATABASE` can fail with "source database is being accessed").
pub async fn create_postgres_database(name: &str) {
    let mut admin = postgres_admin_connection().await;
    let statement = format!("CREATE DATABASE {name}");
    for attempt in 1.. {
        match admin.execute(sqlx::AssertSqlSafe(statement.clone())).await {
            Ok(_) => break,
            Err(error) if attempt < 20 => {
                eprintln!("CREATE DATABASE {name} failed ({error}); retrying");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Err(error) => panic!("CREATE DATABASE {name}: {error}"),
        }
    }
    let _ = admin.close().await;
}

/// Drops database `name` and ends every connection to it.
pub async fn drop_postgres_database(name: &str) -> Result<(), sqlx::Error> {
    let mut admin = PgConnection::connect(&format!("{POSTGRES_SERVER}/postgres")).await?;
    let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    admin.execute(sqlx::AssertSqlSafe(statement)).await?;
    admin.close().await
}
