//! The state tables: `appointments` (the projection), `appointment_history` and `changes`,
//! and the one transaction that commits what processing produced.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use super::{inbox, outbox};
use crate::clock;
use crate::pipeline::{ChangeKind, Classification, Origin};
use crate::store::{
    AppointmentFilter, AppointmentRecord, ChangeFilter, ChangeRecord, HistoryRecord,
    ProcessedEvent, ProcessingOutcome, StoreError, Version,
};

macro_rules! change_columns {
    () => {
        "seq, id, event_seq, subject, kind, time, cloudevent"
    };
}

/// Most rows one multi-row statement writes or names (well under both databases' parameter
/// limits).
const ROWS_PER_STATEMENT: usize = 200;

pub(super) async fn commit_processing(
    pool: &AnyPool,
    batch: &[ProcessedEvent],
) -> Result<(), StoreError> {
    // Everything is serialized before the transaction starts, so the write lock is held
    // only while statements run.
    let plan = CommitPlan::of(batch);
    let now = clock::now_millis();
    let mut tx = pool.begin().await?;
    for (state, replaces) in &plan.states {
        write_state(&mut tx, state, *replaces).await?;
    }
    for rows in plan.histories.chunks(ROWS_PER_STATEMENT) {
        insert_histories(&mut tx, rows).await?;
    }
    let mut deliveries = Vec::new();
    for rows in plan.changes.chunks(ROWS_PER_STATEMENT) {
        deliveries.extend(insert_changes(&mut tx, rows, now).await?);
    }
    for rows in deliveries.chunks(ROWS_PER_STATEMENT) {
        outbox::enqueue(&mut tx, rows, now).await?;
    }
    inbox::finish_events(&mut tx, &plan.processed, &plan.failed).await?;
    tx.commit().await?;
    Ok(())
}

/// What one processing transaction writes, worked out before it begins.
struct CommitPlan<'a> {
    /// The last state of each appointment the batch touched, with the version it replaces
    /// (the one stored before the batch; `None` for a new appointment).
    states: Vec<(&'a AppointmentRecord, Option<i64>)>,
    histories: Vec<HistoryRow<'a>>,
    changes: Vec<ChangeRow<'a>>,
    processed: Vec<i64>,
    failed: Vec<(i64, &'a str)>,
}

struct HistoryRow<'a> {
    history: &'a HistoryRecord,
    kinds: String,
    fields: String,
}

struct ChangeRow<'a> {
    change: &'a ChangeRecord,
    cloudevent: String,
    routes: &'a [String],
}

impl<'a> CommitPlan<'a> {
    fn of(batch: &'a [ProcessedEvent]) -> Self {
        let mut plan = Self {
            states: Vec::new(),
            histories: Vec::new(),
            changes: Vec::new(),
            processed: Vec::new(),
            failed: Vec::new(),
        };
        let change_row = |change: &'a ChangeRecord, routes: &'a [String]| ChangeRow {
            change,
            cloudevent: change.cloudevent.to_string(),
            routes,
        };
        for event in batch {
            match &event.outcome {
                ProcessingOutcome::Failed(error) => plan.failed.push((event.seq, error)),
                ProcessingOutcome::Appointment(outcome) => {
                    if let Some(state) = &outcome.state {
                        match plan
                            .states
                            .iter_mut()
                            .find(|(kept, _)| kept.uuid == state.uuid)
                        {
                            // A later version in the same batch: only the last is written,
                            // still checked against what was stored before the batch.
                            Some((kept, _)) => *kept = state,
                            None => plan.states.push((state, outcome.replaces)),
                        }
                    }
                    let history = &outcome.history;
                    plan.histories.push(HistoryRow {
                        history,
                        kinds: serde_json::to_string(&history.classification.kinds)
                            .expect("kinds serialize"),
                        fields: serde_json::to_string(&history.fields)
                            .expect("field changes serialize"),
                    });
                    plan.changes
                        .push(change_row(&outcome.change, &event.routes));
                    plan.processed.push(event.seq);
                }
                ProcessingOutcome::Received(change) => {
                    plan.changes.push(change_row(change, &event.routes));
                    plan.processed.push(event.seq);
                }
            }
        }
        plan
    }
}

/// `($1, $2, …), (…)`: the `VALUES` list of `rows` rows of `columns` parameters.
pub(super) fn value_rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let parameters: Vec<String> = (1..=columns)
                .map(|column| format!("${}", row * columns + column))
                .collect();
            format!("({})", parameters.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$first, …`: the `IN (…)` list of `count` parameters numbered from `first`.
pub(super) fn parameter_list(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes the new state, only over the version it was computed from (or as a new row).
async fn write_state(
    tx: &mut AnyConnection,
    state: &AppointmentRecord,
    replaces: Option<i64>,
) -> Result<(), StoreError> {
    let sql = match replaces {
        Some(_) => {
            "UPDATE appointments SET dealer_uuid = $2, department_uuid = $3, status = $4, new_status = $5, \
             appointment_key = $6, start_time = $7, end_time = $8, start_sort = $9, is_cancelled = $10, \
             deleted = $11, version_timestamp = $12, version_seq = $13, version_event_id = $14, \
             appointment = $15, origin_event_id = $16, origin_timestamp = $17, created_at = $18, \
             updated_at = $19 WHERE uuid = $1 AND version_seq = $20"
        }
        None => {
            "INSERT INTO appointments (uuid, dealer_uuid, department_uuid, status, new_status, \
             appointment_key, start_time, end_time, start_sort, is_cancelled, deleted, version_timestamp, \
             version_seq, version_event_id, appointment, origin_event_id, origin_timestamp, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19) ON CONFLICT (uuid) DO NOTHING"
        }
    };
    let mut query = sqlx::query(sql)
        .bind(&state.uuid)
        .bind(&state.dealer_uuid)
        .bind(&state.department_uuid)
        .bind(&state.status)
        .bind(&state.new_status)
        .bind(&state.appointment_key)
        .bind(&state.start_time)
        .bind(&state.end_time)
        .bind(&state.start_sort)
        .bind(i64::from(state.is_cancelled))
        .bind(i64::from(state.deleted))
        .bind(state.version.timestamp)
        .bind(state.version.seq)
        .bind(&state.version.event_id)
        .bind(state.appointment.to_string())
        .bind(state.origin.as_ref().map(|origin| origin.event_id.clone()))
        .bind(state.origin.as_ref().map(|origin| origin.timestamp))
        .bind(state.created_at)
        .bind(state.updated_at);
    if let Some(replaces) = replaces {
        query = query.bind(replaces);
    }
    if query.execute(&mut *tx).await?.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "appointment {} changed under the processor",
            state.uuid
        )))
    }
}

async fn insert_histories(
    tx: &mut AnyConnection,
    rows: &[HistoryRow<'_>],
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO appointment_history (appointment_uuid, event_seq, event_id, event, new_status, \
         timestamp, kind, kinds, pair_of, fields, recorded_at) VALUES {}",
        value_rows(rows.len(), 11)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        let history = row.history;
        query = query
            .bind(&history.appointment_uuid)
            .bind(history.event_seq)
            .bind(&history.event_id)
            .bind(&history.event)
            .bind(&history.new_status)
            .bind(history.timestamp)
            .bind(history.classification.kind.as_str())
            .bind(&row.kinds)
            .bind(&history.classification.pair_of)
            .bind(&row.fields)
            .bind(history.recorded_at);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// Appends changes to the stream; returns the deliveries to enqueue, as (route, stored change).
async fn insert_changes<'a>(
    tx: &mut AnyConnection,
    rows: &[ChangeRow<'a>],
    now: i64,
) -> Result<Vec<(&'a str, ChangeRecord)>, StoreError> {
    let sql = format!(
        "INSERT INTO changes (id, event_seq, subject, kind, time, cloudevent, created_at) VALUES {} \
         RETURNING seq, id",
        value_rows(rows.len(), 7)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        let change = row.change;
        query = query
            .bind(&change.id)
            .bind(change.event_seq)
            .bind(&change.subject)
            .bind(change.kind.as_str())
            .bind(change.time)
            .bind(&row.cloudevent)
            .bind(now);
    }
    // RETURNING promises no order, so the positions are matched back by id.
    let stored = query.fetch_all(&mut *tx).await?;
    let mut positions = HashMap::with_capacity(stored.len());
    for row in &stored {
        positions.insert(
            row.try_get::<String, _>("id")?,
            row.try_get::<i64, _>("seq")?,
        );
    }
    let mut deliveries = Vec::new();
    for row in rows.iter().filter(|row| !row.routes.is_empty()) {
        let seq = *positions.get(&row.change.id).ok_or_else(|| {
            StoreError::Conflict(format!("change {} was not stored", row.change.id))
        })?;
        for route in row.routes {
            deliveries.push((
                route.as_str(),
                ChangeRecord {
                    seq,
                    ..row.change.clone()
                },
            ));
        }
    }
    Ok(deliveries)
}

macro_rules! appointment_columns {
    () => {
        "uuid, dealer_uuid, department_uuid, status, new_status, appointment_key, start_time, end_time, \
         start_sort, is_cancelled, deleted, version_timestamp, version_seq, version_event_id, appointment, \
         origin_event_id, origin_timestamp, created_at, updated_at"
    };
}

fn json_column(row: &AnyRow, column: &'static str) -> Result<Value, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|error| corrupt(column, error))
}

fn corrupt(column: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        column,
        reason: reason.to_string(),
    }
}

fn kind_column(row: &AnyRow) -> Result<ChangeKind, StoreError> {
    let kind: String = row.try_get("kind")?;
    ChangeKind::parse(&kind).ok_or_else(|| corrupt("kind", format!("unknown change kind {kind:?}")))
}

fn appointment_from_row(row: &AnyRow) -> Result<AppointmentRecord, StoreError> {
    let origin_event_id: Option<String> = row.try_get("origin_event_id")?;
    let origin_timestamp: Option<i64> = row.try_get("origin_timestamp")?;
    Ok(AppointmentRecord {
        uuid: row.try_get("uuid")?,
        dealer_uuid: row.try_get("dealer_uuid")?,
        department_uuid: row.try_get("department_uuid")?,
        status: row.try_get("status")?,
        new_status: row.try_get("new_status")?,
        appointment_key: row.try_get("appointment_key")?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        start_sort: row.try_get("start_sort")?,
        is_cancelled: row.try_get::<i64, _>("is_cancelled")? != 0,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        version: Version {
            timestamp: row.try_get("version_timestamp")?,
            seq: row.try_get("version_seq")?,
            event_id: row.try_get("version_event_id")?,
        },
        appointment: json_column(row, "appointment")?,
        origin: origin_event_id
            .zip(origin_timestamp)
            .map(|(event_id, timestamp)| Origin {
                event_id,
                timestamp,
            }),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) async fn get_appointment(
    pool: &AnyPool,
    uuid: &str,
) -> Result<Option<AppointmentRecord>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        appointment_columns!(),
        " FROM appointments WHERE uuid = $1"
    ))
    .bind(uuid)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(appointment_from_row).transpose()
}

pub(super) async fn list_appointments(
    pool: &AnyPool,
    filter: &AppointmentFilter,
) -> Result<Vec<AppointmentRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        appointment_columns!(),
        " FROM appointments WHERE ($1 IS NULL OR dealer_uuid = $1) AND ($2 IS NULL OR department_uuid = $2) \
         AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR start_sort >= $4) \
         AND ($5 IS NULL OR start_sort <= $5) AND uuid > $6 ORDER BY uuid LIMIT $7"
    ))
    .bind(&filter.dealer_uuid)
    .bind(&filter.department_uuid)
    .bind(&filter.status)
    .bind(&filter.start_from)
    .bind(&filter.start_to)
    .bind(filter.after_uuid.as_deref().unwrap_or(""))
    .bind(i64::from(filter.limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(appointment_from_row).collect()
}

pub(super) async fn appointment_history(
    pool: &AnyPool,
    uuid: &str,
) -> Result<Vec<HistoryRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT appointment_uuid, event_seq, event_id, event, new_status, timestamp, kind, kinds, pair_of, \
         fields, recorded_at FROM appointment_history WHERE appointment_uuid = $1 \
         ORDER BY timestamp, event_seq",
    )
    .bind(uuid)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let kinds: Vec<ChangeKind> = serde_json::from_value(json_column(row, "kinds")?)
                .map_err(|e| corrupt("kinds", e))?;
            Ok(HistoryRecord {
                appointment_uuid: row.try_get("appointment_uuid")?,
                event_seq: row.try_get("event_seq")?,
                event_id: row.try_get("event_id")?,
                event: row.try_get("event")?,
                new_status: row.try_get("new_status")?,
                timestamp: row.try_get("timestamp")?,
                classification: Classification {
                    kind: kind_column(row)?,
                    kinds,
                    pair_of: row.try_get("pair_of")?,
                },
                fields: serde_json::from_value(json_column(row, "fields")?)
                    .map_err(|e| corrupt("fields", e))?,
                recorded_at: row.try_get("recorded_at")?,
            })
        })
        .collect()
}

pub(super) async fn list_changes(
    pool: &AnyPool,
    filter: &ChangeFilter,
) -> Result<Vec<ChangeRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, id, event_seq, subject, kind, time, cloudevent FROM changes \
         WHERE seq > $1 AND ($2 IS NULL OR kind = $2) AND ($3 IS NULL OR time >= $3) \
         AND ($4 IS NULL OR time <= $4) ORDER BY seq LIMIT $5",
    )
    .bind(filter.after_seq.unwrap_or(0))
    .bind(filter.kind.map(ChangeKind::as_str))
    .bind(filter.time_from)
    .bind(filter.time_to)
    .bind(i64::from(filter.limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(change_from_row).collect()
}

/// The changes at these positions in the stream, by position, in one statement.
pub(super) async fn changes_by_seq(
    pool: &AnyPool,
    seqs: &[i64],
) -> Result<HashMap<i64, ChangeRecord>, StoreError> {
    let mut changes = HashMap::with_capacity(seqs.len());
    for chunk in seqs.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT {} FROM changes WHERE seq IN ({})",
            change_columns!(),
            parameter_list(1, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for seq in chunk {
            query = query.bind(*seq);
        }
        for row in query.fetch_all(pool).await? {
            let change = change_from_row(&row)?;
            changes.insert(change.seq, change);
        }
    }
    Ok(changes)
}

pub(super) async fn get_change(
    pool: &AnyPool,
    change_id: &str,
) -> Result<Option<ChangeRecord>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        change_columns!(),
        " FROM changes WHERE id = $1"
    ))
    .bind(change_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(change_from_row).transpose()
}

pub(super) async fn change_for_event(
    pool: &AnyPool,
    event_type: &str,
    event_id: &str,
) -> Result<Option<ChangeRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT c.seq, c.id, c.event_seq, c.subject, c.kind, c.time, c.cloudevent FROM changes c \
         JOIN events e ON e.seq = c.event_seq WHERE e.event_type = $1 AND e.event_id = $2",
    )
    .bind(event_type)
    .bind(event_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(change_from_row).transpose()
}

fn change_from_row(row: &AnyRow) -> Result<ChangeRecord, StoreError> {
    Ok(ChangeRecord {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        event_seq: row.try_get("event_seq")?,
        subject: row.try_get("subject")?,
        kind: kind_column(row)?,
        time: row.try_get("time")?,
        cloudevent: json_column(row, "cloudevent")?,
    })
}
