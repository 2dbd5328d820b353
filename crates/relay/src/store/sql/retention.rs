//! Retention: removing what is finished and old, so the database stops growing.
//!
//! Candidates are looked up on a reader, so the scans never hold the writer (on SQLite, the
//! one connection ingest commits on). The deletes then run in one short transaction on the
//! writer, and each repeats its condition, since a candidate may have changed in between
//! (a replay makes a delivered change pending again).

use sqlx::{AnyPool, Row};

use super::super::{Pruned, StoreError};
use super::projection::parameter_list;

/// Most keys one `IN (…)` list binds.
const KEYS_PER_STATEMENT: usize = 500;

/// Removes up to `limit` finished records of each kind older than `before`.
pub(super) async fn prune(
    reader: &AnyPool,
    writer: &AnyPool,
    before: i64,
    limit: u32,
) -> Result<Pruned, StoreError> {
    // Each scan walks its table from the oldest row and stops at `limit` matches, so a pass
    // costs what it removes. Bodies lead the join (SQLite takes `CROSS JOIN`'s left side
    // as the outer loop): the event rows whose bodies are gone stay, and walking them on
    // every pass would cost the whole history.
    let bodies: Vec<i64> = candidates(
        reader,
        "SELECT b.seq AS key FROM event_bodies b CROSS JOIN events e WHERE e.seq = b.seq \
         AND e.state = 'processed' AND e.received_at < $1 ORDER BY b.seq LIMIT $2",
        before,
        limit,
    )
    .await?;
    let deliveries: Vec<i64> = candidates(
        reader,
        "SELECT id AS key FROM deliveries WHERE state = 'delivered' AND delivered_at < $1 \
         ORDER BY id LIMIT $2",
        before,
        limit,
    )
    .await?;
    // A change whose deliveries go in this pass is found by the next one.
    let changes: Vec<i64> = candidates(
        reader,
        "SELECT c.seq AS key FROM changes c WHERE c.created_at < $1 AND NOT EXISTS \
         (SELECT 1 FROM deliveries d WHERE d.change_seq = c.seq) ORDER BY c.seq LIMIT $2",
        before,
        limit,
    )
    .await?;
    let quarantine: Vec<String> = candidates(
        reader,
        "SELECT sha256 AS key FROM quarantine WHERE last_received_at < $1 ORDER BY sha256 LIMIT $2",
        before,
        limit,
    )
    .await?;

    let mut tx = writer.begin().await?;
    let pruned = Pruned {
        event_bodies: delete(
            &mut tx,
            "DELETE FROM event_bodies WHERE seq IN ({keys}) AND EXISTS \
             (SELECT 1 FROM events e WHERE e.seq = event_bodies.seq AND e.state = 'processed' \
             AND e.received_at < $1)",
            &bodies,
            before,
        )
        .await?,
        deliveries: delete(
            &mut tx,
            "DELETE FROM deliveries WHERE id IN ({keys}) AND state = 'delivered' AND delivered_at < $1",
            &deliveries,
            before,
        )
        .await?,
        changes: delete(
            &mut tx,
            "DELETE FROM changes WHERE seq IN ({keys}) AND NOT EXISTS \
             (SELECT 1 FROM deliveries d WHERE d.change_seq = changes.seq) AND created_at < $1",
            &changes,
            before,
        )
        .await?,
        quarantine: delete(
            &mut tx,
            "DELETE FROM quarantine WHERE sha256 IN ({keys}) AND last_received_at < $1",
            &quarantine,
            before,
        )
        .await?,
    };
    tx.commit().await?;
    Ok(pruned)
}

/// The `key` column of `sql`, bound to `before` and `limit`.
async fn candidates<K>(
    reader: &AnyPool,
    sql: &'static str,
    before: i64,
    limit: u32,
) -> Result<Vec<K>, StoreError>
where
    K: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    let rows = sqlx::query(sql)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(reader)
        .await?;
    Ok(rows
        .iter()
        .map(|row| row.try_get("key"))
        .collect::<Result<_, _>>()?)
}

/// Runs `sql` with `{keys}` replaced by placeholders for `keys` (after `$1`, `before`);
/// returns the rows removed.
async fn delete<K>(
    tx: &mut sqlx::AnyConnection,
    sql: &str,
    keys: &[K],
    before: i64,
) -> Result<u64, StoreError>
where
    K: for<'q> sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any> + Clone + Send + 'static,
{
    let mut removed = 0;
    for chunk in keys.chunks(KEYS_PER_STATEMENT) {
        let sql = sql.replace("{keys}", &parameter_list(2, chunk.len()));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(before);
        for key in chunk {
            query = query.bind(key.clone());
        }
        removed += query.execute(&mut *tx).await?.rows_affected();
    }
    Ok(removed)
}
