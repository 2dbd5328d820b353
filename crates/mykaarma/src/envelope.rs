//! The outer event myKaarma posts, in both documented shapes.
//!
//! Current: `{"id","timestamp","dealeruuid","departmentuuid","type","payload"}`.
//! Older: `dataType` instead of `type`, plus `eventType` (`pointInTime`) and maybe `Source`.
//! `payload` is normally a *string* holding JSON; an object is accepted too. Reading an
//! envelope never parses the payload's content, so it is cheap enough for the ack path.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::appointment::AppointmentEvent;
use crate::datetime::DateTime;
use crate::open_enum::open_enum;
use crate::payload::{EventPayload, Payload, PayloadError};

/// Longest event id accepted; ids are UUIDs, so anything far longer is not an id.
pub const MAX_ID_LEN: usize = 200;

open_enum! {
    /// What an event is about (`type`, or `dataType` in the older shape).
    pub enum EventType {
        /// Appointment created, updated or deleted.
        Appointments = "appointments",
        /// Customer created or updated (coalesced to one event per customer per second).
        Customers = "customers",
        /// Repair order created or updated.
        ServiceOrders = "service-orders",
        /// Multipoint inspection created or updated.
        Mpis = "mpis",
    }
}

/// Which of the two documented envelope shapes a delivery used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeFormat {
    /// `type` names the event type.
    Current,
    /// `dataType` names the event type; `eventType` and `Source` are kept as sent.
    Legacy {
        /// `eventType`, documented as always `pointInTime`.
        event_type: Option<String>,
        /// `Source`, e.g. `mykaarma.scheduler`; listed in the docs but absent from their sample.
        source: Option<String>,
    },
}

/// A myKaarma webhook event as delivered, with its payload still unparsed.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The event id; with [`Envelope::event_type`] it is the deduplication key.
    pub id: String,
    /// What the event is about.
    pub event_type: EventType,
    /// When the event occurred, epoch milliseconds UTC; orders events of one entity.
    pub timestamp: Option<i64>,
    /// The dealer (`dealeruuid`).
    pub dealer_uuid: Option<String>,
    /// The dealer department (`departmentuuid`).
    pub department_uuid: Option<String>,
    /// Which shape the envelope had.
    pub format: EnvelopeFormat,
    /// The event-specific body, still unparsed.
    pub payload: Payload,
}

/// Why a body is not a usable envelope. Each variant names the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not JSON at all.
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("body is JSON but not an object")]
    NotObject,
    /// A required field is absent (or null).
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field is present but unusable.
    #[error("field `{field}`: {reason}")]
    Invalid {
        /// The field, as named on the wire.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl EnvelopeError {
    /// The wire name of the field at fault, if the error is about one field.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Missing(field) | Self::Invalid { field, .. } => Some(field),
            Self::NotJson(_) | Self::NotObject => None,
        }
    }
}

/// The envelope's keys, each still raw so that every field gets its own precise error.
#[derive(Deserialize)]
struct WireEnvelope<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    dealeruuid: Option<&'a RawValue>,
    #[serde(borrow)]
    departmentuuid: Option<&'a RawValue>,
    #[serde(borrow, rename = "type")]
    event_type: Option<&'a RawValue>,
    #[serde(borrow, rename = "dataType")]
    data_type: Option<&'a RawValue>,
    #[serde(borrow, rename = "eventType")]
    legacy_event_type: Option<&'a RawValue>,
    #[serde(borrow, rename = "Source", alias = "source")]
    source: Option<&'a RawValue>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

impl Envelope {
    /// Reads an envelope from the raw body. Never panics; every error names its field.
    pub fn parse(body: &[u8]) -> Result<Self, EnvelopeError> {
        let wire: WireEnvelope = serde_json::from_slice(body).map_err(|error| {
            if error.is_data() {
                // Valid JSON of the wrong shape (an array, a string…), or a duplicated key.
                match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                    Ok(_) if body_is_object(body) => EnvelopeError::Invalid {
                        field: "body",
                        reason: error.to_string(),
                    },
                    _ => EnvelopeError::NotObject,
                }
            } else {
                EnvelopeError::NotJson(error.to_string())
            }
        })?;

        let id = required_string(wire.id, "id")?;
        if id.is_empty() {
            return Err(invalid("id", "must not be empty"));
        }
        if id.len() > MAX_ID_LEN {
            return Err(invalid(
                "id",
                format!("longer than {MAX_ID_LEN} characters"),
            ));
        }

        let (event_type, format) = match (wire.event_type, wire.data_type) {
            (Some(raw), _) if !is_null(raw) => {
                (required_string(Some(raw), "type")?, EnvelopeFormat::Current)
            }
            (_, Some(raw)) if !is_null(raw) => (
                required_string(Some(raw), "dataType")?,
                EnvelopeFormat::Legacy {
                    event_type: optional_string(wire.legacy_event_type, "eventType")?,
                    source: optional_string(wire.source, "Source")?,
                },
            ),
            _ => return Err(EnvelopeError::Missing("type")),
        };
        if event_type.is_empty() {
            return Err(invalid("type", "must not be empty"));
        }

        let payload = wire
            .payload
            .filter(|raw| !is_null(raw))
            .ok_or(EnvelopeError::Missing("payload"))?;
        if !matches!(payload.get().as_bytes().first(), Some(b'"' | b'{')) {
            return Err(invalid(
                "payload",
                "expected a string holding JSON, or an object",
            ));
        }

        Ok(Self {
            id,
            event_type: EventType::from(event_type),
            timestamp: wire.timestamp.map(parse_timestamp).transpose()?.flatten(),
            dealer_uuid: optional_string(wire.dealeruuid, "dealeruuid")?,
            department_uuid: optional_string(wire.departmentuuid, "departmentuuid")?,
            format,
            payload: Payload::from_raw(payload.to_owned()),
        })
    }

    /// Parses the payload as the event type says: typed for appointments, raw JSON for the
    /// types whose payloads are not modelled yet.
    pub fn decode_payload(&self) -> Result<EventPayload, PayloadError> {
        EventPayload::decode(&self.event_type, &self.payload.text()?)
    }

    /// Parses the payload as an appointment event, whatever `type` says.
    pub fn appointment(&self) -> Result<AppointmentEvent, PayloadError> {
        AppointmentEvent::from_json(&self.payload.text()?)
    }

    /// The body as myKaarma would send it, keys in the documented order.
    pub fn to_json(&self) -> String {
        let written = match &self.format {
            EnvelopeFormat::Current => serde_json::to_string(&CurrentWire {
                id: &self.id,
                timestamp: self.timestamp,
                dealeruuid: self.dealer_uuid.as_deref(),
                departmentuuid: self.department_uuid.as_deref(),
                event_type: self.event_type.as_str(),
                payload: self.payload.raw(),
            }),
            EnvelopeFormat::Legacy { event_type, source } => serde_json::to_string(&LegacyWire {
                id: &self.id,
                timestamp: self.timestamp,
                dealeruuid: self.dealer_uuid.as_deref(),
                departmentuuid: self.department_uuid.as_deref(),
                source: source.as_deref(),
                data_type: self.event_type.as_str(),
                event_type: event_type.as_deref(),
                payload: self.payload.raw(),
            }),
        };
        written.expect("strings, numbers and raw JSON always serialize")
    }
}

/// The current shape, in the documented key order.
#[derive(Serialize)]
struct CurrentWire<'a> {
    id: &'a str,
    timestamp: Option<i64>,
    dealeruuid: Option<&'a str>,
    departmentuuid: Option<&'a str>,
    #[serde(rename = "type")]
    event_type: &'a str,
    payload: &'a RawValue,
}

/// The older shape, in the order of the old docs' sample.
#[derive(Serialize)]
struct LegacyWire<'a> {
    id: &'a str,
    timestamp: Option<i64>,
    dealeruuid: Option<&'a str>,
    departmentuuid: Option<&'a str>,
    #[serde(rename = "Source", skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(rename = "dataType")]
    data_type: &'a str,
    #[serde(rename = "eventType")]
    event_type: Option<&'a str>,
    payload: &'a RawValue,
}

fn body_is_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

fn invalid(field: &'static str, reason: impl Into<String>) -> EnvelopeError {
    EnvelopeError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn required_string(raw: Option<&RawValue>, field: &'static str) -> Result<String, EnvelopeError> {
    optional_string(raw, field)?.ok_or(EnvelopeError::Missing(field))
}

fn optional_string(
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<String>, EnvelopeError> {
    match raw {
        None => Ok(None),
        Some(raw) if is_null(raw) => Ok(None),
        Some(raw) => match serde_json::from_str::<String>(raw.get()) {
            // No store keeps a NUL in a text column, and myKaarma never sends one.
            Ok(text) if text.contains('\0') => Err(invalid(field, "contains a NUL character")),
            Ok(text) => Ok(Some(text)),
            Err(_) => Err(invalid(
                field,
                format!("expected a string, got {}", describe(raw)),
            )),
        },
    }
}

/// Reads `timestamp`: epoch milliseconds as a number or a string of digits, or (older shape,
/// "event time (UTC)") a date-time string, read as UTC when it has no offset.
fn parse_timestamp(raw: &RawValue) -> Result<Option<i64>, EnvelopeError> {
    let text = raw.get();
    if text == "null" {
        return Ok(None);
    }
    let bad = || {
        invalid(
            "timestamp",
            format!("expected epoch milliseconds, got {}", describe(raw)),
        )
    };
    if let Ok(millis) = text.parse::<i64>() {
        return Ok(Some(millis));
    }
    if let Ok(number) = text.parse::<f64>() {
        // `1.7e12` and `1736933400000.0` are integral milliseconds too.
        let integral = number.is_finite() && number.fract() == 0.0 && number.abs() < 9.0e15;
        return integral.then_some(Some(number as i64)).ok_or_else(bad);
    }
    let string: String = serde_json::from_str(text).map_err(|_| bad())?;
    if let Ok(millis) = string.trim().parse::<i64>() {
        return Ok(Some(millis));
    }
    let parsed = DateTime::parse(&string).map_err(|_| bad())?;
    let instant = parsed
        .to_instant()
        .map(|instant| instant.timestamp_millis())
        .unwrap_or_else(|| parsed.naive().and_utc().timestamp_millis());
    Ok(Some(instant))
}

/// A short description of a raw value for error messages (never the whole value).
fn describe(raw: &RawValue) -> String {
    let text = raw.get();
    let kind = match text.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    };
    if text.len() <= 40 {
        format!("{kind} `{text}`")
    } else {
        kind.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Envelope, EnvelopeError> {
        Envelope::parse(body.as_bytes())
    }

    #[test]
    fn reads_the_current_shape() {
        let envelope = parse(
            r#"{"id":"6c7e57fe-0e06-4fc9-8120-e1593257f1cf","timestamp":1728542293678,"dealeruuid":"d1","departmentuuid":"p1","type":"appointments","payload":"{\"uuid\":\"a\"}"}"#,
        )
        .unwrap();
        assert_eq!(envelope.id, "6c7e57fe-0e06-4fc9-8120-e1593257f1cf");
        assert_eq!(envelope.event_type, EventType::Appointments);
        assert_eq!(envelope.timestamp, Some(1728542293678));
        assert_eq!(envelope.dealer_uuid.as_deref(), Some("d1"));
        assert_eq!(envelope.format, EnvelopeFormat::Current);
        assert!(envelope.payload.is_stringified());
        assert_eq!(envelope.payload.text().unwrap(), r#"{"uuid":"a"}"#);
    }

    #[test]
    fn reads_the_older_shape() {
        let envelope = parse(
            r#"{"id":"e1","timestamp":"2024-10-10T06:38:13Z","dealeruuid":"d1","departmentuuid":"p1","dataType":"customers","eventType":"pointintime","payload":{"customer":{}}}"#,
        )
        .unwrap();
        assert_eq!(envelope.event_type, EventType::Customers);
        assert_eq!(envelope.timestamp, Some(1728542293000));
        assert_eq!(
            envelope.format,
            EnvelopeFormat::Legacy {
                event_type: Some("pointintime".into()),
                source: None
            }
        );
        assert!(!envelope.payload.is_stringified());
        assert_eq!(envelope.payload.text().unwrap(), r#"{"customer":{}}"#);
    }

    #[test]
    fn unknown_types_are_kept() {
        let envelope = parse(r#"{"id":"e1","type":"invoices","payload":"{}"}"#).unwrap();
        assert_eq!(envelope.event_type, EventType::Other("invoices".into()));
        assert_eq!(envelope.timestamp, None);
    }

    #[test]
    fn every_error_names_the_field_and_reason() {
        let cases = [
            ("", "body is not valid JSON"),
            ("{", "body is not valid JSON"),
            ("[1,2]", "body is JSON but not an object"),
            ("\"text\"", "body is JSON but not an object"),
            (
                r#"{"type":"appointments","payload":"{}"}"#,
                "missing field `id`",
            ),
            (
                r#"{"id":null,"type":"appointments","payload":"{}"}"#,
                "missing field `id`",
            ),
            (
                r#"{"id":7,"type":"appointments","payload":"{}"}"#,
                "field `id`: expected a string, got a number `7`",
            ),
            (
                r#"{"id":"","type":"appointments","payload":"{}"}"#,
                "field `id`: must not be empty",
            ),
            (
                r#"{"id":"a\u0000b","type":"appointments","payload":"{}"}"#,
                "field `id`: contains a NUL character",
            ),
            (r#"{"id":"e","payload":"{}"}"#, "missing field `type`"),
            (
                r#"{"id":"e","type":["x"],"payload":"{}"}"#,
                "field `type`: expected a string",
            ),
            (
                r#"{"id":"e","type":"appointments"}"#,
                "missing field `payload`",
            ),
            (
                r#"{"id":"e","type":"appointments","payload":3}"#,
                "field `payload`: expected a string holding JSON, or an object",
            ),
            (
                r#"{"id":"e","type":"appointments","timestamp":true,"payload":"{}"}"#,
                "field `timestamp`: expected epoch milliseconds, got a boolean",
            ),
            (
                r#"{"id":"e","type":"appointments","timestamp":1.5,"payload":"{}"}"#,
                "field `timestamp`",
            ),
            (
                r#"{"id":"e","type":"appointments","dealeruuid":{},"payload":"{}"}"#,
                "field `dealeruuid`: expected a string, got an object",
            ),
            (
                r#"{"id":"e","id":"f","type":"appointments","payload":"{}"}"#,
                "field `body`: duplicate field `id`",
            ),
        ];
        for (body, expected) in cases {
            let error = parse(body).expect_err(body).to_string();
            assert!(
                error.starts_with(expected),
                "{body}: got {error:?}, want {expected:?}"
            );
        }
    }

    #[test]
    fn to_json_writes_what_parse_reads() {
        let payload = serde_json::json!({"uuid": "a", "event": "CREATED"});
        for format in [
            EnvelopeFormat::Current,
            EnvelopeFormat::Legacy {
                event_type: Some("pointInTime".into()),
                source: Some("mykaarma.scheduler".into()),
            },
        ] {
            let built = Envelope {
                id: "e1".into(),
                event_type: EventType::Appointments,
                timestamp: Some(5),
                dealer_uuid: Some("d".into()),
                department_uuid: None,
                format: format.clone(),
                payload: Payload::stringified(&payload).unwrap(),
            };
            let body = built.to_json();
            let read = Envelope::parse(body.as_bytes()).unwrap();
            assert_eq!(read.format, format);
            assert_eq!(read.timestamp, Some(5));
            assert_eq!(
                read.payload.text().unwrap(),
                r#"{"uuid":"a","event":"CREATED"}"#
            );
            assert_eq!(read.department_uuid, None);
        }
    }
}
