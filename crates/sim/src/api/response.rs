//! myKaarma's response wrapper: `{"error":[{"errorCode","errorDescription"}],
//! "warnings":[{"warningCode","warningDescription"}], …}` with the result under its own key
//! (`appointmentInfo`, `serviceAppointments`, …). Every answer of the API, failures included,
//! has this shape; codes are the names from myKaarma's errors-and-warnings page.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::book::{BookError, Warning};
use crate::world::WorldError;

/// A refused request: the HTTP status, myKaarma's error code and a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The error code, e.g. `SLOT_UNAVAILABLE`.
    pub code: &'static str,
    /// What is wrong.
    pub description: String,
}

impl ApiError {
    /// An error of `status` with `code`.
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
        }
    }

    /// A malformed request (400).
    pub fn bad_request(code: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description)
    }

    /// Nothing at this path (404).
    pub fn not_found(code: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, description)
    }
}

impl From<BookError> for ApiError {
    fn from(error: BookError) -> Self {
        let status = match &error {
            BookError::AppointmentNotFound(_)
            | BookError::UnknownDealer(_)
            | BookError::UnknownDepartment(_) => StatusCode::NOT_FOUND,
            BookError::SlotUnavailable(_)
            | BookError::DuplicateAppointment(_)
            | BookError::AppointmentCancelled(_) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, error.code(), error.to_string())
    }
}

impl From<WorldError> for ApiError {
    fn from(error: WorldError) -> Self {
        let (status, code) = match &error {
            WorldError::UnknownCustomer(_) => (StatusCode::NOT_FOUND, "INVALID_CUSTOMER_UUID"),
            WorldError::InvalidVin(_) => (StatusCode::BAD_REQUEST, "INVALID_VIN"),
            WorldError::VehicleExists(_) => (StatusCode::CONFLICT, "VEHICLE_ALREADY_EXISTS"),
            WorldError::CustomerInfoMissing(_) => {
                (StatusCode::BAD_REQUEST, "CUSTOMER_INFO_MISSING")
            }
        };
        Self::new(status, code, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": [{"errorCode": self.code, "errorDescription": self.description}],
            "warnings": [],
        });
        (self.status, Json(body)).into_response()
    }
}

/// A successful answer: the result under `key`, with any warnings.
#[derive(Debug)]
pub struct Wrapped {
    key: &'static str,
    value: Value,
    warnings: Vec<Warning>,
}

impl Wrapped {
    /// `value` under `key`.
    pub fn new(key: &'static str, value: impl Serialize) -> Self {
        Self {
            key,
            value: serde_json::to_value(value).unwrap_or(Value::Null),
            warnings: Vec::new(),
        }
    }

    /// Adds warnings.
    pub fn with_warnings(mut self, warnings: Vec<Warning>) -> Self {
        self.warnings = warnings;
        self
    }
}

impl IntoResponse for Wrapped {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), json!([]));
        body.insert(
            "warnings".into(),
            serde_json::to_value(&self.warnings).unwrap_or_else(|_| json!([])),
        );
        body.insert(self.key.into(), self.value);
        Json(Value::Object(body)).into_response()
    }
}

/// Reads a JSON request body into `T`, answering `INVALID_REQUEST` (never a panic or a plain
/// text rejection) when it is not.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request("INVALID_REQUEST", format!("invalid request body: {error}"))
    })
}
