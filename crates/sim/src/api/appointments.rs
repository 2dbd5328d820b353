//! The Appointment API (`/appointment/v2`), on the paths myKaarma documents: create, get by
//! uuid, list by date, PATCH to update, reschedule or cancel (`"status":"CANCELLED"`), and
//! delete. Request bodies follow myKaarma's update example: `customerUuid`,
//! `vehicleInformation` and `appointmentInformation` (whose keys are also accepted at the top
//! level, as the create page lists them).

use axum::body::Bytes;
use axum::extract::State;
use chrono::{NaiveDate, NaiveDateTime};
use mykaarma::{AppointmentEventName, AppointmentStatus, Platform};
use serde::Deserialize;

use super::extract::{PathParams, QueryParams};
use super::response::{ApiError, Wrapped, parse_body};
use crate::appointment::CommunicationPreferences;
use crate::book::{AppointmentUpdate, NewAppointment};
use crate::simulation::Simulation;

/// A dealer associate reference (`assignedUser`, `creatorUser`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserReference {
    uuid: Option<String>,
    team_uuid: Option<String>,
}

/// `vehicleInformation` of a request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VehicleReference {
    vehicle_uuid: Option<String>,
    uuid: Option<String>,
    vin: Option<String>,
}

/// `transportOption` of a request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransportReference {
    transport_option_uuid: Option<String>,
    transportation: Option<String>,
    alt_transportation: Option<String>,
}

/// A `serviceList` item: an opcode string or an object with `opcode`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ServiceReference {
    Opcode(String),
    Item {
        #[serde(alias = "laborOpCode", alias = "opCode")]
        opcode: String,
    },
}

impl ServiceReference {
    fn opcode(self) -> String {
        match self {
            Self::Opcode(opcode) | Self::Item { opcode } => opcode,
        }
    }
}

/// `customerAppointmentPreference`: each flag optional, absent ones keep their value.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreferenceRequest {
    email_confirmation: Option<bool>,
    text_confirmation: Option<bool>,
    email_reminder: Option<bool>,
    text_reminder: Option<bool>,
    notify_customer: Option<bool>,
    #[serde(rename = "sendCommunicationToDA")]
    send_communication_to_da: Option<bool>,
}

impl PreferenceRequest {
    fn applied_to(self, mut base: CommunicationPreferences) -> CommunicationPreferences {
        let set = |flag: &mut bool, value: Option<bool>| {
            if let Some(value) = value {
                *flag = value;
            }
        };
        set(&mut base.email_confirmation, self.email_confirmation);
        set(&mut base.text_confirmation, self.text_confirmation);
        set(&mut base.email_reminder, self.email_reminder);
        set(&mut base.text_reminder, self.text_reminder);
        set(&mut base.notify_customer, self.notify_customer);
        set(
            &mut base.send_communication_to_da,
            self.send_communication_to_da,
        );
        base
    }
}

/// The appointment's own fields, nested under `appointmentInformation` or at the top level.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppointmentFields {
    department_uuid: Option<String>,
    appointment_start_date_time: Option<String>,
    appointment_end_date_time: Option<String>,
    mileage_text: Option<String>,
    mileage: Option<u32>,
    comments: Option<String>,
    internal_notes: Option<String>,
    transport_option: Option<TransportReference>,
    transport_option_uuid: Option<String>,
    transportation: Option<String>,
    alt_transportation: Option<String>,
    assigned_user: Option<UserReference>,
    assigned_advisor_uuid: Option<String>,
    creator_user: Option<UserReference>,
    team_uuid: Option<String>,
    service_list: Option<Vec<ServiceReference>>,
    #[serde(alias = "opcodes")]
    op_codes: Option<Vec<ServiceReference>>,
    #[serde(alias = "appointmentCommunicationPreference")]
    customer_appointment_preference: Option<PreferenceRequest>,
    status: Option<String>,
    platform: Option<String>,
    updated_by_user_uuid: Option<String>,
}

/// A create or update request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppointmentRequest {
    customer_uuid: Option<String>,
    vehicle_information: Option<VehicleReference>,
    appointment_information: Option<AppointmentFields>,
    #[serde(flatten)]
    top_level: AppointmentFields,
}

/// The fields, nested ones winning over top-level ones.
struct Fields {
    department_uuid: Option<String>,
    start: Option<NaiveDateTime>,
    end: Option<NaiveDateTime>,
    mileage: Option<u32>,
    comments: Option<String>,
    internal_notes: Option<String>,
    transport_option_uuid: Option<String>,
    transportation: Option<String>,
    assigned_advisor_uuid: Option<String>,
    creator_advisor_uuid: Option<String>,
    team_uuid: Option<String>,
    opcodes: Option<Vec<String>>,
    preferences: Option<PreferenceRequest>,
    status: Option<String>,
    platform: Option<String>,
    updated_by_user_uuid: Option<String>,
}

impl AppointmentRequest {
    fn fields(&mut self) -> Result<Fields, ApiError> {
        let nested = self.appointment_information.take().unwrap_or_default();
        let top = std::mem::take(&mut self.top_level);
        macro_rules! either {
            ($field:ident) => {
                nested.$field.or(top.$field)
            };
        }
        let transport = either!(transport_option).unwrap_or_default();
        let assigned = either!(assigned_user).unwrap_or_default();
        let creator = either!(creator_user).unwrap_or_default();
        let mileage = match either!(mileage_text) {
            Some(text) => Some(parse_mileage(&text)?),
            None => either!(mileage),
        };
        Ok(Fields {
            department_uuid: either!(department_uuid),
            start: either!(appointment_start_date_time)
                .map(|text| parse_time("appointmentStartDateTime", &text))
                .transpose()?,
            end: either!(appointment_end_date_time)
                .map(|text| parse_time("appointmentEndDateTime", &text))
                .transpose()?,
            mileage,
            comments: either!(comments),
            internal_notes: either!(internal_notes),
            transport_option_uuid: transport
                .transport_option_uuid
                .or(either!(transport_option_uuid)),
            transportation: transport
                .transportation
                .or(transport.alt_transportation)
                .or(either!(transportation))
                .or(either!(alt_transportation)),
            assigned_advisor_uuid: assigned.uuid.or(either!(assigned_advisor_uuid)),
            creator_advisor_uuid: creator.uuid,
            team_uuid: creator.team_uuid.or(either!(team_uuid)),
            opcodes: either!(service_list)
                .or(either!(op_codes))
                .map(|list| list.into_iter().map(ServiceReference::opcode).collect()),
            preferences: either!(customer_appointment_preference),
            status: either!(status),
            platform: either!(platform),
            updated_by_user_uuid: either!(updated_by_user_uuid),
        })
    }
}

fn parse_time(field: &str, text: &str) -> Result<NaiveDateTime, ApiError> {
    NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M:%S").map_err(|_| {
        ApiError::bad_request(
            "INVALID_DATE_TIME",
            format!("{field} {text:?} is not in the yyyy-MM-ddTHH:mm:ss format"),
        )
    })
}

fn parse_mileage(text: &str) -> Result<u32, ApiError> {
    let digits: String = text.chars().filter(|c| *c != ',').collect();
    digits.trim().parse().map_err(|_| {
        ApiError::bad_request(
            "INVALID_MILEAGE",
            format!("mileageText {text:?} is not a number"),
        )
    })
}

/// Query of the create endpoint: the emulator's `event` switch (`SCHEDULED` or `CREATED`).
#[derive(Debug, Deserialize)]
pub struct CreateQuery {
    event: Option<String>,
}

/// `POST /appointment/v2/dealer/{dealerUuid}/appointment`
pub async fn create(
    State(simulation): State<Simulation>,
    PathParams(dealer_uuid): PathParams<String>,
    QueryParams(query): QueryParams<CreateQuery>,
    body: Bytes,
) -> Result<Wrapped, ApiError> {
    let mut request: AppointmentRequest = parse_body(&body)?;
    let fields = request.fields()?;
    let event = match query
        .event
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None => None,
        Some("SCHEDULED") => Some(AppointmentEventName::Scheduled),
        Some("CREATED") => Some(AppointmentEventName::Created),
        Some(other) => {
            return Err(ApiError::bad_request(
                "INVALID_REQUEST",
                format!("event {other:?}: a create fires SCHEDULED or CREATED"),
            ));
        }
    };
    let vehicle = request.vehicle_information.unwrap_or_default();
    let booking = simulation.create_appointment(NewAppointment {
        dealer_uuid,
        department_uuid: fields.department_uuid,
        customer_uuid: request.customer_uuid,
        vehicle_uuid: vehicle.vehicle_uuid.or(vehicle.uuid),
        vin: vehicle.vin,
        start: fields.start,
        end: fields.end,
        mileage: fields.mileage,
        opcodes: fields.opcodes.unwrap_or_default(),
        comments: fields.comments,
        internal_notes: fields.internal_notes,
        transport_option_uuid: fields.transport_option_uuid,
        transportation: fields.transportation,
        assigned_advisor_uuid: fields.assigned_advisor_uuid,
        creator_advisor_uuid: fields.creator_advisor_uuid,
        team_uuid: fields.team_uuid,
        communication: fields
            .preferences
            .map(|preferences| preferences.applied_to(CommunicationPreferences::default())),
        platform: fields
            .platform
            .map(|platform| Platform::from(platform.to_ascii_uppercase())),
        source: Some("API".to_owned()),
        event,
    })?;
    Ok(Wrapped::new("appointmentInfo", booking.appointment.info()).with_warnings(booking.warnings))
}

/// `GET /appointment/v2/dealerDepartment/{departmentUuid}/uuid/{appointmentUuid}`
pub async fn get_by_uuid(
    State(simulation): State<Simulation>,
    PathParams((department_uuid, uuid)): PathParams<(String, String)>,
) -> Result<Wrapped, ApiError> {
    let appointment = simulation
        .appointment(&department_uuid, &uuid)
        .ok_or_else(|| ApiError::from(crate::book::BookError::AppointmentNotFound(uuid)))?;
    Ok(Wrapped::new("appointmentInfo", appointment.info()))
}

/// `GET /appointment/v2/dealerDepartment/{departmentUuid}/date/{yyyy-MM-dd}`
pub async fn list_by_date(
    State(simulation): State<Simulation>,
    PathParams((department_uuid, date)): PathParams<(String, String)>,
) -> Result<Wrapped, ApiError> {
    let date = NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(|_| {
        ApiError::bad_request("INVALID_DATE", format!("{date:?} is not a yyyy-MM-dd date"))
    })?;
    if simulation.dealer_of(&department_uuid).is_none() {
        return Err(crate::book::BookError::UnknownDepartment(department_uuid).into());
    }
    let appointments: Vec<_> = simulation
        .appointments_on(&department_uuid, date)
        .iter()
        .map(|appointment| appointment.info())
        .collect();
    Ok(Wrapped::new("serviceAppointments", appointments))
}

/// `PATCH /appointment/v2/department/{departmentUuid}/appointment/{appointmentUuid}`
pub async fn update(
    State(simulation): State<Simulation>,
    PathParams((department_uuid, uuid)): PathParams<(String, String)>,
    body: Bytes,
) -> Result<Wrapped, ApiError> {
    let mut request: AppointmentRequest = parse_body(&body)?;
    let fields = request.fields()?;
    let current = simulation
        .appointment(&department_uuid, &uuid)
        .ok_or_else(|| ApiError::from(crate::book::BookError::AppointmentNotFound(uuid.clone())))?;
    let booking = simulation.update_appointment(
        &department_uuid,
        &uuid,
        AppointmentUpdate {
            start: fields.start,
            end: fields.end,
            status: fields
                .status
                .map(|status| AppointmentStatus::from(status.trim().to_ascii_uppercase())),
            comments: fields.comments,
            internal_notes: fields.internal_notes,
            mileage: fields.mileage,
            opcodes: fields.opcodes,
            assigned_advisor_uuid: fields.assigned_advisor_uuid,
            team_uuid: fields.team_uuid,
            transport_option_uuid: fields.transport_option_uuid,
            transportation: fields.transportation,
            communication: fields
                .preferences
                .map(|preferences| preferences.applied_to(current.communication)),
            updated_by_user_uuid: fields.updated_by_user_uuid.or(fields.creator_advisor_uuid),
        },
    )?;
    Ok(Wrapped::new("appointmentInfo", booking.appointment.info()).with_warnings(booking.warnings))
}

/// `DELETE /appointment/v2/department/{departmentUuid}/appointment/{appointmentUuid}`
pub async fn delete(
    State(simulation): State<Simulation>,
    PathParams((department_uuid, uuid)): PathParams<(String, String)>,
) -> Result<Wrapped, ApiError> {
    let change = simulation.delete_appointment(&department_uuid, &uuid, None)?;
    Ok(Wrapped::new("appointmentUuid", change.appointment.uuid))
}
