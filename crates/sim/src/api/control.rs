//! The emulator's own endpoints (`/sim/v1`), which myKaarma does not have: look at the
//! world and free slots, manage subscriptions, read the delivery log and the truth, and
//! change the faults while it runs.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::json;

use super::extract::{PathParams, QueryParams};
use super::response::{ApiError, Wrapped, parse_body};
use crate::faults::Faults;
use crate::publisher::Subscription;
use crate::simulation::Simulation;

/// `GET /sim/v1/world`: dealers, departments (advisors, teams, transport options, opcodes,
/// slot plan) and customers with their vehicles.
pub async fn world(State(simulation): State<Simulation>) -> Wrapped {
    Wrapped::new("world", simulation.world())
}

/// `GET /sim/v1/departments/{departmentUuid}/slots/{yyyy-MM-dd}`: every slot of the day with
/// its bookings and capacity.
pub async fn slots(
    State(simulation): State<Simulation>,
    PathParams((department_uuid, date)): PathParams<(String, String)>,
) -> Result<Wrapped, ApiError> {
    let date = NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(|_| {
        ApiError::bad_request("INVALID_DATE", format!("{date:?} is not a yyyy-MM-dd date"))
    })?;
    let plan = simulation
        .with_world(|world| world.department(&department_uuid).map(|d| d.slots.clone()))
        .ok_or_else(|| {
            ApiError::not_found(
                "INVALID_DEPARTMENT_UUID",
                format!("no department {department_uuid:?}"),
            )
        })?;
    let slots: Vec<_> = plan
        .slots_on(date)
        .into_iter()
        .map(|slot| {
            json!({
                "startTime": crate::appointment::wire_time(slot.start),
                "endTime": crate::appointment::wire_time(slot.end),
                "booked": simulation.slot_load(&department_uuid, slot.start),
                "capacity": plan.capacity,
            })
        })
        .collect();
    Ok(Wrapped::new("slots", slots))
}

/// `GET /sim/v1/subscriptions` (secrets and tokens are not shown).
pub async fn subscriptions(State(simulation): State<Simulation>) -> Wrapped {
    Wrapped::new("subscriptions", simulation.publisher().subscriptions())
}

/// `POST /sim/v1/subscriptions` with `{"name","url","secret","token","dealers":[…]}`.
pub async fn subscribe(
    State(simulation): State<Simulation>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let subscription: Subscription = parse_body(&body)?;
    reqwest::Url::parse(&subscription.url).map_err(|error| {
        ApiError::bad_request("INVALID_URL", format!("{:?}: {error}", subscription.url))
    })?;
    if subscription.name.trim().is_empty() {
        return Err(ApiError::bad_request("INVALID_REQUEST", "name is required"));
    }
    simulation.publisher().subscribe(subscription.clone());
    Ok((
        StatusCode::CREATED,
        Wrapped::new("subscription", subscription),
    )
        .into_response())
}

/// `DELETE /sim/v1/subscriptions/{name}`
pub async fn unsubscribe(
    State(simulation): State<Simulation>,
    PathParams(name): PathParams<String>,
) -> Result<Wrapped, ApiError> {
    if simulation.publisher().unsubscribe(&name) {
        Ok(Wrapped::new("removed", name))
    } else {
        Err(ApiError::not_found(
            "SUBSCRIPTION_NOT_FOUND",
            format!("no subscription {name:?}"),
        ))
    }
}

/// Query of the deliveries endpoint.
#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    /// Only this event's entries.
    event_id: Option<String>,
    /// At most this many of each kind, newest last (default 1000).
    limit: Option<usize>,
}

/// `GET /sim/v1/deliveries[?event_id=…&limit=…]`: totals, attempts and finished deliveries.
pub async fn deliveries(
    State(simulation): State<Simulation>,
    QueryParams(query): QueryParams<DeliveriesQuery>,
) -> Wrapped {
    let log = simulation.publisher().log();
    let limit = query.limit.unwrap_or(1000);
    let keep = |event_id: &str| {
        query
            .event_id
            .as_deref()
            .is_none_or(|wanted| wanted == event_id)
    };
    let attempts: Vec<_> = log
        .attempts()
        .into_iter()
        .filter(|a| keep(&a.event_id))
        .collect();
    let deliveries: Vec<_> = log
        .deliveries()
        .into_iter()
        .filter(|d| keep(&d.event_id))
        .collect();
    let last = |length: usize| length.saturating_sub(limit);
    Wrapped::new(
        "deliveryLog",
        json!({
            "totals": log.totals(),
            "ackLatency": log.ack_latency(),
            "attempts": attempts[last(attempts.len())..],
            "deliveries": deliveries[last(deliveries.len())..],
        }),
    )
}

/// `GET /sim/v1/truth`: the truth file of everything so far, for `sim verify`.
pub async fn truth(State(simulation): State<Simulation>) -> Json<crate::truth::Truth> {
    Json(simulation.truth())
}

/// `GET /sim/v1/faults`: the faults in force, in the `--faults` syntax.
pub async fn faults(State(simulation): State<Simulation>) -> String {
    simulation.faults().to_string()
}

/// `PUT /sim/v1/faults` with a `--faults` string as the body.
pub async fn set_faults(
    State(simulation): State<Simulation>,
    body: Bytes,
) -> Result<String, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("INVALID_FAULTS", "the body is not UTF-8 text"))?;
    let faults: Faults = text.parse().map_err(|error: crate::faults::FaultsError| {
        ApiError::bad_request("INVALID_FAULTS", error.to_string())
    })?;
    simulation.set_faults(faults.clone());
    Ok(faults.to_string())
}
