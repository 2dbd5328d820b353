//! The relay as it is deployed: the release `kaarma-relay serve` binary in a child process,
//! on a SQLite file, with one HTTP route, and what `/proc` says about it (resident memory,
//! CPU time).
//!
//! The binary is the one Cargo built for this benchmark (`CARGO_BIN_EXE_kaarma-relay`, the
//! bench profile, which is the release profile). Its log (the default `info` level, as
//! deployed) goes to `relay.log` beside the configuration.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The signature secret and authorization token the relay is configured with.
pub const SECRET: &str = "bench-signature-secret";
/// The `x-authorization-token` the relay checks.
pub const TOKEN: &str = "myKaarma_bench-0000-4000-8000-000000000000";
/// The path the relay takes myKaarma's webhooks on.
pub const INGEST_PATH: &str = "/webhooks/mykaarma";
/// The name of the route the relay delivers through.
pub const ROUTE: &str = "receiver";

/// A running `kaarma-relay serve`.
pub struct RelayProcess {
    child: Child,
    /// Where it listens.
    pub address: SocketAddr,
    log: PathBuf,
}

/// Resident memory from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most it has been resident since it started.
    pub peak_kib: u64,
}

impl RelayProcess {
    /// Writes a configuration into `dir` (database `database_url`, both checks on, one
    /// `http` route to `route_url`, with `concurrency` attempts in flight or the route
    /// default) and starts the binary; returns once `/readyz` answers 200.
    pub fn start(
        dir: &Path,
        database_url: &str,
        route_url: &str,
        concurrency: Option<u32>,
    ) -> anyhow::Result<Self> {
        let concurrency = concurrency.map_or(String::new(), |n| format!("concurrency = {n}\n"));
        let address = free_port()?;
        let config = dir.join("relay.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{address}\"\n\
                 database = \"{database_url}\"\n\
                 \n\
                 [mykaarma]\n\
                 path = \"{INGEST_PATH}\"\n\
                 signature_secret = \"{SECRET}\"\n\
                 authorization_token = \"{TOKEN}\"\n\
                 \n\
                 [[routes]]\n\
                 name = \"{ROUTE}\"\n\
                 {concurrency}\
                 sink = {{ type = \"http\", url = \"{route_url}\", \
                 secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }}\n"
            ),
        )?;
        let log = dir.join("relay.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_kaarma-relay"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("relay.stdout"))?)
            .stderr(std::fs::File::create(&log)?)
            .env_remove("RUST_LOG");
        // The binary reads KAARMA_RELAY_* over its file: none of this shell's may leak in.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("KAARMA_RELAY_") {
                command.env_remove(name);
            }
        }
        let child = command.spawn()?;
        let mut relay = Self {
            child,
            address,
            log,
        };
        relay.wait_ready(Duration::from_secs(120))?;
        Ok(relay)
    }

    /// The ingest URL, for the emulator.
    pub fn ingest_url(&self) -> String {
        format!("http://{}{INGEST_PATH}", self.address)
    }

    /// The value of the Prometheus metric `name` (its `_sum` or `_count` for a histogram,
    /// or a counter summed over its labels) from `/metrics`; 0 when absent.
    pub fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (status, text) = get(self.address, "/metrics")?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        Ok(text
            .lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|line| line.rsplit_once(' '))
            .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
            .sum())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now and at its highest.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Ok(Memory {
            rss_kib: kib("VmRSS:"),
            peak_kib: kib("VmHWM:"),
        })
    }

    /// CPU time used so far, user + system (`utime` + `stime` of `/proc/<pid>/stat`).
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // The command name may hold spaces; the fields after it are counted from its `)`.
        let after_name = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| anyhow::anyhow!("unreadable /proc/<pid>/stat"))?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Fields 14 and 15 of stat(5); the state (field 3) is the first after the name.
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
    }

    /// Stops it as an orchestrator would (SIGTERM) and waits for it to exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id())?;
        // SAFETY: `kill` is called with the id of a child this process started and still owns.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "the relay exited with {status}");
                return Ok(());
            }
            if Instant::now() >= until {
                self.child.kill()?;
                anyhow::bail!("the relay did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                anyhow::bail!("the relay exited with {status} before it was ready:\n{log}");
            }
            if get(self.address, "/readyz").is_ok_and(|(status, _)| status == 200) {
                return Ok(());
            }
            if Instant::now() >= until {
                self.child.kill()?;
                anyhow::bail!("the relay was not ready within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A loopback address with a port nothing listens on right now.
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The status code and body of `GET path`.
fn get(address: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no status line"))?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((status.parse()?, body.to_owned()))
}
