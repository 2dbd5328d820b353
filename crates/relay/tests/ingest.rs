//! The ingest endpoint over real HTTP on a real database: the whole status matrix,
//! deduplication under concurrency, quarantine, the events API and store failures. Every
//! case runs on SQLite and on PostgreSQL (`NAME::sqlite`, `NAME::postgres`).

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use async_trait::async_trait;
use base64::Engine;
use harness::{ADMIN, Backend, SECRET, TOKEN, TestDatabase, TestRelay, backend_tests, fixture};
use kaarma_relay::store::*;
use mykaarma::signature::{self, AUTHORIZATION_HEADER, SIGNATURE_HEADER};
use serde_json::Value;

backend_tests!(
    every_fixture_is_accepted_once_then_answered_duplicate,
    the_raw_body_is_kept_byte_exact,
    every_bad_input_gets_its_answer,
    concurrent_retries_of_one_id_store_it_once,
    a_quarantined_body_is_kept_once_and_listed,
    events_page_by_cursor_and_filter_by_type,
    the_api_wants_the_bearer_token,
    probes_answer,
    the_allow_list_answers_403_and_the_path_is_configurable,
    a_store_that_cannot_commit_gets_503_and_then_recovers,
    an_event_the_store_refuses_fails_alone_and_the_stream_goes_on,
);

const EVENT_FIXTURES: [&str; 10] = [
    "appointment-created",
    "appointment-created-dms-ack",
    "appointment-rescheduled",
    "appointment-rescheduled-dms-ack",
    "appointment-cancelled",
    "appointment-deleted",
    "appointment-legacy-envelope",
    "customer",
    "service-order",
    "mpi",
];

async fn every_fixture_is_accepted_once_then_answered_duplicate(backend: Backend) {
    let relay = TestRelay::start_backend(backend).await;
    for name in EVENT_FIXTURES {
        let body = fixture(&format!("events/{name}.json"));
        let (status, answer) = relay.deliver(body.clone()).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("accepted")),
            "{name}: {answer}"
        );
        let (status, answer) = relay.deliver(body).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("duplicate")),
            "{name}: {answer}"
        );
    }
    let (_, listed) = relay.api("/api/v1/events?limit=100").await;
    let events = listed["events"].as_array().unwrap();
    assert_eq!(events.len(), EVENT_FIXTURES.len());
    assert!(events.iter().all(|event| event["delivery_count"] == 2));
    let legacy = events
        .iter()
        .find(|e| e["id"] == "5d4c3b2a-1908-4f7e-a6d5-c4b3a2918070")
        .unwrap();
    assert_eq!(
        legacy["type"], "appointments",
        "the older shape's dataType is the type"
    );
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        types.contains(&"customers")
            && types.contains(&"service-orders")
            && types.contains(&"mpis")
    );
    relay.stop().await;
}

async fn the_raw_body_is_kept_byte_exact(backend: Backend) {
    let relay = TestRelay::start_backend(backend).await;
    let body = fixture("events/appointment-created.json");
    relay.deliver(body.clone()).await;
    let (status, event) = relay
        .api("/api/v1/events/appointments/6c7e57fe-0e06-4fc9-8120-e1593257f1cf")
        .await;
    assert_eq!(status, 200);
    assert_eq!(event["raw"].as_str().unwrap(), body);
    assert_eq!(event["timestamp"], 1736933400000i64);
    assert_eq!(
        event["dealer_uuid"],
        "7c1e5a9f3b2d4e6a8c0f1e3d5b7a9c2e4f6a8b0d1c3e5f7a9b2d4c6e8f0a1b3c"
    );
    assert_eq!(event["error"], Value::Null);
    let (status, missing) = relay.api("/api/v1/events/appointments/nope").await;
    assert_eq!(status, 404);
    assert!(missing["error"].as_str().unwrap().contains("nope"));
    relay.stop().await;
}

/// One case of `fixtures/bad-inputs/cases.json`, turned into a request.
fn request_for(relay: &TestRelay, case: &Value) -> reqwest::RequestBuilder {
    let body: Vec<u8> = if let Some(body) = case["body"].as_str() {
        body.as_bytes().to_vec()
    } else if let Some(encoded) = case["body_base64"].as_str() {
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap()
    } else {
        let fill = &case["body_fill"];
        let mut body = fill["prefix"].as_str().unwrap().as_bytes().to_vec();
        body.resize(fill["size"].as_u64().unwrap() as usize, b'a');
        body
    };
    let mut request = relay
        .client
        .post(relay.webhook_url())
        .header("content-type", "text/plain");
    let signature = match &case["signature"] {
        Value::Null => Some(signature::sign(SECRET.as_bytes(), &body)),
        Value::String(mode) => match mode.as_str() {
            "none" => None,
            "wrong_secret" => Some(signature::sign(b"not-the-secret", &body)),
            "valid_without_prefix" => {
                Some(signature::sign(SECRET.as_bytes(), &body)[7..].to_owned())
            }
            "over_payload" => {
                let envelope: Value = serde_json::from_slice(&body).unwrap();
                Some(signature::sign(
                    SECRET.as_bytes(),
                    envelope["payload"].as_str().unwrap().as_bytes(),
                ))
            }
            other => panic!("unknown signature mode {other}"),
        },
        Value::Object(spec) if spec.contains_key("header") => {
            Some(spec["header"].as_str().unwrap().to_owned())
        }
        Value::Object(spec) => Some(signature::sign(
            SECRET.as_bytes(),
            spec["sign_body"].as_str().unwrap().as_bytes(),
        )),
        other => panic!("bad signature spec {other}"),
    };
    if let Some(signature) = signature {
        request = request.header(SIGNATURE_HEADER, signature);
    }
    match &case["token"] {
        Value::Null => request = request.header(AUTHORIZATION_HEADER, TOKEN),
        Value::String(none) if none == "none" => {}
        Value::Object(spec) => {
            request = request.header(AUTHORIZATION_HEADER, spec["header"].as_str().unwrap())
        }
        other => panic!("bad token spec {other}"),
    }
    request.body(body)
}

async fn every_bad_input_gets_its_answer(backend: Backend) {
    let relay = TestRelay::start_backend(backend).await;
    let corpus: Value = serde_json::from_str(&fixture("bad-inputs/cases.json")).unwrap();
    let cases = corpus["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let response = match request_for(&relay, case).send().await {
            Ok(response) => response,
            // The relay answers 413 once the limit is passed and closes the connection without
            // reading the rest; a client still writing may see the reset before the answer.
            Err(error) if case["expect_status"] == 413 && error.is_request() => continue,
            Err(error) => panic!("{name}: no answer: {error}"),
        };
        let status = response.status().as_u16();
        let answer: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{name}: answer not JSON: {e}"));
        assert_eq!(
            status,
            case["expect_status"].as_u64().unwrap() as u16,
            "{name}: {answer}"
        );
        if let Some(reason) = case["expect_reason"].as_str() {
            assert_eq!(answer["reason"], reason, "{name}: {answer}");
            let error = answer["error"].as_str().unwrap();
            assert!(
                !error.contains(SECRET) && !error.contains(TOKEN),
                "{name} leaks a secret: {error}"
            );
        }
        match status {
            202 => {
                assert_eq!(answer["status"], "quarantined", "{name}");
                assert!(!answer["error"].as_str().unwrap().is_empty(), "{name}");
            }
            200 => assert_eq!(answer["status"], case["expect_state"], "{name}"),
            _ => assert_eq!(answer["status"], "rejected", "{name}"),
        }
    }
    // Nothing unauthenticated was stored; what was verified is kept.
    let (_, events) = relay.api("/api/v1/events").await;
    let stored = cases.iter().filter(|c| c["expect_status"] == 200).count();
    assert_eq!(events["events"].as_array().unwrap().len(), stored);
    let (_, quarantine) = relay.api("/api/v1/quarantine?limit=1000").await;
    let quarantined = cases.iter().filter(|c| c["expect_status"] == 202).count();
    assert_eq!(quarantine["items"].as_array().unwrap().len(), quarantined);
    relay.stop().await;
}

async fn concurrent_retries_of_one_id_store_it_once(backend: Backend) {
    let relay = Arc::new(TestRelay::start_backend(backend).await);
    let body = fixture("events/appointment-created.json");
    let attempts = (0..20).map(|_| {
        let relay = relay.clone();
        let body = body.clone();
        tokio::spawn(async move { relay.deliver(body).await })
    });
    let mut statuses = Vec::new();
    for attempt in attempts {
        let (status, answer) = attempt.await.unwrap();
        assert_eq!(status, 200);
        statuses.push(answer["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        statuses.iter().filter(|s| *s == "accepted").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| *s == "duplicate").count(), 19);
    let (_, listed) = relay.api("/api/v1/events").await;
    let events = listed["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["delivery_count"], 20);
    Arc::into_inner(relay).unwrap().stop().await;
}

async fn a_quarantined_body_is_kept_once_and_listed(backend: Backend) {
    let relay = TestRelay::start_backend(backend).await;
    for _ in 0..3 {
        let (status, answer) = relay
            .deliver("{\"type\":\"appointments\",\"payload\":\"{}\"}")
            .await;
        assert_eq!(status, 202);
        assert_eq!(answer["error"], "missing field `id`");
    }
    let (_, listed) = relay.api("/api/v1/quarantine").await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["delivery_count"], 3);
    assert_eq!(
        items[0]["raw"],
        "{\"type\":\"appointments\",\"payload\":\"{}\"}"
    );
    assert_eq!(items[0]["sha256"].as_str().unwrap().len(), 64);
    relay.stop().await;
}

async fn events_page_by_cursor_and_filter_by_type(backend: Backend) {
    let relay = TestRelay::start_backend(backend).await;
    for name in EVENT_FIXTURES {
        relay.deliver(fixture(&format!("events/{name}.json"))).await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = relay
            .api(&format!("/api/v1/events?limit=3&cursor={cursor}"))
            .await;
        seen.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), EVENT_FIXTURES.len());
    let (_, appointments) = relay.api("/api/v1/events?type=appointments").await;
    assert_eq!(appointments["events"].as_array().unwrap().len(), 7);
    let (status, _) = relay.api("/api/v1/events?cursor=not-a-number").await;
    assert_eq!(status, 400);
    relay.stop().await;
}

async fn the_api_wants_the_bearer_token(backend: Backend) {
    let relay = TestRelay::start_backend(backend).await;
    let url = format!("{}/api/v1/events", relay.url);
    let missing = relay.client.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let wrong = relay
        .client
        .get(&url)
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = relay
        .client
        .get(&url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    relay.stop().await;
}

async fn probes_answer(backend: Backend) {
    let relay = TestRelay::start_backend(backend).await;
    let get = |path: &str| relay.client.get(format!("{}{path}", relay.url)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    relay.deliver(fixture("events/customer.json")).await;
    relay.deliver("not json").await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    for name in [
        "kaarma_relay_webhooks_received_total",
        "kaarma_relay_webhooks_accepted_total",
        "kaarma_relay_webhooks_quarantined_total",
        "kaarma_relay_ack_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    relay.stop().await;
}

/// A SQLite database on a filesystem with less room than `store.min_free_bytes` is not
/// ready: a full disk refuses every new event while the heartbeat row still rewrites in place.
#[tokio::test]
async fn readyz_fails_while_the_disk_has_less_room_than_the_floor() {
    let relay = TestRelay::start_with(|config| config.store.min_free_bytes = u64::MAX).await;
    let ready = relay
        .client
        .get(format!("{}/readyz", relay.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let answer: Value = ready.json().await.unwrap();
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("relay.db") && error.contains("below store.min_free_bytes"),
        "{error}"
    );
    relay.stop().await;
}

async fn the_allow_list_answers_403_and_the_path_is_configurable(backend: Backend) {
    let relay = TestRelay::start_on_backend(backend, |config| {
        config.mykaarma.allowed_ips = vec!["54.174.160.138/32".parse().unwrap()];
        config.mykaarma.path = "/hooks/myk".into();
    })
    .await;
    let body = fixture("events/customer.json");
    let response = relay
        .client
        .post(format!("{}/hooks/myk", relay.url))
        .header(
            SIGNATURE_HEADER,
            signature::sign(SECRET.as_bytes(), body.as_bytes()),
        )
        .header(AUTHORIZATION_HEADER, TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["reason"], "source_not_allowed");
    let (status, _) = relay.deliver("{}").await; // the default path is not served
    assert_eq!(status, 404);
    relay.stop().await;
}

/// A store whose commits can be made to fail, to prove nothing is acknowledged uncommitted.
struct FailingStore {
    inner: SqlStore,
    failing: AtomicBool,
    /// The arrival sequence number of an event whose processed outcome the store refuses
    /// (as PostgreSQL refuses a value it cannot keep); a failed outcome it takes. 0: none.
    refused_seq: AtomicI64,
}

#[async_trait]
impl Store for FailingStore {
    async fn insert_events(&self, batch: &[NewEvent]) -> Result<Vec<Insertion>, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        self.inner.insert_events(batch).await
    }
    async fn quarantine(&self, item: &NewQuarantine) -> Result<Insertion, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        self.inner.quarantine(item).await
    }
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.list_events(filter).await
    }
    async fn get_event(&self, t: &str, id: &str) -> Result<Option<EventRecord>, StoreError> {
        self.inner.get_event(t, id).await
    }
    async fn list_quarantine(&self, limit: u32) -> Result<Vec<QuarantineRecord>, StoreError> {
        self.inner.list_quarantine(limit).await
    }
    async fn check_writable(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        self.inner.check_writable().await
    }
    async fn pending_events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.pending_events(limit).await
    }
    async fn commit_processing(&self, batch: &[ProcessedEvent]) -> Result<(), StoreError> {
        let refused = self.refused_seq.load(Ordering::SeqCst);
        if batch.iter().any(|event| {
            event.seq == refused && !matches!(event.outcome, ProcessingOutcome::Failed(_))
        }) {
            return Err(StoreError::Database(sqlx::Error::Encode(
                "a value this store cannot keep".into(),
            )));
        }
        self.inner.commit_processing(batch).await
    }
    async fn requeue_failed(&self, t: &str, id: &str) -> Result<Requeue, StoreError> {
        self.inner.requeue_failed(t, id).await
    }
    async fn get_appointment(&self, uuid: &str) -> Result<Option<AppointmentRecord>, StoreError> {
        self.inner.get_appointment(uuid).await
    }
    async fn list_appointments(
        &self,
        filter: &AppointmentFilter,
    ) -> Result<Vec<AppointmentRecord>, StoreError> {
        self.inner.list_appointments(filter).await
    }
    async fn appointment_history(&self, uuid: &str) -> Result<Vec<HistoryRecord>, StoreError> {
        self.inner.appointment_history(uuid).await
    }
    async fn list_changes(&self, filter: &ChangeFilter) -> Result<Vec<ChangeRecord>, StoreError> {
        self.inner.list_changes(filter).await
    }
    async fn change_for_event(
        &self,
        t: &str,
        id: &str,
    ) -> Result<Option<ChangeRecord>, StoreError> {
        self.inner.change_for_event(t, id).await
    }
    async fn get_change(&self, id: &str) -> Result<Option<ChangeRecord>, StoreError> {
        self.inner.get_change(id).await
    }
    async fn claim_deliveries(
        &self,
        route: &str,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.inner
            .claim_deliveries(route, owner, now, lease_until, limit)
            .await
    }
    async fn finish_attempts(&self, attempts: &[FinishedAttempt]) -> Result<Vec<bool>, StoreError> {
        self.inner.finish_attempts(attempts).await
    }
    async fn next_delivery_due(&self, route: &str) -> Result<Option<i64>, StoreError> {
        self.inner.next_delivery_due(route).await
    }
    async fn prune(&self, before: i64, limit: u32) -> Result<Pruned, StoreError> {
        self.inner.prune(before, limit).await
    }
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.inner.list_deliveries(filter).await
    }
    async fn retry_delivery(&self, id: i64, now: i64) -> Result<Option<DeliveryState>, StoreError> {
        self.inner.retry_delivery(id, now).await
    }
    async fn requeue_changes(
        &self,
        route: &str,
        changes: &[ChangeRecord],
        now: i64,
    ) -> Result<u64, StoreError> {
        self.inner.requeue_changes(route, changes, now).await
    }
    async fn delivery_counts(&self) -> Result<Vec<DeliveryCount>, StoreError> {
        self.inner.delivery_counts().await
    }
    async fn lead_processing(&self) -> Result<bool, StoreError> {
        self.inner.lead_processing().await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

async fn a_store_that_cannot_commit_gets_503_and_then_recovers(backend: Backend) {
    let mut database = TestDatabase::create(backend).await;
    let dir = tempfile::tempdir_in(database.dir()).unwrap();
    let inner = SqlStore::connect(&database.url).await.unwrap();
    inner.migrate().await.unwrap();
    let store = Arc::new(FailingStore {
        inner,
        failing: AtomicBool::new(true),
        refused_seq: AtomicI64::new(0),
    });
    let relay = TestRelay::start_on(store.clone(), dir).await;
    let body = fixture("events/appointment-created.json");
    let (status, answer) = relay.deliver(body.clone()).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (503, Some("unavailable"))
    );
    let (status, _) = relay.deliver("not json").await;
    assert_eq!(status, 503, "quarantine also needs a commit");
    let ready = relay
        .client
        .get(format!("{}/readyz", relay.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let (_, listed) = relay.api("/api/v1/events").await;
    assert_eq!(
        listed["events"].as_array().unwrap().len(),
        0,
        "nothing was stored"
    );

    store.failing.store(false, Ordering::SeqCst);
    let (status, answer) = relay.deliver(body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "the retry lands"
    );
    relay.stop().await;
}

/// The store refuses one event's processed outcome for what is in it: that event fails with
/// the reason, and the events around it, in the same batch or not, are processed.
async fn an_event_the_store_refuses_fails_alone_and_the_stream_goes_on(backend: Backend) {
    let mut database = TestDatabase::create(backend).await;
    let dir = tempfile::tempdir_in(database.dir()).unwrap();
    let inner = SqlStore::connect(&database.url).await.unwrap();
    inner.migrate().await.unwrap();
    // A fresh database numbers arrivals from 1: the store refuses the second event.
    let store = Arc::new(FailingStore {
        inner,
        failing: AtomicBool::new(false),
        refused_seq: AtomicI64::new(2),
    });
    let relay = TestRelay::start_on(store.clone(), dir).await;
    let bodies: Vec<String> = ["appointment-created", "appointment-rescheduled", "customer"]
        .iter()
        .map(|name| fixture(&format!("events/{name}.json")))
        .collect();
    for body in &bodies {
        let (status, answer) = relay.deliver(body.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    relay.settle().await;
    let (_, listed) = relay.api("/api/v1/events").await;
    let states = listed["events"].as_array().unwrap().clone();
    let ids: Vec<String> = bodies
        .iter()
        .map(|body| {
            serde_json::from_str::<Value>(body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let state = |id: &str| {
        states
            .iter()
            .find(|event| event["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(state(&ids[0])["state"], "processed");
    let refused = state(&ids[1]);
    assert_eq!(refused["state"], "failed", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("the store refused what processing produced"),
        "{refused}"
    );
    assert_eq!(state(&ids[2])["state"], "processed");
    relay.stop().await;
}
