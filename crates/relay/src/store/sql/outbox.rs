//! The `deliveries` table: the outbox the delivery workers lease work from.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use super::projection;
use super::{Backend, SqlStore};
use crate::store::{
    AttemptResult, ChangeRecord, ClaimedDelivery, DeliveryCount, DeliveryFilter, DeliveryRecord,
    DeliveryState, FinishedAttempt, StoreError,
};

macro_rules! delivery_columns {
    () => {
        "d.id, d.route, d.change_seq, d.change_id, d.subject, d.state, d.attempts, d.next_attempt_at, \
         d.last_error, d.last_status, d.enqueued_at, d.updated_at, d.delivered_at"
    };
}

/// The oldest undelivered delivery of each subject: the only one of the subject that may go
/// out (the rest wait for it to be delivered or to die). A delivery without a subject waits
/// for nobody. Each candidate costs one probe of the `deliveries_open` index for an earlier
/// open delivery of its subject; the claim walks candidates in stream order on
/// `deliveries_open_by_seq` and stops at its limit. (Grouping all the route's open
/// deliveries to find the heads cost seconds per claim with a million in the outbox.)
macro_rules! subject_heads {
    () => {
        "d.state IN ('pending', 'failed') AND (d.subject IS NULL OR NOT EXISTS \
         (SELECT 1 FROM deliveries e WHERE e.route = d.route AND e.subject = d.subject \
         AND e.state IN ('pending', 'failed') AND e.change_seq < d.change_seq))"
    };
}

/// Picks due deliveries: subject heads that are due and not leased by anyone.
macro_rules! due_deliveries {
    () => {
        concat!(
            "SELECT d.id FROM deliveries d WHERE d.route = $3 AND ",
            subject_heads!(),
            " AND d.next_attempt_at <= $4 AND (d.lease_until IS NULL OR d.lease_until < $4) \
             ORDER BY d.change_seq LIMIT $5"
        )
    };
}

/// Leases the due deliveries; the lease test is repeated outside the subquery so that two
/// workers racing for one row cannot both take it.
macro_rules! claim {
    ($lock:literal) => {
        concat!(
            "UPDATE deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN (",
            due_deliveries!(),
            $lock,
            ") AND (lease_until IS NULL OR lease_until < $4)"
        )
    };
}

fn state_column(row: &AnyRow) -> Result<DeliveryState, StoreError> {
    let state: String = row.try_get("state")?;
    DeliveryState::parse(&state).ok_or_else(|| StoreError::Corrupt {
        column: "state",
        reason: format!("unknown delivery state {state:?}"),
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRecord, StoreError> {
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        route: row.try_get("route")?,
        change_seq: row.try_get("change_seq")?,
        change_id: row.try_get("change_id")?,
        subject: row.try_get("subject")?,
        state: state_column(row)?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        last_status: row.try_get("last_status")?,
        enqueued_at: row.try_get("enqueued_at")?,
        updated_at: row.try_get("updated_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

/// Adds the deliveries of changes to routes, written with the changes themselves.
pub(super) async fn enqueue(
    tx: &mut AnyConnection,
    deliveries: &[(&str, ChangeRecord)],
    now: i64,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO deliveries (route, change_seq, change_id, subject, state, next_attempt_at, enqueued_at, \
         updated_at) VALUES {} ON CONFLICT (route, change_id) DO NOTHING",
        // Each row binds (route, change_seq, change_id, subject, now) and repeats `now`.
        (0..deliveries.len())
            .map(|row| {
                let at = |column: usize| format!("${}", row * 5 + column);
                format!(
                    "({}, {}, {}, {}, 'pending', {}, {}, {})",
                    at(1),
                    at(2),
                    at(3),
                    at(4),
                    at(5),
                    at(5),
                    at(5)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (route, change) in deliveries {
        query = query
            .bind(*route)
            .bind(change.seq)
            .bind(&change.id)
            .bind(&change.subject)
            .bind(now);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// Leases on the writer, then reads what was leased, and the changes to send, on a reader in
/// two statements, so a claim holds the single writer for one statement only.
pub(super) async fn claim(
    store: &SqlStore,
    route: &str,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: u32,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let (writer, reader) = (&store.writer, &store.reader);
    let claim = match store.backend {
        Backend::Sqlite => claim!(""),
        Backend::Postgres => claim!(" FOR UPDATE SKIP LOCKED"),
    };
    let claimed = sqlx::query(claim)
        .bind(owner)
        .bind(lease_until)
        .bind(route)
        .bind(now)
        .bind(i64::from(limit))
        .execute(writer)
        .await?
        .rows_affected();
    if claimed == 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM deliveries d WHERE d.route = $1 AND d.lease_owner = $2 AND d.lease_until = $3 \
         ORDER BY d.change_seq"
    ))
    .bind(route)
    .bind(owner)
    .bind(lease_until)
    .fetch_all(reader)
    .await?;
    let deliveries = rows
        .iter()
        .map(delivery_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let seqs: Vec<i64> = deliveries
        .iter()
        .map(|delivery| delivery.change_seq)
        .collect();
    let mut changes = projection::changes_by_seq(reader, &seqs).await?;
    deliveries
        .into_iter()
        .map(|delivery| {
            let change =
                changes
                    .remove(&delivery.change_seq)
                    .ok_or_else(|| StoreError::Corrupt {
                        column: "change_seq",
                        reason: format!("delivery {} names a missing change", delivery.id),
                    })?;
            Ok(ClaimedDelivery {
                delivery,
                change,
                lease_owner: owner.to_owned(),
            })
        })
        .collect()
}

/// Records the attempts in one transaction: one statement each, one commit (one fsync) for
/// all. Rows are updated in id order, an order every replica shares, so two transactions
/// never wait for each other in a cycle.
pub(super) async fn finish_attempts(
    pool: &AnyPool,
    attempts: &[FinishedAttempt],
) -> Result<Vec<bool>, StoreError> {
    let mut order: Vec<usize> = (0..attempts.len()).collect();
    order.sort_by_key(|&index| attempts[index].id);
    let mut recorded = vec![false; attempts.len()];
    let mut tx = pool.begin().await?;
    for index in order {
        recorded[index] = finish_attempt(&mut tx, &attempts[index]).await?;
    }
    tx.commit().await?;
    Ok(recorded)
}

async fn finish_attempt(
    tx: &mut AnyConnection,
    attempt: &FinishedAttempt,
) -> Result<bool, StoreError> {
    let now = attempt.finished_at;
    let (state, next_attempt_at, error, status, delivered_at) = match &attempt.result {
        AttemptResult::Delivered { status } => {
            (DeliveryState::Delivered, now, None, *status, Some(now))
        }
        AttemptResult::Retry {
            error,
            status,
            next_attempt_at,
        } => (
            DeliveryState::Failed,
            *next_attempt_at,
            Some(error.as_str()),
            *status,
            None,
        ),
        AttemptResult::Dead { error, status } => (
            DeliveryState::Dead,
            now,
            Some(error.as_str()),
            *status,
            None,
        ),
    };
    let updated = sqlx::query(
        "UPDATE deliveries SET state = $3, attempts = attempts + 1, next_attempt_at = $4, last_error = $5, \
         last_status = $6, delivered_at = $7, updated_at = $8, lease_owner = NULL, lease_until = NULL \
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(attempt.id)
    .bind(&attempt.lease_owner)
    .bind(state.as_str())
    .bind(next_attempt_at)
    .bind(error)
    .bind(status.map(i64::from))
    .bind(delivered_at)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// When the route can next claim something: the earliest time a subject head is due and
/// unleased. Deliveries waiting behind their subject's head do not count (they are not
/// claimable however overdue), nor do leased ones before their lease runs out; counting
/// them would wake the worker for nothing until the head is due.
pub(super) async fn next_due(pool: &AnyPool, route: &str) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT MIN(CASE WHEN d.lease_until > d.next_attempt_at THEN d.lease_until \
         ELSE d.next_attempt_at END) AS due FROM deliveries d WHERE d.route = $1 AND ",
        subject_heads!()
    ))
    .bind(route)
    .fetch_one(pool)
    .await?;
    Ok(row.try_get("due")?)
}

pub(super) async fn list(
    pool: &AnyPool,
    filter: &DeliveryFilter,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM deliveries d WHERE ($1 IS NULL OR d.route = $1) AND ($2 IS NULL OR d.state = $2) \
         AND ($3 IS NULL OR d.subject = $3) AND d.id > $4 ORDER BY d.id LIMIT $5"
    ))
    .bind(&filter.route)
    .bind(filter.state.map(DeliveryState::as_str))
    .bind(&filter.subject)
    .bind(filter.after_id.unwrap_or(0))
    .bind(i64::from(filter.limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(delivery_from_row).collect()
}

pub(super) async fn retry(
    pool: &AnyPool,
    id: i64,
    now: i64,
) -> Result<Option<DeliveryState>, StoreError> {
    let Some(row) = sqlx::query("SELECT state FROM deliveries WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let state: String = row.try_get("state")?;
    sqlx::query(
        "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $2, enqueued_at = $2, \
         updated_at = $2, last_error = NULL WHERE id = $1 AND state IN ('failed', 'dead')",
    )
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(DeliveryState::parse(&state))
}

/// Resets existing deliveries to pending with a fresh budget. One in flight loses its lease,
/// so the outcome of that attempt is not recorded over the replay and the change goes again.
pub(super) async fn requeue(
    pool: &AnyPool,
    route: &str,
    changes: &[ChangeRecord],
    now: i64,
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let mut count = 0;
    for change in changes {
        count += sqlx::query(
            "INSERT INTO deliveries (route, change_seq, change_id, subject, state, next_attempt_at, enqueued_at, \
             updated_at) VALUES ($1, $2, $3, $4, 'pending', $5, $5, $5) ON CONFLICT (route, change_id) DO UPDATE \
             SET state = 'pending', attempts = 0, next_attempt_at = excluded.next_attempt_at, \
             enqueued_at = excluded.enqueued_at, updated_at = excluded.updated_at, last_error = NULL, \
             delivered_at = NULL, lease_owner = NULL, lease_until = NULL",
        )
        .bind(route)
        .bind(change.seq)
        .bind(&change.id)
        .bind(&change.subject)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(count)
}

pub(super) async fn counts(pool: &AnyPool) -> Result<Vec<DeliveryCount>, StoreError> {
    let rows = sqlx::query(
        "SELECT route, state, COUNT(*) AS count, MIN(enqueued_at) AS oldest FROM deliveries \
         GROUP BY route, state ORDER BY route, state",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DeliveryCount {
                route: row.try_get("route")?,
                state: state_column(row)?,
                count: row.try_get("count")?,
                oldest_enqueued_at: row.try_get("oldest")?,
            })
        })
        .collect()
}
