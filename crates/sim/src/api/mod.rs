//! The HTTP API of `sim serve`: myKaarma's Appointment and Customer APIs on their documented
//! paths (§6 of the field reference), plus the emulator's control endpoints under `/sim/v1`.
//! Everything is behind HTTP basic auth; every answer, errors included, is in myKaarma's
//! response wrapper.
//!
//! | method | path | |
//! |---|---|---|
//! | POST | `/appointment/v2/dealer/{dealerUuid}/appointment[?event=CREATED]` | create |
//! | GET | `/appointment/v2/dealerDepartment/{departmentUuid}/uuid/{appointmentUuid}` | get |
//! | GET | `/appointment/v2/dealerDepartment/{departmentUuid}/date/{yyyy-MM-dd}` | list by date |
//! | PATCH | `/appointment/v2/department/{departmentUuid}/appointment/{appointmentUuid}` | update, reschedule, cancel |
//! | DELETE | `/appointment/v2/department/{departmentUuid}/appointment/{appointmentUuid}` | delete |
//! | PUT | `/customer/v2/department/{departmentUuid}/customer` | create a customer |
//! | GET | `/customer/v2/department/{departmentUuid}/customer/{customerUuid}` | get a customer |
//! | POST | `/customer/v2/department/{departmentUuid}/customer/{customerUuid}/vehicle` | add a vehicle |
//! | GET | `/sim/v1/world`, `/sim/v1/departments/{departmentUuid}/slots/{date}` | look around |
//! | GET, POST, DELETE | `/sim/v1/subscriptions[/{name}]` | subscriptions |
//! | GET | `/sim/v1/deliveries`, `/sim/v1/truth` | what was sent, what is true |
//! | GET, PUT | `/sim/v1/faults` | faults, in the `--faults` syntax |

pub mod appointments;
pub mod auth;
pub mod control;
pub mod customers;
pub mod extract;
pub mod response;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post, put};

pub use auth::Credentials;
use response::ApiError;

use crate::simulation::Simulation;

/// The whole API over `simulation`, guarded by `credentials`.
pub fn router(simulation: Simulation, credentials: Credentials) -> Router {
    Router::new()
        .route(
            "/appointment/v2/dealer/{dealer_uuid}/appointment",
            post(appointments::create),
        )
        .route(
            "/appointment/v2/dealerDepartment/{department_uuid}/uuid/{appointment_uuid}",
            get(appointments::get_by_uuid),
        )
        .route(
            "/appointment/v2/dealerDepartment/{department_uuid}/date/{date}",
            get(appointments::list_by_date),
        )
        .route(
            "/appointment/v2/department/{department_uuid}/appointment/{appointment_uuid}",
            axum::routing::patch(appointments::update).delete(appointments::delete),
        )
        .route(
            "/customer/v2/department/{department_uuid}/customer",
            put(customers::create),
        )
        .route(
            "/customer/v2/department/{department_uuid}/customer/{customer_uuid}",
            get(customers::get),
        )
        .route(
            "/customer/v2/department/{department_uuid}/customer/{customer_uuid}/vehicle",
            post(customers::add_vehicle),
        )
        .route("/sim/v1/world", get(control::world))
        .route(
            "/sim/v1/departments/{department_uuid}/slots/{date}",
            get(control::slots),
        )
        .route(
            "/sim/v1/subscriptions",
            get(control::subscriptions).post(control::subscribe),
        )
        .route(
            "/sim/v1/subscriptions/{name}",
            axum::routing::delete(control::unsubscribe),
        )
        .route("/sim/v1/deliveries", get(control::deliveries))
        .route("/sim/v1/truth", get(control::truth))
        .route(
            "/sim/v1/faults",
            get(control::faults).put(control::set_faults),
        )
        .fallback(|| async { ApiError::not_found("NOT_FOUND", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "this endpoint does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            credentials,
            auth::require_basic_auth,
        ))
        .with_state(simulation)
}
