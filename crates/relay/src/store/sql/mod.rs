//! [`SqlStore`]: the [`Store`] on SQLite or PostgreSQL through sqlx's `Any` driver.
//!
//! The SQL is written once, in the subset both databases share (`$n` placeholders,
//! `ON CONFLICT`, epoch-millisecond integers); [`Backend`] covers the few places they differ.
//! On SQLite all writes go through one connection, so writers queue in the pool instead of
//! failing with `SQLITE_BUSY`, while reads use their own connections (WAL mode).
//!
//! On PostgreSQL several relays share the database: one of them processes at a time (the
//! holder of an advisory lock, [`Store::lead_processing`]), and a circuit breaker fails
//! every call at once while the server is unreachable, so senders get 503 instead of a hang.

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Executor, Row};
use tokio::sync::Mutex;

use super::{
    AppointmentFilter, AppointmentRecord, ChangeFilter, ChangeRecord, ClaimedDelivery,
    DeliveryCount, DeliveryFilter, DeliveryRecord, DeliveryState, EventFilter, EventRecord,
    FinishedAttempt, HistoryRecord, Insertion, NewEvent, NewQuarantine, ProcessedEvent, Pruned,
    QuarantineRecord, Requeue, Store, StoreError, StoreOptions,
};
use crate::clock;
use breaker::Breaker;

mod breaker;
mod inbox;
mod outbox;
mod projection;
mod retention;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Which database a [`SqlStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one file, one writer.
    Sqlite,
    /// The scale-out backend: several relays on one database.
    Postgres,
}

impl Backend {
    /// Picks the backend from a database URL.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }
}

/// The relay's store on SQLite or PostgreSQL.
pub struct SqlStore {
    backend: Backend,
    /// Every write goes here (a single connection on SQLite).
    writer: AnyPool,
    /// Reads for the API; on PostgreSQL the same pool as `writer`.
    reader: AnyPool,
    /// On PostgreSQL, the connection holding the processing lock while this process leads.
    leader: Mutex<Option<PoolConnection<Any>>>,
    /// On PostgreSQL, fails calls at once while the server is unreachable.
    breaker: Option<Arc<Breaker>>,
    /// On SQLite, the connection that moves committed WAL pages into the database file.
    checkpointer: Option<AnyPool>,
    /// On SQLite, the database file, whose filesystem must keep `min_free_bytes` free.
    database_file: Option<PathBuf>,
    min_free_bytes: u64,
    closed: AtomicBool,
}

/// The PostgreSQL advisory lock whose holder processes events ("kaarma" in ASCII).
const PROCESSING_LOCK: i64 = 0x6b61_6172_6d61;

impl SqlStore {
    /// Connects to `url` with default pool settings.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Connects to `url` (`sqlite://PATH` creates the file if needed; `postgres://…`).
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let backend = Backend::from_url(url)?;
        let acquire_timeout = Duration::from_secs(options.acquire_timeout_secs.max(1));
        let store = match backend {
            Backend::Sqlite => {
                let connect = AnyConnectOptions::from_str(&sqlite_url(url))?;
                let writer = sqlite_pool(1, SqliteRole::Writer, acquire_timeout)
                    .connect_with(connect.clone())
                    .await?;
                let reader = sqlite_pool(4, SqliteRole::Reader, acquire_timeout)
                    .connect_with(connect.clone())
                    .await?;
                let checkpointer = sqlite_pool(1, SqliteRole::Checkpointer, acquire_timeout)
                    .connect_with(connect)
                    .await?;
                tokio::spawn(checkpoint_until_closed(checkpointer.clone()));
                // An in-memory database has no file, and so no disk to fill.
                let file: String =
                    sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                        .fetch_one(&reader)
                        .await?;
                let mut store = Self::new(backend, writer, reader, None);
                store.checkpointer = Some(checkpointer);
                store.database_file =
                    Some(PathBuf::from(file)).filter(|file| !file.as_os_str().is_empty());
                store.min_free_bytes = options.min_free_bytes;
                store
            }
            Backend::Postgres => {
                let connect = AnyConnectOptions::from_str(url)?;
                let statement_timeout = options.statement_timeout_secs;
                let pool = AnyPoolOptions::new()
                    .max_connections(options.max_connections.max(2))
                    .acquire_timeout(acquire_timeout)
                    .after_connect(move |connection, _| {
                        Box::pin(async move {
                            // A stuck statement fails (and the sender retries) instead of
                            // holding a connection forever.
                            let timeout = format!("SET statement_timeout = '{statement_timeout}s'");
                            connection.execute(sqlx::AssertSqlSafe(timeout)).await?;
                            connection
                                .execute("SET idle_in_transaction_session_timeout = '60s'")
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(connect.clone())
                    .await?;
                Self::new(backend, pool.clone(), pool, Some(Breaker::new(connect)))
            }
        };
        Ok(store)
    }

    fn new(
        backend: Backend,
        writer: AnyPool,
        reader: AnyPool,
        breaker: Option<Arc<Breaker>>,
    ) -> Self {
        Self {
            backend,
            writer,
            reader,
            leader: Mutex::new(None),
            breaker,
            checkpointer: None,
            database_file: None,
            min_free_bytes: 0,
            closed: AtomicBool::new(false),
        }
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Brings the schema up to date.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.writer).await?;
        Ok(())
    }

    /// Fails when the store is closed or the database is known to be unreachable.
    fn ensure_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        match &self.breaker {
            Some(breaker) => breaker.check(),
            None => Ok(()),
        }
    }

    /// Runs one store operation: refused at once while closed or unreachable, and its
    /// failure shown to the breaker, which opens when the database is gone.
    async fn call<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.ensure_open()?;
        let result = operation.await;
        if let (Err(error), Some(breaker)) = (&result, &self.breaker) {
            breaker.observe(error);
        }
        result
    }
}

/// Adds `mode=rwc` (create if missing) unless the URL chooses a mode itself.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// What a SQLite connection is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SqliteRole {
    /// The one writer. It never checkpoints itself, so no commit waits for a checkpoint.
    Writer,
    /// A reader; it cannot write by mistake.
    Reader,
    /// Checkpoints the WAL in the background.
    Checkpointer,
}

/// SQLite connections: WAL so readers never block the writer, `synchronous=FULL` so a
/// commit is on disk before the relay answers 2xx.
fn sqlite_pool(
    max_connections: u32,
    role: SqliteRole,
    acquire_timeout: Duration,
) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |connection, _| {
            Box::pin(async move {
                connection.execute("PRAGMA busy_timeout = 5000").await?;
                connection.execute("PRAGMA journal_mode = WAL").await?;
                connection.execute("PRAGMA synchronous = FULL").await?;
                connection.execute("PRAGMA foreign_keys = ON").await?;
                match role {
                    SqliteRole::Writer => {
                        connection.execute("PRAGMA wal_autocheckpoint = 0").await?
                    }
                    SqliteRole::Reader => connection.execute("PRAGMA query_only = ON").await?,
                    SqliteRole::Checkpointer => return Ok(()),
                };
                Ok(())
            })
        })
}

/// Copies committed WAL frames into the database file a few times a second, beside the
/// writer instead of inside its commits (`PASSIVE` never blocks the writer or readers).
async fn checkpoint_until_closed(pool: AnyPool) {
    let mut every = tokio::time::interval(Duration::from_millis(250));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        every.tick().await;
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
            && !pool.is_closed()
        {
            tracing::warn!(%error, "WAL checkpoint failed");
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn insert_events(&self, batch: &[NewEvent]) -> Result<Vec<Insertion>, StoreError> {
        self.call(inbox::insert_events(&self.writer, self.backend, batch))
            .await
    }

    async fn quarantine(&self, item: &NewQuarantine) -> Result<Insertion, StoreError> {
        self.call(inbox::quarantine(&self.writer, item)).await
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        self.call(inbox::list_events(&self.reader, filter)).await
    }

    async fn get_event(
        &self,
        event_type: &str,
        event_id: &str,
    ) -> Result<Option<EventRecord>, StoreError> {
        self.call(inbox::get_event(&self.reader, event_type, event_id))
            .await
    }

    async fn list_quarantine(&self, limit: u32) -> Result<Vec<QuarantineRecord>, StoreError> {
        self.call(inbox::list_quarantine(&self.reader, limit)).await
    }

    async fn pending_events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        self.call(inbox::pending_events(&self.reader, limit)).await
    }

    async fn commit_processing(&self, batch: &[ProcessedEvent]) -> Result<(), StoreError> {
        self.call(projection::commit_processing(&self.writer, batch))
            .await
    }

    async fn requeue_failed(
        &self,
        event_type: &str,
        event_id: &str,
    ) -> Result<Requeue, StoreError> {
        self.call(inbox::requeue_failed(&self.writer, event_type, event_id))
            .await
    }

    async fn get_appointment(&self, uuid: &str) -> Result<Option<AppointmentRecord>, StoreError> {
        self.call(projection::get_appointment(&self.reader, uuid))
            .await
    }

    async fn list_appointments(
        &self,
        filter: &AppointmentFilter,
    ) -> Result<Vec<AppointmentRecord>, StoreError> {
        self.call(projection::list_appointments(&self.reader, filter))
            .await
    }

    async fn appointment_history(&self, uuid: &str) -> Result<Vec<HistoryRecord>, StoreError> {
        self.call(projection::appointment_history(&self.reader, uuid))
            .await
    }

    async fn list_changes(&self, filter: &ChangeFilter) -> Result<Vec<ChangeRecord>, StoreError> {
        self.call(projection::list_changes(&self.reader, filter))
            .await
    }

    async fn change_for_event(
        &self,
        event_type: &str,
        event_id: &str,
    ) -> Result<Option<ChangeRecord>, StoreError> {
        self.call(projection::change_for_event(
            &self.reader,
            event_type,
            event_id,
        ))
        .await
    }

    async fn get_change(&self, change_id: &str) -> Result<Option<ChangeRecord>, StoreError> {
        self.call(projection::get_change(&self.reader, change_id))
            .await
    }

    async fn claim_deliveries(
        &self,
        route: &str,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.call(outbox::claim(self, route, owner, now, lease_until, limit))
            .await
    }

    async fn finish_attempts(&self, attempts: &[FinishedAttempt]) -> Result<Vec<bool>, StoreError> {
        self.call(outbox::finish_attempts(&self.writer, attempts))
            .await
    }

    async fn next_delivery_due(&self, route: &str) -> Result<Option<i64>, StoreError> {
        self.call(outbox::next_due(&self.reader, route)).await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.call(outbox::list(&self.reader, filter)).await
    }

    async fn retry_delivery(&self, id: i64, now: i64) -> Result<Option<DeliveryState>, StoreError> {
        self.call(outbox::retry(&self.writer, id, now)).await
    }

    async fn requeue_changes(
        &self,
        route: &str,
        changes: &[ChangeRecord],
        now: i64,
    ) -> Result<u64, StoreError> {
        self.call(outbox::requeue(&self.writer, route, changes, now))
            .await
    }

    async fn delivery_counts(&self) -> Result<Vec<DeliveryCount>, StoreError> {
        self.call(outbox::counts(&self.reader)).await
    }

    async fn prune(&self, before: i64, limit: u32) -> Result<Pruned, StoreError> {
        self.call(retention::prune(&self.reader, &self.writer, before, limit))
            .await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.ensure_room()?;
        self.call(self.write_heartbeat()).await
    }

    async fn lead_processing(&self) -> Result<bool, StoreError> {
        self.call(self.take_processing_lock()).await
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Dropping the connection closes it, which releases the processing lock.
        if let Some(connection) = self.leader.lock().await.take() {
            let _ = connection.close().await;
        }
        self.writer.close().await;
        self.reader.close().await;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.close().await;
        }
    }
}

impl SqlStore {
    /// Fails while the SQLite database's filesystem has less than `min_free_bytes` free.
    fn ensure_room(&self) -> Result<(), StoreError> {
        let Some(path) = &self.database_file else {
            return Ok(());
        };
        let filesystem =
            rustix::fs::statvfs(path).map_err(|error| sqlx::Error::Io(error.into()))?;
        let free = filesystem.f_bavail.saturating_mul(filesystem.f_frsize);
        if free < self.min_free_bytes {
            return Err(StoreError::LowDiskSpace {
                path: path.clone(),
                free,
                floor: self.min_free_bytes,
            });
        }
        Ok(())
    }

    /// Rewrites the heartbeat row: proof that a write commits right now.
    async fn write_heartbeat(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO heartbeat (id, written_at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at",
        )
        .bind(clock::now_millis())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Holds (or takes, if free) the processing lock on a connection of its own.
    async fn take_processing_lock(&self) -> Result<bool, StoreError> {
        if self.backend == Backend::Sqlite {
            // One process owns a SQLite file: it always leads.
            return Ok(true);
        }
        let mut leader = self.leader.lock().await;
        if let Some(connection) = leader.as_mut() {
            match sqlx::query("SELECT 1").execute(&mut **connection).await {
                Ok(_) => return Ok(true),
                Err(error) => {
                    // The connection, and with it the lock, is gone (a database restart):
                    // another replica may lead now. The dead connection is not pooled again.
                    tracing::warn!(%error, "lost the processing lock");
                    if let Some(mut connection) = leader.take() {
                        connection.close_on_drop();
                    }
                }
            }
        }
        let mut connection = self.writer.acquire().await?;
        let locked: bool = sqlx::query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind(PROCESSING_LOCK)
            .fetch_one(&mut *connection)
            .await?
            .try_get("locked")?;
        if locked {
            tracing::info!("this replica now processes events");
            *leader = Some(connection);
        }
        Ok(locked)
    }
}
