//! The myKaarma webhook contract, as a library with no I/O.
//!
//! myKaarma posts each event as an [`Envelope`] whose `payload` is a *string* holding JSON,
//! signed with HMAC-SHA256 in the `mykaarma-signature-token` header. This crate reads both
//! documented envelope shapes, types the appointment payload in full while keeping every
//! unknown field and enum value, and signs and verifies deliveries.
//!
//! ```
//! use mykaarma::{Envelope, EventPayload, SignatureScope, signature};
//!
//! let body = br#"{"id":"e1","timestamp":1736933400000,"type":"appointments","payload":"{\"event\":\"CREATED\",\"appointmentInfoResponse\":{\"uuid\":\"a1\"}}"}"#;
//! let header = signature::sign(b"secret", body);
//! signature::verify(b"secret", Some(&header), body, SignatureScope::Body).unwrap();
//!
//! let envelope = Envelope::parse(body).unwrap();
//! let EventPayload::Appointment(event) = envelope.decode_payload().unwrap() else { panic!() };
//! assert_eq!(event.appointment_uuid(), Some("a1"));
//! ```

pub mod appointment;
pub mod datetime;
pub mod envelope;
mod open_enum;
pub mod payload;
pub mod signature;

pub use appointment::{
    AppointmentEvent, AppointmentEventName, AppointmentInfo, AppointmentStatus,
    CustomerInformation, OrderInformation, Platform, VehicleInformation,
};
pub use datetime::{DateTime, DateTimeError};
pub use envelope::{Envelope, EnvelopeError, EnvelopeFormat, EventType};
pub use payload::{EventPayload, Payload, PayloadError};
pub use signature::{SignatureError, SignatureScope, SignedPart};
