//! The identifier shapes myKaarma uses, drawn from a seeded random source so that a run with
//! the same seed produces the same ids.
//!
//! - Entity ids (appointments, customers, vehicles, advisors, transport options…) are
//!   43-character URL-safe base64-like strings, `-` and `_` included (§3.1 of the field
//!   reference).
//! - Dealer and department ids are 64 lowercase hex characters.
//! - Event ids are RFC-4122 (version 4) UUIDs.

use rand::Rng;
use uuid::Uuid;

/// Length of a myKaarma entity id.
pub const ENTITY_ID_LEN: usize = 43;

/// Length of a dealer or department id.
pub const HEX_ID_LEN: usize = 64;

/// The URL-safe base64 alphabet entity ids are written in.
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Draws myKaarma-shaped identifiers from any random source.
pub trait IdSource: Rng {
    /// A 43-character URL-safe entity id.
    fn entity_id(&mut self) -> String {
        (0..ENTITY_ID_LEN)
            .map(|_| char::from(URL_SAFE[self.random_range(0..URL_SAFE.len())]))
            .collect()
    }

    /// A 64-character lowercase hex dealer or department id.
    fn hex_id(&mut self) -> String {
        let bytes: [u8; HEX_ID_LEN / 2] = self.random();
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// An RFC-4122 version-4 event id.
    fn event_id(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.random()).into_uuid()
    }
}

impl<R: Rng + ?Sized> IdSource for R {}

/// True when `text` has the shape of an entity id.
pub fn is_entity_id(text: &str) -> bool {
    text.len() == ENTITY_ID_LEN && text.bytes().all(|byte| URL_SAFE.contains(&byte))
}

/// True when `text` has the shape of a dealer or department id.
pub fn is_hex_id(text: &str) -> bool {
    text.len() == HEX_ID_LEN
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn ids_have_the_documented_shapes() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            assert!(is_entity_id(&rng.entity_id()));
            assert!(is_hex_id(&rng.hex_id()));
            let event = rng.event_id();
            assert_eq!(event.get_version_num(), 4);
            assert_eq!(event.get_variant(), uuid::Variant::RFC4122);
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_ids() {
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (rng.entity_id(), rng.hex_id(), rng.event_id())
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn shape_checks_reject_near_misses() {
        assert!(!is_entity_id(&"a".repeat(42)));
        assert!(!is_entity_id(&format!("{}+", "a".repeat(42))));
        assert!(!is_hex_id(&"A".repeat(64)));
        assert!(!is_hex_id(&"a".repeat(63)));
    }
}
