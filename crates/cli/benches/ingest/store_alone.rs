//! The store without HTTP or the processor: `SqlStore::insert_events` called back to back
//! with batches of a fixed size, on a fresh file. It shows what one group commit costs at
//! each batch size, and so how much of the relay's acknowledgement time is the store itself
//! and how much is waiting for it (the processor shares the single SQLite writer).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaarma_relay::store::{NewEvent, SqlStore, Store};

use crate::deliveries::Deliveries;

/// What committing batches of one size achieved.
pub struct StoreRun {
    /// Events per transaction.
    pub batch: usize,
    /// Transactions committed.
    pub commits: usize,
    /// Time spent in `insert_events` (building the batches is not counted).
    pub elapsed: Duration,
    /// Size of the database files afterwards.
    pub database_bytes: u64,
}

impl StoreRun {
    /// Events stored per second.
    pub fn events_per_second(&self) -> f64 {
        (self.commits * self.batch) as f64 / self.elapsed.as_secs_f64()
    }

    /// Mean time per transaction.
    pub fn per_commit(&self) -> Duration {
        self.elapsed / u32::try_from(self.commits.max(1)).unwrap_or(u32::MAX)
    }
}

/// Commits batches of `batch` events into a fresh store in `dir` for about `duration`.
pub async fn run(
    dir: &Path,
    deliveries: Arc<Deliveries>,
    batch: usize,
    duration: Duration,
    run: u32,
) -> anyhow::Result<StoreRun> {
    let store = SqlStore::connect(&format!("sqlite://{}", dir.join("store.db").display())).await?;
    store.migrate().await?;
    let mut sequence = 0_u64;
    let mut commits = 0;
    let mut elapsed = Duration::ZERO;
    while elapsed < duration {
        let events: Vec<NewEvent> = (0..batch)
            .map(|_| {
                sequence += 1;
                let delivery = deliveries.delivery(run, 0, sequence);
                NewEvent {
                    event_type: "appointments".to_owned(),
                    event_id: format!("{run:08x}-{sequence:012x}"),
                    occurred_at: Some(1_736_933_400_000),
                    dealer_uuid: Some("bench-dealer".to_owned()),
                    department_uuid: Some("bench-department".to_owned()),
                    received_at: 1_736_933_400_000,
                    raw: delivery.body,
                }
            })
            .collect();
        let started = Instant::now();
        store.insert_events(&events).await?;
        elapsed += started.elapsed();
        commits += 1;
    }
    store.close().await;
    let database_bytes = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum();
    Ok(StoreRun {
        batch,
        commits,
        elapsed,
        database_bytes,
    })
}
