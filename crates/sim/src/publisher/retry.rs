//! The retry schedule. myKaarma documents "retried 5 times with exponential back-off plus
//! jitter" and no intervals, so the default is 1 initial attempt and 5 retries, 1 s doubling,
//! with equal jitter; every part is configurable and [`RetryPolicy::scaled`] shrinks the whole
//! schedule so tests can run it in milliseconds.

use std::fmt;
use std::time::Duration;

use rand::Rng;

use crate::duration::format_duration;

/// How the back-off is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// No randomness: exactly the back-off.
    None,
    /// Anywhere between zero and the back-off.
    Full,
    /// Half the back-off plus a random part of the other half: never shorter than half.
    #[default]
    Equal,
}

/// When failed attempts are retried.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt (myKaarma: 5).
    pub retries: u32,
    /// Back-off before the first retry.
    pub base: Duration,
    /// Growth of the back-off from one retry to the next.
    pub multiplier: f64,
    /// Longest back-off.
    pub max_delay: Duration,
    /// How the back-off is randomised.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    /// myKaarma's documented behaviour: 5 retries, exponential from 1 s, with jitter.
    fn default() -> Self {
        Self {
            retries: 5,
            base: Duration::from_secs(1),
            multiplier: 2.0,
            max_delay: Duration::from_secs(300),
            jitter: Jitter::Equal,
        }
    }
}

impl RetryPolicy {
    /// Attempts in all: the first plus the retries.
    pub fn attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// The same schedule with every delay multiplied by `factor` (e.g. 0.01 to run 100×
    /// faster in a test).
    pub fn scaled(mut self, factor: f64) -> Self {
        let factor = if factor.is_finite() && factor >= 0.0 {
            factor
        } else {
            1.0
        };
        self.base = self.base.mul_f64(factor);
        self.max_delay = self.max_delay.mul_f64(factor);
        self
    }

    /// The back-off before retry `retry` (1 for the first retry), before jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let seconds = self.base.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        Duration::try_from_secs_f64(seconds)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The wait before retry `retry`, jitter applied.
    pub fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let backoff = self.backoff(retry);
        match self.jitter {
            Jitter::None => backoff,
            Jitter::Full => backoff.mul_f64(rng.random::<f64>()),
            Jitter::Equal => backoff / 2 + (backoff / 2).mul_f64(rng.random::<f64>()),
        }
    }

    /// The back-offs of every retry, in order, before jitter.
    pub fn schedule(&self) -> Vec<Duration> {
        (1..=self.retries)
            .map(|retry| self.backoff(retry))
            .collect()
    }
}

impl fmt::Display for RetryPolicy {
    /// E.g. `1 + 5 retries after 1s, 2s, 4s, 8s, 16s (equal jitter)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let schedule: Vec<String> = self.schedule().into_iter().map(format_duration).collect();
        let jitter = match self.jitter {
            Jitter::None => "no jitter",
            Jitter::Full => "full jitter",
            Jitter::Equal => "equal jitter",
        };
        write!(
            f,
            "1 + {} retries after {} ({jitter})",
            self.retries,
            schedule.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn the_default_is_five_retries_doubling_from_one_second() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.attempts(), 6);
        assert_eq!(
            policy.schedule(),
            [1, 2, 4, 8, 16].map(Duration::from_secs).to_vec()
        );
        assert_eq!(
            policy.to_string(),
            "1 + 5 retries after 1s, 2s, 4s, 8s, 16s (equal jitter)"
        );
    }

    #[test]
    fn scaling_and_the_cap_shape_the_schedule() {
        let policy = RetryPolicy {
            max_delay: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        assert_eq!(
            policy.schedule(),
            [1, 2, 4, 5, 5].map(Duration::from_secs).to_vec()
        );
        let fast = RetryPolicy::default().scaled(0.01);
        assert_eq!(
            fast.schedule(),
            [10, 20, 40, 80, 160].map(Duration::from_millis).to_vec()
        );
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let mut rng = StdRng::seed_from_u64(11);
        for jitter in [Jitter::None, Jitter::Full, Jitter::Equal] {
            let policy = RetryPolicy {
                jitter,
                ..RetryPolicy::default()
            };
            for retry in 1..=5 {
                let backoff = policy.backoff(retry);
                let delay = policy.delay(retry, &mut rng);
                assert!(delay <= backoff, "{jitter:?} {retry}: {delay:?}");
                let floor = match jitter {
                    Jitter::None => backoff,
                    Jitter::Full => Duration::ZERO,
                    Jitter::Equal => backoff / 2,
                };
                assert!(delay >= floor, "{jitter:?} {retry}: {delay:?}");
            }
        }
    }
}
