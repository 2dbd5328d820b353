//! The emulator's clock: the envelope `timestamp` of every change. It starts at a chosen
//! instant (the real time by default) and runs at real speed from there, so a run given the
//! same seed and start time stamps the same events with the same times.

use std::time::Instant;

/// A clock that reads `start_ms` at creation and advances with real time.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    start_ms: i64,
    started: Instant,
}

impl SimClock {
    /// A clock reading `start_ms` (epoch milliseconds) now.
    pub fn starting_at(start_ms: i64) -> Self {
        Self {
            start_ms,
            started: Instant::now(),
        }
    }

    /// A clock reading the real time.
    pub fn real() -> Self {
        Self::starting_at(chrono::Utc::now().timestamp_millis())
    }

    /// The time it started at, epoch milliseconds.
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    /// The current time, epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.start_ms + i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX / 2)
    }
}
