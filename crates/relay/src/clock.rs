//! The relay keeps time as epoch milliseconds (portable across SQLite and PostgreSQL) and
//! shows it as RFC 3339 in the API.

use chrono::{DateTime, SecondsFormat, Utc};

/// Now, in epoch milliseconds.
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

/// Epoch milliseconds as RFC 3339 (`2025-01-15T09:30:00.000Z`).
pub fn rfc3339(millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}
