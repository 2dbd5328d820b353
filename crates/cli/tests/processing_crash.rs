//! SIGKILL while the processor has a backlog, restart, and the end state is the state an
//! uninterrupted relay reaches from the same events in the same order: nothing skipped,
//! nothing applied twice, history identical entry for entry.

mod relay_process;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kaarma_sim::{LoadOptions, LoadPlan};
use mykaarma::signature::{self, AUTHORIZATION_HEADER, SIGNATURE_HEADER};
use relay_process::{ADMIN, RelayProcess, SECRET, TOKEN, serve};
use serde_json::Value;

/// Posts `body` until the relay acknowledges it.
async fn deliver(client: &reqwest::Client, url: &str, body: Bytes) {
    for _ in 0..200 {
        let sent = client
            .post(url)
            .header("content-type", "text/plain")
            .header(SIGNATURE_HEADER, signature::sign(SECRET.as_bytes(), &body))
            .header(AUTHORIZATION_HEADER, TOKEN)
            .body(body.clone())
            .send()
            .await;
        if sent.is_ok_and(|response| response.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the relay never acknowledged an event");
}

async fn get(relay: &RelayProcess, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", relay.url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// How many stored events are still waiting for the processor.
async fn pending(relay: &RelayProcess) -> usize {
    let mut pending = 0;
    let mut cursor = String::new();
    loop {
        let page = get(relay, &format!("/api/v1/events?limit=1000&cursor={cursor}")).await;
        pending += page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["state"] == "pending")
            .count();
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return pending,
        }
    }
}

async fn wait_until_processed(relay: &RelayProcess) {
    for _ in 0..600 {
        if pending(relay).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("events still pending after 30 s");
}

/// Every appointment's state and history, without the relay's own clock readings.
async fn snapshot(relay: &RelayProcess) -> Vec<(Value, Value)> {
    let mut snapshot = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(
            relay,
            &format!("/api/v1/appointments?limit=1000&cursor={cursor}"),
        )
        .await;
        for appointment in page["appointments"].as_array().unwrap() {
            let uuid = appointment["uuid"].as_str().unwrap();
            let mut state = appointment.clone();
            state.as_object_mut().unwrap().remove("updated_at");
            let mut history = get(relay, &format!("/api/v1/appointments/{uuid}/history")).await;
            for entry in history["history"].as_array_mut().unwrap() {
                entry.as_object_mut().unwrap().remove("recorded_at");
            }
            snapshot.push((state, history));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return snapshot,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_processing_ends_in_the_state_of_an_uninterrupted_run() {
    let mut options = LoadOptions::new("http://127.0.0.1:9/unused", SECRET, 120);
    options.seed = 11;
    options.start_ms = Some(1_767_225_600_000);
    let plan = LoadPlan::generate(&options).unwrap();
    let bodies: Vec<Bytes> = plan
        .events
        .iter()
        .map(|planned| planned.event.body.clone())
        .collect();
    let client = reqwest::Client::new();

    // Relay A: one event per processing transaction, so processing lags ingest, and a
    // SIGKILL after each quarter of the events.
    let crashed_dir = tempfile::tempdir().unwrap();
    let mut kills_with_backlog = 0;
    for quarter in bodies.chunks(bodies.len().div_ceil(4)) {
        let mut command = serve(crashed_dir.path());
        command.env("KAARMA_RELAY_PROCESSING__BATCH_SIZE", "1");
        let mut relay = RelayProcess::start(command).await;
        let url = relay.webhook_url();
        futures::stream::iter(quarter.iter().cloned())
            .for_each_concurrent(16, |body| deliver(&client, &url, body))
            .await;
        if pending(&relay).await > 0 {
            kills_with_backlog += 1;
        }
        relay.stop(libc::SIGKILL).await;
    }
    assert!(
        kills_with_backlog >= 2,
        "the kills should land while the processor has work"
    );
    let crashed = RelayProcess::start(serve(crashed_dir.path())).await;
    wait_until_processed(&crashed).await;

    // Relay B: the same events in A's arrival order, never interrupted.
    let calm_dir = tempfile::tempdir().unwrap();
    let calm = RelayProcess::start(serve(calm_dir.path())).await;
    let mut stored = crashed.stored_events().await;
    stored.sort_by_key(|event| event.seq);
    assert_eq!(
        stored.len(),
        bodies.len(),
        "every event stored exactly once"
    );
    for event in &stored {
        let detail = get(
            &crashed,
            &format!("/api/v1/events/{}/{}", event.event_type, event.id),
        )
        .await;
        let raw = Bytes::from(detail["raw"].as_str().unwrap().to_owned());
        deliver(&client, &calm.webhook_url(), raw).await;
    }
    wait_until_processed(&calm).await;

    let after_crashes = snapshot(&crashed).await;
    let uninterrupted = snapshot(&calm).await;
    assert_eq!(after_crashes.len(), options.appointments);
    assert_eq!(after_crashes.len(), uninterrupted.len());
    for ((state, history), (calm_state, calm_history)) in after_crashes.iter().zip(&uninterrupted) {
        assert_eq!(state, calm_state);
        assert_eq!(history, calm_history, "history of {}", state["uuid"]);
    }
    let entries: usize = after_crashes
        .iter()
        .map(|(_, history)| history["history"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        entries,
        bodies.len(),
        "one history entry per event: none skipped, none twice"
    );
}
