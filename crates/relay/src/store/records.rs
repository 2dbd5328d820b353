//! The values that go into and come out of the store.

use bytes::Bytes;
use serde::Serialize;

/// A verified delivery with a usable envelope, about to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `type` (or `dataType`): half of the deduplication key.
    pub event_type: String,
    /// The envelope `id`: the other half.
    pub event_id: String,
    /// The envelope `timestamp`, epoch ms.
    pub occurred_at: Option<i64>,
    /// `dealeruuid`.
    pub dealer_uuid: Option<String>,
    /// `departmentuuid`.
    pub department_uuid: Option<String>,
    /// When the relay received it, epoch ms.
    pub received_at: i64,
    /// The body exactly as received.
    pub raw: Bytes,
}

/// What storing a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insertion {
    /// First time this key was seen: stored.
    Accepted,
    /// Seen before: counted, not stored again.
    Duplicate,
}

/// A verified body that is not a usable envelope.
#[derive(Debug, Clone)]
pub struct NewQuarantine {
    /// SHA-256 of the body, lowercase hex; the same body is kept once.
    pub sha256: String,
    /// Why it is not usable.
    pub error: String,
    /// The body exactly as received.
    pub raw: Bytes,
    /// When the relay received it, epoch ms.
    pub received_at: i64,
}

/// Where an event is in processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventState {
    /// Stored, not yet processed.
    Pending,
    /// Processed into appointment state and changes.
    Processed,
    /// Processing failed; the error says why. Reprocessable.
    Failed,
}

impl EventState {
    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processed => "processed",
            Self::Failed => "failed",
        }
    }

    /// Reads a stored name; unknown names read as pending so they get looked at again.
    pub fn from_stored(name: &str) -> Self {
        match name {
            "processed" => Self::Processed,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// A stored event.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Arrival sequence number.
    pub seq: i64,
    /// `type`.
    pub event_type: String,
    /// `id`.
    pub event_id: String,
    /// Envelope timestamp, epoch ms.
    pub occurred_at: Option<i64>,
    /// `dealeruuid`.
    pub dealer_uuid: Option<String>,
    /// `departmentuuid`.
    pub department_uuid: Option<String>,
    /// First receipt, epoch ms.
    pub received_at: i64,
    /// How many times the sender delivered it.
    pub delivery_count: i64,
    /// Processing state.
    pub state: EventState,
    /// Why processing failed, when it did.
    pub error: Option<String>,
    /// The body as received (only when asked for, and until retention removes it).
    pub raw: Option<Vec<u8>>,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this `type`.
    pub event_type: Option<String>,
    /// Only events after this arrival sequence number.
    pub after_seq: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// A quarantined body.
#[derive(Debug, Clone)]
pub struct QuarantineRecord {
    /// SHA-256 of the body.
    pub sha256: String,
    /// First receipt, epoch ms.
    pub received_at: i64,
    /// Latest receipt, epoch ms.
    pub last_received_at: i64,
    /// How many times it was delivered.
    pub delivery_count: i64,
    /// Why it is not usable.
    pub error: String,
    /// The body as received.
    pub raw: Vec<u8>,
}

/// Which version of an appointment is applied: envelope timestamp, then arrival sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Envelope timestamp (arrival time when the envelope had none), epoch ms.
    pub timestamp: i64,
    /// Arrival sequence number of the event.
    pub seq: i64,
    /// The event's id.
    pub event_id: String,
}

impl Version {
    /// True when `self` is older than `other` in version order.
    pub fn is_older_than(&self, other: &Version) -> bool {
        (self.timestamp, self.seq) < (other.timestamp, other.seq)
    }
}

/// The current state of one appointment (the projection row).
#[derive(Debug, Clone, PartialEq)]
pub struct AppointmentRecord {
    /// `appointmentInfoResponse.uuid` (else the payload `uuid`).
    pub uuid: String,
    /// The dealer.
    pub dealer_uuid: Option<String>,
    /// The department.
    pub department_uuid: Option<String>,
    /// `status` of the applied version.
    pub status: Option<String>,
    /// `newStatus` of the applied version.
    pub new_status: Option<String>,
    /// The DMS key, once assigned.
    pub appointment_key: Option<String>,
    /// `startTime` exactly as received.
    pub start_time: Option<String>,
    /// `endTime` exactly as received.
    pub end_time: Option<String>,
    /// `startTime` as sortable wall-clock text (`yyyy-MM-ddTHH:mm:ss`), for date filters.
    pub start_sort: Option<String>,
    /// Cancelled (`isCancelled`, or status `CANCELLED`).
    pub is_cancelled: bool,
    /// A `DELETED` event was applied.
    pub deleted: bool,
    /// The applied version.
    pub version: Version,
    /// The full `appointmentInfoResponse` as received, unknown fields included.
    pub appointment: serde_json::Value,
    /// The latest myKaarma-originated change, for pairing the DMS echo.
    pub origin: Option<crate::pipeline::Origin>,
    /// When the relay first saw the appointment, epoch ms.
    pub created_at: i64,
    /// When the projection last changed, epoch ms.
    pub updated_at: i64,
}

/// One event's entry in an appointment's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    /// The appointment.
    pub appointment_uuid: String,
    /// Arrival sequence number of the event.
    pub event_seq: i64,
    /// The event id.
    pub event_id: String,
    /// The payload's `event`.
    pub event: Option<String>,
    /// The payload's `newStatus`.
    pub new_status: Option<String>,
    /// The event's version timestamp, epoch ms.
    pub timestamp: i64,
    /// What kind of change it was.
    pub classification: crate::pipeline::Classification,
    /// The field-level differences from the previously applied version.
    pub fields: Vec<crate::pipeline::FieldChange>,
    /// When it was processed, epoch ms.
    pub recorded_at: i64,
}

/// A normalised change: a CloudEvents 1.0 record, the unit routes deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord {
    /// Position in the change stream (assigned by the store; 0 before it is stored).
    pub seq: i64,
    /// The CloudEvent `id`, stable per source event.
    pub id: String,
    /// Arrival sequence number of the source event.
    pub event_seq: i64,
    /// The CloudEvent `subject`: the appointment (or customer, order, inspection) uuid.
    pub subject: Option<String>,
    /// The primary kind.
    pub kind: crate::pipeline::ChangeKind,
    /// The CloudEvent `time`, epoch ms.
    pub time: i64,
    /// The whole CloudEvent.
    pub cloudevent: serde_json::Value,
}

/// What processing one event produced, committed together.
#[derive(Debug, Clone)]
pub struct ProcessedEvent {
    /// The event's arrival sequence number.
    pub seq: i64,
    /// The result.
    pub outcome: ProcessingOutcome,
    /// The routes its change goes to (a delivery each, in the same transaction).
    pub routes: Vec<String>,
}

/// The result of processing one event.
#[derive(Debug, Clone)]
pub enum ProcessingOutcome {
    /// The payload could not be used; the event is marked failed with this error.
    Failed(String),
    /// An appointment event: its history entry and change, and the new state unless stale.
    Appointment(Box<AppointmentOutcome>),
    /// A customer, repair-order or inspection event, passed on as received.
    Received(ChangeRecord),
}

/// What an appointment event did.
#[derive(Debug, Clone)]
pub struct AppointmentOutcome {
    /// The state after the event, when it was applied (`None` when stale).
    pub state: Option<AppointmentRecord>,
    /// The sequence number of the version it replaced, `None` for a new appointment.
    pub replaces: Option<i64>,
    /// Its history entry.
    pub history: HistoryRecord,
    /// Its change.
    pub change: ChangeRecord,
}

/// Which appointments to list.
#[derive(Debug, Clone, Default)]
pub struct AppointmentFilter {
    /// Only this dealer.
    pub dealer_uuid: Option<String>,
    /// Only this department.
    pub department_uuid: Option<String>,
    /// Only this `status`.
    pub status: Option<String>,
    /// Only starting at or after this wall-clock time (`yyyy-MM-dd[THH:mm:ss]`).
    pub start_from: Option<String>,
    /// Only starting at or before this wall-clock time.
    pub start_to: Option<String>,
    /// Only uuids after this one (the cursor).
    pub after_uuid: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// Which changes to list.
#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    /// Only changes after this position.
    pub after_seq: Option<i64>,
    /// Only changes whose time is at or after this, epoch ms.
    pub time_from: Option<i64>,
    /// Only changes whose time is at or before this, epoch ms.
    pub time_to: Option<i64>,
    /// Only this primary kind.
    pub kind: Option<crate::pipeline::ChangeKind>,
    /// At most this many.
    pub limit: u32,
}

/// What asking to reprocess an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// The failed event is pending again.
    Requeued,
    /// No such event.
    NotFound,
    /// The event is not failed (it is in this state).
    NotFailed(EventState),
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not attempted yet.
    Pending,
    /// Attempted and failed; retried at `next_attempt_at`.
    Failed,
    /// The destination has it.
    Delivered,
    /// The retry budget is spent (or the failure was permanent); retry or replay by hand.
    Dead,
}

impl DeliveryState {
    /// Every state.
    pub const ALL: [DeliveryState; 4] = [Self::Pending, Self::Failed, Self::Delivered, Self::Dead];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// Reads a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == name)
    }
}

/// One change on its way to one route.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    /// The delivery's id.
    pub id: i64,
    /// The route.
    pub route: String,
    /// The change's position in the stream (deliveries of a subject go out in this order).
    pub change_seq: i64,
    /// The change id (the `webhook-id` / `Nats-Msg-Id`).
    pub change_id: String,
    /// The appointment (or other entity) it is about.
    pub subject: Option<String>,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: i64,
    /// When it is next due, epoch ms.
    pub next_attempt_at: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// The last HTTP status.
    pub last_status: Option<i64>,
    /// Start of the retry budget, epoch ms.
    pub enqueued_at: i64,
    /// Last change of this row, epoch ms.
    pub updated_at: i64,
    /// When it was delivered, epoch ms.
    pub delivered_at: Option<i64>,
}

/// A delivery claimed by a worker, with its change.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub delivery: DeliveryRecord,
    /// What to deliver.
    pub change: ChangeRecord,
    /// The lease it is held under (to record the attempt with).
    pub lease_owner: String,
}

/// One attempt that ended, as a worker hands it to [`crate::store::Store::finish_attempts`]:
/// the worker records the attempts that ended together in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedAttempt {
    /// The delivery attempted.
    pub id: i64,
    /// The lease it was attempted under.
    pub lease_owner: String,
    /// How it ended.
    pub result: AttemptResult,
    /// When it ended, epoch ms.
    pub finished_at: i64,
}

/// How an attempt ended, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// Delivered.
    Delivered {
        /// The HTTP status, for HTTP sinks.
        status: Option<u16>,
    },
    /// Failed; try again at `next_attempt_at`.
    Retry {
        /// What happened.
        error: String,
        /// The HTTP status, if any.
        status: Option<u16>,
        /// When to try again, epoch ms.
        next_attempt_at: i64,
    },
    /// Failed for good.
    Dead {
        /// What happened.
        error: String,
        /// The HTTP status, if any.
        status: Option<u16>,
    },
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this route.
    pub route: Option<String>,
    /// Only this state.
    pub state: Option<DeliveryState>,
    /// Only this appointment (subject).
    pub subject: Option<String>,
    /// Only ids after this one (the cursor).
    pub after_id: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// How many deliveries a route has in one state.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryCount {
    /// The route.
    pub route: String,
    /// The state.
    pub state: DeliveryState,
    /// How many.
    pub count: i64,
    /// The oldest `enqueued_at` among them, epoch ms.
    pub oldest_enqueued_at: Option<i64>,
}

/// What one retention pass removed, by kind (see [`Store::prune`](super::Store::prune)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Raw bodies of processed events; the event rows stay, so retries are still duplicates.
    pub event_bodies: u64,
    /// Delivered deliveries.
    pub deliveries: u64,
    /// Changes that no delivery refers to any more.
    pub changes: u64,
    /// Quarantined bodies.
    pub quarantine: u64,
}

impl Pruned {
    /// Each kind's name and count, for logs and metrics.
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("event_bodies", self.event_bodies),
            ("deliveries", self.deliveries),
            ("changes", self.changes),
            ("quarantine", self.quarantine),
        ]
    }

    /// Everything removed.
    pub fn total(&self) -> u64 {
        self.by_kind().iter().map(|(_, count)| count).sum()
    }
}

impl std::ops::AddAssign for Pruned {
    fn add_assign(&mut self, other: Self) {
        self.event_bodies += other.event_bodies;
        self.deliveries += other.deliveries;
        self.changes += other.changes;
        self.quarantine += other.quarantine;
    }
}
