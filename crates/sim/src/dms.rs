//! The dealer's DMS, as myKaarma's FAQ describes it: every change made in myKaarma is pushed
//! to the DMS, which writes back a moment later, and that write-back fires a second event,
//! `UPDATED`, with a new id, a later timestamp and the appointment's state at that moment.
//!
//! The first acknowledgement of an appointment assigns its `appointmentKey` (`DMS-` and seven
//! digits) and a `dispatchCode`; later ones keep them. The DMS acknowledges creates,
//! reschedules, updates and cancels, never a delete, and an acknowledgement that falls due
//! after the appointment was deleted is not sent. *When* an acknowledgement is due is the
//! caller's business (a timer in `serve`, the virtual timeline in `run`).

use crate::book::{AppointmentBook, AppointmentChange, ChangeOrigin};
use crate::world::World;

/// Dispatch codes the DMS hands out with a key.
const DISPATCH_CODES: &[&str] = &["QL", "MR", "EX", "FL"];

/// The DMS: hands out keys in sequence and writes its acknowledgements into the book.
#[derive(Debug, Clone)]
pub struct Dms {
    next_key: u64,
}

impl Default for Dms {
    fn default() -> Self {
        Self::new()
    }
}

impl Dms {
    /// A DMS whose first key is `DMS-1000001`.
    pub fn new() -> Self {
        Self {
            next_key: 1_000_001,
        }
    }

    /// True when a change is one the DMS acknowledges: myKaarma's own changes except deletes.
    pub fn acknowledges(change: &AppointmentChange) -> bool {
        change.origin == ChangeOrigin::MyKaarma
            && change.event != mykaarma::AppointmentEventName::Deleted
    }

    /// Writes the DMS's acknowledgement of appointment `uuid` at `at_ms`: assigns the key and
    /// dispatch code if it has none yet. `None` when the appointment was deleted meanwhile.
    pub fn acknowledge(
        &mut self,
        world: &World,
        book: &mut AppointmentBook,
        uuid: &str,
        at_ms: i64,
    ) -> Option<AppointmentChange> {
        let department_uuid = book.get(uuid)?.department_uuid.clone();
        let dms_user = world
            .department(&department_uuid)
            .map(|department| department.dms_user_uuid.clone())
            .unwrap_or_default();
        let next_key = &mut self.next_key;
        book.record_dms_update(uuid, at_ms, &dms_user, |appointment| {
            if appointment.appointment_key.is_none() {
                let number = *next_key;
                *next_key += 1;
                appointment.appointment_key = Some(format!("DMS-{number:07}"));
                let code = DISPATCH_CODES[(number % DISPATCH_CODES.len() as u64) as usize];
                appointment.dispatch_code = Some(code.to_owned());
            }
        })
    }
}
