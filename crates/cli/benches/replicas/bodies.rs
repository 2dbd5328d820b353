//! The request bodies: `fixtures/events/appointment-created.json` with the appointment's
//! comment lengthened to about 5 KB, a distinct `id` per event and one of a fixed set of
//! appointment uuids, so processing updates many appointments (several versions each)
//! instead of one. Signed as myKaarma signs, built before the clock starts.

use bytes::Bytes;
use mykaarma::signature;

/// The signature secret the relays are configured with.
pub const SECRET: &str = "bench-signature-secret";
/// The `x-authorization-token` sent with every request.
pub const TOKEN: &str = "myKaarma_bench-0000-4000-8000-000000000000";

const FIXTURE: &str = "appointment-created.json";
/// The fixture's appointment uuid; every copy gets another of the same length.
const APPOINTMENT: &str = "kR7pX2mQ9vL4nB8wT1yF6hJ3sD5gA0cE-Zu_iOq7rWx";
const COMMENT_END: &str = "customer will wait.";
const COMMENT_FILLER: &str = " Customer reports a faint squeal from the front left when braking \
                              at low speed; check pads and rotors, rotate tyres, top up fluids.";

/// One signed body.
pub struct Body {
    /// The bytes, sent as `text/plain`.
    pub bytes: Bytes,
    /// `mykaarma-signature-token`.
    pub signature: String,
}

/// `count` bodies of at least `body_bytes` bytes over `appointments` appointments; ids carry
/// `run` so runs on one database never collide.
pub fn make(run: u32, count: usize, appointments: usize, body_bytes: usize) -> Vec<Body> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/events/");
    let text = std::fs::read_to_string(format!("{path}{FIXTURE}"))
        .unwrap_or_else(|error| panic!("fixture {FIXTURE}: {error}"));
    let mut text = text.trim_end().to_owned();
    let at = text.find(COMMENT_END).expect("the fixture has the comment") + COMMENT_END.len();
    let mut filler = String::new();
    while text.len() + filler.len() < body_bytes {
        filler.push_str(COMMENT_FILLER);
    }
    text.insert_str(at, &filler);
    let envelope: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
    let id = envelope["id"]
        .as_str()
        .expect("the fixture has an id")
        .to_owned();
    (0..count)
        .map(|n| {
            let appointment = format!("bench-appointment-{:025}", n % appointments.max(1));
            assert_eq!(appointment.len(), APPOINTMENT.len());
            let event_id = format!("{run:08x}-0000-4000-8000-{n:012x}");
            let body = text
                .replace(&id, &event_id)
                .replace(APPOINTMENT, &appointment);
            Body {
                signature: signature::sign(SECRET.as_bytes(), body.as_bytes()),
                bytes: Bytes::from(body),
            }
        })
        .collect()
}
