//! What the suite reads back from a relay through its admin API: the change stream, the
//! route's delivery counts, the processor's backlog and readiness.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::relay_process::ADMIN;

/// A relay's admin API at `url` (`http://host:port`).
#[derive(Clone)]
pub struct AdminApi {
    url: String,
    client: reqwest::Client,
}

impl AdminApi {
    /// The API of the relay at `url`.
    pub fn new(url: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("a client builds");
        Self { url, client }
    }

    /// `GET path` with the admin token: the status and the JSON answer.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Every change in stream order: `(subject, change id)`.
    pub async fn changes(&self) -> Vec<(String, String)> {
        let mut changes = Vec::new();
        let mut since = String::new();
        loop {
            let (status, page) = self
                .get(&format!("/api/v1/changes?limit=1000&since={since}"))
                .await;
            assert_eq!(status, 200, "{page}");
            let list = page["changes"].as_array().expect("`changes` is a list");
            if list.is_empty() {
                return changes;
            }
            for change in list {
                changes.push((
                    change["subject"].as_str().unwrap_or_default().to_owned(),
                    change["id"]
                        .as_str()
                        .expect("a change has an id")
                        .to_owned(),
                ));
            }
            since = page["next_cursor"].as_str().expect("a cursor").to_owned();
        }
    }

    /// Each subject's change ids in stream order.
    pub async fn changes_per_subject(&self) -> HashMap<String, Vec<String>> {
        let mut per_subject: HashMap<String, Vec<String>> = HashMap::new();
        for (subject, id) in self.changes().await {
            per_subject.entry(subject).or_default().push(id);
        }
        per_subject
    }

    /// The `downstream` route's delivery counts by state (`pending`, `delivered`, `dead`…).
    pub async fn delivery_counts(&self) -> HashMap<String, i64> {
        let (_, routes) = self.get("/api/v1/routes").await;
        let route = routes["routes"]
            .as_array()
            .and_then(|routes| routes.iter().find(|route| route["name"] == "downstream"))
            .cloned()
            .unwrap_or(Value::Null);
        route["counts"]
            .as_object()
            .map(|counts| {
                counts
                    .iter()
                    .map(|(state, count)| (state.clone(), count.as_i64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stored events by processing state (`pending`, `processed`, `failed`).
    pub async fn event_states(&self) -> HashMap<String, usize> {
        let mut states = HashMap::new();
        let mut cursor = String::new();
        loop {
            let (status, page) = self
                .get(&format!("/api/v1/events?limit=1000&cursor={cursor}"))
                .await;
            assert_eq!(status, 200, "{page}");
            for event in page["events"].as_array().expect("`events` is a list") {
                let state = event["state"].as_str().unwrap_or("?").to_owned();
                *states.entry(state).or_insert(0) += 1;
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => return states,
            }
        }
    }

    /// Waits until no stored event is pending (the processor caught up).
    pub async fn wait_until_processed(&self, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            let states = self.event_states().await;
            if states.get("pending").copied().unwrap_or(0) == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "events still pending after {patience:?}: {states:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `GET /readyz` without the token: its status.
    pub async fn readyz(&self) -> u16 {
        self.client
            .get(format!("{}/readyz", self.url))
            .send()
            .await
            .map(|response| response.status().as_u16())
            .unwrap_or(0)
    }
}
