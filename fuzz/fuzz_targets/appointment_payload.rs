//! Any text as a payload's own JSON (the string inside the envelope's `payload`):
//! `AppointmentEvent::from_json` and `EventPayload::decode` for every event type. Nothing may
//! panic, and an accepted appointment must survive a JSON round trip unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mykaarma::{AppointmentEvent, EventPayload, EventType};
use mykaarma_fuzz::assert_appointment_round_trips;

fuzz_target!(|text: &str| {
    if let Ok(event) = AppointmentEvent::from_json(text) {
        assert_appointment_round_trips(&event);
    }
    for event_type in [
        EventType::Appointments,
        EventType::Customers,
        EventType::ServiceOrders,
        EventType::Mpis,
        EventType::Other("unknown".into()),
    ] {
        let _ = EventPayload::decode(&event_type, text);
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        if let Ok(event) = AppointmentEvent::from_value(&value) {
            assert_appointment_round_trips(&event);
        }
    }
});
