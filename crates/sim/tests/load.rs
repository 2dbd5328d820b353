//! The load generator: determinism, the meaning of every event it plans, and the end-to-end
//! convergence check against a faithful receiver with every fault on.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use kaarma_sim::ids::{is_entity_id, is_hex_id};
use kaarma_sim::{Difference, Faults, LoadOptions, LoadPlan, Truth, verify};
use mykaarma::{AppointmentEvent, Envelope, EnvelopeFormat};
use serde_json::{Value, json};
use support::{FakeRelay, Recorder};

const START_MS: i64 = 1_767_261_600_000; // 2026-01-01T10:00:00Z

fn options(target: &str, appointments: usize, seed: u64) -> LoadOptions {
    let mut options = LoadOptions::new(target, "partner-username", appointments);
    options.seed = seed;
    options.start_ms = Some(START_MS);
    options.rate = 200.0;
    options.time_scale = 0.01;
    options
}

fn bodies(plan: &LoadPlan) -> Vec<String> {
    plan.events
        .iter()
        .map(|planned| String::from_utf8(planned.event.body.to_vec()).unwrap())
        .collect()
}

#[test]
fn the_same_seed_plans_the_same_events() {
    let faults: Faults = "duplicates=0.3,reorder=0.3,drop-ack=0.2,corrupt=0.1,legacy=0.5"
        .parse()
        .unwrap();
    let plan = |seed| {
        let mut options = options("http://unused", 30, seed);
        options.faults = faults.clone();
        LoadPlan::generate(&options).unwrap()
    };
    let (first, again, other) = (plan(42), plan(42), plan(43));
    assert_eq!(bodies(&first), bodies(&again));
    assert_eq!(first.events, again.events, "fault decisions too");
    assert_eq!(first.truth, again.truth);
    assert_ne!(bodies(&first), bodies(&other));
}

#[test]
fn faults_do_not_change_the_appointments() {
    let plain = LoadPlan::generate(&options("http://unused", 20, 5)).unwrap();
    let mut noisy = options("http://unused", 20, 5);
    noisy.faults = "duplicates=0.5,reorder=0.5,legacy=0.5,fail-first=1"
        .parse()
        .unwrap();
    let noisy = LoadPlan::generate(&noisy).unwrap();
    assert_eq!(plain.truth, noisy.truth);
}

/// Every key §3 and §8.2 of the field reference document, which must be present (null or not).
const PAYLOAD_KEYS: &[&str] = &[
    "uuid",
    "departmentUuid",
    "subscriberName",
    "event",
    "eventCreationDateTime",
    "updatedByUserUuid",
    "serviceAppointmentRequestLoanerBookingList",
    "appointmentInfoResponse",
];
const INFO_KEYS: &[&str] = &[
    "uuid",
    "status",
    "newStatus",
    "date",
    "startTime",
    "endTime",
    "platform",
    "appointmentSource",
    "appointmentKey",
    "recall",
    "assignedAdvisorUuid",
    "dealerUuid",
    "dispatchCode",
    "creatorAdvisorUuid",
    "preferredDate",
    "isCancelled",
    "comments",
    "internalNotes",
    "teamUuid",
    "reminderCount",
    "customerVehicleInspectionId",
    "customerInformation",
    "vehicleInformation",
    "orderInformation",
    "appointmentCommunicationPreferences",
    "transportOption",
    "serviceList",
    "sarmetaData",
];
const CUSTOMER_KEYS: &[&str] = &[
    "firstName",
    "lastName",
    "company",
    "isBusiness",
    "customerKey",
    "confirmationPhone",
    "confirmationEmail",
    "custLocale",
    "uuid",
];
const VEHICLE_KEYS: &[&str] = &[
    "vin",
    "vehicleKey",
    "model",
    "year",
    "brand",
    "trim",
    "engine",
    "mileage",
    "dealerUuid",
    "uuid",
];

fn assert_keys(object: &Value, keys: &[&str], what: &str) {
    for key in keys {
        assert!(object.get(key).is_some(), "{what} lacks {key}: {object}");
    }
}

#[test]
fn every_planned_event_means_what_the_contract_says() {
    let plan = LoadPlan::generate(&options("http://unused", 80, 9)).unwrap();
    let dms_users: HashSet<String> = plan
        .world
        .departments()
        .map(|d| d.dms_user_uuid.clone())
        .collect();
    let mut ids = HashSet::new();
    let mut by_appointment: BTreeMap<String, Vec<(i64, AppointmentEvent)>> = BTreeMap::new();
    let mut names = BTreeSet::new();
    for planned in &plan.events {
        let envelope = Envelope::parse(&planned.event.body).unwrap();
        assert_eq!(envelope.format, EnvelopeFormat::Current);
        let id = uuid::Uuid::parse_str(&envelope.id).unwrap();
        assert_eq!(id.get_version_num(), 4);
        assert!(ids.insert(envelope.id.clone()), "event ids are unique");
        assert!(is_hex_id(envelope.dealer_uuid.as_deref().unwrap()));
        assert!(is_hex_id(envelope.department_uuid.as_deref().unwrap()));
        assert_eq!(
            planned.due.as_millis() as i64,
            envelope.timestamp.unwrap() - START_MS
        );

        let raw: Value = serde_json::from_str(&envelope.payload.text().unwrap()).unwrap();
        assert_keys(&raw, PAYLOAD_KEYS, "payload");
        let info = &raw["appointmentInfoResponse"];
        assert_keys(info, INFO_KEYS, "appointmentInfoResponse");
        assert_keys(
            &info["customerInformation"],
            CUSTOMER_KEYS,
            "customerInformation",
        );
        assert_keys(
            &info["vehicleInformation"],
            VEHICLE_KEYS,
            "vehicleInformation",
        );
        let vin = info["vehicleInformation"]["vin"].as_str().unwrap();
        kaarma_sim::world::Vin::parse(vin).unwrap();
        for item in info["serviceList"].as_array().unwrap() {
            assert!(
                item["opcode"].is_string()
                    && item["description"].is_string()
                    && item["price"].is_number()
            );
        }

        let event = envelope.appointment().unwrap();
        let info = event.appointment_info_response.clone().unwrap();
        let uuid = info.uuid.clone().unwrap();
        assert!(is_entity_id(&uuid));
        assert_eq!(event.uuid.as_deref(), Some(uuid.as_str()));
        assert_eq!(info.status, info.new_status, "status and newStatus agree");
        assert_eq!(
            info.end_time.as_ref().unwrap().naive() - info.start_time.as_ref().unwrap().naive(),
            chrono::TimeDelta::seconds(30 * 60 - 1)
        );
        names.insert(event.event.clone().unwrap().to_string());
        by_appointment
            .entry(uuid)
            .or_default()
            .push((envelope.timestamp.unwrap(), event));
    }
    assert_eq!(
        names,
        [
            "CANCELLED",
            "DELETED",
            "RESCHEDULED",
            "SCHEDULED",
            "UPDATED"
        ]
        .map(String::from)
        .into(),
        "a realistic mix"
    );

    let truth: BTreeMap<&str, _> = plan
        .truth
        .appointments
        .iter()
        .map(|t| (t.uuid.as_str(), t))
        .collect();
    assert_eq!(truth.len(), 80);
    assert_eq!(by_appointment.len(), 80);
    for (uuid, events) in &by_appointment {
        let timestamps: Vec<i64> = events.iter().map(|(at, _)| *at).collect();
        assert!(
            timestamps.windows(2).all(|pair| pair[0] < pair[1]),
            "{uuid}: strictly increasing"
        );
        let name = |event: &AppointmentEvent| event.event.clone().unwrap().to_string();
        let info = |event: &AppointmentEvent| event.appointment_info_response.clone().unwrap();
        let (_, first) = &events[0];
        assert_eq!(name(first), "SCHEDULED");
        assert_eq!(info(first).status.unwrap().as_str(), "SCHEDULED");
        assert_eq!(info(first).appointment_key, None);
        assert_eq!(info(first).is_cancelled, Some(false));
        let mut key: Option<String> = None;
        for (index, (_, event)) in events.iter().enumerate() {
            let state = info(event);
            let from_dms = dms_users.contains(event.updated_by_user_uuid.as_deref().unwrap());
            match name(event).as_str() {
                "UPDATED" if from_dms => {
                    assert!(state.appointment_key.is_some(), "an ack carries the key");
                    if let Some(key) = &key {
                        assert_eq!(state.appointment_key.as_ref(), Some(key), "the key is kept");
                    }
                    key = state.appointment_key.clone();
                }
                "RESCHEDULED" => assert_eq!(state.status.unwrap().as_str(), "RESCHEDULED"),
                "CANCELLED" => {
                    assert_eq!(state.status.unwrap().as_str(), "CANCELLED");
                    assert_eq!(state.is_cancelled, Some(true));
                }
                "DELETED" => assert_eq!(index, events.len() - 1, "nothing follows a delete"),
                _ => {}
            }
        }
        let (_, last) = events.last().unwrap();
        let last_state = info(last);
        let expected = truth[uuid.as_str()];
        assert_eq!(expected.status, last_state.status.unwrap().as_str());
        assert_eq!(expected.appointment_key, last_state.appointment_key);
        assert_eq!(
            expected.start_time,
            last_state.start_time.unwrap().original()
        );
        assert_eq!(expected.end_time, last_state.end_time.unwrap().original());
        assert_eq!(expected.deleted, name(last) == "DELETED");
        // Without dropped acks every appointment ends up with a key, unless it was deleted
        // before the DMS answered (an ack due after a delete is not sent).
        if expected.appointment_key.is_none() {
            assert!(expected.deleted, "{uuid}");
            assert!(
                events
                    .iter()
                    .all(|(_, e)| !dms_users.contains(e.updated_by_user_uuid.as_deref().unwrap()))
            );
        }
    }
}

#[test]
fn a_dropped_creation_ack_leaves_no_key_in_the_truth() {
    let mut options = options("http://unused", 30, 3);
    options.faults = "drop-ack=1".parse().unwrap();
    let plan = LoadPlan::generate(&options).unwrap();
    assert!(
        plan.truth
            .appointments
            .iter()
            .all(|a| a.appointment_key.is_none())
    );
    options.faults = Faults::default();
    let plan = LoadPlan::generate(&options).unwrap();
    assert!(
        plan.truth
            .appointments
            .iter()
            .all(|a| a.appointment_key.is_some() || a.deleted)
    );
    assert!(
        plan.truth
            .appointments
            .iter()
            .any(|a| a.appointment_key.is_some())
    );
}

#[test]
fn corrupted_extras_and_old_shapes_are_as_documented() {
    let mut options = options("http://unused", 30, 8);
    options.faults = "corrupt=0.5,legacy=0.5".parse().unwrap();
    let plan = LoadPlan::generate(&options).unwrap();
    let (mut corrupted, mut legacy) = (0, 0);
    for planned in &plan.events {
        let envelope = Envelope::parse(&planned.event.body).expect("still an envelope");
        if planned.event.is_genuine() {
            envelope.appointment().expect("genuine payloads parse");
        } else {
            corrupted += 1;
            assert!(
                envelope.appointment().is_err(),
                "{}",
                String::from_utf8_lossy(&planned.event.body)
            );
        }
        if let EnvelopeFormat::Legacy { event_type, .. } = &envelope.format {
            legacy += 1;
            assert_eq!(event_type.as_deref(), Some("pointInTime"));
            let raw: Value = serde_json::from_slice(&planned.event.body).unwrap();
            assert_eq!(raw["dataType"], "appointments");
            assert!(raw.get("type").is_none());
        }
    }
    assert!(corrupted > 0 && legacy > 0, "{corrupted} {legacy}");
    let genuine = plan.events.iter().filter(|p| p.event.is_genuine()).count();
    let clean = LoadPlan::generate(&self::options("http://unused", 30, 8)).unwrap();
    assert_eq!(
        genuine,
        clean.events.len(),
        "extras never replace genuine events"
    );
}

#[tokio::test]
async fn the_same_seed_sends_the_same_events_over_the_wire() {
    let mut received = Vec::new();
    for _ in 0..2 {
        let recorder = Recorder::accepting().await;
        let mut options = options(&recorder.url, 12, 77);
        options.faults = "duplicates=0.5,reorder=0.5,reorder-window=20ms"
            .parse()
            .unwrap();
        let report = kaarma_sim::run(&options, ()).await.unwrap();
        assert_eq!(report.failures, 0);
        let bodies: BTreeSet<Vec<u8>> = recorder
            .requests()
            .iter()
            .map(|r| r.body.to_vec())
            .collect();
        received.push(bodies);
    }
    assert_eq!(received[0], received[1]);
    let plan = LoadPlan::generate(&options("http://unused", 12, 77)).unwrap();
    let planned: BTreeSet<Vec<u8>> = plan.events.iter().map(|p| p.event.body.to_vec()).collect();
    assert_eq!(received[0], planned);
}

const API_TOKEN: &str = "relay-api-token";
const TOKEN: &str = "myKaarma_11111111-2222-4333-8444-555555555555";

#[tokio::test]
async fn a_faithful_receiver_converges_to_the_truth_under_every_fault() {
    let relay = FakeRelay::start("partner-username", TOKEN, API_TOKEN).await;
    let mut options = options(&relay.webhook_url, 40, 2026);
    options.token = Some(TOKEN.into());
    options.faults = "duplicates=0.3,reorder=0.4,reorder-window=100ms,fail-first=2,drop-ack=0.2,corrupt=0.1,legacy=0.4,delay=5ms"
        .parse()
        .unwrap();
    let report = kaarma_sim::run(&options, ()).await.unwrap();
    assert_eq!(report.failures, 0, "{report}");
    let events = (report.events + report.corrupted_events) as u64;
    assert!(
        report.retries >= 2 * events,
        "fail-first=2 retries every event twice"
    );
    assert!(
        report.duplicated_events > 0 && report.legacy_events > 0 && report.corrupted_events > 0
    );
    {
        let state = relay.state.lock().unwrap();
        assert!(
            state.duplicates > 0,
            "abandoned attempts and duplicates were deduplicated"
        );
        assert!(state.legacy > 0);
        assert_eq!(state.failed_payloads, report.corrupted_events);
    }
    let differences = verify(&relay.base_url, API_TOKEN, &report.truth)
        .await
        .unwrap();
    assert_eq!(differences, [], "{report}");

    // The truth file round trip, then planted differences: each one is found.
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("truth.json");
    report.truth.write(&path).unwrap();
    let truth = Truth::read(&path).unwrap();
    let victim = truth.appointments[0].uuid.clone();
    let removed = truth.appointments[1].uuid.clone();
    relay.edit_row(&victim, |row| row["status"] = json!("SOMETHING_ELSE"));
    relay.state.lock().unwrap().appointments.remove(&removed);
    relay.insert_row(json!({"uuid": "planted", "dealer_uuid": truth.appointments[2].dealer_uuid}));
    let differences = verify(&relay.base_url, API_TOKEN, &truth).await.unwrap();
    assert_eq!(differences.len(), 3, "{differences:?}");
    assert!(
        matches!(&differences[0], Difference::Field { uuid, field: "status", .. } if *uuid == victim)
    );
    assert_eq!(differences[1], Difference::Missing { uuid: removed });
    assert!(matches!(&differences[2], Difference::Extra { uuid, .. } if uuid == "planted"));
}

#[tokio::test]
async fn verify_fails_loudly_on_a_wrong_token() {
    let relay = FakeRelay::start("s", "t", API_TOKEN).await;
    let error = verify(&relay.base_url, "wrong", &Truth::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("401"), "{error}");
}

#[tokio::test]
async fn the_report_counts_what_happened() {
    let recorder = Recorder::start(|n| {
        // Every third request fails once: retries, but no failures.
        let status = if n % 3 == 0 {
            axum::http::StatusCode::BAD_GATEWAY
        } else {
            axum::http::StatusCode::OK
        };
        (status, Duration::ZERO)
    })
    .await;
    let options = options(&recorder.url, 10, 4);
    let report = kaarma_sim::run(&options, ()).await.unwrap();
    let requests = recorder.requests().len() as u64;
    assert_eq!(report.attempts, requests);
    assert_eq!(report.deliveries, report.events as u64);
    assert_eq!(report.attempts, report.deliveries + report.retries);
    assert!(report.retries > 0);
    assert_eq!(report.failures, 0);
    assert!(report.ack_latency.count > 0 && report.ack_latency.p50 <= report.ack_latency.max);
    let summary = report.to_string();
    for line in [
        "appointments  10",
        "attempts",
        "retries",
        "failures      0",
        "ack latency   p50",
    ] {
        assert!(summary.contains(line), "{summary}");
    }
}

/// A bigger run for measuring, not for CI: `cargo test -p kaarma-sim --test load -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, takes tens of seconds"]
async fn measure_a_large_faulty_run() {
    let relay = FakeRelay::start("partner-username", TOKEN, API_TOKEN).await;
    let appointments: usize = std::env::var("SIM_MEASURE_APPOINTMENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let mut options = options(&relay.webhook_url, appointments, 99);
    options.token = Some(TOKEN.into());
    options.rate = 500.0;
    options.faults = "duplicates=0.2,reorder=0.3,reorder-window=200ms,fail-first=1,drop-ack=0.1,corrupt=0.05,legacy=0.3"
        .parse()
        .unwrap();
    let planning = std::time::Instant::now();
    let plan = LoadPlan::generate(&options).unwrap();
    println!(
        "planned {} events in {:?}",
        plan.events.len(),
        planning.elapsed()
    );
    let report = kaarma_sim::load::execute(plan, &options, ()).await.unwrap();
    println!("{report}");
    let differences = verify(&relay.base_url, API_TOKEN, &report.truth)
        .await
        .unwrap();
    println!("differences: {}", differences.len());
    assert_eq!(differences, []);
}
