//! A SQLite store brought to a given size the fast way: the [`Workload`]'s events stored
//! through `SqlStore::insert_events` in large batches, then processed by the relay's own
//! [`Processor`] until nothing is pending — so the inbox, the appointment projection, the
//! history, the change stream and the outbox all hold what a relay that had received that
//! many events would hold.
//!
//! The processor enqueues every change for one route (`archive`, an HTTP sink that is never
//! called: no delivery worker runs), so each processed event also writes its outbox row, as
//! in a relay with a route. Those deliveries stay pending.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaarma_relay::config::ProcessingConfig;
use kaarma_relay::delivery::{RouteConfig, Routes};
use kaarma_relay::pipeline::Processor;
use kaarma_relay::store::{NewEvent, SqlStore, Store};
use tokio::sync::Notify;

use crate::workload::Workload;

/// Events per `insert_events` call while filling.
const FILL_INSERT_BATCH: usize = 1_000;
/// Events per processing transaction while filling.
const FILL_PROCESSING_BATCH: u32 = 1_024;
/// Events stored before they are processed, while filling.
const FILL_CHUNK: u64 = 20_000;

/// A store on a SQLite file and how many workload events it holds.
pub struct FilledStore {
    /// The store.
    pub store: Arc<SqlStore>,
    /// Events stored (and, after [`FilledStore::fill_to`], processed); the next event of the
    /// workload to store.
    pub stored: u64,
}

/// How long one stretch of filling took.
pub struct FillStretch {
    /// Events stored and processed.
    pub events: u64,
    /// Events stored before the stretch.
    pub from: u64,
    /// Time in `insert_events`.
    pub inserting: Duration,
    /// Time in `Processor::process_batch`.
    pub processing: Duration,
}

impl FilledStore {
    /// A fresh, migrated store in `dir`.
    pub async fn create(dir: &Path) -> anyhow::Result<Self> {
        let store = SqlStore::connect(&database_url(dir)).await?;
        store.migrate().await?;
        Ok(Self {
            store: Arc::new(store),
            stored: 0,
        })
    }

    /// Stores and processes workload events until `total` are stored, `FILL_CHUNK` at a
    /// time; returns one stretch per chunk.
    pub async fn fill_to(
        &mut self,
        workload: &Workload,
        total: u64,
        mut progress: impl FnMut(&FillStretch),
    ) -> anyhow::Result<Vec<FillStretch>> {
        let processor = processor(self.store.clone(), FILL_PROCESSING_BATCH);
        let mut stretches = Vec::new();
        while self.stored < total {
            let from = self.stored;
            let events = FILL_CHUNK.min(total - from);
            let mut inserting = Duration::ZERO;
            let mut left = events;
            while left > 0 {
                let count = FILL_INSERT_BATCH.min(left as usize);
                let batch = workload.events(self.stored, count, kaarma_relay::clock::now_millis());
                inserting += self.insert(&batch).await?;
                left -= count as u64;
            }
            let started = Instant::now();
            process_all(&processor).await?;
            let stretch = FillStretch {
                events,
                from,
                inserting,
                processing: started.elapsed(),
            };
            progress(&stretch);
            stretches.push(stretch);
        }
        Ok(stretches)
    }

    /// Flushes and closes the store.
    pub async fn close(self) {
        self.store.close().await;
    }

    /// Stores `batch` in one transaction (as one group commit); returns the time it took.
    pub async fn insert(&mut self, batch: &[NewEvent]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let outcomes = self.store.insert_events(batch).await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            outcomes
                .iter()
                .all(|outcome| *outcome == kaarma_relay::store::Insertion::Accepted),
            "every workload event is new"
        );
        self.stored += batch.len() as u64;
        Ok(elapsed)
    }
}

/// The relay's processor on `store`, with the default `[processing]` rules, enqueueing every
/// change for the `archive` route.
pub fn processor(store: Arc<dyn Store>, batch_size: u32) -> Processor {
    Processor::new(
        store,
        ProcessingConfig::default().rules(),
        Arc::new(routes()),
        Arc::new(Notify::new()),
        batch_size,
    )
}

/// Runs `process_batch` until nothing is pending; returns how many events it processed.
pub async fn process_all(processor: &Processor) -> anyhow::Result<u64> {
    let mut processed = 0;
    loop {
        let taken = processor.process_batch().await?;
        if taken == 0 {
            return Ok(processed);
        }
        processed += taken as u64;
    }
}

/// One route that takes every change, to an HTTP sink nobody calls.
fn routes() -> Routes {
    let config: RouteConfig = serde_json::from_value(serde_json::json!({
        "name": "archive",
        "sink": {
            "type": "http",
            "url": "http://127.0.0.1:9/never-called",
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        },
    }))
    .expect("the route configuration is valid");
    Routes::build(&[config]).expect("the route builds")
}

/// The SQLite URL of the store in `dir`.
pub fn database_url(dir: &Path) -> String {
    format!("sqlite://{}", database_path(dir).display())
}

/// The database file in `dir`.
pub fn database_path(dir: &Path) -> std::path::PathBuf {
    dir.join("relay.db")
}

/// The size of the files in `dir` (the database, its WAL and shared memory).
pub fn directory_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum()
}

/// The file beside a kept database that says how many workload events it holds.
const STORED_FILE: &str = "stored-events";

/// Moves the closed store's files from `dir` into `into` (created if needed), with a note of
/// how many events it holds, so another benchmark can start from it.
pub fn keep(dir: &Path, into: &Path, stored: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(into)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        std::fs::rename(entry.path(), into.join(entry.file_name()))?;
    }
    std::fs::write(into.join(STORED_FILE), stored.to_string())?;
    Ok(())
}

/// How many workload events the database kept in `dir` holds.
pub fn kept_events(dir: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(dir.join(STORED_FILE))
        .map_err(|error| anyhow::anyhow!("{}: not a kept database ({error})", dir.display()))?;
    Ok(text.trim().parse()?)
}
