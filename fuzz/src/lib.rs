//! The properties the fuzz targets check, beyond "never panics": what the `mykaarma` crate
//! promises about values it accepted. Each function panics (which libFuzzer reports as a
//! crash) when a promise is broken, with the values that broke it.

use mykaarma::{AppointmentEvent, DateTime, Envelope};

/// An accepted envelope written back with [`Envelope::to_json`] reads again as the same
/// envelope: same id, type, timestamp, dealer, department, shape and payload text.
pub fn assert_envelope_round_trips(envelope: &Envelope) {
    let written = envelope.to_json();
    let again = Envelope::parse(written.as_bytes())
        .unwrap_or_else(|error| panic!("to_json() does not parse again: {error}\n{written}"));
    assert_eq!(again.id, envelope.id, "id, through {written}");
    assert_eq!(again.event_type, envelope.event_type, "type, through {written}");
    assert_eq!(again.timestamp, envelope.timestamp, "timestamp, through {written}");
    assert_eq!(again.dealer_uuid, envelope.dealer_uuid, "dealeruuid, through {written}");
    assert_eq!(
        again.department_uuid, envelope.department_uuid,
        "departmentuuid, through {written}"
    );
    assert_eq!(again.format, envelope.format, "shape, through {written}");
    assert_eq!(
        again.payload.raw().get(),
        envelope.payload.raw().get(),
        "payload, through {written}"
    );
}

/// An accepted appointment payload serialized and parsed again is the same payload: unknown
/// fields, unknown enum values and the original date-time text all survive.
pub fn assert_appointment_round_trips(event: &AppointmentEvent) {
    let written = serde_json::to_string(event).expect("a parsed payload serializes");
    let again = AppointmentEvent::from_json(&written)
        .unwrap_or_else(|error| panic!("a serialized payload does not parse again: {error}\n{written}"));
    assert_eq!(&again, event, "through {written}");
    // `appointment_uuid` is what the relay keys appointments by: it must not change either.
    assert_eq!(again.appointment_uuid(), event.appointment_uuid());
}

/// An accepted date-time keeps its original text, and survives JSON unchanged.
pub fn assert_datetime_round_trips(text: &str, parsed: &DateTime) {
    assert_eq!(parsed.original(), text, "the original text is kept");
    let _ = parsed.to_instant();
    let written = serde_json::to_string(parsed).expect("a date-time serializes");
    let again: DateTime = serde_json::from_str(&written)
        .unwrap_or_else(|error| panic!("{written} does not read again: {error}"));
    assert_eq!(&again, parsed, "through {written}");
}
