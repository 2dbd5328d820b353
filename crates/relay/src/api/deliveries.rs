//! `/api/v1/routes` and `/api/v1/deliveries`: what each route takes, what it delivered, and
//! the controls to retry and replay.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::DateTime;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, page_limit, parse_cursor};
use crate::clock;
use crate::delivery::Route;
use crate::store::{ChangeFilter, DeliveryFilter, DeliveryRecord, DeliveryState};

/// `GET /api/v1/routes` → `{"routes":[{name, when, filter, sink, counts}]}`.
pub async fn list_routes(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let counts = state.store.delivery_counts().await?;
    let routes: Vec<Value> = state
        .routes
        .iter()
        .map(|route| {
            let mut by_state: BTreeMap<&str, i64> =
                DeliveryState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
            for count in counts
                .iter()
                .filter(|count| count.route == route.config.name)
            {
                by_state.insert(count.state.as_str(), count.count);
            }
            json!({
                "name": route.config.name,
                "when": route.config.when,
                "filter": route.config.filter,
                "sink": route.config.sink.describe(),
                "concurrency": route.config.concurrency,
                "rate_limit": route.config.rate_limit,
                "retry": route.config.retry,
                "counts": by_state,
            })
        })
        .collect();
    Ok(Json(json!({"routes": routes})))
}

/// Body of `POST /api/v1/routes/test`: a stored event, or a change to try.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTest {
    /// A stored event: `{"type": "appointments", "id": "…"}`.
    event: Option<EventRef>,
    /// A change (CloudEvent) as the routes would see it.
    change: Option<Value>,
}

/// A stored event by its key.
#[derive(Debug, Deserialize)]
pub struct EventRef {
    #[serde(rename = "type")]
    event_type: String,
    id: String,
}

/// `POST /api/v1/routes/test` → `{"change_id", "routes":[{name, matches, reasons}]}`:
/// which routes the change matches, and why the others do not.
pub async fn test_routes(
    State(state): State<ApiState>,
    Json(test): Json<RouteTest>,
) -> Result<Json<Value>, ApiError> {
    let (change_id, cloudevent) = match (test.event, test.change) {
        (Some(event), None) => {
            let change = state
                .store
                .change_for_event(&event.event_type, &event.id)
                .await?
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "no change for event {}/{} (unknown, pending or failed)",
                        event.event_type, event.id
                    ))
                })?;
            (Some(change.id), change.cloudevent)
        }
        (None, Some(change)) => (None, change),
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of `event` or `change`".into(),
            ));
        }
    };
    let routes: Vec<Value> = state
        .routes
        .iter()
        .map(|route| {
            let reasons = route.matcher.mismatches(&cloudevent);
            json!({"name": route.config.name, "matches": reasons.is_empty(), "reasons": reasons})
        })
        .collect();
    Ok(Json(json!({"change_id": change_id, "routes": routes})))
}

/// Body of `POST /api/v1/routes/{name}/replay`: a time range (RFC 3339) or change ids.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    from: Option<String>,
    to: Option<String>,
    change_ids: Option<Vec<String>>,
}

/// Most changes one replay request may enqueue.
const MAX_REPLAY: usize = 100_000;

/// `POST /api/v1/routes/{name}/replay` → `{"requeued": n, "skipped": [{change_id, reasons}]}`:
/// enqueues again the changes in the range (or with the ids) that the route matches. A listed
/// change the route does not match is skipped with the reasons: it may be another dealer's,
/// meant for another partner. Receivers deduplicate by change id.
pub async fn replay(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Json(replay): Json<Replay>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let route = find_route(&state, &name)?;
    let mut changes = Vec::new();
    let mut skipped = Vec::new();
    match (
        replay.change_ids,
        replay.from.is_some() || replay.to.is_some(),
    ) {
        (Some(ids), false) => {
            for id in ids {
                let change = state
                    .store
                    .get_change(&id)
                    .await?
                    .ok_or_else(|| ApiError::NotFound(format!("no change {id}")))?;
                let reasons = route.matcher.mismatches(&change.cloudevent);
                if reasons.is_empty() {
                    changes.push(change);
                } else {
                    skipped.push(json!({"change_id": id, "reasons": reasons}));
                }
            }
        }
        (None, true) => {
            let mut filter = ChangeFilter {
                time_from: replay.from.as_deref().map(instant).transpose()?,
                time_to: replay.to.as_deref().map(instant).transpose()?,
                limit: 1000,
                ..ChangeFilter::default()
            };
            loop {
                let page = state.store.list_changes(&filter).await?;
                let Some(last) = page.last() else { break };
                filter.after_seq = Some(last.seq);
                changes.extend(
                    page.into_iter()
                        .filter(|change| route.matcher.matches(&change.cloudevent)),
                );
                if changes.len() > MAX_REPLAY {
                    return Err(ApiError::BadRequest(format!(
                        "more than {MAX_REPLAY} changes in the range; replay a shorter one"
                    )));
                }
            }
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give either a time range (`from`, `to`) or `change_ids`".into(),
            ));
        }
    }
    let requeued = state
        .store
        .requeue_changes(&name, &changes, clock::now_millis())
        .await?;
    route.wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"requeued": requeued, "skipped": skipped})),
    ))
}

fn find_route<'a>(state: &'a ApiState, name: &str) -> Result<&'a std::sync::Arc<Route>, ApiError> {
    state
        .routes
        .get(name)
        .ok_or_else(|| ApiError::NotFound(format!("no route {name}")))
}

fn instant(text: &str) -> Result<i64, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|instant| instant.timestamp_millis())
        .map_err(|error| ApiError::BadRequest(format!("{text:?} is not an RFC 3339 time: {error}")))
}

/// Query of `GET /api/v1/deliveries`.
#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    route: Option<String>,
    state: Option<String>,
    appointment: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/deliveries?route=&state=&appointment=&limit=&cursor=` → `{"deliveries":[…],"next_cursor":…}`.
pub async fn list_deliveries(
    State(state): State<ApiState>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(query.limit, 100);
    let delivery_state = match query.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => Some(DeliveryState::parse(name).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown state {name:?}; known: pending, failed, delivered, dead"
            ))
        })?),
    };
    let deliveries = state
        .store
        .list_deliveries(&DeliveryFilter {
            route: query.route.filter(|r| !r.is_empty()),
            state: delivery_state,
            subject: query.appointment.filter(|a| !a.is_empty()),
            after_id: parse_cursor(query.cursor.as_deref())?,
            limit,
        })
        .await?;
    let next_cursor = (deliveries.len() == limit as usize)
        .then(|| deliveries.last().map(|delivery| delivery.id.to_string()))
        .flatten();
    let deliveries: Vec<Value> = deliveries.iter().map(delivery_json).collect();
    Ok(Json(
        json!({"deliveries": deliveries, "next_cursor": next_cursor}),
    ))
}

/// `POST /api/v1/deliveries/{id}/retry` → 202 when a failed or dead delivery is due again
/// with a fresh budget; 409 for one that is pending or delivered.
pub async fn retry_delivery(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let before = state
        .store
        .retry_delivery(id, clock::now_millis())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no delivery {id}")))?;
    match before {
        DeliveryState::Failed | DeliveryState::Dead => {
            state.routes.wake_all();
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"status": "pending", "was": before})),
            ))
        }
        other => Err(ApiError::Conflict(format!(
            "delivery {id} is {}; only failed or dead deliveries are retried (replay re-sends delivered ones)",
            other.as_str()
        ))),
    }
}

fn delivery_json(delivery: &DeliveryRecord) -> Value {
    json!({
        "id": delivery.id,
        "route": delivery.route,
        "change_id": delivery.change_id,
        "appointment": delivery.subject,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "last_status": delivery.last_status,
        "next_attempt_at": matches!(delivery.state, DeliveryState::Pending | DeliveryState::Failed)
            .then(|| clock::rfc3339(delivery.next_attempt_at)),
        "enqueued_at": clock::rfc3339(delivery.enqueued_at),
        "delivered_at": delivery.delivered_at.map(clock::rfc3339),
    })
}
