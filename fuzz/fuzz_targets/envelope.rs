//! Any bytes as a webhook body, through everything the relay does with one: read the
//! envelope (the ack path), then decode its payload (the processor). Nothing may panic, and
//! whatever was accepted must survive being written back and read again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mykaarma::{Envelope, EventPayload};
use mykaarma_fuzz::{assert_appointment_round_trips, assert_envelope_round_trips};

fuzz_target!(|body: &[u8]| {
    let Ok(envelope) = Envelope::parse(body) else {
        return;
    };
    assert_envelope_round_trips(&envelope);
    let _ = envelope.payload.is_stringified();
    if let Ok(EventPayload::Appointment(event)) = envelope.decode_payload() {
        assert_appointment_round_trips(&event);
    }
    if let Ok(event) = envelope.appointment() {
        assert_appointment_round_trips(&event);
    }
});
