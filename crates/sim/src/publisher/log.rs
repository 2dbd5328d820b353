//! The delivery log: one entry per attempt and one per finished delivery, so a run can say
//! exactly what was sent, when, and what the target answered.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum AttemptOutcome {
    /// The target answered 2xx.
    Acknowledged {
        /// The status code.
        status: u16,
    },
    /// The target answered something else.
    Refused {
        /// The status code.
        status: u16,
    },
    /// No complete answer within the timeout.
    TimedOut,
    /// The request could not be made or the connection broke.
    Unreachable {
        /// What went wrong.
        error: String,
    },
}

impl AttemptOutcome {
    /// True for a 2xx answer.
    pub fn is_acknowledged(&self) -> bool {
        matches!(self, Self::Acknowledged { .. })
    }
}

/// One attempt to deliver one copy of one event to one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryAttempt {
    /// The envelope id.
    pub event_id: String,
    /// The appointment the event is about.
    pub appointment_uuid: String,
    /// The endpoint.
    pub url: String,
    /// 0 for the event, 1 for its duplicate.
    pub copy: u32,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When the request was sent, epoch milliseconds (real time).
    pub sent_at_ms: i64,
    /// From sending the request to the end of the answer (or the failure).
    #[serde(serialize_with = "as_millis")]
    pub latency: Duration,
    /// What the target did.
    pub outcome: AttemptOutcome,
    /// True when the `fail-first` fault abandoned this attempt whatever the answer.
    pub abandoned: bool,
}

impl DeliveryAttempt {
    /// True when the attempt delivered the event.
    pub fn succeeded(&self) -> bool {
        self.outcome.is_acknowledged() && !self.abandoned
    }
}

/// One copy of one event to one endpoint, after its last attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    /// The envelope id.
    pub event_id: String,
    /// The endpoint.
    pub url: String,
    /// 0 for the event, 1 for its duplicate.
    pub copy: u32,
    /// Attempts made.
    pub attempts: u32,
    /// True when an attempt succeeded; false when the retries ran out.
    pub delivered: bool,
}

fn as_millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64() * 1000.0)
}

/// Totals over everything logged, kept exactly even when old entries are trimmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryTotals {
    /// Attempts made.
    pub attempts: u64,
    /// Attempts after the first of their delivery.
    pub retries: u64,
    /// Deliveries finished.
    pub deliveries: u64,
    /// Deliveries whose retries ran out.
    pub failures: u64,
}

/// The target's answer times over the 2xx answers (abandoned ones included: the target did
/// answer them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// Answers measured.
    pub count: usize,
    /// Median.
    #[serde(serialize_with = "as_millis")]
    pub p50: Duration,
    /// 90th percentile.
    #[serde(serialize_with = "as_millis")]
    pub p90: Duration,
    /// 99th percentile.
    #[serde(serialize_with = "as_millis")]
    pub p99: Duration,
    /// Slowest.
    #[serde(serialize_with = "as_millis")]
    pub max: Duration,
}

impl LatencySummary {
    /// Percentiles (nearest rank) of `samples`.
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let rank = |fraction: f64| -> Duration {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let index = (fraction * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Self {
            count: samples.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default)]
struct Entries {
    attempts: VecDeque<DeliveryAttempt>,
    deliveries: VecDeque<DeliveryRecord>,
    totals: DeliveryTotals,
}

/// The log, shared by every delivery task. Keeps at most `limit` attempts and deliveries (the
/// oldest go first); totals are always exact.
#[derive(Debug, Clone)]
pub struct DeliveryLog {
    entries: Arc<Mutex<Entries>>,
    limit: usize,
}

impl DeliveryLog {
    /// A log keeping at most `limit` entries of each kind.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            entries: Arc::default(),
            limit: limit.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic elsewhere cannot leave the log half-written: every update is one push.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records an attempt.
    pub fn record_attempt(&self, attempt: DeliveryAttempt) {
        let mut entries = self.lock();
        entries.totals.attempts += 1;
        if attempt.attempt > 1 {
            entries.totals.retries += 1;
        }
        if entries.attempts.len() == self.limit {
            entries.attempts.pop_front();
        }
        entries.attempts.push_back(attempt);
    }

    /// Records a finished delivery.
    pub fn record_delivery(&self, record: DeliveryRecord) {
        let mut entries = self.lock();
        entries.totals.deliveries += 1;
        if !record.delivered {
            entries.totals.failures += 1;
        }
        if entries.deliveries.len() == self.limit {
            entries.deliveries.pop_front();
        }
        entries.deliveries.push_back(record);
    }

    /// Every attempt kept, oldest first.
    pub fn attempts(&self) -> Vec<DeliveryAttempt> {
        self.lock().attempts.iter().cloned().collect()
    }

    /// Every finished delivery kept, oldest first.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.lock().deliveries.iter().cloned().collect()
    }

    /// Exact totals.
    pub fn totals(&self) -> DeliveryTotals {
        self.lock().totals
    }

    /// Answer times of the kept 2xx attempts.
    pub fn ack_latency(&self) -> LatencySummary {
        LatencySummary::of(
            self.lock()
                .attempts
                .iter()
                .filter(|attempt| attempt.outcome.is_acknowledged())
                .map(|attempt| attempt.latency)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let summary = LatencySummary::of(samples);
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50, Duration::from_millis(50));
        assert_eq!(summary.p90, Duration::from_millis(90));
        assert_eq!(summary.p99, Duration::from_millis(99));
        assert_eq!(summary.max, Duration::from_millis(100));
        assert_eq!(LatencySummary::of(Vec::new()), LatencySummary::default());
        let one = LatencySummary::of(vec![Duration::from_millis(7)]);
        assert_eq!(
            (one.p50, one.p99, one.max),
            (one.max, one.max, Duration::from_millis(7))
        );
    }

    #[test]
    fn totals_stay_exact_when_entries_are_trimmed() {
        let log = DeliveryLog::with_limit(2);
        for attempt in 1..=3 {
            log.record_attempt(DeliveryAttempt {
                event_id: "e".into(),
                appointment_uuid: "a".into(),
                url: "http://x".into(),
                copy: 0,
                attempt,
                sent_at_ms: 0,
                latency: Duration::from_millis(u64::from(attempt)),
                outcome: AttemptOutcome::Acknowledged { status: 200 },
                abandoned: attempt < 3,
            });
        }
        assert_eq!(log.attempts().len(), 2);
        let totals = log.totals();
        assert_eq!((totals.attempts, totals.retries), (3, 2));
        assert_eq!(log.ack_latency().count, 2);
    }
}
