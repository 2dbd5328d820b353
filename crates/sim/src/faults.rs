//! Fault injection: the ways the emulator can misbehave, each a knob, all off by default.
//!
//! Written on the command line (and in the control API) as a comma-separated list:
//!
//! ```text
//! duplicates=0.2,reorder=0.3,reorder-window=500ms,fail-first=2,drop-ack=0.1,corrupt=0.05,legacy=0.3,delay=50ms
//! ```
//!
//! | knob | meaning |
//! |---|---|
//! | `duplicates=P` | fraction of events delivered a second time: same body, same id, starting up to `reorder-window` after the first copy, so the two may race |
//! | `reorder=P` | fraction of events held back for a random time up to `reorder-window` before their first attempt, so later events overtake them (timestamps stay as created) |
//! | `reorder-window=D` | the window of `reorder` and `duplicates` (default 500ms) |
//! | `delay=D` | every event waits this long before its first attempt (sender lag) |
//! | `fail-first=N` | the first N attempts of every event are abandoned as failures whatever the response (the request *is* sent, so the receiver may have stored it) and retried |
//! | `drop-ack=P` | fraction of changes the DMS never acknowledges |
//! | `corrupt=P` | fraction of events followed by an extra event (new id) whose payload is not valid JSON, not an object, or has wrong types; never instead of a genuine event |
//! | `legacy=P` | fraction of envelopes sent in the older shape (`dataType`, `eventType: "pointInTime"`) |
//!
//! `none` (or an empty string) turns everything off.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use mykaarma::EnvelopeFormat;
use rand::Rng;

use crate::duration::{format_duration, parse_duration};

/// Every fault knob. `Faults::default()` injects nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Fraction of events delivered twice.
    pub duplicates: f64,
    /// Fraction of events held back so later ones overtake them.
    pub reorder: f64,
    /// How long an event may be held back (and how far apart duplicates may start).
    pub reorder_window: Duration,
    /// Lag before every event's first attempt.
    pub delay: Duration,
    /// Attempts of every event abandoned as failures before one is allowed to succeed.
    pub fail_first: u32,
    /// Fraction of changes the DMS never acknowledges.
    pub drop_ack: f64,
    /// Fraction of events followed by a corrupted extra event.
    pub corrupt: f64,
    /// Fraction of envelopes in the older shape.
    pub legacy: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            duplicates: 0.0,
            reorder: 0.0,
            reorder_window: Duration::from_millis(500),
            delay: Duration::ZERO,
            fail_first: 0,
            drop_ack: 0.0,
            corrupt: 0.0,
            legacy: 0.0,
        }
    }
}

/// Why a fault string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultsError {
    /// A knob this emulator does not have.
    #[error(
        "unknown fault {0:?}: expected duplicates, reorder, reorder-window, delay, fail-first, drop-ack, corrupt or legacy"
    )]
    UnknownKnob(String),
    /// A knob without `=value`.
    #[error("fault {0:?} needs a value, e.g. {0}=0.1")]
    MissingValue(String),
    /// A value that does not fit the knob.
    #[error("fault {knob}: {reason}")]
    BadValue {
        /// The knob.
        knob: String,
        /// What is wrong with its value.
        reason: String,
    },
}

/// What the faults decided for one event's delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryFaults {
    /// How long the first copy waits before its first attempt.
    pub hold: Duration,
    /// `Some(gap)` when a duplicate copy is sent, starting `gap` after the first.
    pub duplicate_after: Option<Duration>,
    /// Attempts of the first copy abandoned as failures.
    pub failing_attempts: u32,
}

/// How a corrupted extra event is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    /// The payload string is cut short: not valid JSON.
    Truncated,
    /// The payload string holds a JSON array, not an object.
    NotAnObject,
    /// The payload is an object whose fields have the wrong types.
    WrongTypes,
}

/// Draws `true` with probability `p` (clamped to 0..=1, so a bad value never panics).
fn chance(rng: &mut impl Rng, p: f64) -> bool {
    p > 0.0 && rng.random::<f64>() < p
}

impl Faults {
    /// True when no knob is set.
    pub fn is_none(&self) -> bool {
        Faults {
            reorder_window: self.reorder_window,
            ..Faults::default()
        } == *self
    }

    /// Decides how one event is delivered.
    pub fn delivery(&self, rng: &mut impl Rng) -> DeliveryFaults {
        let window = |rng: &mut dyn rand::RngCore| {
            Duration::from_secs_f64(self.reorder_window.as_secs_f64() * rng.random::<f64>())
        };
        let mut hold = self.delay;
        if chance(rng, self.reorder) {
            hold += window(rng);
        }
        let duplicate_after = chance(rng, self.duplicates).then(|| window(rng));
        DeliveryFaults {
            hold,
            duplicate_after,
            failing_attempts: self.fail_first,
        }
    }

    /// The envelope shape of one event.
    pub fn envelope_format(&self, rng: &mut impl Rng) -> EnvelopeFormat {
        if chance(rng, self.legacy) {
            EnvelopeFormat::Legacy {
                event_type: Some("pointInTime".to_owned()),
                source: None,
            }
        } else {
            EnvelopeFormat::Current
        }
    }

    /// Whether the DMS drops its acknowledgement of one change.
    pub fn drops_ack(&self, rng: &mut impl Rng) -> bool {
        chance(rng, self.drop_ack)
    }

    /// Whether one event is followed by a corrupted extra, and how it is broken.
    pub fn corruption(&self, rng: &mut impl Rng) -> Option<Corruption> {
        chance(rng, self.corrupt).then(|| match rng.random_range(0..3) {
            0 => Corruption::Truncated,
            1 => Corruption::NotAnObject,
            _ => Corruption::WrongTypes,
        })
    }
}

impl FromStr for Faults {
    type Err = FaultsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut faults = Faults::default();
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Ok(faults);
        }
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (knob, value) = item
                .split_once('=')
                .ok_or_else(|| FaultsError::MissingValue(item.to_owned()))?;
            let (knob, value) = (knob.trim(), value.trim());
            let bad = |reason: String| FaultsError::BadValue {
                knob: knob.to_owned(),
                reason,
            };
            let probability = || -> Result<f64, FaultsError> {
                let p: f64 = value
                    .parse()
                    .map_err(|_| bad(format!("{value:?} is not a number")))?;
                if (0.0..=1.0).contains(&p) {
                    Ok(p)
                } else {
                    Err(bad(format!("{value} is not a fraction between 0 and 1")))
                }
            };
            let duration = || parse_duration(value).map_err(|error| bad(error.to_string()));
            match knob {
                "duplicates" => faults.duplicates = probability()?,
                "reorder" => faults.reorder = probability()?,
                "reorder-window" => faults.reorder_window = duration()?,
                "delay" => faults.delay = duration()?,
                "fail-first" => {
                    faults.fail_first = value
                        .parse()
                        .map_err(|_| bad(format!("{value:?} is not a whole number")))?
                }
                "drop-ack" => faults.drop_ack = probability()?,
                "corrupt" => faults.corrupt = probability()?,
                "legacy" => faults.legacy = probability()?,
                other => return Err(FaultsError::UnknownKnob(other.to_owned())),
            }
        }
        Ok(faults)
    }
}

impl fmt::Display for Faults {
    /// Writes the knobs that are set, in the syntax [`Faults::from_str`] reads; `none` if none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let defaults = Faults::default();
        let mut items = Vec::new();
        let mut fraction = |name: &str, value: f64| {
            if value > 0.0 {
                items.push(format!("{name}={value}"));
            }
        };
        fraction("duplicates", self.duplicates);
        fraction("reorder", self.reorder);
        if self.reorder_window != defaults.reorder_window {
            items.push(format!(
                "reorder-window={}",
                format_duration(self.reorder_window)
            ));
        }
        if !self.delay.is_zero() {
            items.push(format!("delay={}", format_duration(self.delay)));
        }
        if self.fail_first > 0 {
            items.push(format!("fail-first={}", self.fail_first));
        }
        let mut fraction = |name: &str, value: f64| {
            if value > 0.0 {
                items.push(format!("{name}={value}"));
            }
        };
        fraction("drop-ack", self.drop_ack);
        fraction("corrupt", self.corrupt);
        fraction("legacy", self.legacy);
        if items.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&items.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn parses_the_documented_example() {
        let faults: Faults = "duplicates=0.2,reorder=0.3,reorder-window=500ms,fail-first=2,drop-ack=0.1,corrupt=0.05,legacy=0.3,delay=50ms"
            .parse()
            .unwrap();
        assert_eq!(
            faults,
            Faults {
                duplicates: 0.2,
                reorder: 0.3,
                reorder_window: Duration::from_millis(500),
                delay: Duration::from_millis(50),
                fail_first: 2,
                drop_ack: 0.1,
                corrupt: 0.05,
                legacy: 0.3,
            }
        );
        assert_eq!(faults.to_string().parse::<Faults>(), Ok(faults));
    }

    #[test]
    fn none_is_the_default() {
        for text in ["", "none", " NONE "] {
            let faults: Faults = text.parse().unwrap();
            assert!(faults.is_none());
            assert_eq!(faults.to_string(), "none");
        }
        assert!(!"legacy=1".parse::<Faults>().unwrap().is_none());
    }

    #[test]
    fn each_mistake_is_named() {
        let cases = [
            ("typo=1", "unknown fault \"typo\""),
            ("duplicates", "fault \"duplicates\" needs a value"),
            (
                "reorder=1.5",
                "fault reorder: 1.5 is not a fraction between 0 and 1",
            ),
            ("corrupt=lots", "fault corrupt: \"lots\" is not a number"),
            (
                "fail-first=-1",
                "fault fail-first: \"-1\" is not a whole number",
            ),
            ("delay=5", "fault delay: invalid duration \"5\""),
        ];
        for (text, expected) in cases {
            let error = text.parse::<Faults>().unwrap_err().to_string();
            assert!(error.starts_with(expected), "{text}: {error}");
        }
    }

    #[test]
    fn decisions_follow_the_knobs() {
        let mut rng = StdRng::seed_from_u64(5);
        let none = Faults::default();
        for _ in 0..100 {
            assert_eq!(none.delivery(&mut rng), DeliveryFaults::default());
            assert_eq!(none.envelope_format(&mut rng), EnvelopeFormat::Current);
            assert!(!none.drops_ack(&mut rng) && none.corruption(&mut rng).is_none());
        }
        let all: Faults = "duplicates=1,reorder=1,reorder-window=100ms,fail-first=3,drop-ack=1,corrupt=1,legacy=1,delay=10ms"
            .parse()
            .unwrap();
        for _ in 0..100 {
            let delivery = all.delivery(&mut rng);
            assert!(delivery.hold >= Duration::from_millis(10));
            assert!(delivery.hold <= Duration::from_millis(110));
            assert!(delivery.duplicate_after.unwrap() <= Duration::from_millis(100));
            assert_eq!(delivery.failing_attempts, 3);
            assert!(matches!(
                all.envelope_format(&mut rng),
                EnvelopeFormat::Legacy { .. }
            ));
            assert!(all.drops_ack(&mut rng) && all.corruption(&mut rng).is_some());
        }
    }
}
