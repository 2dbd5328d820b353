//! The emulator's own record of an appointment, and how it is written as myKaarma's
//! `appointmentInfoResponse` and appointment event payload (§3 and §8.2 of the field
//! reference): every documented field present, nulls explicit.

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use mykaarma::{
    AppointmentEvent, AppointmentEventName, AppointmentInfo, AppointmentStatus,
    CustomerInformation, DateTime, OrderInformation, Platform, VehicleInformation,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::world::{Customer, Opcode, Slot, TransportOption, Vehicle};

/// An appointment as the emulator holds it: the source every payload is written from.
#[derive(Debug, Clone, PartialEq)]
pub struct Appointment {
    /// 43-character appointment id (`uuid` in the payload and in `appointmentInfoResponse`).
    pub uuid: String,
    /// The dealer.
    pub dealer_uuid: String,
    /// The department it is booked in.
    pub department_uuid: String,
    /// The dealer's offset from UTC in minutes, for the local `eventCreationDateTime`.
    pub utc_offset_minutes: i32,
    /// The customer, as they were when the appointment was last changed.
    pub customer: Customer,
    /// The vehicle being serviced.
    pub vehicle: Vehicle,
    /// Odometer reading given at booking.
    pub mileage: u32,
    /// The booked slot.
    pub slot: Slot,
    /// The date the customer asked for.
    pub preferred_date: NaiveDate,
    /// Current status (`status` and `newStatus` of every event).
    pub status: AppointmentStatus,
    /// The DMS's key, once the DMS has acknowledged the appointment.
    pub appointment_key: Option<String>,
    /// The DMS dispatch code, set with the key.
    pub dispatch_code: Option<String>,
    /// The advisor the appointment is assigned to.
    pub assigned_advisor_uuid: String,
    /// The advisor who booked it, when an advisor did.
    pub creator_advisor_uuid: Option<String>,
    /// The team, when one was chosen.
    pub team_uuid: Option<String>,
    /// How the customer gets around meanwhile.
    pub transport_option: Option<TransportOption>,
    /// The opcodes booked (`serviceList`).
    pub services: Vec<Opcode>,
    /// Customer-facing comments.
    pub comments: Option<String>,
    /// Internal notes.
    pub internal_notes: Option<String>,
    /// Confirmation and reminder preferences.
    pub communication: CommunicationPreferences,
    /// The channel it was booked through.
    pub platform: Platform,
    /// Where it came from (`appointmentSource`).
    pub source: String,
    /// Reminders sent so far.
    pub reminder_count: i64,
    /// True once deleted: kept so the truth can say so, invisible to the API.
    pub deleted: bool,
}

/// `appointmentCommunicationPreferences`: the booleans the draft and update pages document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationPreferences {
    /// Send an email confirmation.
    pub email_confirmation: bool,
    /// Send a text confirmation.
    pub text_confirmation: bool,
    /// Send email reminders.
    pub email_reminder: bool,
    /// Send text reminders.
    pub text_reminder: bool,
    /// Notify the customer of changes.
    pub notify_customer: bool,
    /// Copy communications to the dealer associate.
    #[serde(rename = "sendCommunicationToDA")]
    pub send_communication_to_da: bool,
}

impl Default for CommunicationPreferences {
    /// Everything on except copies to the advisor.
    fn default() -> Self {
        Self {
            email_confirmation: true,
            text_confirmation: true,
            email_reminder: true,
            text_reminder: true,
            notify_customer: true,
            send_communication_to_da: false,
        }
    }
}

/// The wire form of date-times in the payload: `yyyy-MM-ddTHH:mm:ss`, no offset.
pub fn wire_time(time: NaiveDateTime) -> String {
    time.format("%Y-%m-%dT%H:%M:%S").to_string()
}

impl Appointment {
    /// True when cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.status == AppointmentStatus::Cancelled
    }

    /// True while the appointment holds its slot: neither cancelled nor deleted.
    pub fn is_active(&self) -> bool {
        !self.deleted && !self.is_cancelled()
    }

    /// `startTime` exactly as it is written in the payload.
    pub fn start_time(&self) -> String {
        wire_time(self.slot.start)
    }

    /// `endTime` exactly as it is written in the payload.
    pub fn end_time(&self) -> String {
        wire_time(self.slot.end)
    }

    /// The wall-clock time at the dealer for an instant in epoch milliseconds.
    pub fn local_time(&self, epoch_millis: i64) -> NaiveDateTime {
        let utc = chrono::DateTime::from_timestamp_millis(epoch_millis)
            .unwrap_or_default()
            .naive_utc();
        utc + TimeDelta::minutes(i64::from(self.utc_offset_minutes))
    }

    /// The appointment as `appointmentInfoResponse` (also the API's `appointmentInfo`).
    pub fn info(&self) -> AppointmentInfo {
        let date = self.slot.start.date();
        AppointmentInfo {
            uuid: Some(self.uuid.clone()),
            status: Some(self.status.clone()),
            // `newStatus` is the status after the change, which is the current status.
            new_status: Some(self.status.clone()),
            date: Some(DateTime::from_naive(date.and_time(Default::default()))),
            start_time: Some(DateTime::from_naive(self.slot.start)),
            end_time: Some(DateTime::from_naive(self.slot.end)),
            platform: Some(self.platform.clone()),
            appointment_source: Some(self.source.clone()),
            appointment_key: self.appointment_key.clone(),
            recall: Some(self.services.iter().any(|service| service.recall)),
            assigned_advisor_uuid: Some(self.assigned_advisor_uuid.clone()),
            dealer_uuid: Some(self.dealer_uuid.clone()),
            dispatch_code: self.dispatch_code.clone(),
            creator_advisor_uuid: self.creator_advisor_uuid.clone(),
            preferred_date: DateTime::parse(&self.preferred_date.format("%Y-%m-%d").to_string())
                .ok(),
            is_cancelled: Some(self.is_cancelled()),
            comments: self.comments.clone(),
            internal_notes: self.internal_notes.clone(),
            team_uuid: self.team_uuid.clone(),
            reminder_count: Some(self.reminder_count),
            customer_vehicle_inspection_id: None,
            customer_information: Some(self.customer_information()),
            vehicle_information: Some(self.vehicle_information()),
            order_information: Some(OrderInformation::default()),
            appointment_communication_preferences: Some(
                serde_json::to_value(self.communication).unwrap_or(Value::Null),
            ),
            transport_option: self.transport_option.as_ref().map(|option| {
                json!({
                    "transportOptionUuid": option.uuid,
                    "transportation": option.transportation,
                    "altTransportation": option.alt_transportation,
                })
            }),
            service_list: Some(
                self.services
                    .iter()
                    .map(|service| {
                        json!({
                            "opcode": service.opcode,
                            "description": service.description,
                            "price": service.price,
                        })
                    })
                    .collect(),
            ),
            sarmeta_data: None,
            extra: Default::default(),
        }
    }

    /// The appointment event payload for a change of kind `event`, made by `updated_by` at
    /// `epoch_millis`.
    pub fn event_payload(
        &self,
        event: AppointmentEventName,
        epoch_millis: i64,
        updated_by: &str,
    ) -> AppointmentEvent {
        AppointmentEvent {
            uuid: Some(self.uuid.clone()),
            department_uuid: Some(self.department_uuid.clone()),
            subscriber_name: None,
            event: Some(event),
            event_creation_date_time: Some(DateTime::from_naive(self.local_time(epoch_millis))),
            updated_by_user_uuid: Some(updated_by.to_owned()),
            service_appointment_request_loaner_booking_list: Some(Vec::new()),
            appointment_info_response: Some(self.info()),
            extra: Default::default(),
        }
    }

    fn customer_information(&self) -> CustomerInformation {
        let customer = &self.customer;
        CustomerInformation {
            first_name: Some(customer.first_name.clone()),
            last_name: Some(customer.last_name.clone()),
            company: customer.company.clone(),
            is_business: Some(customer.company.is_some()),
            customer_key: customer.customer_key.clone(),
            confirmation_phone: (!customer.phone.is_empty()).then(|| customer.phone.clone()),
            confirmation_email: (!customer.email.is_empty()).then(|| customer.email.clone()),
            cust_locale: Some(customer.locale.clone()),
            uuid: Some(customer.uuid.clone()),
            extra: Default::default(),
        }
    }

    fn vehicle_information(&self) -> VehicleInformation {
        let vehicle = &self.vehicle;
        VehicleInformation {
            vin: Some(vehicle.vin.to_string()),
            vehicle_key: None,
            model: Some(vehicle.model.clone()),
            year: Some(vehicle.year.to_string()),
            brand: Some(vehicle.brand.clone()),
            make: None,
            trim: Some(vehicle.trim.clone()),
            engine: Some(vehicle.engine.clone()),
            mileage: Some(self.mileage.to_string()),
            dealer_uuid: Some(self.dealer_uuid.clone()),
            uuid: Some(vehicle.uuid.clone()),
            extra: Default::default(),
        }
    }
}
