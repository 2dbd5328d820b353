//! The events the emulator sends: one per appointment change, written as the envelope body
//! myKaarma posts (documented key order, payload stringified), plus the corrupted extras the
//! `corrupt` fault adds.

use bytes::Bytes;
use mykaarma::{AppointmentEventName, Envelope, EnvelopeFormat, EventType, Payload};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::book::{AppointmentChange, ChangeOrigin};
use crate::faults::Corruption;

/// What an outgoing event is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum EventKind {
    /// A real change, announced as `event`.
    Genuine {
        /// The payload's `event`.
        event: String,
        /// Who made the change.
        origin: ChangeOrigin,
    },
    /// An extra event whose payload is broken on purpose; it changes nothing.
    Corrupted {
        /// How it is broken.
        corruption: Corruption,
    },
}

/// One webhook event, ready to send to any number of subscribers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutgoingEvent {
    /// The envelope `id` (an RFC-4122 UUID).
    pub id: String,
    /// The envelope `timestamp`, epoch milliseconds.
    pub timestamp: i64,
    /// The dealer, for matching subscriptions.
    pub dealer_uuid: String,
    /// The appointment the event is about.
    pub appointment_uuid: String,
    /// Genuine or corrupted.
    #[serde(flatten)]
    pub kind: EventKind,
    /// True when the envelope has the older shape.
    pub legacy: bool,
    /// The exact request body.
    #[serde(skip)]
    pub body: Bytes,
}

impl OutgoingEvent {
    /// The event announcing `change`, with envelope id `id`, in `format`.
    pub fn announcing(change: &AppointmentChange, id: Uuid, format: EnvelopeFormat) -> Self {
        let appointment = &change.appointment;
        let payload = appointment.event_payload(
            change.event.clone(),
            change.at_ms,
            &change.updated_by_user_uuid,
        );
        let legacy = matches!(format, EnvelopeFormat::Legacy { .. });
        let envelope = Envelope {
            id: id.to_string(),
            event_type: EventType::Appointments,
            timestamp: Some(change.at_ms),
            dealer_uuid: Some(appointment.dealer_uuid.clone()),
            department_uuid: Some(appointment.department_uuid.clone()),
            format,
            payload: Payload::stringified(&payload)
                .expect("an appointment payload has string keys and always serializes"),
        };
        Self {
            id: envelope.id.clone(),
            timestamp: change.at_ms,
            dealer_uuid: appointment.dealer_uuid.clone(),
            appointment_uuid: appointment.uuid.clone(),
            kind: EventKind::Genuine {
                event: change.event.to_string(),
                origin: change.origin,
            },
            legacy,
            body: Bytes::from(envelope.to_json()),
        }
    }

    /// An extra event about the same appointment as `change`, with its own id, whose payload
    /// is broken as `corruption` says. A receiver must keep it apart and change nothing.
    pub fn corrupted(change: &AppointmentChange, id: Uuid, corruption: Corruption) -> Self {
        let appointment = &change.appointment;
        let genuine = appointment.event_payload(
            AppointmentEventName::Updated,
            change.at_ms,
            &change.updated_by_user_uuid,
        );
        let genuine = serde_json::to_value(&genuine).unwrap_or(Value::Null);
        let payload_text = match corruption {
            Corruption::Truncated => {
                let text = genuine.to_string();
                let cut = text
                    .char_indices()
                    .nth(text.len() / 2)
                    .map_or(0, |(at, _)| at);
                text[..cut].to_owned()
            }
            Corruption::NotAnObject => json!([genuine["uuid"], genuine["event"]]).to_string(),
            Corruption::WrongTypes => {
                let mut broken = genuine;
                broken["appointmentInfoResponse"]["isCancelled"] = json!("maybe");
                broken["appointmentInfoResponse"]["reminderCount"] = json!("several");
                broken["appointmentInfoResponse"]["serviceList"] = json!("OIL");
                broken.to_string()
            }
        };
        // Written by hand because the payload text is deliberately not JSON; the key order is
        // the documented one, as in `Envelope::to_json`.
        let body = json!({
            "id": id.to_string(),
            "timestamp": change.at_ms,
            "dealeruuid": appointment.dealer_uuid,
            "departmentuuid": appointment.department_uuid,
            "type": "appointments",
            "payload": payload_text,
        });
        Self {
            id: id.to_string(),
            timestamp: change.at_ms,
            dealer_uuid: appointment.dealer_uuid.clone(),
            appointment_uuid: appointment.uuid.clone(),
            kind: EventKind::Corrupted { corruption },
            legacy: false,
            body: Bytes::from(body.to_string()),
        }
    }

    /// True for a genuine event.
    pub fn is_genuine(&self) -> bool {
        matches!(self.kind, EventKind::Genuine { .. })
    }
}
