//! The request bodies: a realistic signed appointment event from `fixtures/`, lengthened to
//! the size asked for, with a distinct `id` per request so the relay does a real insert every
//! time.
//!
//! The fixture is split once around its `id`; a body is `prefix + id + suffix`, and ids are
//! all the same length, so every request has exactly the same size and only the id and the
//! signature differ.

use bytes::{BufMut, Bytes, BytesMut};
use mykaarma::signature;

/// The secret both servers are told about (the bare one ignores it).
pub const SECRET: &str = "bench-signature-secret";
/// The `x-authorization-token` sent with every request.
pub const TOKEN: &str = "myKaarma_bench-0000-4000-8000-000000000000";

/// The fixture the bodies are made from.
const FIXTURE: &str = "appointment-created.json";
/// Where in the fixture extra text goes: the end of the appointment's free-text `comments`.
const COMMENT_END: &str = "customer will wait.";
/// Text appended to the comment, as often as it takes to reach the size asked for.
const COMMENT_FILLER: &str = " Customer reports a faint squeal from the front left when braking \
                              at low speed; check pads and rotors, rotate tyres, top up fluids.";

/// Makes the signed bodies.
pub struct Deliveries {
    prefix: Bytes,
    suffix: Bytes,
}

/// One request's body and its `mykaarma-signature-token`.
pub struct Delivery {
    /// The body, sent as `text/plain`.
    pub body: Bytes,
    /// `sha256=<hex>` over the body.
    pub signature: String,
}

impl Deliveries {
    /// Reads the fixture and, when `body_bytes` is larger than it, lengthens the comment
    /// until a body is at least that long.
    pub fn new(body_bytes: usize) -> Self {
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
        let envelope: serde_json::Value =
            serde_json::from_str(&text).expect("the lengthened fixture is still JSON");
        let id = envelope["id"].as_str().expect("the fixture has an id");
        assert_eq!(id.len(), 36, "the fixture's id is a UUID");
        let marker = format!("\"id\":\"{id}\"");
        let start = text.find(&marker).expect("the id is written compactly") + 6;
        Self {
            prefix: Bytes::copy_from_slice(&text.as_bytes()[..start]),
            suffix: Bytes::copy_from_slice(&text.as_bytes()[start + id.len()..]),
        }
    }

    /// The size of every body.
    pub fn body_len(&self) -> usize {
        self.prefix.len() + 36 + self.suffix.len()
    }

    /// The body for request `sequence` on connection `connection` of run `run`: an id no
    /// other request of the process uses, and its signature.
    pub fn delivery(&self, run: u32, connection: u32, sequence: u64) -> Delivery {
        let id = format!("{run:08x}-{connection:04x}-4000-8000-{sequence:012x}");
        let mut body = BytesMut::with_capacity(self.body_len());
        body.put_slice(&self.prefix);
        body.put_slice(id.as_bytes());
        body.put_slice(&self.suffix);
        let signature = signature::sign(SECRET.as_bytes(), &body);
        Delivery {
            body: body.freeze(),
            signature,
        }
    }
}
