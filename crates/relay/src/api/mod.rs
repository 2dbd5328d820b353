//! The JSON API under `/api/v1`: what was received, what it became, and the controls to
//! act on it. Every route sits behind [`auth::require_admin`].

mod appointments;
mod auth;
mod deliveries;
mod error;
mod events;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use tokio::sync::Notify;

pub use auth::AdminAuth;
pub use error::ApiError;

use crate::delivery::Routes;
use crate::store::Store;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The store everything is read from.
    pub store: Arc<dyn Store>,
    /// Wakes the processor when an event is requeued.
    pub processor_wake: Arc<Notify>,
    /// The configured routes.
    pub routes: Arc<Routes>,
}

/// Most items one page returns.
pub const MAX_PAGE: u32 = 1000;

/// The `/api/v1` router.
pub fn router(state: ApiState, auth: AdminAuth) -> Router {
    Router::new()
        .route("/api/v1/events", get(events::list))
        .route("/api/v1/events/{type}/{id}", get(events::show))
        .route(
            "/api/v1/events/{type}/{id}/reprocess",
            post(events::reprocess),
        )
        .route("/api/v1/quarantine", get(events::quarantine))
        .route("/api/v1/appointments", get(appointments::list))
        .route("/api/v1/appointments/{uuid}", get(appointments::show))
        .route(
            "/api/v1/appointments/{uuid}/history",
            get(appointments::history),
        )
        .route("/api/v1/changes", get(appointments::changes))
        .route("/api/v1/routes", get(deliveries::list_routes))
        .route("/api/v1/routes/test", post(deliveries::test_routes))
        .route("/api/v1/routes/{name}/replay", post(deliveries::replay))
        .route("/api/v1/deliveries", get(deliveries::list_deliveries))
        .route(
            "/api/v1/deliveries/{id}/retry",
            post(deliveries::retry_delivery),
        )
        .with_state(state)
        .layer(middleware::from_fn_with_state(
            Arc::new(auth),
            auth::require_admin,
        ))
}

/// Reads a page size: the default when absent, never above [`MAX_PAGE`].
fn page_limit(limit: Option<u32>, default: u32) -> u32 {
    limit.unwrap_or(default).clamp(1, MAX_PAGE)
}

/// Reads an opaque cursor (an arrival sequence number).
fn parse_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .filter(|cursor| !cursor.is_empty())
        .map(|cursor| {
            cursor
                .parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid cursor {cursor:?}")))
        })
        .transpose()
}
