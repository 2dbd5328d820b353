//! `/api/v1/events` and `/api/v1/quarantine`: what was received, exactly as received.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, page_limit, parse_cursor};
use crate::clock;
use crate::store::{EventFilter, EventRecord, Requeue};

/// Query of `GET /api/v1/events`.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/events?type=&limit=&cursor=` → `{"events":[…],"next_cursor":…}` in arrival order.
pub async fn list(
    State(state): State<ApiState>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(query.limit, 100);
    let events = state
        .store
        .list_events(&EventFilter {
            event_type: query.event_type.filter(|t| !t.is_empty()),
            after_seq: parse_cursor(query.cursor.as_deref())?,
            limit,
        })
        .await?;
    let next_cursor = (events.len() == limit as usize)
        .then(|| events.last().map(|event| event.seq.to_string()))
        .flatten();
    let events: Vec<Value> = events.iter().map(summary).collect();
    Ok(Json(json!({"events": events, "next_cursor": next_cursor})))
}

/// `GET /api/v1/events/{type}/{id}` → the summary plus `raw` (null once retention has
/// removed the body) and `error`.
pub async fn show(
    State(state): State<ApiState>,
    Path((event_type, event_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let event = state
        .store
        .get_event(&event_type, &event_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no event {event_type}/{event_id}")))?;
    let mut body = summary(&event);
    match &event.raw {
        Some(raw) => extend_with_raw(&mut body, raw),
        None => body["raw"] = Value::Null,
    }
    Ok(Json(body))
}

/// `POST /api/v1/events/{type}/{id}/reprocess` → 202 when a failed event is pending again;
/// 404 for an unknown event, 409 for one that is not failed.
pub async fn reprocess(
    State(state): State<ApiState>,
    Path((event_type, event_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    match state.store.requeue_failed(&event_type, &event_id).await? {
        Requeue::Requeued => {
            state.processor_wake.notify_one();
            Ok((StatusCode::ACCEPTED, Json(json!({"status": "requeued"}))))
        }
        Requeue::NotFound => Err(ApiError::NotFound(format!(
            "no event {event_type}/{event_id}"
        ))),
        Requeue::NotFailed(current) => Err(ApiError::Conflict(format!(
            "event {event_type}/{event_id} is {}, not failed; only failed events are reprocessed",
            current.as_str()
        ))),
    }
}

/// `GET /api/v1/quarantine?limit=` → `{"items":[…]}`, newest first.
pub async fn quarantine(
    State(state): State<ApiState>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let items = state
        .store
        .list_quarantine(page_limit(query.limit, 100))
        .await?;
    let items: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut body = json!({
                "sha256": item.sha256,
                "received_at": clock::rfc3339(item.received_at),
                "last_received_at": clock::rfc3339(item.last_received_at),
                "delivery_count": item.delivery_count,
                "error": item.error,
            });
            extend_with_raw(&mut body, &item.raw);
            body
        })
        .collect();
    Ok(Json(json!({"items": items})))
}

fn summary(event: &EventRecord) -> Value {
    json!({
        "type": event.event_type,
        "id": event.event_id,
        "seq": event.seq,
        "timestamp": event.occurred_at,
        "dealer_uuid": event.dealer_uuid,
        "department_uuid": event.department_uuid,
        "received_at": clock::rfc3339(event.received_at),
        "delivery_count": event.delivery_count,
        "state": event.state,
        "error": event.error,
    })
}

/// Adds the body as text, or as base64 when it is not UTF-8 (quarantine keeps anything).
fn extend_with_raw(body: &mut Value, raw: &[u8]) {
    match std::str::from_utf8(raw) {
        Ok(text) => {
            body["raw"] = json!(text);
        }
        Err(_) => {
            body["raw"] = json!(base64::engine::general_purpose::STANDARD.encode(raw));
            body["raw_encoding"] = json!("base64");
        }
    }
}
