//! The inbox tables: `events` (deduplicated deliveries) and `quarantine`.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use std::collections::HashMap;

use super::Backend;
use super::projection::{parameter_list, value_rows};
use crate::clock;
use crate::store::{
    EventFilter, EventRecord, EventState, Insertion, NewEvent, NewQuarantine, QuarantineRecord,
    Requeue, StoreError,
};

/// The `events` columns [`event_from_row`] reads (a macro so queries stay `&'static str`).
macro_rules! event_columns {
    () => {
        "e.seq, e.event_type, e.event_id, e.occurred_at, e.dealer_uuid, e.department_uuid, \
         e.received_at, e.delivery_count, e.state, e.error"
    };
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
        // NULL (through the outer join) once retention has removed the body.
        raw: if with_raw { row.try_get("raw")? } else { None },
    })
}

/// Most rows one multi-row `INSERT` carries (8 parameters each, well under both limits).
const ROWS_PER_STATEMENT: usize = 256;

/// Inserts each new key and counts each repeat, in one transaction.
///
/// Several replicas (and the processor) write `events` at once on PostgreSQL, so the locks
/// are taken in an order every writer shares, which leaves no room for a deadlock: new keys
/// first, sorted by key (two replicas inserting overlapping batches wait for each other in
/// one direction only); then the repeats' counters, by `seq`, the order in which the
/// processor marks events processed. The batch's arrival sequence numbers are drawn first
/// and handed out in batch order, so inserting by key does not reorder arrivals. SQLite has
/// one writer, and inserts in batch order.
pub(super) async fn insert_events(
    pool: &AnyPool,
    backend: Backend,
    batch: &[NewEvent],
) -> Result<Vec<Insertion>, StoreError> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    if backend == Backend::Postgres {
        // Stable, so a repeat within the batch stays after the copy it repeats.
        order.sort_by(|&a, &b| {
            (&batch[a].event_type, &batch[a].event_id)
                .cmp(&(&batch[b].event_type, &batch[b].event_id))
        });
    }
    let mut tx = pool.begin().await?;
    let arrivals = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(draw_sequence_numbers(&mut tx, batch.len()).await?),
    };
    // One multi-row INSERT per chunk: far fewer statements than one per event.
    let columns = if arrivals.is_some() { 8 } else { 7 };
    let mut stored = HashMap::new();
    for chunk in order.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO events (event_type, event_id, occurred_at, dealer_uuid, department_uuid, \
             received_at, last_received_at{}) VALUES {} ON CONFLICT (event_type, event_id) DO NOTHING \
             RETURNING seq, event_type, event_id",
            if arrivals.is_some() { ", seq" } else { "" },
            value_rows(chunk.len(), columns)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for &index in chunk {
            let event = &batch[index];
            query = query
                .bind(&event.event_type)
                .bind(&event.event_id)
                .bind(event.occurred_at)
                .bind(&event.dealer_uuid)
                .bind(&event.department_uuid)
                .bind(event.received_at)
                .bind(event.received_at);
            if let Some(arrivals) = &arrivals {
                query = query.bind(arrivals[index]);
            }
        }
        for row in query.fetch_all(&mut *tx).await? {
            let key = (
                row.try_get::<String, _>("event_type")?,
                row.try_get::<String, _>("event_id")?,
            );
            stored.insert(key, row.try_get::<i64, _>("seq")?);
        }
    }
    // The first copy of each stored key is the one accepted; every other copy is a repeat.
    let mut outcomes = vec![Insertion::Duplicate; batch.len()];
    let mut repeats = Vec::new();
    let mut bodies = Vec::with_capacity(stored.len());
    for &index in &order {
        let event = &batch[index];
        match stored.remove(&(event.event_type.clone(), event.event_id.clone())) {
            Some(seq) => {
                outcomes[index] = Insertion::Accepted;
                bodies.push((seq, &event.raw));
            }
            None => repeats.push(index),
        }
    }
    for chunk in bodies.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO event_bodies (seq, raw) VALUES {}",
            value_rows(chunk.len(), 2)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (seq, raw) in chunk {
            query = query.bind(*seq).bind(raw.to_vec());
        }
        query.execute(&mut *tx).await?;
    }
    let mut counted = Vec::with_capacity(repeats.len());
    for index in repeats {
        let event = &batch[index];
        let seq: i64 =
            sqlx::query("SELECT seq FROM events WHERE event_type = $1 AND event_id = $2")
                .bind(&event.event_type)
                .bind(&event.event_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("seq")?;
        counted.push((seq, event.received_at));
    }
    counted.sort_unstable();
    for (seq, received_at) in counted {
        sqlx::query(
            "UPDATE events SET delivery_count = delivery_count + 1, last_received_at = $2 \
             WHERE seq = $1",
        )
        .bind(seq)
        .bind(received_at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Takes `count` numbers from the `events.seq` sequence, ascending (PostgreSQL).
async fn draw_sequence_numbers(
    tx: &mut sqlx::AnyConnection,
    count: usize,
) -> Result<Vec<i64>, StoreError> {
    let rows = sqlx::query(
        "SELECT nextval(pg_get_serial_sequence('events', 'seq')) AS seq FROM generate_series(1, $1)",
    )
    .bind(count as i64)
    .fetch_all(&mut *tx)
    .await?;
    let mut numbers = rows
        .iter()
        .map(|row| row.try_get("seq"))
        .collect::<Result<Vec<i64>, _>>()?;
    numbers.sort_unstable();
    Ok(numbers)
}

/// Keeps the body once, in an explicit transaction: SQLite commits an autocommit statement
/// only when it is finished, and a commit that fails there (a full disk) would not reach a
/// caller that already has its `RETURNING` row, so the 202 would go out for nothing kept.
pub(super) async fn quarantine(
    pool: &AnyPool,
    item: &NewQuarantine,
) -> Result<Insertion, StoreError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "INSERT INTO quarantine (sha256, received_at, last_received_at, error, raw) \
         VALUES ($1, $2, $2, $3, $4) ON CONFLICT (sha256) DO UPDATE SET \
         delivery_count = quarantine.delivery_count + 1, last_received_at = excluded.last_received_at \
         RETURNING delivery_count",
    )
    .bind(&item.sha256)
    .bind(item.received_at)
    .bind(&item.error)
    .bind(item.raw.to_vec())
    .fetch_one(&mut *tx)
    .await?;
    let count: i64 = row.try_get("delivery_count")?;
    tx.commit().await?;
    Ok(if count == 1 {
        Insertion::Accepted
    } else {
        Insertion::Duplicate
    })
}

pub(super) async fn list_events(
    pool: &AnyPool,
    filter: &EventFilter,
) -> Result<Vec<EventRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events e WHERE ($1 IS NULL OR e.event_type = $1) AND e.seq > $2 ORDER BY e.seq LIMIT $3"
    ))
    .bind(&filter.event_type)
    .bind(filter.after_seq.unwrap_or(0))
    .bind(i64::from(filter.limit))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| event_from_row(row, false))
        .collect::<Result<_, _>>()?)
}

pub(super) async fn get_event(
    pool: &AnyPool,
    event_type: &str,
    event_id: &str,
) -> Result<Option<EventRecord>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        event_columns!(),
        ", b.raw FROM events e LEFT JOIN event_bodies b ON b.seq = e.seq \
         WHERE e.event_type = $1 AND e.event_id = $2"
    ))
    .bind(event_type)
    .bind(event_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| event_from_row(&row, true)).transpose()?)
}

pub(super) async fn pending_events(
    pool: &AnyPool,
    limit: u32,
) -> Result<Vec<EventRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        event_columns!(),
        ", b.raw FROM events e JOIN event_bodies b ON b.seq = e.seq WHERE e.state = 'pending' \
         ORDER BY e.seq LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| event_from_row(row, true))
        .collect::<Result<_, _>>()?)
}

pub(super) async fn requeue_failed(
    pool: &AnyPool,
    event_type: &str,
    event_id: &str,
) -> Result<Requeue, StoreError> {
    let updated = sqlx::query(
        "UPDATE events SET state = 'pending', error = NULL, processed_at = NULL \
         WHERE event_type = $1 AND event_id = $2 AND state = 'failed'",
    )
    .bind(event_type)
    .bind(event_id)
    .execute(pool)
    .await?
    .rows_affected();
    if updated == 1 {
        return Ok(Requeue::Requeued);
    }
    let state = sqlx::query("SELECT state FROM events WHERE event_type = $1 AND event_id = $2")
        .bind(event_type)
        .bind(event_id)
        .fetch_optional(pool)
        .await?;
    Ok(match state {
        None => Requeue::NotFound,
        Some(row) => {
            Requeue::NotFailed(EventState::from_stored(&row.try_get::<String, _>("state")?))
        }
    })
}

pub(super) async fn list_quarantine(
    pool: &AnyPool,
    limit: u32,
) -> Result<Vec<QuarantineRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT sha256, received_at, last_received_at, delivery_count, error, raw \
         FROM quarantine ORDER BY last_received_at DESC, sha256 LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
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

/// Marks events processed or failed, only if each is still pending (else nothing commits).
/// Rows are locked in `seq` order, the order every writer of `events` uses.
pub(super) async fn finish_events(
    tx: &mut sqlx::AnyConnection,
    processed: &[i64],
    failed: &[(i64, &str)],
) -> Result<(), StoreError> {
    let now = clock::now_millis();
    let mut updated = 0;
    for seqs in processed.chunks(500) {
        let sql = format!(
            "UPDATE events SET state = 'processed', error = NULL, processed_at = $1 \
             WHERE state = 'pending' AND seq IN ({})",
            parameter_list(2, seqs.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
        for seq in seqs {
            query = query.bind(*seq);
        }
        updated += query.execute(&mut *tx).await?.rows_affected();
    }
    for (seq, error) in failed {
        updated += sqlx::query(
            "UPDATE events SET state = 'failed', error = $2, processed_at = $3 WHERE seq = $1 AND state = 'pending'",
        )
        .bind(*seq)
        .bind(*error)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    let expected = (processed.len() + failed.len()) as u64;
    if updated == expected {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "{} of {expected} events were no longer pending",
            expected - updated
        )))
    }
}
