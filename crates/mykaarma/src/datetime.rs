//! myKaarma's date-times. The documented form is `yyyy-MM-ddTHH:mm:ss` with no offset, but
//! the exact format of every field is not published, so parsing is tolerant: an optional
//! fraction, an optional offset (`Z`, `+05:30`, `+0530`), a space instead of `T`, a bare date,
//! or epoch milliseconds (as the MPI QA pages show). The original text is kept so a value is
//! written back exactly as it came.

use std::fmt;

use chrono::{FixedOffset, NaiveDate, NaiveDateTime, TimeZone};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A date-time as myKaarma sent it: parsed for comparison and ordering, with the original
/// representation kept for round trips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateTime {
    local: NaiveDateTime,
    offset: Option<FixedOffset>,
    original: Original,
}

/// How the value looked on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Original {
    Text(String),
    EpochMillis(i64),
}

/// Why a date-time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid date-time {0:?}: expected yyyy-MM-ddTHH:mm:ss with optional fraction and offset, yyyy-MM-dd, or epoch milliseconds"
)]
pub struct DateTimeError(pub String);

impl DateTime {
    /// Parses myKaarma's text forms (see the module docs).
    pub fn parse(text: &str) -> Result<Self, DateTimeError> {
        let (local, offset) = parse_text(text).ok_or_else(|| DateTimeError(text.to_owned()))?;
        Ok(Self {
            local,
            offset,
            original: Original::Text(text.to_owned()),
        })
    }

    /// Builds a date-time from epoch milliseconds (UTC).
    pub fn from_epoch_millis(millis: i64) -> Result<Self, DateTimeError> {
        let utc = chrono::DateTime::from_timestamp_millis(millis)
            .ok_or_else(|| DateTimeError(millis.to_string()))?;
        Ok(Self {
            local: utc.naive_utc(),
            offset: Some(FixedOffset::east_opt(0).expect("zero is a valid offset")),
            original: Original::EpochMillis(millis),
        })
    }

    /// Builds the documented wire form, `yyyy-MM-ddTHH:mm:ss`, from a wall-clock time.
    pub fn from_naive(local: NaiveDateTime) -> Self {
        let text = local.format("%Y-%m-%dT%H:%M:%S").to_string();
        Self {
            local,
            offset: None,
            original: Original::Text(text),
        }
    }

    /// The wall-clock time as written (the dealer's local time when no offset is given).
    pub fn naive(&self) -> NaiveDateTime {
        self.local
    }

    /// The offset, when the value carried one.
    pub fn offset(&self) -> Option<FixedOffset> {
        self.offset
    }

    /// The instant, when the value carried an offset (or was epoch milliseconds).
    pub fn to_instant(&self) -> Option<chrono::DateTime<FixedOffset>> {
        let offset = self.offset?;
        offset.from_local_datetime(&self.local).single()
    }

    /// The value exactly as it was received, as text.
    pub fn original(&self) -> String {
        match &self.original {
            Original::Text(text) => text.clone(),
            Original::EpochMillis(millis) => millis.to_string(),
        }
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original())
    }
}

fn parse_text(text: &str) -> Option<(NaiveDateTime, Option<FixedOffset>)> {
    let text = text.trim();
    if text.len() == 10 {
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        return Some((date.and_hms_opt(0, 0, 0)?, None));
    }
    // A space between date and time is common enough in myKaarma payloads (`mykCreatedDate`).
    let normalized;
    let text = if text.as_bytes().get(10) == Some(&b' ') {
        normalized = format!("{}T{}", &text[..10], &text[11..]);
        normalized.as_str()
    } else {
        text
    };
    if let Ok(local) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some((local, None));
    }
    if let Some(without_z) = text.strip_suffix(['Z', 'z']) {
        let local = NaiveDateTime::parse_from_str(without_z, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
        return Some((local, FixedOffset::east_opt(0)));
    }
    ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%z"]
        .iter()
        .find_map(|format| chrono::DateTime::parse_from_str(text, format).ok())
        .map(|instant| (instant.naive_local(), Some(*instant.offset())))
}

impl Serialize for DateTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.original {
            Original::Text(text) => serializer.serialize_str(text),
            Original::EpochMillis(millis) => serializer.serialize_i64(*millis),
        }
    }
}

impl<'de> Deserialize<'de> for DateTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Text(String),
            Millis(i64),
        }
        let wire = Wire::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a date-time string or epoch milliseconds")
        })?;
        match wire {
            Wire::Text(text) => DateTime::parse(&text),
            Wire::Millis(millis) => DateTime::from_epoch_millis(millis),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_and_tolerated_forms() {
        for (text, hms, offset_secs) in [
            ("2025-01-20T08:00:00", (8, 0, 0), None),
            ("2025-01-20T08:29:59.123", (8, 29, 59), None),
            ("2025-01-20T08:00:00Z", (8, 0, 0), Some(0)),
            ("2025-01-20T08:00:00.5+05:30", (8, 0, 0), Some(19800)),
            ("2025-01-20T08:00:00-0800", (8, 0, 0), Some(-28800)),
            ("2025-01-20 08:00:00", (8, 0, 0), None),
            ("2025-01-20", (0, 0, 0), None),
        ] {
            let parsed = DateTime::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let (h, m, s) = hms;
            let expected = NaiveDate::from_ymd_opt(2025, 1, 20)
                .unwrap()
                .and_hms_opt(h, m, s)
                .unwrap();
            assert_eq!(parsed.naive().date(), expected.date(), "{text}");
            assert_eq!(
                parsed.naive().time().format("%H:%M:%S").to_string(),
                expected.time().format("%H:%M:%S").to_string(),
                "{text}"
            );
            assert_eq!(
                parsed.offset().map(|o| o.local_minus_utc()),
                offset_secs,
                "{text}"
            );
            assert_eq!(parsed.original(), text);
        }
    }

    #[test]
    fn rejects_what_is_not_a_date_time() {
        for text in [
            "",
            "tomorrow",
            "2025-13-01T00:00:00",
            "2025-01-20T25:00:00",
            "2025-01-20T08:00:00+99:00x",
        ] {
            assert!(DateTime::parse(text).is_err(), "{text} should not parse");
        }
    }

    #[test]
    fn keeps_the_original_representation() {
        let text: DateTime = serde_json::from_str("\"2025-01-20T08:00:00.000\"").unwrap();
        assert_eq!(
            serde_json::to_string(&text).unwrap(),
            "\"2025-01-20T08:00:00.000\""
        );
        let millis: DateTime = serde_json::from_str("1736933400000").unwrap();
        assert_eq!(serde_json::to_string(&millis).unwrap(), "1736933400000");
        assert_eq!(
            millis.to_instant().unwrap().timestamp_millis(),
            1736933400000
        );
    }
}
