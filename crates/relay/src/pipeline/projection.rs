//! Applying one appointment event to the appointment's current state: newest version wins,
//! an older one is recorded as stale, and every applied one is diffed and classified.

use mykaarma::{AppointmentEvent, AppointmentEventName, AppointmentStatus, Envelope};
use serde_json::Value;

use super::classify::{self, Before, Classification, Origin, PairingRules};
use super::diff::{self, FieldChange};
use crate::store::{AppointmentRecord, EventRecord, HistoryRecord, Version};

/// How events become state: which fields the DMS owns and which are ignored as noise.
#[derive(Debug, Clone)]
pub struct ProjectionRules {
    /// DMS pairing.
    pub pairing: PairingRules,
    /// JSON Pointers whose changes are not changes (e.g. `/reminderCount`).
    pub volatile_fields: Vec<String>,
}

/// An appointment event read from the store, ready to apply.
pub struct AppointmentInput<'a> {
    /// The stored event.
    pub record: &'a EventRecord,
    /// Its envelope.
    pub envelope: &'a Envelope,
    /// The typed payload.
    pub event: &'a AppointmentEvent,
    /// `appointmentInfoResponse` exactly as received.
    pub info: &'a Value,
    /// The appointment it is about.
    pub uuid: &'a str,
}

/// The result of applying one event.
pub struct Applied {
    /// The state after the event (`None` when it was stale and changed nothing).
    pub state: Option<AppointmentRecord>,
    /// The history entry.
    pub history: HistoryRecord,
}

/// Applies `input` on top of `current` (the state so far, if any). `now` is epoch ms.
pub fn apply(
    current: Option<&AppointmentRecord>,
    input: &AppointmentInput<'_>,
    rules: &ProjectionRules,
    now: i64,
) -> Applied {
    let record = input.record;
    let version = Version {
        timestamp: record.occurred_at.unwrap_or(record.received_at),
        seq: record.seq,
        event_id: record.event_id.clone(),
    };
    let timestamp = version.timestamp;
    let history = |classification: Classification, fields: Vec<FieldChange>| HistoryRecord {
        appointment_uuid: input.uuid.to_owned(),
        event_seq: record.seq,
        event_id: record.event_id.clone(),
        event: input
            .event
            .event
            .as_ref()
            .map(|event| event.as_str().to_owned()),
        new_status: info_of(input.event)
            .and_then(|info| info.new_status.as_ref())
            .map(|s| s.as_str().to_owned()),
        timestamp,
        classification,
        fields,
        recorded_at: now,
    };

    if let Some(current) = current
        && version.is_older_than(&current.version)
    {
        return Applied {
            state: None,
            history: history(Classification::stale(), Vec::new()),
        };
    }

    let fields = match current {
        Some(current) => diff::diff(&current.appointment, input.info, &rules.volatile_fields),
        None => Vec::new(),
    };
    let state = project(current, input, version, now);
    let before = current.map(|current| Before {
        cancelled: current.is_cancelled,
        origin: current.origin.clone(),
    });
    let classification = classify::classify(
        before.as_ref(),
        input.event.event.as_ref(),
        &fields,
        state.is_cancelled,
        state.version.timestamp,
        &rules.pairing,
    );
    let mut state = state;
    if classification.is_origin() {
        state.origin = Some(Origin {
            event_id: record.event_id.clone(),
            timestamp: state.version.timestamp,
        });
    }
    Applied {
        state: Some(state),
        history: history(classification, fields),
    }
}

fn info_of(event: &AppointmentEvent) -> Option<&mykaarma::AppointmentInfo> {
    event.appointment_info_response.as_ref()
}

/// The state after applying `input` (everything but the classification's origin).
fn project(
    current: Option<&AppointmentRecord>,
    input: &AppointmentInput<'_>,
    version: Version,
    now: i64,
) -> AppointmentRecord {
    let info = info_of(input.event);
    let status = info.and_then(|info| info.status.clone());
    let new_status = info.and_then(|info| info.new_status.clone());
    let cancelled_status = [&status, &new_status]
        .iter()
        .any(|status| **status == Some(AppointmentStatus::Cancelled));
    let start = info.and_then(|info| info.start_time.as_ref());
    AppointmentRecord {
        uuid: input.uuid.to_owned(),
        dealer_uuid: info
            .and_then(|info| info.dealer_uuid.clone())
            .or_else(|| input.envelope.dealer_uuid.clone()),
        department_uuid: input
            .event
            .department_uuid
            .clone()
            .or_else(|| input.envelope.department_uuid.clone()),
        status: status.map(|status| status.as_str().to_owned()),
        new_status: new_status.map(|status| status.as_str().to_owned()),
        appointment_key: info.and_then(|info| info.appointment_key.clone()),
        start_time: start.map(|start| start.original()),
        end_time: info
            .and_then(|info| info.end_time.as_ref())
            .map(|end| end.original()),
        start_sort: start.map(|start| start.naive().format("%Y-%m-%dT%H:%M:%S").to_string()),
        is_cancelled: cancelled_status || info.and_then(|info| info.is_cancelled) == Some(true),
        // Once deleted, an appointment stays deleted: a late echo does not bring it back.
        deleted: current.is_some_and(|current| current.deleted)
            || input.event.event == Some(AppointmentEventName::Deleted),
        version,
        appointment: input.info.clone(),
        origin: current.and_then(|current| current.origin.clone()),
        created_at: current.map_or(now, |current| current.created_at),
        updated_at: now,
    }
}
