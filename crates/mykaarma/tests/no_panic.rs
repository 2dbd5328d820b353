//! No input may panic: arbitrary bytes and arbitrary JSON go through every parser.

use mykaarma::{
    AppointmentEvent, DateTime, Envelope, EventPayload, EventType, SignatureScope, signature,
};
use proptest::prelude::*;
use serde_json::Value;

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        "[0-9T:. +Z-]{0,26}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("id".to_owned()),
            Just("type".to_owned()),
            Just("timestamp".to_owned()),
            Just("payload".to_owned()),
            Just("dataType".to_owned()),
            Just("uuid".to_owned()),
            Just("event".to_owned()),
            Just("appointmentInfoResponse".to_owned()),
            Just("startTime".to_owned()),
            Just("isCancelled".to_owned()),
            Just("vehicleInformation".to_owned()),
            Just("serviceList".to_owned()),
            ".{0,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys, inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

fn exercise(body: &[u8]) {
    if let Ok(envelope) = Envelope::parse(body) {
        let _ = envelope.decode_payload();
        let _ = envelope.appointment();
        let _ = envelope.to_json();
    }
    for scope in [
        SignatureScope::Body,
        SignatureScope::Payload,
        SignatureScope::Either,
    ] {
        let header = String::from_utf8_lossy(body);
        let _ = signature::verify(b"k", Some(&header), body, scope);
        let _ = signature::verify(b"k", Some("sha256=00"), body, scope);
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = AppointmentEvent::from_json(text);
        let _ = DateTime::parse(text);
        for event_type in [
            EventType::Appointments,
            EventType::Customers,
            EventType::Other("x".into()),
        ] {
            let _ = EventPayload::decode(&event_type, text);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&body);
    }

    #[test]
    fn arbitrary_json_never_panics(value in arbitrary_json()) {
        exercise(value.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_payloads_in_a_valid_envelope_never_panic(payload in arbitrary_json(), stringified in any::<bool>()) {
        let payload = if stringified { Value::String(payload.to_string()) } else { payload };
        let body = serde_json::json!({"id": "e", "type": "appointments", "payload": payload}).to_string();
        exercise(body.as_bytes());
    }
}
