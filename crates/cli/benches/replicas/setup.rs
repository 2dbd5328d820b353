//! One setup under test: a database (a SQLite file, or a fresh PostgreSQL database) and the
//! `kaarma-relay serve` processes on it, built with the bench (release) profile.

use std::path::Path;
use std::process::Command;

use crate::bodies::{SECRET, TOKEN};
use crate::relay_process::{self, ADMIN, RelayProcess};

/// What runs.
#[derive(Debug, Clone, Copy)]
pub enum Setup {
    /// The embedded default: one process on a SQLite file.
    Sqlite,
    /// `replicas` processes on one PostgreSQL database.
    Postgres {
        /// How many.
        replicas: usize,
    },
}

impl Setup {
    /// The name in the report.
    pub fn name(self) -> String {
        match self {
            Self::Sqlite => "SQLite, 1 process".into(),
            Self::Postgres { replicas: 1 } => "PostgreSQL, 1 replica".into(),
            Self::Postgres { replicas } => format!("PostgreSQL, {replicas} replicas"),
        }
    }
}

/// A running setup; dropping it kills the processes and drops the PostgreSQL database.
pub struct Running {
    /// The processes.
    pub relays: Vec<RelayProcess>,
    postgres_database: Option<String>,
    sqlite_file: Option<std::path::PathBuf>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Running {
    /// Creates the database in `dir`'s terms, migrates it (`kaarma-relay migrate`) and starts
    /// the processes (`serve --no-migrate`).
    pub async fn start(setup: Setup, dir: &Path, run: u32) -> anyhow::Result<Self> {
        let (database, postgres_database, replicas) = match setup {
            Setup::Sqlite => {
                let file = dir.join(format!("replicas-bench-{run}.db"));
                remove_sqlite_files(&file);
                (format!("sqlite://{}", file.display()), None, 1)
            }
            Setup::Postgres { replicas } => {
                let name = format!("kaarma_bench_{}_{run}", std::process::id());
                psql(&format!("CREATE DATABASE {name}"))?;
                (
                    format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    Some(name),
                    replicas,
                )
            }
        };
        let mut running = Self {
            relays: Vec::new(),
            sqlite_file: database
                .strip_prefix("sqlite://")
                .map(std::path::PathBuf::from),
            postgres_database,
            _dirs: Vec::new(),
        };
        let config_dir = tempfile::tempdir()?;
        let config = config_dir.path().join("relay.toml");
        std::fs::write(
            &config,
            format!(
                r#"listen = "127.0.0.1:0"
database = "{database}"
admin_token = "{ADMIN}"
[mykaarma]
signature_secret = "{SECRET}"
authorization_token = "{TOKEN}"
[store]
max_connections = 16
"#
            ),
        )?;
        let mut migrate = relay_process::command(config_dir.path());
        migrate.args(["migrate", "--config"]).arg(&config);
        let output = relay_process::finish(migrate);
        anyhow::ensure!(
            output.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for _ in 0..replicas {
            let replica_dir = tempfile::tempdir()?;
            let mut serve = relay_process::command(replica_dir.path());
            // Info is needed for the address line; the per-request lines are debug.
            serve
                .env("RUST_LOG", "info")
                .args(["serve", "--no-migrate", "--config"])
                .arg(&config);
            running.relays.push(RelayProcess::start(serve).await);
            running._dirs.push(replica_dir);
        }
        running._dirs.push(config_dir);
        Ok(running)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.relays.clear();
        if let Some(file) = &self.sqlite_file {
            remove_sqlite_files(file);
        }
        if let Some(name) = &self.postgres_database
            && let Err(error) = psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        {
            eprintln!("could not drop {name}: {error}");
        }
    }
}

/// Removes a SQLite database with its WAL and shared-memory files (left by an earlier run).
fn remove_sqlite_files(file: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

/// Runs one statement in the `postgres` database of the machine's server.
fn psql(sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-d", "postgres", "-c", sql])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
