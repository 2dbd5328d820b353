//! What only the [`Store`] trait can show: several handles on one database racing each other,
//! as several relay replicas do on one PostgreSQL. Each case runs on both backends (two
//! SQLite handles share one file the way two processes would).
//!
//! - the same key inserted through two handles at once is stored once;
//! - batches that overlap in opposite orders, and duplicate counting against a running
//!   processor, commit without deadlocks;
//! - two processors on one database never apply an event twice, even without the
//!   processing lock; the lock itself has one holder per database and passes on when it
//!   closes;
//! - workers on two handles never lease one delivery twice, only lease a subject's oldest
//!   undelivered change, and take over a lease that ran out.

mod harness;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use harness::{Backend, TestDatabase, backend_tests, fixture};
use kaarma_relay::Config;
use kaarma_relay::delivery::{RouteConfig, Routes};
use kaarma_relay::pipeline::Processor;
use kaarma_relay::store::{
    AttemptResult, DeliveryFilter, DeliveryState, EventFilter, EventState, FinishedAttempt,
    Insertion, NewEvent, SqlStore, Store, StoreError,
};
use serde_json::{Value, json};
use tokio::sync::{Barrier, Notify};

backend_tests!(
    one_key_from_two_handles_at_once_is_stored_once,
    overlapping_batches_in_opposite_orders_both_commit,
    duplicates_counted_during_processing_do_not_deadlock,
    two_processors_never_apply_an_event_twice,
    one_handle_at_a_time_leads_processing,
    two_workers_never_lease_one_delivery,
    a_lease_that_ran_out_is_taken_over,
);

/// A migrated database and two independent handles on it.
async fn two_handles(backend: Backend) -> (TestDatabase, Arc<SqlStore>, Arc<SqlStore>) {
    let database = TestDatabase::create(backend).await;
    let first = SqlStore::connect(&database.url).await.unwrap();
    first.migrate().await.unwrap();
    let second = SqlStore::connect(&database.url).await.unwrap();
    (database, Arc::new(first), Arc::new(second))
}

/// Event `n` of appointment `uuid` as stored: 0 creates it, each later one moves its start.
fn appointment_event(uuid: &str, n: u32) -> NewEvent {
    let mut envelope: Value =
        serde_json::from_str(&fixture("events/appointment-rescheduled.json")).unwrap();
    let mut payload: Value = serde_json::from_str(envelope["payload"].as_str().unwrap()).unwrap();
    payload["uuid"] = json!(uuid);
    payload["appointmentInfoResponse"]["uuid"] = json!(uuid);
    payload["appointmentInfoResponse"]["startTime"] =
        json!(format!("2025-02-{:02}T10:00:00", n % 28 + 1));
    let timestamp = 1_736_933_400_000 + i64::from(n) * 60_000;
    envelope["id"] = json!(format!("{uuid}-{n}"));
    envelope["timestamp"] = json!(timestamp);
    envelope["payload"] = json!(payload.to_string());
    NewEvent {
        event_type: "appointments".into(),
        event_id: format!("{uuid}-{n}"),
        occurred_at: Some(timestamp),
        dealer_uuid: None,
        department_uuid: None,
        received_at: kaarma_relay::clock::now_millis(),
        raw: Bytes::from(envelope.to_string()),
    }
}

/// A processor on `store` with the default rules and `routes`.
fn processor(store: Arc<SqlStore>, routes: Arc<Routes>) -> Processor {
    let config = Config::default();
    Processor::new(
        store,
        config.processing.rules(),
        routes,
        Arc::new(Notify::new()),
        16,
    )
}

/// One route that takes every change (its sink is never called here).
fn routes() -> Arc<Routes> {
    let route: RouteConfig =
        toml::from_str("name = \"all\"\nsink = { type = \"stdout\" }").unwrap();
    Arc::new(Routes::build(&[route]).unwrap())
}

/// Every stored event, in arrival order.
async fn all_events(store: &SqlStore) -> Vec<kaarma_relay::store::EventRecord> {
    let mut events = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_events(&EventFilter {
                event_type: None,
                after_seq: after,
                limit: 1000,
            })
            .await
            .unwrap();
        let Some(last) = page.last() else {
            return events;
        };
        after = Some(last.seq);
        events.extend(page);
    }
}

async fn one_key_from_two_handles_at_once_is_stored_once(backend: Backend) {
    let (_database, first, second) = two_handles(backend).await;
    for round in 0..50 {
        let event = appointment_event("race", round);
        let barrier = Arc::new(Barrier::new(2));
        let insert = |store: Arc<SqlStore>| {
            let event = event.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.insert_events(&[event]).await.unwrap()[0]
            })
        };
        let (a, b) = (insert(first.clone()), insert(second.clone()));
        let mut outcomes = vec![a.await.unwrap(), b.await.unwrap()];
        outcomes.sort_by_key(|outcome| *outcome == Insertion::Duplicate);
        assert_eq!(
            outcomes,
            [Insertion::Accepted, Insertion::Duplicate],
            "round {round}"
        );
    }
    let events = all_events(&first).await;
    assert_eq!(events.len(), 50);
    assert!(events.iter().all(|event| event.delivery_count == 2));
}

async fn overlapping_batches_in_opposite_orders_both_commit(backend: Backend) {
    let (_database, first, second) = two_handles(backend).await;
    for round in 0..20 {
        let batch: Vec<NewEvent> = (0..32)
            .map(|n| appointment_event(&format!("overlap-{round}"), n))
            .collect();
        let reversed: Vec<NewEvent> = batch.iter().rev().cloned().collect();
        let barrier = Arc::new(Barrier::new(2));
        let insert = |store: Arc<SqlStore>, batch: Vec<NewEvent>| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.insert_events(&batch).await
            })
        };
        let a = insert(first.clone(), batch);
        let b = insert(second.clone(), reversed);
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let (a, b) = (
            a.unwrap_or_else(|error| panic!("round {round}: {error}")),
            b.unwrap_or_else(|error| panic!("round {round}: {error}")),
        );
        // Each key is accepted by exactly one of the two; order of outcomes is batch order.
        for n in 0..32 {
            let pair = (a[n], b[31 - n]);
            assert!(
                matches!(
                    pair,
                    (Insertion::Accepted, Insertion::Duplicate)
                        | (Insertion::Duplicate, Insertion::Accepted)
                ),
                "round {round} event {n}: {pair:?}"
            );
        }
    }
    let events = all_events(&first).await;
    assert_eq!(events.len(), 20 * 32);
    assert!(events.iter().all(|event| event.delivery_count == 2));
}

async fn duplicates_counted_during_processing_do_not_deadlock(backend: Backend) {
    let (_database, first, second) = two_handles(backend).await;
    let routes = routes();
    let processor = processor(first.clone(), routes);
    for round in 0..20 {
        let batch: Vec<NewEvent> = (0..16)
            .map(|n| appointment_event(&format!("count-{round}-{}", n % 4), n))
            .collect();
        second.insert_events(&batch).await.unwrap();
        // myKaarma's retries of the same events, newest first, while they are processed.
        let retries: Vec<NewEvent> = batch.iter().rev().cloned().collect();
        let barrier = Arc::new(Barrier::new(2));
        let counting = {
            let barrier = barrier.clone();
            let second = second.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                second.insert_events(&retries).await
            })
        };
        barrier.wait().await;
        let processed = processor.process_batch().await;
        let counted = counting.await.unwrap();
        assert_eq!(
            processed.unwrap_or_else(|error| panic!("round {round}: processing: {error}")),
            16
        );
        let counted = counted.unwrap_or_else(|error| panic!("round {round}: ingest: {error}"));
        assert!(
            counted
                .iter()
                .all(|outcome| *outcome == Insertion::Duplicate)
        );
    }
    let events = all_events(&first).await;
    assert!(events.iter().all(|event| event.delivery_count == 2));
    assert!(
        events
            .iter()
            .all(|event| event.state == EventState::Processed)
    );
}

async fn two_processors_never_apply_an_event_twice(backend: Backend) {
    let (_database, first, second) = two_handles(backend).await;
    let appointments = 8;
    let versions = 12;
    let mut events = Vec::new();
    for n in 0..versions {
        for a in 0..appointments {
            events.push(appointment_event(&format!("appointment-{a}"), n));
        }
    }
    first.insert_events(&events).await.unwrap();
    // Both process at once, without asking for the processing lock: the per-event and
    // per-version guards alone must keep every event applied once, in version order.
    let routes = routes();
    let run = |store: Arc<SqlStore>| {
        let processor = processor(store, routes.clone());
        tokio::spawn(async move {
            let (mut processed, mut conflicts) = (0, 0);
            loop {
                match processor.process_batch().await {
                    Ok(0) => return (processed, conflicts),
                    Ok(count) => processed += count,
                    Err(StoreError::Conflict(_)) => conflicts += 1,
                    // A serialization failure of the losing transaction is the same refusal.
                    Err(StoreError::Database(error)) => {
                        conflicts += 1;
                        eprintln!("processor: {error}");
                    }
                    Err(error) => panic!("processing failed: {error}"),
                }
            }
        })
    };
    let (a, b) = (run(first.clone()), run(second.clone()));
    let ((a, a_conflicts), (b, b_conflicts)) = (a.await.unwrap(), b.await.unwrap());
    eprintln!("processed {a} + {b}, conflicts {a_conflicts} + {b_conflicts}");
    assert_eq!(a + b, events.len(), "every event committed by exactly one");

    let stored = all_events(&first).await;
    assert!(
        stored
            .iter()
            .all(|event| event.state == EventState::Processed)
    );
    for a in 0..appointments {
        let uuid = format!("appointment-{a}");
        let history = first.appointment_history(&uuid).await.unwrap();
        assert_eq!(
            history.len(),
            versions as usize,
            "{uuid}: one entry per event"
        );
        let ids: HashSet<&str> = history
            .iter()
            .map(|entry| entry.event_id.as_str())
            .collect();
        assert_eq!(ids.len(), history.len(), "{uuid}: an event recorded twice");
        let appointment = first.get_appointment(&uuid).await.unwrap().unwrap();
        assert_eq!(
            appointment.version.event_id,
            format!("{uuid}-{}", versions - 1),
            "{uuid}: the newest version is applied"
        );
        // Processed in arrival (= version) order, nothing is stale.
        assert!(
            history
                .iter()
                .all(|entry| entry.classification.kind.as_str() != "stale"),
            "{uuid}: {history:?}"
        );
    }
    let deliveries = first
        .list_deliveries(&DeliveryFilter {
            route: None,
            state: None,
            subject: None,
            after_id: None,
            limit: 10_000,
        })
        .await
        .unwrap();
    assert_eq!(deliveries.len(), events.len(), "one delivery per change");
}

async fn one_handle_at_a_time_leads_processing(backend: Backend) {
    let (_database, first, second) = two_handles(backend).await;
    assert!(first.lead_processing().await.unwrap());
    assert!(
        first.lead_processing().await.unwrap(),
        "asking again keeps it"
    );
    match backend {
        // One process owns a SQLite file: every handle leads.
        Backend::Sqlite => assert!(second.lead_processing().await.unwrap()),
        Backend::Postgres => {
            assert!(!second.lead_processing().await.unwrap());
            first.close().await;
            assert!(
                second.lead_processing().await.unwrap(),
                "the lock passes on when its holder closes"
            );
        }
    }
}

/// Stores and processes `versions` events for each of `appointments` appointments.
async fn changes_to_deliver(store: &Arc<SqlStore>, appointments: u32, versions: u32) {
    let mut events = Vec::new();
    for n in 0..versions {
        for a in 0..appointments {
            events.push(appointment_event(&format!("appointment-{a}"), n));
        }
    }
    store.insert_events(&events).await.unwrap();
    let processor = processor(store.clone(), routes());
    while processor.process_batch().await.unwrap() > 0 {}
}

async fn two_workers_never_lease_one_delivery(backend: Backend) {
    let (_database, first, second) = two_handles(backend).await;
    let (appointments, versions) = (10, 5);
    changes_to_deliver(&first, appointments, versions).await;
    // Two workers (one per handle) claim and deliver concurrently until nothing is left; each
    // records the changes it delivered, in order.
    let delivered = Arc::new(std::sync::Mutex::new(Vec::<(i64, String, i64)>::new()));
    let work = |store: Arc<SqlStore>, name: &'static str| {
        let delivered = delivered.clone();
        tokio::spawn(async move {
            let mut idle = 0;
            for claim in 0.. {
                let now = kaarma_relay::clock::now_millis();
                let owner = format!("{name}#{claim}");
                let claimed = store
                    .claim_deliveries("all", &owner, now, now + 60_000, 4)
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    idle += 1;
                    if idle > 50 {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                idle = 0;
                let subjects: HashSet<_> = claimed.iter().map(|c| &c.delivery.subject).collect();
                assert_eq!(
                    subjects.len(),
                    claimed.len(),
                    "one claim took two changes of a subject"
                );
                let mut attempts = Vec::new();
                for claimed in claimed {
                    delivered.lock().unwrap().push((
                        claimed.delivery.id,
                        claimed.delivery.subject.clone().unwrap(),
                        claimed.delivery.change_seq,
                    ));
                    attempts.push(FinishedAttempt {
                        id: claimed.delivery.id,
                        lease_owner: claimed.lease_owner,
                        result: AttemptResult::Delivered { status: Some(200) },
                        finished_at: kaarma_relay::clock::now_millis(),
                    });
                }
                let recorded = store.finish_attempts(&attempts).await.unwrap();
                assert!(
                    recorded.iter().all(|recorded| *recorded),
                    "the leases were still held"
                );
            }
        })
    };
    let (a, b) = (work(first.clone(), "one"), work(second.clone(), "two"));
    a.await.unwrap();
    b.await.unwrap();
    let delivered = delivered.lock().unwrap().clone();
    let ids: HashSet<i64> = delivered.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids.len(), delivered.len(), "a delivery was leased twice");
    assert_eq!(
        ids.len() as u32,
        appointments * versions,
        "every delivery went out"
    );
    let mut by_subject: HashMap<&str, Vec<i64>> = HashMap::new();
    for (_, subject, seq) in &delivered {
        by_subject.entry(subject).or_default().push(*seq);
    }
    for (subject, seqs) in by_subject {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "{subject}: delivered out of order");
    }
}

async fn a_lease_that_ran_out_is_taken_over(backend: Backend) {
    let (_database, first, second) = two_handles(backend).await;
    changes_to_deliver(&first, 1, 2).await;
    let now = kaarma_relay::clock::now_millis();
    let claimed = first
        .claim_deliveries("all", "crashed#0", now, now + 200, 10)
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        1,
        "only the subject's oldest change is claimable"
    );
    let leased = claimed[0].delivery.id;
    let again = second
        .claim_deliveries("all", "other#0", now + 1, now + 60_000, 10)
        .await
        .unwrap();
    assert!(again.is_empty(), "a live lease is not taken");
    let later = now + 300;
    let taken = second
        .claim_deliveries("all", "other#1", later, later + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(
        taken[0].delivery.id, leased,
        "the expired lease is taken over"
    );
    let delivered_by = |owner: &str| FinishedAttempt {
        id: leased,
        lease_owner: owner.into(),
        result: AttemptResult::Delivered { status: Some(200) },
        finished_at: later,
    };
    let late = first
        .finish_attempts(&[delivered_by("crashed#0")])
        .await
        .unwrap();
    assert_eq!(late, [false], "the old owner's outcome is not recorded");
    let recorded = second
        .finish_attempts(&[delivered_by("other#1")])
        .await
        .unwrap();
    assert_eq!(recorded, [true]);
    let delivered = first
        .list_deliveries(&DeliveryFilter {
            route: Some("all".into()),
            state: Some(DeliveryState::Delivered),
            subject: None,
            after_id: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].attempts, 1, "one recorded attempt");
}
