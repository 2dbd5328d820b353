//! How the suite starts `kaarma-relay serve`: a `relay.toml` of its own (the test secrets,
//! a database, HTTP limits, and optionally an HTTP route to the [`Downstream`] receiver
//! with fast retries), on an address that can be pinned, so a relay restarted after SIGKILL
//! comes back where the emulator keeps sending.
//!
//! [`Downstream`]: super::downstream::Downstream

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::relay_process::{self, ADMIN, SECRET, TOKEN};

/// What one relay's configuration file says.
#[derive(Debug, Clone)]
pub struct RelaySetup {
    /// Where it listens; port 0 for any.
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`.
    pub database: String,
    /// An HTTP route named `downstream` to this URL, with this `whsec_` secret.
    pub route: Option<(String, String)>,
    /// More top-level keys, as TOML lines (e.g. `request_timeout_secs = 5`).
    pub top_level: Vec<String>,
    /// More `[mykaarma]` keys, as TOML lines.
    pub mykaarma: Vec<String>,
}

impl RelaySetup {
    /// A relay on any loopback port with the SQLite file `dir/relay.db`.
    pub fn sqlite(dir: &Path) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database: relay_process::database_url(dir),
            route: None,
            top_level: Vec::new(),
            mykaarma: Vec::new(),
        }
    }

    /// Writes `dir/relay.toml` and returns `serve --config` on it, run in `dir`.
    pub fn command(&self, dir: &Path) -> Command {
        let path = self.write(dir);
        let mut command = relay_process::command(dir);
        command.args(["serve", "--config"]).arg(path);
        command
    }

    fn write(&self, dir: &Path) -> PathBuf {
        let mut text = format!(
            "listen = \"{}\"\ndatabase = \"{}\"\nadmin_token = \"{ADMIN}\"\n{}\n",
            self.listen,
            self.database,
            self.top_level.join("\n")
        );
        // A killed relay's leases are taken over by its successor after this long.
        text.push_str("\n[delivery]\nlease_secs = 3\n");
        text.push_str(&format!(
            "\n[mykaarma]\nsignature_secret = \"{SECRET}\"\nauthorization_token = \"{TOKEN}\"\n{}\n",
            self.mykaarma.join("\n")
        ));
        if let Some((url, secret)) = &self.route {
            // Retries fast and never gives up within a test, so an outage loses nothing
            // to the dead-letter state and the backlog drains soon after the return.
            text.push_str(&format!(
                r#"
[[routes]]
name = "downstream"
concurrency = 8
sink = {{ type = "http", url = "{url}", secret = "{secret}", timeout_secs = 2 }}
retry = {{ initial_backoff_ms = 100, max_backoff_secs = 1, max_attempts = 100000, max_age_secs = 86400 }}
"#
            ));
        }
        let path = dir.join("relay.toml");
        std::fs::write(&path, text).expect("relay.toml is written");
        path
    }
}

/// A loopback address no one listens on right now (bound, read and released).
pub fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}
