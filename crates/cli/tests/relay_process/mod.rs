//! The `kaarma-relay` binary as a child process, and a sender that speaks to it as myKaarma
//! does.
//!
//! A [`RelayProcess`] is the real binary on a random loopback port (`--listen 127.0.0.1:0`)
//! with a real SQLite file in a temporary directory. Its address is read from the
//! `kaarma-relay listening address=…` log line, and it counts as up once `/healthz` answers.
//! It is stopped by a real signal, so the tests see what an orchestrator (SIGTERM) or a crash
//! (SIGKILL) does to it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mykaarma::signature::{self, AUTHORIZATION_HEADER, SIGNATURE_HEADER};
use serde_json::Value;

/// The binary under test, built by Cargo for this test run.
pub const BINARY: &str = env!("CARGO_BIN_EXE_kaarma-relay");
/// The signature secret the test relays verify with.
pub const SECRET: &str = "process-test-secret";
/// The `x-authorization-token` the test relays expect.
pub const TOKEN: &str = "myKaarma_11111111-2222-4333-8444-555555555555";
/// The API bearer token of the test relays.
pub const ADMIN: &str = "process-test-admin";

/// How long a relay may take to come up or to go down before the test gives up on it.
const PATIENCE: Duration = Duration::from_secs(30);

/// A `kaarma-relay` command that inherits no `KAARMA_RELAY_*` variable from the test's own
/// environment, logs plain (uncoloured) lines and runs in `dir`, so a default
/// `kaarma-relay.db` could only ever land there.
pub fn command(dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("KAARMA_RELAY_") {
            command.env_remove(key);
        }
    }
    command
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

/// `serve` on a random loopback port and `dir/relay.db`, with the test secret, token and
/// admin token given as environment variables.
pub fn serve(dir: &Path) -> Command {
    let mut command = command(dir);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--database"])
        .arg(database_url(dir))
        .env("KAARMA_RELAY_MYKAARMA__SIGNATURE_SECRET", SECRET)
        .env("KAARMA_RELAY_MYKAARMA__AUTHORIZATION_TOKEN", TOKEN)
        .env("KAARMA_RELAY_ADMIN_TOKEN", ADMIN);
    command
}

/// The SQLite URL of the database file every relay started on `dir` shares.
pub fn database_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("relay.db").display())
}

/// Runs a command that is expected to finish by itself (`sign`, `verify`, `send`, a `serve`
/// that refuses to start), killing it if it has not finished after [`PATIENCE`].
pub fn finish(mut command: Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let pid = child.id();
    let (done, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match output.recv_timeout(PATIENCE) {
        Ok(output) => output.expect("the binary's output can be read"),
        Err(_) => {
            signal(pid, libc::SIGKILL);
            panic!("{command:?} did not finish within {PATIENCE:?}");
        }
    }
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits in pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        result,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// A running `kaarma-relay serve`. Dropping it kills the process, so a failing test leaves
/// nothing behind.
pub struct RelayProcess {
    child: Child,
    /// The address it reported listening on.
    pub address: SocketAddr,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl RelayProcess {
    /// Spawns `command` (a `serve …`) and waits until it has logged its address and answers
    /// `/healthz`. Panics with the process's log if it exits or stalls first.
    pub async fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (found, mut address) = tokio::sync::mpsc::unbounded_channel();
        let lines = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = without_colours(&line);
                if let Some(address) = listening_address(&line) {
                    let _ = found.send(address);
                }
                let mut log = lines.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut relay = Self {
            child,
            address: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
            reader: Some(reader),
        };
        match tokio::time::timeout(PATIENCE, address.recv()).await {
            Ok(Some(address)) => relay.address = address,
            _ => panic!(
                "the relay never logged `kaarma-relay listening`; its log:\n{}",
                relay.log()
            ),
        }
        relay.wait_until_healthy().await;
        relay
    }

    async fn wait_until_healthy(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let probe = client
                .get(format!("{}/healthz", self.url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if probe.is_ok_and(|response| response.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "/healthz never answered at {}; log:\n{}",
            self.url(),
            self.log()
        );
    }

    /// `http://ADDRESS`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The ingest endpoint.
    pub fn webhook_url(&self) -> String {
        format!("{}/webhooks/mykaarma", self.url())
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stderr so far, colour codes removed.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` and waits for the process to exit; panics if it is still running after
    /// [`PATIENCE`]. Once it returns, [`RelayProcess::log`] holds the whole log.
    pub async fn stop(&mut self, signal: libc::c_int) -> ExitStatus {
        match self.stop_within(signal, PATIENCE).await {
            Some(status) => status,
            None => panic!(
                "the relay did not exit within {PATIENCE:?} of signal {signal}; log:\n{}",
                self.log()
            ),
        }
    }

    /// Sends `signal` and waits up to `limit` for the process to exit: its exit status, or
    /// `None` (and the process killed) if it was still running.
    pub async fn stop_within(
        &mut self,
        signal: libc::c_int,
        limit: Duration,
    ) -> Option<ExitStatus> {
        self::signal(self.pid(), signal);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited on") {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every stored event, paged through `GET /api/v1/events` with the admin token.
    pub async fn stored_events(&self) -> Vec<StoredEvent> {
        let client = reqwest::Client::new();
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/api/v1/events?limit=1000", self.url());
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let response = client
                .get(&url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("the events API answers");
            assert_eq!(response.status(), 200, "GET {url}");
            let page: Value = response.json().await.expect("the events API answers JSON");
            for event in page["events"].as_array().expect("`events` is a list") {
                events.push(StoredEvent {
                    event_type: event["type"].as_str().unwrap().to_owned(),
                    id: event["id"].as_str().unwrap().to_owned(),
                    seq: event["seq"].as_i64().unwrap(),
                    delivery_count: event["delivery_count"].as_i64().unwrap(),
                });
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return events,
            }
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One row of `GET /api/v1/events`, the fields these tests check.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// `type`.
    pub event_type: String,
    /// `id`.
    pub id: String,
    /// Arrival sequence number.
    pub seq: i64,
    /// How many times it was delivered.
    pub delivery_count: i64,
}

/// How many rows each event id has.
pub fn rows_per_id(events: &[StoredEvent]) -> HashMap<&str, usize> {
    let mut rows = HashMap::new();
    for event in events {
        *rows.entry(event.id.as_str()).or_insert(0) += 1;
    }
    rows
}

/// Reads the address out of the `kaarma-relay listening` log line, human
/// (`… address=127.0.0.1:1234`) or JSON (`{"message":"kaarma-relay listening","address":…}`).
fn listening_address(line: &str) -> Option<SocketAddr> {
    if !line.contains("kaarma-relay listening") {
        return None;
    }
    if let Ok(json) = serde_json::from_str::<Value>(line) {
        return json["address"].as_str()?.parse().ok();
    }
    let (_, rest) = line.split_once("address=")?;
    rest.split_whitespace()
        .next()?
        .trim_matches('"')
        .parse()
        .ok()
}

/// `line` without ANSI escape sequences (in case the log is coloured after all).
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// A fixture file from the workspace's `fixtures/`.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

/// A fixture's bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|error| panic!("fixture {name}: {error}"))
}

/// A fixture envelope whose `id` can be rewritten, so one realistic body yields any number
/// of distinct events.
#[derive(Clone)]
pub struct EventTemplate(Arc<Value>);

impl EventTemplate {
    /// Reads `fixtures/events/NAME.json`.
    pub fn load(name: &str) -> Self {
        let body = fixture(&format!("events/{name}.json"));
        let envelope: Value = serde_json::from_slice(&body).expect("the fixture is JSON");
        assert!(envelope["id"].is_string(), "{name} has an `id`");
        Self(Arc::new(envelope))
    }

    /// The body with `id` set to `id`.
    pub fn with_id(&self, id: &str) -> Vec<u8> {
        let mut envelope = (*self.0).clone();
        envelope["id"] = Value::from(id);
        serde_json::to_vec(&envelope).expect("a JSON value serializes")
    }
}

/// A distinct, UUID-shaped event id for number `n` of test `run`.
pub fn event_id(run: u32, n: u64) -> String {
    format!("{run:08x}-0000-4000-8000-{n:012x}")
}

/// A sender's view of one ingest endpoint: signs each body and sends it as myKaarma does.
#[derive(Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: String,
    token: Option<String>,
}

impl Webhook {
    /// Sends to `url` with [`SECRET`] and [`TOKEN`], over a keep-alive connection pool.
    pub fn new(url: String) -> Self {
        Self::signed_with(url, SECRET, Some(TOKEN))
    }

    /// Sends to `url`, signing with `secret` and sending `token` when there is one.
    pub fn signed_with(url: String, secret: &str, token: Option<&str>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("a client builds");
        Self {
            client,
            url,
            secret: secret.to_owned(),
            token: token.map(str::to_owned),
        }
    }

    /// Posts `body` as `text/plain`, signed and with the token; the status and the JSON
    /// answer, or the transport error.
    pub async fn deliver(&self, body: Vec<u8>) -> Result<(u16, Value), reqwest::Error> {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "text/plain")
            .header(
                SIGNATURE_HEADER,
                signature::sign(self.secret.as_bytes(), &body),
            );
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION_HEADER, token);
        }
        let response = request.body(body).send().await?;
        let status = response.status().as_u16();
        let answer = response.json().await.unwrap_or(Value::Null);
        Ok((status, answer))
    }
}

/// What concurrent senders saw: ids acknowledged 2xx, ids whose request failed in transit
/// (the relay may or may not have stored them), and ids answered with anything else.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// Answered 200 `accepted`: these must be stored, exactly once.
    pub acked: Vec<String>,
    /// No answer (connection reset or refused): either way is fine.
    pub in_doubt: Vec<String>,
    /// Answered, but not 200 `accepted`: id, status and answer.
    pub refused: Vec<(String, u16, Value)>,
}

/// Concurrent senders, each posting distinct ids (from a shared counter) one after another
/// until its delivery fails in transit, which is how they notice the relay is gone.
pub struct Load {
    /// Deliveries answered 200 `accepted` so far, over all senders.
    pub acked: Arc<AtomicUsize>,
    senders: Vec<tokio::task::JoinHandle<LoadOutcome>>,
}

impl Load {
    /// Starts `senders` senders posting `template` with ids `event_id(run, next…)`.
    pub fn start(
        webhook: &Webhook,
        template: &EventTemplate,
        senders: usize,
        run: u32,
        next: Arc<AtomicU64>,
    ) -> Self {
        let acked = Arc::new(AtomicUsize::new(0));
        let senders = (0..senders)
            .map(|_| {
                let webhook = webhook.clone();
                let template = template.clone();
                let next = next.clone();
                let acked = acked.clone();
                tokio::spawn(async move {
                    let mut outcome = LoadOutcome::default();
                    loop {
                        let id = event_id(run, next.fetch_add(1, Ordering::Relaxed));
                        match webhook.deliver(template.with_id(&id)).await {
                            Ok((200, answer)) if answer["status"] == "accepted" => {
                                outcome.acked.push(id);
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok((status, answer)) => outcome.refused.push((id, status, answer)),
                            Err(_) => {
                                outcome.in_doubt.push(id);
                                return outcome;
                            }
                        }
                    }
                })
            })
            .collect();
        Self { acked, senders }
    }

    /// Waits until at least `count` deliveries were acknowledged.
    pub async fn wait_for_acks(&self, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.acked.load(Ordering::Relaxed) < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} deliveries acknowledged within {PATIENCE:?}",
                self.acked.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for every sender to stop (they stop once the relay is gone) and merges what
    /// they saw.
    pub async fn finish(self) -> LoadOutcome {
        let mut total = LoadOutcome::default();
        for sender in self.senders {
            let outcome = tokio::time::timeout(PATIENCE, sender)
                .await
                .expect("senders stop once the relay is gone")
                .expect("a sender does not panic");
            total.acked.extend(outcome.acked);
            total.in_doubt.extend(outcome.in_doubt);
            total.refused.extend(outcome.refused);
        }
        total
    }
}
