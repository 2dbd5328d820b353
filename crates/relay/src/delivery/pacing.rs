//! A route's rate limit: attempts start at least `1 / rate_limit` seconds apart.
//!
//! The worker asks how many attempts it may start before it claims, so it never holds a
//! leased delivery while waiting for its turn (a shutdown would leave it leased).

use std::time::{Duration, Instant};

/// When the next attempt of a rate-limited route may start.
#[derive(Debug)]
pub struct Pacing {
    gap: Duration,
    next_start: Instant,
}

impl Pacing {
    /// Pacing for `rate` attempts per second (a positive, finite number: the route
    /// configuration checks it).
    pub fn new(rate: f64, now: Instant) -> Self {
        Self {
            gap: Duration::from_secs_f64(1.0 / rate),
            next_start: now,
        }
    }

    /// How many attempts may start at `now`: one once the gap since the last has passed.
    pub fn allowance(&self, now: Instant) -> u32 {
        u32::from(now >= self.next_start)
    }

    /// Records that an attempt started at `now`.
    pub fn started(&mut self, now: Instant) {
        self.next_start = now + self.gap;
    }

    /// How long until the next attempt may start (zero when it may start now).
    pub fn wait(&self, now: Instant) -> Duration {
        self.next_start.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_spaced_by_the_rate() {
        let start = Instant::now();
        let mut pacing = Pacing::new(4.0, start);
        assert_eq!(pacing.allowance(start), 1);
        assert_eq!(pacing.wait(start), Duration::ZERO);
        pacing.started(start);
        assert_eq!(pacing.allowance(start), 0);
        assert_eq!(pacing.wait(start), Duration::from_millis(250));
        let later = start + Duration::from_millis(249);
        assert_eq!(pacing.allowance(later), 0);
        let due = start + Duration::from_millis(250);
        assert_eq!(pacing.allowance(due), 1);
        assert_eq!(
            pacing.allowance(start + Duration::from_secs(10)),
            1,
            "idle time does not build up a burst"
        );
    }
}
