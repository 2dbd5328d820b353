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
    /// The body as received (only when asked for).
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
