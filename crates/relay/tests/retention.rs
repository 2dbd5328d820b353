//! Retention over real interfaces: a relay on a real port and database (both backends)
//! delivering to an HTTP receiver, then swept as `[retention]` would sweep it once its
//! records are old enough. What is finished goes; open work, failed events, event rows,
//! appointments and their history stay.

mod harness;
mod receiver;

use std::time::{Duration, Instant};

use harness::{Backend, TestRelay, backend_tests, fixture};
use kaarma_relay::clock;
use kaarma_relay::delivery::RouteConfig;
use kaarma_relay::retention;
use kaarma_relay::store::{Pruned, SqlStore};
use receiver::{Receiver, SECRET};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

backend_tests!(finished_records_go_and_open_work_stays);

/// Its changes are delivered at once.
const DELIVERED: &str = "retention-delivered";
/// The receiver refuses its changes until told otherwise.
const REFUSED: &str = "retention-refused";

/// Event `n` of appointment `uuid`: 0 creates it, each later one moves its start.
fn appointment_event(uuid: &str, n: u32) -> String {
    let name = if n == 0 {
        "appointment-created"
    } else {
        "appointment-rescheduled"
    };
    let mut envelope: Value =
        serde_json::from_str(&fixture(&format!("events/{name}.json"))).unwrap();
    let mut payload: Value = serde_json::from_str(envelope["payload"].as_str().unwrap()).unwrap();
    payload["uuid"] = json!(uuid);
    payload["appointmentInfoResponse"]["uuid"] = json!(uuid);
    payload["appointmentInfoResponse"]["startTime"] =
        json!(format!("2025-03-{:02}T10:00:00", n + 1));
    envelope["id"] = json!(format!("{uuid}-{n}"));
    envelope["timestamp"] = json!(1_736_933_400_000 + i64::from(n) * 60_000);
    envelope["payload"] = json!(payload.to_string());
    envelope.to_string()
}

/// A well-formed envelope whose payload processing cannot read: stored, then failed.
fn unreadable_event() -> String {
    let mut envelope: Value =
        serde_json::from_str(&fixture("events/appointment-created.json")).unwrap();
    envelope["id"] = json!("retention-unreadable");
    envelope["payload"] = json!("{not json");
    envelope.to_string()
}

fn http_route(url: &str) -> RouteConfig {
    toml::from_str(&format!(
        r#"
        name = "crm"
        [sink]
        type = "http"
        url = "{url}"
        secret = "{SECRET}"
        [retry]
        initial_backoff_ms = 20
        max_backoff_secs = 1
        max_attempts = 1000
        "#
    ))
    .unwrap()
}

/// Sweeps everything finished before `before`, as the background task does.
async fn sweep(store: &SqlStore, before: i64) -> Pruned {
    retention::sweep(store, before, &CancellationToken::new())
        .await
        .unwrap()
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The subjects of every change still stored, in stream order.
async fn change_subjects(relay: &TestRelay) -> Vec<String> {
    let (status, page) = relay.api("/api/v1/changes?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["subject"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn deliveries_in(relay: &TestRelay, state: &str) -> usize {
    let (status, page) = relay
        .api(&format!("/api/v1/deliveries?state={state}&limit=1000"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["deliveries"].as_array().unwrap().len()
}

async fn finished_records_go_and_open_work_stays(backend: Backend) {
    let receiver = Receiver::start().await;
    receiver.fail_appointment(REFUSED, true);
    let url = receiver.url.clone();
    let relay = TestRelay::start_on_backend(backend, move |config| {
        config.routes = vec![http_route(&url)]
    })
    .await;
    let started = clock::now_millis();
    let mut bodies: Vec<String> = (0..3).map(|n| appointment_event(DELIVERED, n)).collect();
    bodies.extend((0..2).map(|n| appointment_event(REFUSED, n)));
    bodies.push(unreadable_event());
    for body in &bodies {
        let (status, answer) = relay.deliver(body.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, answer) = relay.deliver("not an envelope").await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("quarantined"))
    );
    relay.settle().await;
    wait_until("the delivered appointment's 3 changes", async || {
        deliveries_in(&relay, "delivered").await == 3
    })
    .await;
    let subjects_before = change_subjects(&relay).await;
    assert_eq!(subjects_before.len(), 5, "{subjects_before:?}");
    let store = relay.open_store().await;

    // Nothing finished before the relay started: nothing goes.
    assert_eq!(sweep(&store, started).await, Pruned::default());

    // Everything finished so far is old enough.
    let pruned = sweep(&store, clock::now_millis() + 1).await;
    assert_eq!(
        pruned,
        Pruned {
            event_bodies: 5,
            deliveries: 3,
            changes: 3,
            quarantine: 1,
        },
        "the processed events' bodies, the delivered deliveries and their changes, the \
         quarantined body; not the failed event's body nor the refused appointment's changes"
    );
    assert_eq!(
        change_subjects(&relay).await,
        vec![REFUSED.to_owned(); 2],
        "the changes still to deliver stay"
    );
    assert_eq!(deliveries_in(&relay, "delivered").await, 0);

    // The event rows stay, without their bodies, and still deduplicate retries.
    let (status, event) = relay
        .api(&format!("/api/v1/events/appointments/{DELIVERED}-0"))
        .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["state"], "processed");
    assert_eq!(event["raw"], Value::Null);
    let (status, answer) = relay.deliver(bodies[0].clone()).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("duplicate"))
    );
    let (_, failed) = relay
        .api("/api/v1/events/appointments/retention-unreadable")
        .await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(
        failed["raw"],
        bodies[5].as_str(),
        "a failed event keeps its body"
    );
    let (_, quarantine) = relay.api("/api/v1/quarantine").await;
    assert_eq!(quarantine["items"].as_array().map(Vec::len), Some(0));

    // The appointment and its history stay.
    let (status, history) = relay
        .api(&format!("/api/v1/appointments/{DELIVERED}/history"))
        .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(
        history["history"].as_array().map(Vec::len),
        Some(3),
        "{history}"
    );

    // A second sweep finds nothing; once the rest is delivered, it goes too.
    assert_eq!(
        sweep(&store, clock::now_millis() + 1).await,
        Pruned::default()
    );
    receiver.fail_appointment(REFUSED, false);
    wait_until("the refused appointment's 2 changes", async || {
        deliveries_in(&relay, "delivered").await == 2
    })
    .await;
    let pruned = sweep(&store, clock::now_millis() + 1).await;
    assert_eq!((pruned.deliveries, pruned.changes), (2, 2));
    assert!(change_subjects(&relay).await.is_empty());
    relay.stop().await;
}
