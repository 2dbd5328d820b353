//! The truth: the real final state of every appointment a run touched, as myKaarma holds it.
//! A receiver that processed every event correctly agrees with it; `verify` checks that.
//!
//! The `--truth` file is this JSON:
//!
//! ```json
//! {"appointments":[{"uuid":"…","dealer_uuid":"…","department_uuid":"…","status":"RESCHEDULED",
//!   "appointment_key":"DMS-1000001","start_time":"2025-01-20T08:00:00",
//!   "end_time":"2025-01-20T08:29:59","is_cancelled":false,"deleted":false}]}
//! ```
//!
//! `start_time` and `end_time` are the exact strings the payloads carried.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::appointment::Appointment;

/// The final state of every appointment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truth {
    /// One entry per appointment, in creation order.
    pub appointments: Vec<TrueAppointment>,
}

/// One appointment's final state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrueAppointment {
    /// The appointment uuid.
    pub uuid: String,
    /// Its dealer.
    pub dealer_uuid: String,
    /// Its department.
    pub department_uuid: String,
    /// Final `status` (equal to `newStatus`).
    pub status: String,
    /// Final `appointmentKey`; null when no DMS acknowledgement was ever sent.
    pub appointment_key: Option<String>,
    /// Final `startTime`, as written in the payload.
    pub start_time: String,
    /// Final `endTime`, as written in the payload.
    pub end_time: String,
    /// Final `isCancelled`.
    pub is_cancelled: bool,
    /// True when the appointment was deleted.
    pub deleted: bool,
}

impl From<&Appointment> for TrueAppointment {
    fn from(appointment: &Appointment) -> Self {
        Self {
            uuid: appointment.uuid.clone(),
            dealer_uuid: appointment.dealer_uuid.clone(),
            department_uuid: appointment.department_uuid.clone(),
            status: appointment.status.to_string(),
            appointment_key: appointment.appointment_key.clone(),
            start_time: appointment.start_time(),
            end_time: appointment.end_time(),
            is_cancelled: appointment.is_cancelled(),
            deleted: appointment.deleted,
        }
    }
}

impl Truth {
    /// The truth of a book's appointments.
    pub fn of<'a>(appointments: impl IntoIterator<Item = &'a Appointment>) -> Self {
        Self {
            appointments: appointments
                .into_iter()
                .map(TrueAppointment::from)
                .collect(),
        }
    }

    /// Reads a truth file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the truth file {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a truth file", path.display()))
    }

    /// Writes a truth file (pretty-printed, one appointment per few lines).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self).context("serializing the truth")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing the truth file {}", path.display()))
    }

    /// The dealers the truth covers, sorted and without repeats.
    pub fn dealers(&self) -> Vec<&str> {
        let mut dealers: Vec<&str> = self
            .appointments
            .iter()
            .map(|appointment| appointment.dealer_uuid.as_str())
            .collect();
        dealers.sort_unstable();
        dealers.dedup();
        dealers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_has_the_agreed_field_names() {
        let truth = Truth {
            appointments: vec![TrueAppointment {
                uuid: "a".into(),
                dealer_uuid: "d".into(),
                department_uuid: "p".into(),
                status: "CANCELLED".into(),
                appointment_key: None,
                start_time: "2025-01-20T08:00:00".into(),
                end_time: "2025-01-20T08:29:59".into(),
                is_cancelled: true,
                deleted: false,
            }],
        };
        assert_eq!(
            serde_json::to_string(&truth).unwrap(),
            r#"{"appointments":[{"uuid":"a","dealer_uuid":"d","department_uuid":"p","status":"CANCELLED","appointment_key":null,"start_time":"2025-01-20T08:00:00","end_time":"2025-01-20T08:29:59","is_cancelled":true,"deleted":false}]}"#
        );
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("truth.json");
        truth.write(&path).unwrap();
        assert_eq!(Truth::read(&path).unwrap(), truth);
        std::fs::write(&path, "{}").unwrap();
        let error = format!("{:#}", Truth::read(&path).unwrap_err());
        assert!(error.contains("is not a truth file"), "{error}");
    }
}
