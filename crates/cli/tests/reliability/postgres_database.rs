//! A PostgreSQL database of the test's own on the machine's server (`.ci/run` starts it at
//! 127.0.0.1:5432, trust auth), which can be made read-only under a running relay and
//! writable again, as when a primary is demoted to a read-only standby and back.
//!
//! `default_transaction_read_only` is set on the database, so it binds only new sessions;
//! every existing session of the database is then ended, and the relay's pool reconnects
//! into the new mode. Statements go through `psql`, so nothing here needs a runtime and
//! [`Drop`] can clean up after a failed assertion.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A database `kaarma_reliability_<pid>_<n>`, dropped `WITH (FORCE)` with the value.
pub struct PostgresDatabase {
    /// Its URL.
    pub url: String,
    name: String,
}

impl PostgresDatabase {
    /// Creates a fresh database; panics, saying what is missing, when the server is not up.
    pub fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "kaarma_reliability_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        execute(&format!("CREATE DATABASE {name}")).unwrap_or_else(|error| {
            panic!(
                "the read-only test needs PostgreSQL on 127.0.0.1:5432 (trust auth as \
                 `postgres`; .ci/run starts it): {error}"
            )
        });
        Self {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }

    /// Makes the database read-only (`true`) or writable again, ending every session in it
    /// so that the change applies at once.
    pub fn set_read_only(&self, read_only: bool) {
        let setting = if read_only {
            format!(
                "ALTER DATABASE {} SET default_transaction_read_only = on",
                self.name
            )
        } else {
            format!(
                "ALTER DATABASE {} RESET default_transaction_read_only",
                self.name
            )
        };
        execute(&setting).expect("the database setting changes");
        execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            self.name
        ))
        .expect("the database's sessions are ended");
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let _ = execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// Runs one statement in the `postgres` database; psql's error output if it failed.
fn execute(sql: &str) -> Result<(), String> {
    let output = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
        ])
        .args(["-U", "postgres", "-d", "postgres", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("psql: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
