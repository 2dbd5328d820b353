//! Retention: a background sweep that removes finished records older than
//! `[retention] keep_days`, so that the database holds a window of work instead of all of it.
//!
//! What goes and what stays is the store's rule ([`Store::prune`]); this module decides
//! when. Every replica on a shared PostgreSQL database may sweep it: the deletes repeat their
//! conditions, so two sweeps at once remove each row once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::store::{Pruned, Store, StoreError};

/// The `[retention]` table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days a finished record is kept: the body of a processed event, a delivered delivery,
    /// a change with nothing left to deliver, a quarantined body. 0 keeps everything.
    pub keep_days: u32,
    /// Seconds between sweeps.
    pub sweep_interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            keep_days: 0,
            sweep_interval_secs: 3600,
        }
    }
}

/// Rows of each kind one pass removes: few enough that a pass holds the writer briefly.
const ROWS_PER_PASS: u32 = 500;

/// The sweeper of one process.
pub struct Retention {
    store: Arc<dyn Store>,
    keep: Duration,
    interval: Duration,
}

impl Retention {
    /// A sweeper for `config`, or `None` when everything is kept.
    pub fn new(store: Arc<dyn Store>, config: &RetentionConfig) -> Option<Self> {
        (config.keep_days > 0).then(|| Self {
            store,
            keep: Duration::from_secs(u64::from(config.keep_days) * 86_400),
            interval: Duration::from_secs(config.sweep_interval_secs.max(1)),
        })
    }

    /// Sweeps at once and then every `sweep_interval_secs`, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let keep_ms = i64::try_from(self.keep.as_millis()).unwrap_or(i64::MAX);
        loop {
            let before = clock::now_millis().saturating_sub(keep_ms);
            match sweep(self.store.as_ref(), before, &shutdown).await {
                Ok(pruned) if pruned.total() > 0 => tracing::info!(
                    event_bodies = pruned.event_bodies,
                    deliveries = pruned.deliveries,
                    changes = pruned.changes,
                    quarantine = pruned.quarantine,
                    "retention removed finished records"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "retention sweep failed; trying again later"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = shutdown.cancelled() => break,
            }
        }
    }
}

/// Removes everything finished before `before` (epoch ms), one short pass at a time so that
/// ingest gets the writer in between; stops early on `shutdown`. Returns what it removed.
pub async fn sweep(
    store: &dyn Store,
    before: i64,
    shutdown: &CancellationToken,
) -> Result<Pruned, StoreError> {
    let mut total = Pruned::default();
    while !shutdown.is_cancelled() {
        let pruned = store.prune(before, ROWS_PER_PASS).await?;
        for (kind, count) in pruned.by_kind() {
            metrics::counter!("kaarma_relay_retention_removed_total", "kind" => kind)
                .increment(count);
        }
        total += pruned;
        if pruned.total() == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(total)
}
