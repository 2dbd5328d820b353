//! What kind of change an event is, and whether it is only the DMS echoing a change myKaarma
//! already sent.
//!
//! Every applicable kind is listed in `kinds`; the primary `kind` is the first of them in
//! this precedence (the declaration order of [`ChangeKind`]):
//! `stale` > `deleted` > `created` > `cancelled` > `rescheduled` > `status_changed` >
//! `dms_acknowledged` > `updated` > `unchanged`. (`received` is for events that are not
//! appointments and stands alone.)

use mykaarma::AppointmentEventName;
use serde::{Deserialize, Serialize};

use super::diff::{FieldChange, path_is_under};

/// A derived change kind; stable names that routes filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Older than the applied version: recorded, not applied.
    Stale,
    /// A `DELETED` event.
    Deleted,
    /// The first version of the appointment the relay has seen.
    Created,
    /// Status became `CANCELLED` or `isCancelled` became true.
    Cancelled,
    /// `date`, `startTime` or `endTime` moved.
    Rescheduled,
    /// `status` or `newStatus` changed.
    StatusChanged,
    /// Only DMS-owned fields changed (or nothing), right after a myKaarma change: the DMS echo.
    DmsAcknowledged,
    /// Anything else changed.
    Updated,
    /// The same content under a new event id.
    Unchanged,
    /// A customer, repair-order or inspection event, passed on as received.
    Received,
}

impl ChangeKind {
    /// The stable name (`rescheduled`, `dms_acknowledged`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::Deleted => "deleted",
            Self::Created => "created",
            Self::Cancelled => "cancelled",
            Self::Rescheduled => "rescheduled",
            Self::StatusChanged => "status_changed",
            Self::DmsAcknowledged => "dms_acknowledged",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Received => "received",
        }
    }

    /// Every kind, in precedence order.
    pub const ALL: [ChangeKind; 10] = [
        Self::Stale,
        Self::Deleted,
        Self::Created,
        Self::Cancelled,
        Self::Rescheduled,
        Self::StatusChanged,
        Self::DmsAcknowledged,
        Self::Updated,
        Self::Unchanged,
        Self::Received,
    ];

    /// Reads a stable name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Which fields the DMS owns and how long after a myKaarma change its echo may come.
#[derive(Debug, Clone)]
pub struct PairingRules {
    /// JSON Pointers of DMS-owned fields (default `/appointmentKey`, `/dispatchCode`).
    pub dms_fields: Vec<String>,
    /// Longest gap, in milliseconds, between a myKaarma change and its acknowledgement.
    pub window_ms: i64,
}

/// The latest myKaarma-originated change of an appointment, which a DMS echo pairs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Its event id.
    pub event_id: String,
    /// Its version timestamp, epoch ms.
    pub timestamp: i64,
}

/// What the appointment was before this event, as far as classification cares.
#[derive(Debug, Clone)]
pub struct Before {
    /// Whether it was cancelled.
    pub cancelled: bool,
    /// The myKaarma change a DMS echo would pair with.
    pub origin: Option<Origin>,
}

/// The kinds of one applied event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The primary kind.
    pub kind: ChangeKind,
    /// Every kind that applies, in precedence order.
    pub kinds: Vec<ChangeKind>,
    /// For a DMS echo, the event id of the myKaarma change it acknowledges.
    pub pair_of: Option<String>,
}

impl Classification {
    /// The classification of an event older than the applied version.
    pub fn stale() -> Self {
        Self::only(ChangeKind::Stale)
    }

    /// A classification with a single kind.
    pub fn only(kind: ChangeKind) -> Self {
        Self {
            kind,
            kinds: vec![kind],
            pair_of: None,
        }
    }

    /// True when the change came from myKaarma itself (not an echo, not a no-op), so a later
    /// DMS echo pairs with it.
    pub fn is_origin(&self) -> bool {
        !matches!(
            self.kind,
            ChangeKind::Stale
                | ChangeKind::DmsAcknowledged
                | ChangeKind::Unchanged
                | ChangeKind::Received
        )
    }
}

const SCHEDULE_FIELDS: [&str; 3] = ["/date", "/startTime", "/endTime"];
const STATUS_FIELDS: [&str; 2] = ["/status", "/newStatus"];
/// Fields whose change is part of a reschedule, status change or cancellation rather than
/// an update of its own (the preferred date follows the slot; `isCancelled` the status).
const EXPLAINED_FIELDS: [&str; 7] = [
    "/date",
    "/startTime",
    "/endTime",
    "/preferredDate",
    "/status",
    "/newStatus",
    "/isCancelled",
];

/// Classifies an event being applied. `before` is `None` for the first version;
/// `cancelled_now` says whether the new version is cancelled; `timestamp` is its version time.
pub fn classify(
    before: Option<&Before>,
    event: Option<&AppointmentEventName>,
    fields: &[FieldChange],
    cancelled_now: bool,
    timestamp: i64,
    rules: &PairingRules,
) -> Classification {
    let mut kinds = Vec::new();
    if event == Some(&AppointmentEventName::Deleted) {
        kinds.push(ChangeKind::Deleted);
    }
    let mut pair_of = None;
    match before {
        None => {
            kinds.push(ChangeKind::Created);
            if cancelled_now {
                kinds.push(ChangeKind::Cancelled);
            }
        }
        Some(before) => {
            let touches = |group: &[&str]| {
                fields.iter().any(|field| {
                    group
                        .iter()
                        .any(|pattern| path_is_under(&field.path, pattern))
                })
            };
            if cancelled_now && !before.cancelled {
                kinds.push(ChangeKind::Cancelled);
            }
            if touches(&SCHEDULE_FIELDS) {
                kinds.push(ChangeKind::Rescheduled);
            }
            if touches(&STATUS_FIELDS) {
                kinds.push(ChangeKind::StatusChanged);
            }
            let dms_owned = |field: &FieldChange| {
                rules
                    .dms_fields
                    .iter()
                    .any(|pattern| path_is_under(&field.path, pattern))
            };
            let only_dms_fields = fields.iter().all(dms_owned);
            let echo_shaped = matches!(event, None | Some(AppointmentEventName::Updated));
            let recent_origin = before
                .origin
                .as_ref()
                .filter(|origin| timestamp - origin.timestamp <= rules.window_ms);
            if kinds.is_empty() && only_dms_fields && echo_shaped && recent_origin.is_some() {
                kinds.push(ChangeKind::DmsAcknowledged);
                pair_of = recent_origin.map(|origin| origin.event_id.clone());
            } else {
                if fields.iter().any(|field| {
                    !EXPLAINED_FIELDS
                        .iter()
                        .any(|pattern| path_is_under(&field.path, pattern))
                }) {
                    kinds.push(ChangeKind::Updated);
                }
                if kinds.is_empty() {
                    kinds.push(ChangeKind::Unchanged);
                }
            }
        }
    }
    kinds.sort();
    kinds.dedup();
    Classification {
        kind: kinds[0],
        kinds,
        pair_of,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use ChangeKind::*;

    fn rules() -> PairingRules {
        PairingRules {
            dms_fields: vec!["/appointmentKey".into(), "/dispatchCode".into()],
            window_ms: 600_000,
        }
    }

    fn field(path: &str) -> FieldChange {
        FieldChange {
            path: path.into(),
            old: Value::Null,
            new: json!("x"),
        }
    }

    fn after_origin(at: i64) -> Before {
        Before {
            cancelled: false,
            origin: Some(Origin {
                event_id: "origin-1".into(),
                timestamp: at,
            }),
        }
    }

    #[test]
    fn the_table_of_kinds() {
        use AppointmentEventName as E;
        let before = after_origin(0);
        // (before, event, changed paths, cancelled now, timestamp, expected kinds)
        type Case<'a> = (
            Option<&'a Before>,
            Option<E>,
            Vec<&'a str>,
            bool,
            i64,
            Vec<ChangeKind>,
        );
        let cases: Vec<Case> = vec![
            (None, Some(E::Scheduled), vec![], false, 0, vec![Created]),
            (
                None,
                Some(E::Updated),
                vec![],
                true,
                0,
                vec![Created, Cancelled],
            ),
            (
                None,
                Some(E::Deleted),
                vec![],
                false,
                0,
                vec![Deleted, Created],
            ),
            (
                Some(&before),
                Some(E::Rescheduled),
                vec!["/startTime", "/endTime"],
                false,
                1,
                vec![Rescheduled],
            ),
            (
                Some(&before),
                Some(E::Rescheduled),
                vec!["/startTime", "/status", "/newStatus"],
                false,
                1,
                vec![Rescheduled, StatusChanged],
            ),
            (
                Some(&before),
                Some(E::Cancelled),
                vec!["/status", "/isCancelled"],
                true,
                1,
                vec![Cancelled, StatusChanged],
            ),
            (
                Some(&before),
                Some(E::Updated),
                vec!["/comments"],
                false,
                1,
                vec![Updated],
            ),
            (
                Some(&before),
                Some(E::Updated),
                vec!["/comments", "/startTime"],
                false,
                1,
                vec![Rescheduled, Updated],
            ),
            (
                Some(&before),
                Some(E::Deleted),
                vec![],
                false,
                1,
                vec![Deleted],
            ),
            (
                Some(&before),
                Some(E::Updated),
                vec!["/appointmentKey"],
                false,
                4_000,
                vec![DmsAcknowledged],
            ),
            (
                Some(&before),
                Some(E::Updated),
                vec![],
                false,
                4_000,
                vec![DmsAcknowledged],
            ),
            // Outside the window the same change is an ordinary update, and no change is unchanged.
            (
                Some(&before),
                Some(E::Updated),
                vec!["/appointmentKey"],
                false,
                600_001,
                vec![Updated],
            ),
            (
                Some(&before),
                Some(E::Updated),
                vec![],
                false,
                600_001,
                vec![Unchanged],
            ),
            // Not echo-shaped: myKaarma's own event with nothing new is unchanged.
            (
                Some(&before),
                Some(E::Scheduled),
                vec![],
                false,
                4_000,
                vec![Unchanged],
            ),
            (
                Some(&Before {
                    cancelled: false,
                    origin: None,
                }),
                Some(E::Updated),
                vec!["/dispatchCode"],
                false,
                1,
                vec![Updated],
            ),
        ];
        for (before, event, fields, cancelled, at, expected) in cases {
            let fields: Vec<FieldChange> = fields.into_iter().map(field).collect();
            let got = classify(before, event.as_ref(), &fields, cancelled, at, &rules());
            assert_eq!(got.kinds, expected, "{event:?} {fields:?}");
            assert_eq!(got.kind, expected[0]);
            assert_eq!(got.pair_of.is_some(), got.kind == DmsAcknowledged);
        }
    }

    #[test]
    fn the_echo_names_the_change_it_acknowledges() {
        let got = classify(
            Some(&after_origin(10)),
            Some(&AppointmentEventName::Updated),
            &[field("/appointmentKey")],
            false,
            20,
            &rules(),
        );
        assert_eq!(got.pair_of.as_deref(), Some("origin-1"));
        assert!(!got.is_origin());
        assert!(Classification::only(Rescheduled).is_origin());
    }

    #[test]
    fn names_round_trip() {
        for kind in ChangeKind::ALL {
            assert_eq!(ChangeKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
