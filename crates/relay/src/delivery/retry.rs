//! When to try a failed delivery again, and when to stop: exponential back-off with jitter,
//! up to a budget of attempts and age.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// A route's retry budget and back-off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts before a delivery is dead.
    pub max_attempts: u32,
    /// Seconds after enqueueing before a delivery is dead, however few its attempts.
    pub max_age_secs: u64,
    /// The first retry's delay, in milliseconds; each next one doubles.
    pub initial_backoff_ms: u64,
    /// The longest delay between attempts, in seconds.
    pub max_backoff_secs: u64,
    /// How much each delay varies, as a fraction (0.2 → ±20%), so retries do not arrive in step.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 20,
            max_age_secs: 24 * 60 * 60,
            initial_backoff_ms: 1000,
            max_backoff_secs: 600,
            jitter: 0.2,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Try again at this time (epoch ms).
    RetryAt(i64),
    /// The budget is spent.
    GiveUp,
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 for the first retry), before jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let doubled = self.initial_backoff_ms.saturating_mul(
            1u64.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u64::MAX),
        );
        Duration::from_millis(doubled.min(self.max_backoff_secs.saturating_mul(1000)))
    }

    /// After `attempts` failed attempts of a delivery enqueued at `enqueued_at`: when to try
    /// again, or give up. A destination's `Retry-After` wins over the back-off, but is never
    /// taken as shorter than the first retry's delay: `Retry-After: 0` (or a date gone by)
    /// would otherwise spend the whole budget in a burst.
    pub fn after_failure(
        &self,
        attempts: u32,
        enqueued_at: i64,
        now: i64,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> NextStep {
        if attempts >= self.max_attempts {
            return NextStep::GiveUp;
        }
        let floor = Duration::from_millis(self.initial_backoff_ms);
        let delay = retry_after
            .map(|after| after.max(floor))
            .unwrap_or_else(|| {
                let base = self.backoff(attempts).as_millis() as f64;
                let jitter = self.jitter.clamp(0.0, 1.0);
                Duration::from_millis((base * rng.random_range(1.0 - jitter..=1.0 + jitter)) as u64)
            });
        let at = now.saturating_add(delay.as_millis() as i64);
        let deadline = enqueued_at.saturating_add((self.max_age_secs.saturating_mul(1000)) as i64);
        if at > deadline {
            NextStep::GiveUp
        } else {
            NextStep::RetryAt(at)
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn backoff_starts_near_a_second_and_doubles_to_the_cap() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (1..=12)
            .map(|retry| policy.backoff(retry).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(policy.backoff(200), Duration::from_secs(600), "no overflow");
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let NextStep::RetryAt(at) = policy.after_failure(1, 0, 0, None, &mut rng) else {
                panic!()
            };
            assert!((800..=1200).contains(&at), "{at}");
        }
    }

    #[test]
    fn the_budget_ends_in_attempts_or_age() {
        let policy = RetryPolicy {
            max_attempts: 3,
            max_age_secs: 10,
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        assert!(matches!(
            policy.after_failure(2, 0, 0, None, &mut rng),
            NextStep::RetryAt(_)
        ));
        assert_eq!(
            policy.after_failure(3, 0, 0, None, &mut rng),
            NextStep::GiveUp
        );
        assert_eq!(
            policy.after_failure(1, 0, 9_900, None, &mut rng),
            NextStep::GiveUp,
            "too old"
        );
        let honoured = policy.after_failure(1, 0, 0, Some(Duration::from_secs(5)), &mut rng);
        assert_eq!(honoured, NextStep::RetryAt(5_000), "Retry-After wins");
        let shortened = policy.after_failure(4, 0, 0, Some(Duration::from_secs(2)), &mut rng);
        assert_eq!(shortened, NextStep::GiveUp, "the budget still holds");
        let long = RetryPolicy::default();
        let later = long.after_failure(6, 0, 0, Some(Duration::from_secs(2)), &mut rng);
        assert_eq!(
            later,
            NextStep::RetryAt(2_000),
            "also when shorter than the back-off"
        );
        let now = long.after_failure(1, 0, 0, Some(Duration::ZERO), &mut rng);
        assert_eq!(now, NextStep::RetryAt(1_000), "never below the first delay");
    }
}
