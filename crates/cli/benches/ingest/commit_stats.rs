//! Where the relay's time goes, read from its own Prometheus histograms (the in-process
//! recorder the relay installs): how many group commits it ran, how many events each took,
//! how long each took, and how long the ingest handler took per request.

use std::time::Duration;

/// Totals of the relay's ingest histograms at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitStats {
    commits: f64,
    commit_seconds: f64,
    batched_events: f64,
    acks: f64,
    ack_seconds: f64,
    processed: f64,
    accepted: f64,
}

impl CommitStats {
    /// Reads the process-wide recorder now.
    pub fn now() -> Self {
        let text = kaarma_relay::telemetry::prometheus().render();
        let value = |name: &str| {
            text.lines()
                .filter_map(|line| line.split_once(' '))
                .find(|(key, _)| *key == name)
                .and_then(|(_, value)| value.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Self {
            commits: value("kaarma_relay_ingest_commit_seconds_count"),
            commit_seconds: value("kaarma_relay_ingest_commit_seconds_sum"),
            batched_events: value("kaarma_relay_ingest_batch_size_sum"),
            acks: value("kaarma_relay_ack_seconds_count"),
            ack_seconds: value("kaarma_relay_ack_seconds_sum"),
            accepted: value("kaarma_relay_webhooks_accepted_total"),
            // One counter per outcome label: add them up.
            processed: text
                .lines()
                .filter(|line| line.starts_with("kaarma_relay_events_processed_total"))
                .filter_map(|line| line.rsplit_once(' '))
                .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
                .sum(),
        }
    }

    /// What happened between `earlier` and `self`, over `elapsed`.
    pub fn since(&self, earlier: &Self, elapsed: Duration) -> CommitSummary {
        let commits = self.commits - earlier.commits;
        let acks = self.acks - earlier.acks;
        let per = |total: f64, count: f64| if count > 0.0 { total / count } else { 0.0 };
        CommitSummary {
            commits_per_second: commits / elapsed.as_secs_f64(),
            mean_batch: per(self.batched_events - earlier.batched_events, commits),
            mean_commit: Duration::from_secs_f64(per(
                self.commit_seconds - earlier.commit_seconds,
                commits,
            )),
            writer_busy: (self.commit_seconds - earlier.commit_seconds) / elapsed.as_secs_f64(),
            mean_handler: Duration::from_secs_f64(per(
                self.ack_seconds - earlier.ack_seconds,
                acks,
            )),
            processed_per_second: (self.processed - earlier.processed) / elapsed.as_secs_f64(),
            accepted: (self.accepted - earlier.accepted) as u64,
        }
    }
}

/// The relay's group commit during one run.
#[derive(Debug, Clone, Copy)]
pub struct CommitSummary {
    /// Transactions committed per second.
    pub commits_per_second: f64,
    /// Events per transaction.
    pub mean_batch: f64,
    /// Time per transaction (`insert_events`, including the fsync).
    pub mean_commit: Duration,
    /// Share of the wall time the single writer spent committing (1.0 = never idle).
    pub writer_busy: f64,
    /// Time the ingest handler took per request, as the relay measures it.
    pub mean_handler: Duration,
    /// Events the processor (which shares the single SQLite writer) got through per second.
    pub processed_per_second: f64,
    /// Events stored (accepted) during the run, warm-up included.
    pub accepted: u64,
}
