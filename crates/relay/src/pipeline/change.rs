//! Changes as CloudEvents 1.0 records: the normalised unit that routes match and sinks
//! deliver. The `id` is derived from the source event, so reprocessing or replaying the same
//! event yields the same id and receivers can deduplicate on it.

use serde_json::{Value, json};
use uuid::Uuid;

use super::classify::ChangeKind;
use crate::clock;
use crate::store::{AppointmentRecord, ChangeRecord, EventRecord, HistoryRecord};

/// Namespace of change ids (UUID v5 of `{type}/{event id}`).
const CHANGE_NAMESPACE: Uuid = Uuid::from_u128(0x6b61_6172_6d61_4000_8000_7265_6c61_7900);

/// The stable change id of a source event.
pub fn change_id(event_type: &str, event_id: &str) -> String {
    Uuid::new_v5(
        &CHANGE_NAMESPACE,
        format!("{event_type}/{event_id}").as_bytes(),
    )
    .to_string()
}

/// `mykaarma/{dealer}/{department}`, the CloudEvent `source`.
fn source(dealer: Option<&str>, department: Option<&str>) -> String {
    format!(
        "mykaarma/{}/{}",
        dealer.unwrap_or("-"),
        department.unwrap_or("-")
    )
}

/// Where a change came from, as carried in `data.origin`.
struct Provenance<'a> {
    event: Option<&'a str>,
    new_status: Option<&'a str>,
    dealer: Option<&'a str>,
    department: Option<&'a str>,
}

impl Provenance<'_> {
    fn to_json(&self, record: &EventRecord) -> Value {
        json!({
            "event_type": record.event_type,
            "event_id": record.event_id,
            "event": self.event,
            "new_status": self.new_status,
            "dealer_uuid": self.dealer,
            "department_uuid": self.department,
            "timestamp": record.occurred_at,
            "received_at": clock::rfc3339(record.received_at),
        })
    }
}

/// The change of an appointment event. `state` is the appointment as it now stands (for a
/// stale event, the state it left alone).
pub fn appointment_change(
    record: &EventRecord,
    history: &HistoryRecord,
    state: &AppointmentRecord,
) -> ChangeRecord {
    let classification = &history.classification;
    let kind = classification.kind;
    let id = change_id(&record.event_type, &record.event_id);
    let cloudevent = json!({
        "specversion": "1.0",
        "id": id,
        "source": source(state.dealer_uuid.as_deref(), state.department_uuid.as_deref()),
        "type": format!("com.mykaarma.appointment.{}", kind.as_str()),
        "subject": state.uuid,
        "time": clock::rfc3339(history.timestamp),
        "datacontenttype": "application/json",
        "data": {
            "appointment": state.appointment,
            "state": {
                "status": state.status,
                "new_status": state.new_status,
                "appointment_key": state.appointment_key,
                "start_time": state.start_time,
                "end_time": state.end_time,
                "is_cancelled": state.is_cancelled,
                "deleted": state.deleted,
            },
            "change": {
                "kind": kind,
                "kinds": classification.kinds,
                "fields": history.fields,
                "pair_of": classification.pair_of,
            },
            "origin": Provenance {
                event: history.event.as_deref(),
                new_status: history.new_status.as_deref(),
                dealer: state.dealer_uuid.as_deref(),
                department: state.department_uuid.as_deref(),
            }
            .to_json(record),
        }
    });
    ChangeRecord {
        seq: 0,
        id,
        event_seq: record.seq,
        subject: Some(state.uuid.clone()),
        kind,
        time: history.timestamp,
        cloudevent,
    }
}

/// The change of a customer, repair-order, inspection or unknown event: `received`, with
/// the payload as sent.
pub fn received_change(record: &EventRecord, payload: Value) -> ChangeRecord {
    let subject = subject_of(&record.event_type, &payload);
    let id = change_id(&record.event_type, &record.event_id);
    let time = record.occurred_at.unwrap_or(record.received_at);
    let entity = match record.event_type.as_str() {
        "customers" => "customer",
        "service-orders" => "service-order",
        "mpis" => "mpi",
        other => other,
    };
    let cloudevent = json!({
        "specversion": "1.0",
        "id": id,
        "source": source(record.dealer_uuid.as_deref(), record.department_uuid.as_deref()),
        "type": format!("com.mykaarma.{entity}.received"),
        "subject": subject,
        "time": clock::rfc3339(time),
        "datacontenttype": "application/json",
        "data": {
            "payload": payload,
            "change": {"kind": ChangeKind::Received, "kinds": [ChangeKind::Received], "fields": [], "pair_of": null},
            "origin": Provenance {
                event: None,
                new_status: None,
                dealer: record.dealer_uuid.as_deref(),
                department: record.department_uuid.as_deref(),
            }
            .to_json(record),
        }
    });
    ChangeRecord {
        seq: 0,
        id,
        event_seq: record.seq,
        subject,
        kind: ChangeKind::Received,
        time,
        cloudevent,
    }
}

/// The entity a non-appointment payload is about.
fn subject_of(event_type: &str, payload: &Value) -> Option<String> {
    let pointer = match event_type {
        "customers" => "/customerWithVehicles/customer/customerUuid",
        _ => "/uuid",
    };
    payload
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_ids_are_stable_and_distinct() {
        assert_eq!(
            change_id("appointments", "e1"),
            change_id("appointments", "e1")
        );
        assert_ne!(
            change_id("appointments", "e1"),
            change_id("customers", "e1")
        );
        assert_eq!(
            Uuid::parse_str(&change_id("appointments", "e1"))
                .unwrap()
                .get_version_num(),
            5
        );
    }
}
