//! The payload: as it is carried in the envelope ([`Payload`]) and as it is decoded
//! ([`EventPayload`]). Decoding errors carry the path of the field at fault.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::appointment::AppointmentEvent;
use crate::envelope::EventType;

/// The event-specific body exactly as it sits in the envelope: a JSON string literal
/// holding JSON (myKaarma's documented form) or, tolerated, an object.
#[derive(Debug, Clone)]
pub struct Payload(Box<RawValue>);

/// Why a payload could not be decoded: the path of the field at fault and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PayloadError {
    /// Dotted path from the payload, e.g. `appointmentInfoResponse.startTime`.
    pub path: String,
    /// What is wrong there.
    pub reason: String,
}

impl PayloadError {
    pub(crate) fn at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl Payload {
    pub(crate) fn from_raw(raw: Box<RawValue>) -> Self {
        Self(raw)
    }

    /// Serializes `value` and wraps it in a JSON string, as myKaarma sends payloads.
    pub fn stringified(value: &impl serde::Serialize) -> Result<Self, serde_json::Error> {
        let text = serde_json::to_string(value)?;
        Ok(Self(RawValue::from_string(serde_json::to_string(&text)?)?))
    }

    /// Serializes `value` as a plain JSON object (a shape receivers must tolerate).
    pub fn object(value: &impl serde::Serialize) -> Result<Self, serde_json::Error> {
        Ok(Self(serde_json::value::to_raw_value(value)?))
    }

    /// True when the payload is a string holding JSON.
    pub fn is_stringified(&self) -> bool {
        self.0.get().starts_with('"')
    }

    /// The payload as it sits in the envelope.
    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// The payload's own JSON text: the string's content, or the object as sent.
    pub fn text(&self) -> Result<Cow<'_, str>, PayloadError> {
        raw_text(&self.0)
            .ok_or_else(|| PayloadError::at("payload", "the payload string is not valid JSON text"))
    }
}

/// A decoded payload, by event type.
#[derive(Debug, Clone)]
pub enum EventPayload {
    /// An appointment event, typed in full.
    Appointment(Box<AppointmentEvent>),
    /// A customer event (`customerWithVehicles`), kept as JSON for now.
    Customer(Value),
    /// A repair-order event, kept as JSON for now.
    ServiceOrder(Value),
    /// A multipoint-inspection event, kept as JSON for now.
    Mpi(Value),
    /// An event of a type this library does not know, kept as JSON.
    Other(Value),
}

impl EventPayload {
    /// Decodes the payload's JSON text as `event_type` says it is.
    pub fn decode(event_type: &EventType, text: &str) -> Result<Self, PayloadError> {
        if *event_type == EventType::Appointments {
            return AppointmentEvent::from_json(text)
                .map(|event| Self::Appointment(Box::new(event)));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|error| PayloadError::at("payload", format!("not valid JSON: {error}")))?;
        if !value.is_object() {
            return Err(PayloadError::at("payload", "expected a JSON object"));
        }
        Ok(match event_type {
            EventType::Customers => Self::Customer(value),
            EventType::ServiceOrders => Self::ServiceOrder(value),
            EventType::Mpis => Self::Mpi(value),
            EventType::Appointments | EventType::Other(_) => Self::Other(value),
        })
    }
}

/// Deserializes `text` into `T`, reporting the path of the field at fault.
pub(crate) fn from_json_with_path<'de, T: Deserialize<'de>>(
    text: &'de str,
) -> Result<T, PayloadError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." {
            "payload".to_owned()
        } else {
            path
        };
        PayloadError::at(path, error.into_inner().to_string())
    })?;
    deserializer
        .end()
        .map_err(|error| PayloadError::at("payload", format!("trailing characters: {error}")))?;
    Ok(value)
}

/// Deserializes an already parsed `value` into `T`, reporting the path of the field at fault.
pub(crate) fn from_value_with_path<'de, T: Deserialize<'de>>(
    value: &'de Value,
) -> Result<T, PayloadError> {
    serde_path_to_error::deserialize(value).map_err(path_error)
}

fn path_error<E: std::fmt::Display>(error: serde_path_to_error::Error<E>) -> PayloadError {
    let path = error.path().to_string();
    let path = if path == "." {
        "payload".to_owned()
    } else {
        path
    };
    PayloadError::at(path, error.into_inner().to_string())
}

/// The payload's own JSON text read straight from a body, or `None` when the body has no
/// usable payload. Used to verify signatures computed over the payload string.
pub(crate) fn text_in_body(body: &[u8]) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct PayloadOnly<'a> {
        #[serde(borrow)]
        payload: &'a RawValue,
    }
    let wire: PayloadOnly = serde_json::from_slice(body).ok()?;
    raw_text(wire.payload)
}

fn raw_text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if text.starts_with('"') {
        // `Cow<str>` borrows when the string has no escapes; myKaarma's always has some.
        serde_json::from_str::<Cow<'_, str>>(text).ok()
    } else {
        Some(Cow::Borrowed(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stringified_payload_is_unwrapped() {
        let payload = Payload::stringified(&serde_json::json!({"a": "b\"c"})).unwrap();
        assert!(payload.is_stringified());
        assert_eq!(payload.raw().get(), r#""{\"a\":\"b\\\"c\"}""#);
        assert_eq!(payload.text().unwrap(), r#"{"a":"b\"c"}"#);
        let object = Payload::object(&serde_json::json!({"a": 1})).unwrap();
        assert!(!object.is_stringified());
        assert_eq!(object.text().unwrap(), r#"{"a":1}"#);
    }

    #[test]
    fn non_appointment_payloads_stay_json() {
        let decoded =
            EventPayload::decode(&EventType::Customers, r#"{"customerWithVehicles":{}}"#).unwrap();
        assert!(
            matches!(decoded, EventPayload::Customer(value) if value["customerWithVehicles"].is_object())
        );
        let error = EventPayload::decode(&EventType::Mpis, "[1]").unwrap_err();
        assert_eq!(error.to_string(), "payload: expected a JSON object");
        let error = EventPayload::decode(&EventType::ServiceOrders, "{").unwrap_err();
        assert!(
            error.to_string().starts_with("payload: not valid JSON"),
            "{error}"
        );
    }
}
