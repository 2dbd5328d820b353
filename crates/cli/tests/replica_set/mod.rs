//! Several `kaarma-relay serve` processes on one PostgreSQL database, and what the replica
//! tests need around them: the database ([`postgres`]), a round-robin balancer ([`proxy`]), a
//! downstream HTTP system ([`receiver`]), and checks read from the relays' own API.

#![allow(dead_code)]

pub mod postgres;
pub mod proxy;
pub mod receiver;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::relay_process::{self, ADMIN, RelayProcess, SECRET, TOKEN};

/// The log line of the replica that holds the processing lock.
pub const LEADS: &str = "this replica now processes events";

/// What a replica's configuration file sets beyond the database.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// The database every replica shares.
    pub database: String,
    /// `[delivery] lease_secs`.
    pub lease_secs: u64,
    /// An HTTP route named `receiver` to this URL, if any.
    pub route_to: Option<String>,
}

impl ReplicaConfig {
    /// Writes `relay.toml` into `dir` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let mut text = format!(
            r#"listen = "127.0.0.1:0"
database = "{database}"
admin_token = "{ADMIN}"

[mykaarma]
signature_secret = "{SECRET}"
authorization_token = "{TOKEN}"

[store]
max_connections = 8
acquire_timeout_secs = 2
statement_timeout_secs = 10

[delivery]
lease_secs = {lease}
"#,
            database = self.database,
            lease = self.lease_secs,
        );
        if let Some(url) = &self.route_to {
            text.push_str(&format!(
                r#"
[[routes]]
name = "receiver"
concurrency = 4
sink = {{ type = "http", url = "{url}", secret = "whsec_cmVwbGljYS10ZXN0LXNlY3JldC0wMTIzNDU2Nzg5", timeout_secs = 1 }}
retry = {{ initial_backoff_ms = 50, max_backoff_secs = 1, max_attempts = 1000, max_age_secs = 3600 }}
"#
            ));
        }
        let path = dir.join("relay.toml");
        std::fs::write(&path, text).expect("the config file is written");
        path
    }
}

/// Runs `kaarma-relay migrate` against `database`; panics with its output if it fails.
pub fn migrate(dir: &Path, database: &str) {
    let mut command = relay_process::command(dir);
    command.args(["migrate", "--database", database]);
    let output = relay_process::finish(command);
    assert!(
        output.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts one replica: `serve --config relay.toml --no-migrate` in a directory of its own.
pub async fn start_replica(config: &Path) -> (RelayProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut command = relay_process::command(dir.path());
    command
        .args(["serve", "--no-migrate", "--config"])
        .arg(config);
    (RelayProcess::start(command).await, dir)
}

/// Waits until one of `replicas` says it leads processing; its index.
pub async fn leader(replicas: &[&RelayProcess]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(index) = replicas
            .iter()
            .position(|replica| replica.log().contains(LEADS))
        {
            return index;
        }
        assert!(
            Instant::now() < deadline,
            "no replica took the processing lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The admin API of one replica.
#[derive(Clone)]
pub struct Api {
    /// `http://host:port`.
    pub url: String,
    client: reqwest::Client,
}

impl Api {
    /// The API of the relay at `url`.
    pub fn new(url: String) -> Self {
        Self {
            url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client"),
        }
    }

    /// GETs `path` with the admin token; the JSON answer.
    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("JSON")
    }

    /// Every item of a paged list (`key`), following `next_cursor` as `cursor_param`.
    async fn all(&self, path: &str, key: &str, cursor_param: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let separator = if path.contains('?') { '&' } else { '?' };
            let mut url = format!("{path}{separator}limit=1000");
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&{cursor_param}={cursor}"));
            }
            let page = self.get(&url).await;
            let batch = page[key].as_array().expect("a list").clone();
            if batch.is_empty() {
                return items;
            }
            items.extend(batch);
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
    }

    /// Every stored event, in arrival order.
    pub async fn events(&self) -> Vec<Value> {
        self.all("/api/v1/events", "events", "cursor").await
    }

    /// Every change, in stream order.
    pub async fn changes(&self) -> Vec<Value> {
        self.all("/api/v1/changes", "changes", "since").await
    }

    /// Every appointment.
    pub async fn appointments(&self) -> Vec<Value> {
        self.all("/api/v1/appointments", "appointments", "cursor")
            .await
    }

    /// One appointment's history.
    pub async fn history(&self, uuid: &str) -> Vec<Value> {
        self.get(&format!("/api/v1/appointments/{uuid}/history"))
            .await["history"]
            .as_array()
            .expect("a list")
            .clone()
    }

    /// Deliveries of the `receiver` route that are not finished (pending or failed).
    pub async fn open_deliveries(&self) -> i64 {
        let routes = self.get("/api/v1/routes").await;
        let counts = &routes["routes"][0]["counts"];
        counts["pending"].as_i64().unwrap_or(0) + counts["failed"].as_i64().unwrap_or(0)
    }

    /// Waits until no event is pending.
    pub async fn wait_until_processed(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let pending = self
                .events()
                .await
                .iter()
                .filter(|event| event["state"] == "pending")
                .count();
            if pending == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{pending} events still pending after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the `receiver` route has nothing left to deliver.
    pub async fn wait_until_delivered(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let open = self.open_deliveries().await;
            if open == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{open} deliveries still open after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Checks that every stored event was processed exactly once: none pending; every processed
/// appointment event has exactly one history entry (and no entry is there twice); every
/// processed event has exactly one change. Returns how many events were processed.
pub async fn assert_processed_exactly_once(api: &Api) -> usize {
    let events = api.events().await;
    let pending: Vec<&Value> = events.iter().filter(|e| e["state"] == "pending").collect();
    assert!(pending.is_empty(), "{} events pending", pending.len());
    let processed: Vec<&Value> = events
        .iter()
        .filter(|e| e["state"] == "processed")
        .collect();
    let processed_appointment_events: HashSet<&str> = processed
        .iter()
        .filter(|e| e["type"] == "appointments")
        .map(|e| e["id"].as_str().unwrap())
        .collect();

    let mut history_entries = Vec::new();
    for appointment in api.appointments().await {
        let uuid = appointment["uuid"].as_str().unwrap();
        for entry in api.history(uuid).await {
            history_entries.push(entry["event_id"].as_str().unwrap().to_owned());
        }
    }
    let distinct: HashSet<&str> = history_entries.iter().map(String::as_str).collect();
    assert_eq!(
        distinct.len(),
        history_entries.len(),
        "an event is in a history twice"
    );
    assert_eq!(
        distinct, processed_appointment_events,
        "history entries and processed appointment events differ"
    );

    let changes = api.changes().await;
    let change_ids: HashSet<&str> = changes.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        change_ids.len(),
        changes.len(),
        "a change id is there twice"
    );
    assert_eq!(
        changes.len(),
        processed.len(),
        "one change per processed event"
    );
    processed.len()
}

/// Checks what the receiver got against the change stream: every change delivered; per
/// appointment in stream order, where a repeat may only follow its first copy directly (a
/// replica died mid-attempt and another made it again). Returns the number of repeats.
pub async fn assert_delivered_in_order(api: &Api, received: &[receiver::Received]) -> usize {
    let changes = api.changes().await;
    let mut expected: HashMap<&str, Vec<&str>> = HashMap::new();
    for change in &changes {
        expected
            .entry(change["subject"].as_str().unwrap_or_default())
            .or_default()
            .push(change["id"].as_str().unwrap());
    }
    let mut got: HashMap<&str, Vec<&str>> = HashMap::new();
    for delivery in received {
        got.entry(delivery.subject.as_str())
            .or_default()
            .push(delivery.change_id.as_str());
    }
    let mut repeats = 0;
    for (subject, expected) in &expected {
        let mut seen = got.remove(subject).unwrap_or_default();
        let before = seen.len();
        seen.dedup();
        repeats += before - seen.len();
        assert_eq!(
            &seen, expected,
            "{subject}: deliveries (repeats collapsed) differ from the change order"
        );
    }
    assert!(got.is_empty(), "deliveries of unknown subjects: {got:?}");
    repeats
}
