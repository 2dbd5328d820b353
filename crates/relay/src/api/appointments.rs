//! `/api/v1/appointments` and `/api/v1/changes`: the state and history the processor keeps,
//! and the change stream routes deliver from.

use axum::Json;
use axum::extract::{Path, Query, State};
use mykaarma::DateTime;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, page_limit, parse_cursor};
use crate::clock;
use crate::pipeline::ChangeKind;
use crate::store::{AppointmentFilter, AppointmentRecord, ChangeFilter, HistoryRecord};

/// Query of `GET /api/v1/appointments`.
#[derive(Debug, Deserialize)]
pub struct AppointmentsQuery {
    dealer: Option<String>,
    department: Option<String>,
    status: Option<String>,
    date_from: Option<String>,
    date_to: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/appointments?dealer=&department=&status=&date_from=&date_to=&limit=&cursor=`
/// → `{"appointments":[…],"next_cursor":…}`, by uuid. Dates filter on the start time
/// (`yyyy-MM-dd` or `yyyy-MM-ddTHH:mm:ss`; a bare `date_to` includes that whole day).
pub async fn list(
    State(state): State<ApiState>,
    Query(query): Query<AppointmentsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(query.limit, 100);
    let nonempty = |value: Option<String>| value.filter(|value| !value.is_empty());
    let filter = AppointmentFilter {
        dealer_uuid: nonempty(query.dealer),
        department_uuid: nonempty(query.department),
        status: nonempty(query.status),
        start_from: nonempty(query.date_from)
            .map(|date| wall_clock(&date, false))
            .transpose()?,
        start_to: nonempty(query.date_to)
            .map(|date| wall_clock(&date, true))
            .transpose()?,
        after_uuid: nonempty(query.cursor),
        limit,
    };
    let appointments = state.store.list_appointments(&filter).await?;
    let next_cursor = (appointments.len() == limit as usize)
        .then(|| {
            appointments
                .last()
                .map(|appointment| appointment.uuid.clone())
        })
        .flatten();
    let appointments: Vec<Value> = appointments.iter().map(appointment_json).collect();
    Ok(Json(
        json!({"appointments": appointments, "next_cursor": next_cursor}),
    ))
}

/// A filter date as sortable wall-clock text; `end_of_day` extends a bare date to 23:59:59.
fn wall_clock(text: &str, end_of_day: bool) -> Result<String, ApiError> {
    let parsed = DateTime::parse(text).map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let mut naive = parsed.naive();
    if end_of_day && text.trim().len() == 10 {
        naive += chrono::Duration::seconds(86_399);
    }
    Ok(naive.format("%Y-%m-%dT%H:%M:%S").to_string())
}

/// `GET /api/v1/appointments/{uuid}` → the current state; 404 for an unknown uuid.
pub async fn show(
    State(state): State<ApiState>,
    Path(uuid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let appointment = state
        .store
        .get_appointment(&uuid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no appointment {uuid}")))?;
    Ok(Json(appointment_json(&appointment)))
}

/// `GET /api/v1/appointments/{uuid}/history` → `{"history":[…]}`, oldest first.
pub async fn history(
    State(state): State<ApiState>,
    Path(uuid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let history = state.store.appointment_history(&uuid).await?;
    if history.is_empty() {
        return Err(ApiError::NotFound(format!("no appointment {uuid}")));
    }
    let history: Vec<Value> = history.iter().map(history_json).collect();
    Ok(Json(json!({"history": history})))
}

/// Query of `GET /api/v1/changes`.
#[derive(Debug, Deserialize)]
pub struct ChangesQuery {
    since: Option<String>,
    kind: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/changes?since=&kind=&limit=` → `{"changes":[CloudEvent…],"next_cursor":…}`
/// in stream order; pass `next_cursor` back as `since`.
pub async fn changes(
    State(state): State<ApiState>,
    Query(query): Query<ChangesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(query.limit, 100);
    let kind = match query.kind.as_deref().filter(|kind| !kind.is_empty()) {
        None => None,
        Some(name) => Some(ChangeKind::parse(name).ok_or_else(|| {
            let known: Vec<&str> = ChangeKind::ALL.iter().map(|kind| kind.as_str()).collect();
            ApiError::BadRequest(format!(
                "unknown kind {name:?}; known: {}",
                known.join(", ")
            ))
        })?),
    };
    let changes = state
        .store
        .list_changes(&ChangeFilter {
            after_seq: parse_cursor(query.since.as_deref())?,
            kind,
            limit,
            ..ChangeFilter::default()
        })
        .await?;
    let next_cursor = changes.last().map(|change| change.seq.to_string());
    let changes: Vec<&Value> = changes.iter().map(|change| &change.cloudevent).collect();
    Ok(Json(
        json!({"changes": changes, "next_cursor": next_cursor}),
    ))
}

fn appointment_json(appointment: &AppointmentRecord) -> Value {
    json!({
        "uuid": appointment.uuid,
        "dealer_uuid": appointment.dealer_uuid,
        "department_uuid": appointment.department_uuid,
        "status": appointment.status,
        "new_status": appointment.new_status,
        "appointment_key": appointment.appointment_key,
        "start_time": appointment.start_time,
        "end_time": appointment.end_time,
        "is_cancelled": appointment.is_cancelled,
        "deleted": appointment.deleted,
        "version": {
            "timestamp": appointment.version.timestamp,
            "event_id": appointment.version.event_id,
        },
        "updated_at": clock::rfc3339(appointment.updated_at),
        "appointment": appointment.appointment,
    })
}

fn history_json(entry: &HistoryRecord) -> Value {
    let classification = &entry.classification;
    json!({
        "event_id": entry.event_id,
        "event": entry.event,
        "new_status": entry.new_status,
        "timestamp": entry.timestamp,
        "kind": classification.kind,
        "kinds": classification.kinds,
        "stale": classification.kind == ChangeKind::Stale,
        "pair_of": classification.pair_of,
        "fields": entry.fields,
        "recorded_at": clock::rfc3339(entry.recorded_at),
    })
}
