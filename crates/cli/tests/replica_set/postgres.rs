//! PostgreSQL for the replica tests: a fresh database per test on the machine's server, and a
//! private server of the test's own for the test that stops and starts one.
//!
//! Databases are created and dropped with `psql` (trust auth as `postgres`), so nothing here
//! needs an async runtime and [`Drop`] can clean up even after a failed assertion.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The machine's PostgreSQL (`.ci/run` starts it).
pub const SHARED_SERVER: Server = Server { port: 5432 };

/// A PostgreSQL server on 127.0.0.1, reached as `postgres` with trust auth.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    /// Its TCP port.
    pub port: u16,
}

impl Server {
    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs one SQL statement in the `postgres` database; its error output if it failed.
    pub fn execute(&self, sql: &str) -> Result<(), String> {
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
            .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("psql: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

/// A database `kaarma_replicas_<pid>_<n>` that exists for one test, dropped `WITH (FORCE)`
/// (ending any connection a killed relay left) when the value is dropped.
pub struct Database {
    /// Its URL.
    pub url: String,
    server: Server,
    name: String,
}

impl Database {
    /// Creates an empty database on `server`; panics if the server cannot be reached.
    pub fn create(server: Server) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "kaarma_replicas_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut attempt = 0;
        // Concurrent CREATE DATABASE can fail while another copies the template: retry.
        while let Err(error) = server.execute(&format!("CREATE DATABASE {name}")) {
            attempt += 1;
            assert!(
                attempt < 20,
                "CREATE DATABASE {name} on port {}: {error}",
                server.port
            );
            std::thread::sleep(Duration::from_millis(100 * attempt));
        }
        Self {
            url: server.url(&name),
            server,
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(error) = self.server.execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )) {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// A PostgreSQL server of the test's own (`initdb` in a temporary directory, a free port),
/// so that stopping it disturbs no other test on the machine's server. It runs as the
/// `postgres` user when the test runs as root. Dropping it stops it and removes its files.
pub struct PrivateServer {
    /// The server's address.
    pub server: Server,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl PrivateServer {
    /// Initialises and starts a server; panics (with its log) if it does not come up.
    pub fn start() -> Self {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("a temporary directory");
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown postgres {}", dir.path().display());
        }
        let port = free_port();
        let private = Self {
            server: Server { port },
            dir,
            bin,
        };
        let data = private.data();
        private.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        private.start_again();
        private
    }

    /// Stops the server the way an operator's restart does (`-m fast`: sessions are ended,
    /// in-flight transactions rolled back).
    pub fn stop(&self) {
        self.run("pg_ctl", &["stop", "-D", &self.data(), "-m", "fast", "-w"]);
    }

    /// Starts the (stopped) server again and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.server.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        let log = log.display().to_string();
        self.run(
            "pg_ctl",
            &[
                "start",
                "-D",
                &self.data(),
                "-w",
                "-t",
                "60",
                "-l",
                &log,
                "-o",
                &options,
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.server.execute("SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "the private PostgreSQL did not come up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("{}: {error}", program.display()));
        assert!(
            output.status.success(),
            "{} {args:?} failed:\n{}\n{}\nlog:\n{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
        );
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["stop", "-D", data.as_str(), "-m", "immediate", "-w"];
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        };
    }
}

/// The newest installed PostgreSQL's `bin` directory (Debian: `/usr/lib/postgresql/N/bin`).
fn postgres_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .unwrap_or_else(|error| panic!("{}: {error} (PostgreSQL server binaries)", root.display()))
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("no pg_ctl under {}", root.display()))
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A TCP port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
