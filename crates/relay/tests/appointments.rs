//! Appointment state through HTTP: every change kind, the DMS pair in both orders, a full
//! lifecycle, duplicates under new ids, failing payloads, reprocessing and the query API.
//! Every case runs on SQLite and on PostgreSQL (`NAME::sqlite`, `NAME::postgres`).

mod harness;

use harness::{Backend, TestRelay, backend_tests, fixture};
use serde_json::{Value, json};

backend_tests!(
    the_documented_pair_in_order_is_a_creation_and_its_dms_acknowledgement,
    an_acknowledgement_that_arrives_first_creates_and_the_late_original_is_stale,
    a_full_lifecycle_has_one_kind_per_step,
    the_same_content_under_a_new_id_is_unchanged_and_other_edits_are_updates,
    volatile_fields_are_ignored,
    a_failing_payload_is_marked_failed_and_does_not_stop_the_others,
    payloads_that_cannot_be_appointments_fail_with_the_reason,
    other_event_types_pass_through_as_received,
    appointments_are_listed_and_filtered,
);

const APPOINTMENT: &str = "kR7pX2mQ9vL4nB8wT1yF6hJ3sD5gA0cE-Zu_iOq7rWx";
const CREATED: &str = "6c7e57fe-0e06-4fc9-8120-e1593257f1cf";
const CREATED_ACK: &str = "0b8f7a55-3d41-4c9e-9a6b-2f1e8d7c6b5a";
const RESCHEDULED: &str = "a3d2c1b0-9f8e-4d7c-8b6a-5e4d3c2b1a09";

/// A fixture event with its id, timestamp or payload changed.
fn variant(name: &str, id: &str, timestamp: Option<i64>, edit: impl FnOnce(&mut Value)) -> String {
    let mut envelope: Value =
        serde_json::from_str(&fixture(&format!("events/{name}.json"))).unwrap();
    let mut payload: Value = serde_json::from_str(envelope["payload"].as_str().unwrap()).unwrap();
    edit(&mut payload);
    envelope["id"] = json!(id);
    if let Some(timestamp) = timestamp {
        envelope["timestamp"] = json!(timestamp);
    }
    envelope["payload"] = json!(payload.to_string());
    envelope.to_string()
}

async fn deliver_all(relay: &TestRelay, bodies: &[String]) {
    for body in bodies {
        let (status, answer) = relay.deliver(body.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    relay.settle().await;
}

async fn history(relay: &TestRelay, uuid: &str) -> Vec<Value> {
    let (status, body) = relay
        .api(&format!("/api/v1/appointments/{uuid}/history"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["history"].as_array().unwrap().clone()
}

fn kinds(history: &[Value]) -> Vec<&str> {
    history
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect()
}

async fn the_documented_pair_in_order_is_a_creation_and_its_dms_acknowledgement(backend: Backend) {
    let relay = TestRelay::start_backend(backend).await;
    deliver_all(
        &relay,
        &[
            fixture("events/appointment-created.json"),
            fixture("events/appointment-created-dms-ack.json"),
        ],
    )
    .await;
    let history = history(&relay, APPOINTMENT).await;
    assert_eq!(kinds(&history), ["created", "dms_acknowledged"]);
    assert_eq!(history[1]["pair_of"], CREATED);
    assert_eq!(history[1]["event"], "UPDATED");
    let paths: Vec<&str> = history[1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/appointmentKey", "/dispatchCode"]);
    assert_eq!(history[1]["fields"][0]["old"], Value::Null);
    assert_eq!(history[1]["fields"][0]["new"], "DMS-104233");

    let (status, appointment) = relay
        .api(&format!("/api/v1/appointments/{APPOINTMENT}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(appointment["appointment_key"], "DMS-104233");
    assert_eq!(appointment["status"], "SCHEDULED");
    assert_eq!(appointment["start_time"], "2025-01-20T08:00:00");
    assert_eq!(appointment["version"]["event_id"], CREATED_ACK);
    assert_eq!(
        appointment["appointment"]["vehicleInformation"]["vin"],
        "1HGCM82633A004352"
    );
    relay.stop().await;
}

async fn an_acknowledgement_that_arrives_first_creates_and_the_late_original_is_stale(
    backend: Backend,
) {
    let relay = TestRelay::start_backend(backend).await;
    deliver_all(
        &relay,
        &[
            fixture("events/appointment-created-dms-ack.json"),
            fixture("events/appointment-created.json"),
        ],
    )
    .await;
    let history = history(&relay, APPOINTMENT).await;
    // Oldest first by event time: the original (stale, applied nothing) then the ack.
    let by_id = |id: &str| {
        history
            .iter()
            .find(|entry| entry["event_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(CREATED_ACK)["kind"], "created");
    assert_eq!(by_id(CREATED)["kind"], "stale");
    assert_eq!(by_id(CREATED)["stale"], true);
    let (_, appointment) = relay
        .api(&format!("/api/v1/appointments/{APPOINTMENT}"))
        .await;
    assert_eq!(
        appointment["appointment_key"], "DMS-104233",
        "the stale original did not undo the key"
    );
    assert_eq!(appointment["version"]["event_id"], CREATED_ACK);
    relay.stop().await;
}

async fn a_full_lifecycle_has_one_kind_per_step(backend: Backend) {
    let relay = TestRelay::start_backend(backend).await;
    let names = [
        "appointment-created",
        "appointment-created-dms-ack",
        "appointment-rescheduled",
        "appointment-rescheduled-dms-ack",
        "appointment-cancelled",
        "appointment-deleted",
    ];
    let bodies: Vec<String> = names
        .iter()
        .map(|name| fixture(&format!("events/{name}.json")))
        .collect();
    deliver_all(&relay, &bodies).await;
    let history = history(&relay, APPOINTMENT).await;
    assert_eq!(
        kinds(&history),
        [
            "created",
            "dms_acknowledged",
            "rescheduled",
            "dms_acknowledged",
            "cancelled",
            "deleted"
        ]
    );
    assert_eq!(
        history[2]["kinds"],
        json!(["rescheduled", "status_changed"])
    );
    assert_eq!(
        history[3]["pair_of"], RESCHEDULED,
        "an echo with no new fields pairs too"
    );
    assert_eq!(history[4]["kinds"], json!(["cancelled", "status_changed"]));
    let moved: Vec<&str> = history[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for path in [
        "/date",
        "/startTime",
        "/endTime",
        "/preferredDate",
        "/status",
        "/newStatus",
    ] {
        assert!(moved.contains(&path), "{path} missing from {moved:?}");
    }
    let (_, appointment) = relay
        .api(&format!("/api/v1/appointments/{APPOINTMENT}"))
        .await;
    assert_eq!(appointment["deleted"], true);
    assert_eq!(appointment["is_cancelled"], true);
    assert_eq!(appointment["status"], "CANCELLED");
    assert_eq!(appointment["start_time"], "2025-01-22T10:30:00");

    // The change stream holds one CloudEvent per event, in order.
    let (_, changes) = relay.api("/api/v1/changes").await;
    let changes = changes["changes"].as_array().unwrap();
    let types: Vec<&str> = changes
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "com.mykaarma.appointment.created",
            "com.mykaarma.appointment.dms_acknowledged",
            "com.mykaarma.appointment.rescheduled",
            "com.mykaarma.appointment.dms_acknowledged",
            "com.mykaarma.appointment.cancelled",
            "com.mykaarma.appointment.deleted",
        ]
    );
    let rescheduled = &changes[2];
    assert_eq!(rescheduled["specversion"], "1.0");
    assert_eq!(rescheduled["subject"], APPOINTMENT);
    assert_eq!(
        rescheduled["source"],
        "mykaarma/7c1e5a9f3b2d4e6a8c0f1e3d5b7a9c2e4f6a8b0d1c3e5f7a9b2d4c6e8f0a1b3c/3a7f1c9e5b2d8f4a6c0e2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c5e7b9d2f4a"
    );
    assert_eq!(rescheduled["data"]["origin"]["event_id"], RESCHEDULED);
    assert_eq!(rescheduled["data"]["origin"]["event"], "RESCHEDULED");
    assert_eq!(rescheduled["data"]["change"]["kind"], "rescheduled");
    assert_eq!(
        rescheduled["data"]["appointment"]["startTime"],
        "2025-01-22T10:30:00"
    );
    assert_eq!(rescheduled["time"], "2025-01-16T09:30:00.000Z");
    let (_, only_acks) = relay.api("/api/v1/changes?kind=dms_acknowledged").await;
    assert_eq!(only_acks["changes"].as_array().unwrap().len(), 2);
    let (status, _) = relay.api("/api/v1/changes?kind=bogus").await;
    assert_eq!(status, 400);
    relay.stop().await;
}

async fn the_same_content_under_a_new_id_is_unchanged_and_other_edits_are_updates(
    backend: Backend,
) {
    let relay = TestRelay::start_backend(backend).await;
    let day = 86_400_000;
    deliver_all(
        &relay,
        &[
            fixture("events/appointment-created.json"),
            // myKaarma sends the same appointment again under a new id, a day later.
            variant(
                "appointment-created",
                "dup-1",
                Some(1736933400000 + day),
                |_| {},
            ),
            // An edit of the notes and the service list.
            variant(
                "appointment-created",
                "edit-1",
                Some(1736933400000 + 2 * day),
                |payload| {
                    payload["event"] = json!("UPDATED");
                    let info = &mut payload["appointmentInfoResponse"];
                    info["comments"] = json!("Also check the brakes.");
                    info["serviceList"].as_array_mut().unwrap().reverse();
                    info["serviceList"][0]["price"] = json!(29.95);
                },
            ),
        ],
    )
    .await;
    let history = history(&relay, APPOINTMENT).await;
    assert_eq!(kinds(&history), ["created", "unchanged", "updated"]);
    let fields: Vec<&str> = history[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["/comments", "/serviceList/0/price"],
        "reordering the services is no change"
    );
    relay.stop().await;
}

async fn volatile_fields_are_ignored(backend: Backend) {
    let relay = TestRelay::start_on_backend(backend, |config| {
        config.processing.volatile_fields = vec!["reminderCount".into()]
    })
    .await;
    deliver_all(
        &relay,
        &[
            fixture("events/appointment-created.json"),
            variant(
                "appointment-created",
                "reminder-1",
                Some(1736933400000 + 86_400_000),
                |payload| {
                    payload["appointmentInfoResponse"]["reminderCount"] = json!(1);
                },
            ),
        ],
    )
    .await;
    assert_eq!(
        kinds(&history(&relay, APPOINTMENT).await),
        ["created", "unchanged"]
    );
    relay.stop().await;
}

async fn a_failing_payload_is_marked_failed_and_does_not_stop_the_others(backend: Backend) {
    let relay = TestRelay::start_backend(backend).await;
    let broken = variant("appointment-created", "broken-1", None, |payload| {
        payload["appointmentInfoResponse"]["isCancelled"] = json!("maybe");
    });
    deliver_all(
        &relay,
        &[
            fixture("events/appointment-created.json"),
            broken,
            fixture("events/appointment-created-dms-ack.json"),
        ],
    )
    .await;
    let (_, event) = relay.api("/api/v1/events/appointments/broken-1").await;
    assert_eq!(event["state"], "failed");
    assert!(
        event["error"]
            .as_str()
            .unwrap()
            .starts_with("appointmentInfoResponse.isCancelled: invalid type"),
        "{event}"
    );
    assert_eq!(
        kinds(&history(&relay, APPOINTMENT).await),
        ["created", "dms_acknowledged"]
    );

    // Reprocessing runs it again (here it fails again: the payload is still wrong).
    let (status, answer) = relay
        .api_post("/api/v1/events/appointments/broken-1/reprocess", json!({}))
        .await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("requeued")));
    relay.settle().await;
    let (_, event) = relay.api("/api/v1/events/appointments/broken-1").await;
    assert_eq!(event["state"], "failed");
    let (status, answer) = relay
        .api_post(
            &format!("/api/v1/events/appointments/{CREATED}/reprocess"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    let (status, _) = relay
        .api_post("/api/v1/events/appointments/nope/reprocess", json!({}))
        .await;
    assert_eq!(status, 404);
    relay.stop().await;
}

async fn payloads_that_cannot_be_appointments_fail_with_the_reason(backend: Backend) {
    let relay = TestRelay::start_backend(backend).await;
    let cases = [
        (
            json!({"id": "p1", "type": "appointments", "payload": "{broken"}),
            "payload: not valid JSON",
        ),
        (
            json!({"id": "p2", "type": "appointments", "payload": "[1]"}),
            "payload: expected a JSON object",
        ),
        (
            json!({"id": "p3", "type": "appointments", "payload": "{\"event\":\"CREATED\"}"}),
            "payload: no appointment uuid",
        ),
        (
            json!({"id": "p4", "type": "appointments", "payload": json!({
                "appointmentInfoResponse": {"uuid": "a", "customerComment": "x\u{0}y"}
            }).to_string()}),
            "payload: `/appointmentInfoResponse/customerComment` contains a NUL character",
        ),
    ];
    let bodies: Vec<String> = cases.iter().map(|(body, _)| body.to_string()).collect();
    deliver_all(&relay, &bodies).await;
    for (body, expected) in &cases {
        let (_, event) = relay
            .api(&format!(
                "/api/v1/events/appointments/{}",
                body["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(event["state"], "failed");
        assert!(
            event["error"].as_str().unwrap().starts_with(expected),
            "{event}"
        );
    }
    relay.stop().await;
}

async fn other_event_types_pass_through_as_received(backend: Backend) {
    let relay = TestRelay::start_backend(backend).await;
    let names = ["customer", "service-order", "mpi"];
    let bodies: Vec<String> = names
        .iter()
        .map(|name| fixture(&format!("events/{name}.json")))
        .collect();
    deliver_all(&relay, &bodies).await;
    let (_, changes) = relay.api("/api/v1/changes?kind=received").await;
    let changes = changes["changes"].as_array().unwrap();
    let types: Vec<&str> = changes
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "com.mykaarma.customer.received",
            "com.mykaarma.service-order.received",
            "com.mykaarma.mpi.received"
        ]
    );
    assert_eq!(
        changes[0]["subject"],
        "Cus9tQ2wE5rT8yU1iO4pA7sD0fG3hJ6kL-Zx_cVb2nM"
    );
    assert_eq!(
        changes[1]["data"]["payload"]["order"]["header"]["orderNumber"],
        "508812"
    );
    let (_, events) = relay.api("/api/v1/events").await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["state"] == "processed")
    );
    relay.stop().await;
}

async fn appointments_are_listed_and_filtered(backend: Backend) {
    let relay = TestRelay::start_backend(backend).await;
    deliver_all(
        &relay,
        &[
            fixture("events/appointment-created.json"),
            fixture("events/appointment-legacy-envelope.json"),
            variant("appointment-created", "third-1", None, |payload| {
                payload["appointmentInfoResponse"]["uuid"] = json!("zzThird");
                payload["appointmentInfoResponse"]["startTime"] = json!("2025-02-03T09:00:00");
                payload["appointmentInfoResponse"]["status"] = json!("CANCELLED");
            }),
        ],
    )
    .await;
    let uuids = |body: &Value| -> Vec<String> {
        body["appointments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["uuid"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, all) = relay.api("/api/v1/appointments").await;
    assert_eq!(uuids(&all).len(), 3);
    let (_, cancelled) = relay.api("/api/v1/appointments?status=CANCELLED").await;
    assert_eq!(uuids(&cancelled), ["zzThird"]);
    assert_eq!(cancelled["appointments"][0]["is_cancelled"], true);
    let (_, january) = relay
        .api("/api/v1/appointments?date_from=2025-01-01&date_to=2025-01-31")
        .await;
    assert_eq!(uuids(&january).len(), 2);
    let (_, one_day) = relay
        .api("/api/v1/appointments?date_from=2025-02-03&date_to=2025-02-03")
        .await;
    assert_eq!(uuids(&one_day), ["zzThird"]);
    let (_, dealer) = relay.api("/api/v1/appointments?dealer=nobody").await;
    assert!(uuids(&dealer).is_empty());
    let (_, first) = relay.api("/api/v1/appointments?limit=2").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = relay
        .api(&format!("/api/v1/appointments?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(uuids(&first).len() + uuids(&rest).len(), 3);
    assert_eq!(rest["next_cursor"], Value::Null);
    let (status, _) = relay.api("/api/v1/appointments?date_from=someday").await;
    assert_eq!(status, 400);
    let (status, missing) = relay.api("/api/v1/appointments/unknown").await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"], "no appointment unknown");
    relay.stop().await;
}
