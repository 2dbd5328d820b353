//! Durable storage behind one trait, so the service runs on the embedded SQLite default or on
//! PostgreSQL with the same behaviour. [`SqlStore`] implements it for both; tests may wrap it
//! to inject faults.

mod records;
mod sql;

use async_trait::async_trait;

pub use records::*;
pub use sql::{Backend, SqlStore};

/// Pool settings (`[store]` in the configuration).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreOptions {
    /// Most connections to PostgreSQL (SQLite uses one writer and four readers).
    pub max_connections: u32,
    /// Seconds to wait for a free connection before failing (the sender then gets 503).
    pub acquire_timeout_secs: u64,
    /// Seconds a PostgreSQL statement may run before it is cancelled.
    pub statement_timeout_secs: u64,
    /// On SQLite, `/readyz` fails while the database's filesystem has less room than this.
    /// A full disk refuses every new event, yet the heartbeat row still rewrites in place.
    pub min_free_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout_secs: 5,
            statement_timeout_secs: 10,
            min_free_bytes: 64 << 20,
        }
    }
}

/// A failure of the store. Every variant means "not committed": callers answer 503 and the
/// sender retries.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database URL names a backend this build does not support.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// PostgreSQL cannot be reached (down, restarting, or the network is); calls fail at once
    /// until a background probe connects again.
    #[error("the database is unreachable; reconnecting")]
    Unreachable,
    /// The store is closed (the service is shutting down).
    #[error("the store is shutting down")]
    Closed,
    /// Another writer changed what this transaction relied on; nothing was committed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The SQLite database's filesystem is (nearly) full.
    #[error("{free} bytes free for {path}, below store.min_free_bytes ({floor})")]
    LowDiskSpace {
        /// The database file.
        path: std::path::PathBuf,
        /// Bytes an unprivileged writer may still use there.
        free: u64,
        /// The configured floor.
        floor: u64,
    },
    /// A stored column could not be read back.
    #[error("corrupt stored value in `{column}`: {reason}")]
    Corrupt {
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    /// Whether the database refused a value it was given: a data exception or a broken
    /// constraint (PostgreSQL SQLSTATE classes 22 and 23; SQLite's too-big, constraint and
    /// mismatch codes) or a value that could not be encoded. Writing the same value again
    /// fails again, unlike an outage, a timeout or a conflict between transactions.
    pub fn refuses_the_data(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Encode(_)) => true,
            Self::Database(sqlx::Error::Database(error)) => {
                error.code().is_some_and(|code| match code.len() {
                    // PostgreSQL's SQLSTATE: five characters, the class first.
                    5 => code.starts_with("22") || code.starts_with("23"),
                    // SQLite's extended result code: the primary code in its low byte.
                    _ => code
                        .parse::<u32>()
                        .is_ok_and(|code| matches!(code & 0xff, 18..=20)),
                })
            }
            _ => false,
        }
    }
}

/// Everything the relay keeps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a batch of deliveries in one transaction (group commit): each new
    /// `(event_type, event_id)` is inserted, each repeat counted. Outcomes are in batch order;
    /// a repeat within the batch is a duplicate of the earlier one.
    async fn insert_events(&self, batch: &[NewEvent]) -> Result<Vec<Insertion>, StoreError>;

    /// Keeps a verified but unusable body, once per distinct body.
    async fn quarantine(&self, item: &NewQuarantine) -> Result<Insertion, StoreError>;

    /// Events in arrival order, after the cursor.
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError>;

    /// One event with its raw body.
    async fn get_event(
        &self,
        event_type: &str,
        event_id: &str,
    ) -> Result<Option<EventRecord>, StoreError>;

    /// Quarantined bodies, newest first.
    async fn list_quarantine(&self, limit: u32) -> Result<Vec<QuarantineRecord>, StoreError>;

    /// Pending events with their raw bodies, in arrival order.
    async fn pending_events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError>;

    /// Commits what processing a batch produced, all or nothing: projection rows (each
    /// checked against the version it replaces), history, changes and event states.
    async fn commit_processing(&self, batch: &[ProcessedEvent]) -> Result<(), StoreError>;

    /// Makes a failed event pending again, to be processed anew.
    async fn requeue_failed(&self, event_type: &str, event_id: &str)
    -> Result<Requeue, StoreError>;

    /// One appointment's current state.
    async fn get_appointment(&self, uuid: &str) -> Result<Option<AppointmentRecord>, StoreError>;

    /// Appointments by uuid, after the cursor.
    async fn list_appointments(
        &self,
        filter: &AppointmentFilter,
    ) -> Result<Vec<AppointmentRecord>, StoreError>;

    /// One appointment's history, oldest first.
    async fn appointment_history(&self, uuid: &str) -> Result<Vec<HistoryRecord>, StoreError>;

    /// Changes in stream order.
    async fn list_changes(&self, filter: &ChangeFilter) -> Result<Vec<ChangeRecord>, StoreError>;

    /// The change a source event produced.
    async fn change_for_event(
        &self,
        event_type: &str,
        event_id: &str,
    ) -> Result<Option<ChangeRecord>, StoreError>;

    /// One change by id.
    async fn get_change(&self, change_id: &str) -> Result<Option<ChangeRecord>, StoreError>;

    /// Leases up to `limit` due deliveries of `route` to `owner` until `lease_until`: the
    /// oldest undelivered change of each subject only, so a subject's changes go out in order.
    async fn claim_deliveries(
        &self,
        route: &str,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records how attempts ended, in one transaction, and releases their leases. For each
    /// attempt in order, `false` when its owner no longer held the lease (another worker took
    /// it over after the lease ran out), so its outcome was not recorded.
    async fn finish_attempts(&self, attempts: &[FinishedAttempt]) -> Result<Vec<bool>, StoreError>;

    /// When [`Store::claim_deliveries`] can next take something for `route`: the earliest
    /// time one of its claimable deliveries (the oldest undelivered of its subject) is due and
    /// unleased; `None` when there is nothing undelivered.
    async fn next_delivery_due(&self, route: &str) -> Result<Option<i64>, StoreError>;

    /// Deliveries by id, after the cursor.
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Makes a failed or dead delivery due now with a fresh budget; `None` if there is no such
    /// delivery, else its state before.
    async fn retry_delivery(&self, id: i64, now: i64) -> Result<Option<DeliveryState>, StoreError>;

    /// Enqueues `changes` for `route` again (new deliveries, or existing ones reset to
    /// pending); returns how many.
    async fn requeue_changes(
        &self,
        route: &str,
        changes: &[ChangeRecord],
        now: i64,
    ) -> Result<u64, StoreError>;

    /// Delivery counts per route and state.
    async fn delivery_counts(&self) -> Result<Vec<DeliveryCount>, StoreError>;

    /// Asks to be the process that processes events. Events apply in one order, so on a
    /// shared database one replica at a time leads; `false` while another does.
    async fn lead_processing(&self) -> Result<bool, StoreError>;

    /// Removes, in one transaction, up to `limit` records of each kind that finished before
    /// `before` (epoch ms): bodies of processed events, delivered deliveries, changes no
    /// delivery refers to, and quarantined bodies. Pending, failed and dead work, event
    /// rows, appointments and their history are never removed.
    async fn prune(&self, before: i64, limit: u32) -> Result<Pruned, StoreError>;

    /// Proves the store takes writes right now and has room for more (for `/readyz`).
    async fn check_writable(&self) -> Result<(), StoreError>;

    /// Flushes and closes connections; later calls fail with [`StoreError::Closed`].
    async fn close(&self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_value_counts_as_refused_data() {
        let refused = StoreError::Database(sqlx::Error::Encode("no".into()));
        assert!(refused.refuses_the_data());
        for passing in [
            StoreError::Database(sqlx::Error::PoolTimedOut),
            StoreError::Unreachable,
            StoreError::Closed,
            StoreError::Conflict("another writer".into()),
        ] {
            assert!(!passing.refuses_the_data(), "{passing}");
        }
    }
}
