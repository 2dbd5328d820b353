//! The appointment event payload (§3 of `docs/mykaarma-webhooks.md`): the payload "extends"
//! the Appointment API's `appointmentInfoResponse`.
//!
//! Every field is an `Option`: a missing key reads as null, because myKaarma has announced
//! that null fields may be omitted and a receiver must not drop an event over a field it does
//! not need. Each field's doc says whether myKaarma documents it as nullable. Nested objects
//! are typed where they are documented and kept as JSON where they are not. Every struct
//! keeps unknown keys in `extra`, so a payload is written back with nothing lost.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::datetime::DateTime;
use crate::open_enum::open_enum;
use crate::payload::{PayloadError, from_json_with_path, from_value_with_path};

open_enum! {
    /// The payload's `event`: what kind of change produced it. myKaarma names `CREATED`,
    /// `SCHEDULED`, `RESCHEDULED` and `UPDATED`; the deletion value is not published.
    pub enum AppointmentEventName {
        /// An appointment was created.
        Created = "CREATED",
        /// An appointment was created from myKaarma (the FAQ's name for a new booking).
        Scheduled = "SCHEDULED",
        /// An appointment moved to another slot.
        Rescheduled = "RESCHEDULED",
        /// Anything else changed; also the DMS acknowledgement that follows a change.
        Updated = "UPDATED",
        /// The appointment was cancelled.
        Cancelled = "CANCELLED",
        /// The appointment was deleted.
        Deleted = "DELETED",
    }
}

open_enum! {
    /// An appointment's `status` / `newStatus`. The value list is not published; these are
    /// the values the docs and the API show.
    pub enum AppointmentStatus {
        /// Created.
        Created = "CREATED",
        /// Booked into a slot.
        Scheduled = "SCHEDULED",
        /// Moved to another slot.
        Rescheduled = "RESCHEDULED",
        /// Changed.
        Updated = "UPDATED",
        /// Cancelled (the Appointment API's cancel sets this).
        Cancelled = "CANCELLED",
        /// Deleted.
        Deleted = "DELETED",
    }
}

open_enum! {
    /// The channel that created or changed an appointment. Values are not published for this
    /// model; these come from myKaarma's mobile-service API and are only a hint.
    pub enum Platform {
        /// The dealer's app.
        DealerApp = "DEALER_APP",
        /// The web scheduler.
        Web = "WEB",
        /// The customer's mobile app.
        MobileApp = "MOBILE_APP",
        /// The dealer's DMS.
        Dms = "DMS",
    }
}

/// The payload of an appointment event (`type: "appointments"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentEvent {
    /// The record id, probably the appointment uuid. Documented non-null.
    pub uuid: Option<String>,
    /// The dealer department of the appointment. Documented non-null.
    pub department_uuid: Option<String>,
    /// The subscriber the event was produced for. Documented nullable.
    pub subscriber_name: Option<String>,
    /// What kind of change this is. Documented non-null.
    pub event: Option<AppointmentEventName>,
    /// When myKaarma created the event. Documented non-null.
    pub event_creation_date_time: Option<DateTime>,
    /// The dealer associate who made the change. Documented non-null.
    pub updated_by_user_uuid: Option<String>,
    /// Loaner bookings; the item shape is not documented. Documented non-null.
    pub service_appointment_request_loaner_booking_list: Option<Vec<Value>>,
    /// The full appointment. Documented non-null.
    pub appointment_info_response: Option<AppointmentInfo>,
    /// Keys this library does not model, kept as received.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `appointmentInfoResponse`: the appointment as the Appointment API returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentInfo {
    /// myKaarma's id for the appointment (43-character URL-safe). Documented non-null.
    pub uuid: Option<String>,
    /// The appointment status. Documented non-null.
    pub status: Option<AppointmentStatus>,
    /// The status after this change. Documented non-null.
    pub new_status: Option<AppointmentStatus>,
    /// The appointment date. Documented non-null.
    pub date: Option<DateTime>,
    /// Slot start. Documented non-null.
    pub start_time: Option<DateTime>,
    /// Slot end, one second before the next slot starts. Documented non-null.
    pub end_time: Option<DateTime>,
    /// The channel of the change. Documented non-null.
    pub platform: Option<Platform>,
    /// Where the appointment came from (scheduler, DMS, API…). Documented non-null.
    pub appointment_source: Option<String>,
    /// The appointment's key in the DMS, assigned by the DMS acknowledgement. Nullable.
    pub appointment_key: Option<String>,
    /// Whether recall work is involved. Documented non-null.
    pub recall: Option<bool>,
    /// The service advisor assigned. Documented non-null.
    pub assigned_advisor_uuid: Option<String>,
    /// The dealer. Documented non-null.
    pub dealer_uuid: Option<String>,
    /// The DMS dispatch code. Nullable.
    pub dispatch_code: Option<String>,
    /// The dealer associate who created the appointment. Nullable.
    pub creator_advisor_uuid: Option<String>,
    /// The customer's preferred date (`yyyy-MM-dd`). Documented non-null.
    pub preferred_date: Option<DateTime>,
    /// True when the appointment is cancelled. Documented non-null.
    pub is_cancelled: Option<bool>,
    /// Comments. Nullable.
    pub comments: Option<String>,
    /// Internal notes. Nullable.
    pub internal_notes: Option<String>,
    /// The team the appointment is assigned to. Nullable.
    pub team_uuid: Option<String>,
    /// Reminders sent. Documented non-null.
    pub reminder_count: Option<i64>,
    /// A linked inspection. Nullable.
    pub customer_vehicle_inspection_id: Option<String>,
    /// The customer. Documented non-null.
    pub customer_information: Option<CustomerInformation>,
    /// The vehicle. Documented non-null.
    pub vehicle_information: Option<VehicleInformation>,
    /// The linked repair order. Documented non-null.
    pub order_information: Option<OrderInformation>,
    /// Confirmation and reminder preferences; children not documented. Documented non-null.
    pub appointment_communication_preferences: Option<Value>,
    /// The transport option; children not documented. Nullable.
    pub transport_option: Option<Value>,
    /// The services (opcodes); item shape not documented. Documented non-null.
    pub service_list: Option<Vec<Value>>,
    /// Service-appointment-request metadata; children not documented. Nullable.
    pub sarmeta_data: Option<Value>,
    /// Keys this library does not model, kept as received.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `customerInformation`, as the Appointment API documents it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerInformation {
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Company name, for business customers.
    pub company: Option<String>,
    /// True for a company rather than a person.
    pub is_business: Option<bool>,
    /// The customer's key in the DMS.
    pub customer_key: Option<String>,
    /// Phone for confirmation texts (E.164).
    pub confirmation_phone: Option<String>,
    /// Address for confirmation emails.
    pub confirmation_email: Option<String>,
    /// Preferred language, e.g. `en-us`.
    pub cust_locale: Option<String>,
    /// myKaarma's customer id.
    pub uuid: Option<String>,
    /// Keys this library does not model, kept as received.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `vehicleInformation`, as the Appointment API documents it. The make arrives as `brand`
/// (the API samples) or `make` (the data-model page); both are kept, [`Self::make`] reads either.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VehicleInformation {
    /// Vehicle identification number.
    pub vin: Option<String>,
    /// The vehicle's id in the DMS.
    pub vehicle_key: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Model year (a string in the API).
    pub year: Option<String>,
    /// Make, under the API samples' name.
    pub brand: Option<String>,
    /// Make, under the data-model page's name; written only when it was received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub make: Option<String>,
    /// Trim.
    pub trim: Option<String>,
    /// Engine description.
    pub engine: Option<String>,
    /// Mileage (a string in the API).
    pub mileage: Option<String>,
    /// The dealer that owns the vehicle record.
    pub dealer_uuid: Option<String>,
    /// myKaarma's vehicle id.
    pub uuid: Option<String>,
    /// Keys this library does not model, kept as received.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `orderInformation`: the repair order linked to the appointment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderInformation {
    /// The repair order's uuid.
    pub uuid: Option<String>,
    /// The RO number.
    pub order_number: Option<String>,
    /// The RO date (format not documented, kept as text).
    pub order_date: Option<String>,
    /// The order type, e.g. `RO`.
    pub order_type: Option<String>,
    /// Keys this library does not model, kept as received.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AppointmentEvent {
    /// Parses the payload's JSON text. The error names the path of the field at fault.
    pub fn from_json(text: &str) -> Result<Self, PayloadError> {
        if !text.trim_start().starts_with('{') {
            return Err(PayloadError::at("payload", "expected a JSON object"));
        }
        from_json_with_path(text)
    }

    /// Reads an already parsed payload (the relay keeps the raw JSON beside the typed view).
    pub fn from_value(value: &Value) -> Result<Self, PayloadError> {
        if !value.is_object() {
            return Err(PayloadError::at("payload", "expected a JSON object"));
        }
        from_value_with_path(value)
    }

    /// The appointment's identity: `appointmentInfoResponse.uuid`, else the payload's `uuid`.
    pub fn appointment_uuid(&self) -> Option<&str> {
        self.appointment_info_response
            .as_ref()
            .and_then(|info| info.uuid.as_deref())
            .or(self.uuid.as_deref())
            .filter(|uuid| !uuid.is_empty())
    }
}

impl VehicleInformation {
    /// The make, whichever name it came under.
    pub fn make(&self) -> Option<&str> {
        self.brand.as_deref().or(self.make.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload with every documented field and unknown keys at several levels.
    fn full_payload() -> Value {
        serde_json::from_str(include_str!(
            "../../../fixtures/payloads/appointment-full.json"
        ))
        .unwrap()
    }

    #[test]
    fn parses_every_documented_field() {
        let event = AppointmentEvent::from_json(&full_payload().to_string()).unwrap();
        assert_eq!(event.event, Some(AppointmentEventName::Created));
        let info = event.appointment_info_response.as_ref().unwrap();
        assert_eq!(info.status, Some(AppointmentStatus::Scheduled));
        assert_eq!(
            info.new_status,
            Some(AppointmentStatus::Other("SOME_NEW_STATUS".into()))
        );
        assert_eq!(info.platform, Some(Platform::Web));
        assert_eq!(
            info.start_time.as_ref().unwrap().naive().to_string(),
            "2025-01-20 08:00:00"
        );
        assert_eq!(info.is_cancelled, Some(false));
        assert_eq!(
            info.vehicle_information.as_ref().unwrap().make(),
            Some("Make")
        );
        assert_eq!(
            info.customer_information.as_ref().unwrap().extra["loyaltyTier"],
            "gold"
        );
        assert_eq!(
            info.extra["assignedAdvisorUserUuid"],
            "undocumented-but-sent"
        );
        assert_eq!(event.extra["futureTopLevelField"]["nested"][2], 3);
        assert_eq!(
            event.appointment_uuid(),
            Some("FAKE_appt_uuid_0000000000000000000000000000")
        );
    }

    #[test]
    fn round_trips_with_unknown_fields_unchanged() {
        let original = full_payload();
        let event = AppointmentEvent::from_json(&original.to_string()).unwrap();
        let written = serde_json::to_value(&event).unwrap();
        // Every key and value comes back; unknown keys follow the modelled ones.
        assert_eq!(written, original);
    }

    /// Found by the `envelope` fuzz target: without serde_json's exact float parsing, `54e300`
    /// read as one float and, written and read again, as its neighbour.
    #[test]
    fn numbers_in_unknown_fields_survive_being_written_and_read_again() {
        let text = r#"{"appointmentInfoMesponse":{"uuid":"a","reminderCount":54e300}}"#;
        let event = AppointmentEvent::from_json(text).unwrap();
        let again = AppointmentEvent::from_json(&serde_json::to_string(&event).unwrap()).unwrap();
        assert_eq!(again, event);
    }

    #[test]
    fn a_parsed_value_reads_like_text() {
        let value = full_payload();
        let from_value = AppointmentEvent::from_value(&value).unwrap();
        assert_eq!(
            from_value,
            AppointmentEvent::from_json(&value.to_string()).unwrap()
        );
        let bad = serde_json::json!({"appointmentInfoResponse": {"recall": "no"}});
        let error = AppointmentEvent::from_value(&bad).unwrap_err();
        assert_eq!(error.path, "appointmentInfoResponse.recall");
        assert!(AppointmentEvent::from_value(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn make_is_accepted_under_either_name() {
        let vehicle: VehicleInformation =
            serde_json::from_str(r#"{"make":"Ford","vin":"X"}"#).unwrap();
        assert_eq!(vehicle.make(), Some("Ford"));
        let written = serde_json::to_value(&vehicle).unwrap();
        assert_eq!(written["make"], "Ford");
    }

    #[test]
    fn missing_keys_read_as_null() {
        let event =
            AppointmentEvent::from_json(r#"{"appointmentInfoResponse":{"uuid":"a"}}"#).unwrap();
        assert_eq!(event.event, None);
        assert_eq!(event.appointment_uuid(), Some("a"));
        let info = event.appointment_info_response.unwrap();
        assert_eq!(info.appointment_key, None);
        assert_eq!(info.is_cancelled, None);
        let bare = AppointmentEvent::from_json(r#"{"uuid":"b"}"#).unwrap();
        assert_eq!(bare.appointment_uuid(), Some("b"));
    }

    #[test]
    fn errors_name_the_field_and_reason() {
        let cases = [
            (
                r#"{"appointmentInfoResponse":{"isCancelled":"yes"}}"#,
                "appointmentInfoResponse.isCancelled: invalid type: string \"yes\", expected a boolean",
            ),
            (
                r#"{"appointmentInfoResponse":{"startTime":"soon"}}"#,
                "appointmentInfoResponse.startTime: invalid date-time \"soon\"",
            ),
            (
                r#"{"appointmentInfoResponse":{"vehicleInformation":{"vin":7}}}"#,
                "appointmentInfoResponse.vehicleInformation.vin: invalid type: integer `7`",
            ),
            (r#"{"event":5}"#, "event: invalid type: integer `5`"),
            ("[]", "payload: expected a JSON object"),
            ("{\"uuid\":\"a\"} trailing", "payload: trailing characters"),
            ("{\"uuid\":", "uuid: EOF while parsing a value"),
        ];
        for (text, expected) in cases {
            let error = AppointmentEvent::from_json(text).unwrap_err().to_string();
            assert!(
                error.starts_with(expected),
                "{text}: got {error:?}, want {expected:?}"
            );
        }
    }
}
