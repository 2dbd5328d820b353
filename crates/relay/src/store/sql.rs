//! [`SqlStore`]: the [`Store`] on SQLite or PostgreSQL through sqlx's `Any` driver.
//!
//! The SQL is written once, in the subset both databases share (`$n` placeholders,
//! `ON CONFLICT`, epoch-millisecond integers); [`Backend`] covers the few places they differ.
//! On SQLite all writes go through one connection, so writers queue in the pool instead of
//! failing with `SQLITE_BUSY`, while reads use their own connections (WAL mode).

use std::str::FromStr;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};

use super::{
    EventFilter, EventRecord, EventState, Insertion, NewEvent, NewQuarantine, QuarantineRecord,
    Store, StoreError,
};
use crate::clock;

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
    closed: AtomicBool,
}

/// The `events` columns [`event_from_row`] reads (a macro so queries stay `&'static str`).
macro_rules! event_columns {
    () => {
        "seq, event_type, event_id, occurred_at, dealer_uuid, department_uuid, received_at, \
         delivery_count, state, error"
    };
}

impl SqlStore {
    /// Connects to `url` (`sqlite://PATH` creates the file if needed; `postgres://…`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let backend = Backend::from_url(url)?;
        let store = match backend {
            Backend::Sqlite => {
                let options = AnyConnectOptions::from_str(&sqlite_url(url))?;
                let writer = sqlite_pool(1, false).connect_with(options.clone()).await?;
                let reader = sqlite_pool(4, true).connect_with(options).await?;
                Self::new(backend, writer, reader)
            }
            Backend::Postgres => {
                let options = AnyConnectOptions::from_str(url)?;
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await?;
                Self::new(backend, pool.clone(), pool)
            }
        };
        Ok(store)
    }

    fn new(backend: Backend, writer: AnyPool, reader: AnyPool) -> Self {
        Self {
            backend,
            writer,
            reader,
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

    fn ensure_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
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

/// SQLite connections: WAL so readers never block the writer, `synchronous=FULL` so a
/// commit is on disk before the relay answers 2xx.
fn sqlite_pool(max_connections: u32, read_only: bool) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |connection, _| {
            Box::pin(async move {
                connection.execute("PRAGMA busy_timeout = 5000").await?;
                connection.execute("PRAGMA journal_mode = WAL").await?;
                connection.execute("PRAGMA synchronous = FULL").await?;
                connection.execute("PRAGMA foreign_keys = ON").await?;
                if read_only {
                    connection.execute("PRAGMA query_only = ON").await?;
                }
                Ok(())
            })
        })
}

fn event_from_row(row: &AnyRow, with_raw: bool) -> Result<EventRecord, sqlx::Error> {
    Ok(EventRecord {
        seq: row.try_get("seq")?,
        event_type: row.try_get("event_type")?,
        event_id: row.try_get("event_id")?,
        occurred_at: row.try_get("occurred_at")?,
        dealer_uuid: row.try_get("dealer_uuid")?,
        department_uuid: row.try_get("department_uuid")?,
        received_at: row.try_get("received_at")?,
        delivery_count: row.try_get("delivery_count")?,
        state: EventState::from_stored(row.try_get::<String, _>("state")?.as_str()),
        error: row.try_get("error")?,
        raw: if with_raw {
            Some(row.try_get("raw")?)
        } else {
            None
        },
    })
}

#[async_trait]
impl Store for SqlStore {
    async fn insert_events(&self, batch: &[NewEvent]) -> Result<Vec<Insertion>, StoreError> {
        self.ensure_open()?;
        let mut tx = self.writer.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for event in batch {
            let inserted = sqlx::query(
                "INSERT INTO events (event_type, event_id, occurred_at, dealer_uuid, department_uuid, \
                 received_at, last_received_at, raw) VALUES ($1, $2, $3, $4, $5, $6, $6, $7) \
                 ON CONFLICT (event_type, event_id) DO NOTHING",
            )
            .bind(&event.event_type)
            .bind(&event.event_id)
            .bind(event.occurred_at)
            .bind(&event.dealer_uuid)
            .bind(&event.department_uuid)
            .bind(event.received_at)
            .bind(event.raw.to_vec())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                outcomes.push(Insertion::Accepted);
            } else {
                sqlx::query(
                    "UPDATE events SET delivery_count = delivery_count + 1, last_received_at = $3 \
                     WHERE event_type = $1 AND event_id = $2",
                )
                .bind(&event.event_type)
                .bind(&event.event_id)
                .bind(event.received_at)
                .execute(&mut *tx)
                .await?;
                outcomes.push(Insertion::Duplicate);
            }
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn quarantine(&self, item: &NewQuarantine) -> Result<Insertion, StoreError> {
        self.ensure_open()?;
        let inserted = sqlx::query(
            "INSERT INTO quarantine (sha256, received_at, last_received_at, error, raw) \
             VALUES ($1, $2, $2, $3, $4) ON CONFLICT (sha256) DO UPDATE SET \
             delivery_count = quarantine.delivery_count + 1, last_received_at = excluded.last_received_at \
             RETURNING delivery_count",
        )
        .bind(&item.sha256)
        .bind(item.received_at)
        .bind(&item.error)
        .bind(item.raw.to_vec())
        .fetch_one(&self.writer)
        .await?;
        let count: i64 = inserted.try_get("delivery_count")?;
        Ok(if count == 1 {
            Insertion::Accepted
        } else {
            Insertion::Duplicate
        })
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        self.ensure_open()?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE ($1 IS NULL OR event_type = $1) AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(&filter.event_type)
        .bind(filter.after_seq.unwrap_or(0))
        .bind(i64::from(filter.limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|row| event_from_row(row, false))
            .collect::<Result<_, _>>()?)
    }

    async fn get_event(
        &self,
        event_type: &str,
        event_id: &str,
    ) -> Result<Option<EventRecord>, StoreError> {
        self.ensure_open()?;
        let row = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            ", raw FROM events WHERE event_type = $1 AND event_id = $2"
        ))
        .bind(event_type)
        .bind(event_id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|row| event_from_row(&row, true)).transpose()?)
    }

    async fn list_quarantine(&self, limit: u32) -> Result<Vec<QuarantineRecord>, StoreError> {
        self.ensure_open()?;
        let rows = sqlx::query(
            "SELECT sha256, received_at, last_received_at, delivery_count, error, raw \
             FROM quarantine ORDER BY last_received_at DESC, sha256 LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        let record = |row: &AnyRow| -> Result<QuarantineRecord, sqlx::Error> {
            Ok(QuarantineRecord {
                sha256: row.try_get("sha256")?,
                received_at: row.try_get("received_at")?,
                last_received_at: row.try_get("last_received_at")?,
                delivery_count: row.try_get("delivery_count")?,
                error: row.try_get("error")?,
                raw: row.try_get("raw")?,
            })
        };
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.ensure_open()?;
        sqlx::query(
            "INSERT INTO heartbeat (id, written_at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at",
        )
        .bind(clock::now_millis())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.writer.close().await;
        self.reader.close().await;
    }
}
