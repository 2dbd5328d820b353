//! The appointment book: every appointment of the world and the rules for changing one.
//!
//! Each accepted change returns an [`AppointmentChange`], the fact the publisher turns into
//! a webhook event: creates fire `SCHEDULED` (or `CREATED`), moves fire `RESCHEDULED`,
//! cancels `CANCELLED`, deletes `DELETED`, other edits `UPDATED`. A refused change is a
//! [`BookError`] carrying myKaarma's error code, and leaves the book as it was.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime};
use mykaarma::{AppointmentEventName, AppointmentStatus, Platform};
use rand::Rng;
use serde::Serialize;

use crate::appointment::{Appointment, CommunicationPreferences};
use crate::ids::IdSource;
use crate::world::catalog::pick;
use crate::world::{Department, Opcode, Slot, TransportOption, World};

/// Who made a change: myKaarma (a person, the scheduler, an API partner) or the DMS writing
/// back its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOrigin {
    /// A change made in myKaarma.
    MyKaarma,
    /// The DMS acknowledging a change.
    Dms,
}

/// One accepted change: what the publisher announces.
#[derive(Debug, Clone, PartialEq)]
pub struct AppointmentChange {
    /// The payload's `event`.
    pub event: AppointmentEventName,
    /// Who made the change.
    pub origin: ChangeOrigin,
    /// When, epoch milliseconds (the envelope's `timestamp`); strictly increasing per
    /// appointment so receivers that order by timestamp never see a tie.
    pub at_ms: i64,
    /// `updatedByUserUuid`.
    pub updated_by_user_uuid: String,
    /// The appointment after the change (for a delete: its last state).
    pub appointment: Appointment,
}

/// A request to book an appointment, as the create endpoint reads it.
#[derive(Debug, Clone, Default)]
pub struct NewAppointment {
    /// The dealer named in the path.
    pub dealer_uuid: String,
    /// The department; the dealer's first when absent.
    pub department_uuid: Option<String>,
    /// The customer (required).
    pub customer_uuid: Option<String>,
    /// The vehicle, by id…
    pub vehicle_uuid: Option<String>,
    /// …or by VIN.
    pub vin: Option<String>,
    /// Slot start (required).
    pub start: Option<NaiveDateTime>,
    /// Slot end; corrected to the slot's end, with a warning, when it differs.
    pub end: Option<NaiveDateTime>,
    /// Odometer reading; the vehicle's last known one when absent.
    pub mileage: Option<u32>,
    /// Opcodes to book.
    pub opcodes: Vec<String>,
    /// Customer-facing comments.
    pub comments: Option<String>,
    /// Internal notes.
    pub internal_notes: Option<String>,
    /// Transport option by id…
    pub transport_option_uuid: Option<String>,
    /// …or by name (`transportation` or `altTransportation`).
    pub transportation: Option<String>,
    /// The advisor; one is picked when absent.
    pub assigned_advisor_uuid: Option<String>,
    /// The advisor booking it.
    pub creator_advisor_uuid: Option<String>,
    /// The team.
    pub team_uuid: Option<String>,
    /// Communication preferences; all on when absent.
    pub communication: Option<CommunicationPreferences>,
    /// The channel; `WEB` when absent (myKaarma asks API partners to send "Web").
    pub platform: Option<Platform>,
    /// `appointmentSource`; `API` when absent.
    pub source: Option<String>,
    /// The event the create fires: `SCHEDULED` (myKaarma's own bookings) or `CREATED`.
    pub event: Option<AppointmentEventName>,
}

/// A partial update, as the PATCH endpoint reads it: absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct AppointmentUpdate {
    /// New slot start: a reschedule when it differs.
    pub start: Option<NaiveDateTime>,
    /// New slot end (checked against the slot like on create).
    pub end: Option<NaiveDateTime>,
    /// New status; only `CANCELLED` is accepted (the documented way to cancel).
    pub status: Option<AppointmentStatus>,
    /// New comments.
    pub comments: Option<String>,
    /// New internal notes.
    pub internal_notes: Option<String>,
    /// New odometer reading.
    pub mileage: Option<u32>,
    /// The complete new service list: opcodes left out are cancelled, as on myKaarma.
    pub opcodes: Option<Vec<String>>,
    /// New advisor.
    pub assigned_advisor_uuid: Option<String>,
    /// New team.
    pub team_uuid: Option<String>,
    /// New transport option, by id…
    pub transport_option_uuid: Option<String>,
    /// …or by name.
    pub transportation: Option<String>,
    /// New communication preferences.
    pub communication: Option<CommunicationPreferences>,
    /// Who makes the change; the assigned advisor when absent.
    pub updated_by_user_uuid: Option<String>,
}

/// A warning returned with an accepted request (`warnings[]` of the response wrapper).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    /// Stable code.
    pub warning_code: &'static str,
    /// What happened.
    pub warning_description: String,
}

/// The result of an accepted create or update.
#[derive(Debug, Clone)]
pub struct Booking {
    /// The change to announce; `None` when an update changed nothing.
    pub change: Option<AppointmentChange>,
    /// The appointment as it now is.
    pub appointment: Appointment,
    /// Warnings for the response.
    pub warnings: Vec<Warning>,
}

/// Why the book refused a request. [`BookError::code`] is myKaarma's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// The dealer in the path is unknown.
    #[error("no dealer has uuid {0:?}")]
    UnknownDealer(String),
    /// The department is unknown, or not the dealer's.
    #[error("no department {0:?} at this dealer")]
    UnknownDepartment(String),
    /// No customer was named.
    #[error("customerUuid is required")]
    MissingCustomerUuid,
    /// The customer is unknown, or not the dealer's.
    #[error("no customer {0:?} at this dealer")]
    UnknownCustomer(String),
    /// No vehicle was named and the customer does not have exactly one.
    #[error("vehicleInformation with a vehicleUuid or vin is required")]
    MissingVehicle,
    /// The vehicle is not the customer's.
    #[error("the customer has no vehicle {0:?}")]
    UnknownVehicle(String),
    /// No slot start was given.
    #[error("appointmentStartDateTime is required")]
    MissingStartTime,
    /// The start is not a slot boundary within opening hours.
    #[error("no slot starts at {0}")]
    NoTimeInterval(String),
    /// The end is before the start.
    #[error("the appointment ends before it starts")]
    EndBeforeStart,
    /// The slot is full.
    #[error("the slot at {0} is full")]
    SlotUnavailable(String),
    /// The customer already has an open appointment for this vehicle.
    #[error("appointment {0} already exists for this customer and vehicle")]
    DuplicateAppointment(String),
    /// The advisor is not in the department.
    #[error("no advisor {0:?} in this department")]
    UnknownAdvisor(String),
    /// The team is not in the department.
    #[error("no team {0:?} in this department")]
    UnknownTeam(String),
    /// The transport option does not exist.
    #[error("transport option {0:?} does not exist")]
    TransportOptionInvalid(String),
    /// An opcode is not on the department's menu.
    #[error("opcode {0:?} is not offered by this department")]
    UnknownOpcode(String),
    /// No such appointment (or it was deleted).
    #[error("no appointment {0:?} in this department")]
    AppointmentNotFound(String),
    /// A cancelled appointment cannot be edited.
    #[error("appointment {0} is cancelled and can no longer be changed")]
    AppointmentCancelled(String),
    /// A status other than `CANCELLED` was requested.
    #[error("status {0:?} cannot be set through the API; only CANCELLED can")]
    UnsupportedStatus(String),
}

impl BookError {
    /// myKaarma's error code for the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownDealer(_) => "INVALID_DEALER_UUID",
            Self::UnknownDepartment(_) => "INVALID_DEPARTMENT_UUID",
            Self::MissingCustomerUuid => "MISSING_CUSTOMER_UUID",
            Self::UnknownCustomer(_) => "INVALID_CUSTOMER_UUID",
            Self::MissingVehicle => "CUSTOMER_INFO_MISSING",
            Self::UnknownVehicle(_) => "INVALID_VEHICLE_UUID",
            Self::MissingStartTime => "MISSING_APPOINTMENT_START_TIME",
            Self::NoTimeInterval(_) => "NO_TIME_INTERVAL_EXISTS",
            Self::EndBeforeStart => "START_DATE_BEFORE_END_DATE",
            Self::SlotUnavailable(_) => "SLOT_UNAVAILABLE",
            Self::DuplicateAppointment(_) => "DUPLICATE_APPOINTMENT_FOUND",
            Self::UnknownAdvisor(_) => "INCORRECT_USER_INFO",
            Self::UnknownTeam(_) => "INVALID_TEAM_UUID",
            Self::TransportOptionInvalid(_) => "TRANSPORT_OPTION_INVALID",
            Self::UnknownOpcode(_) => "INVALID_OPCODE",
            Self::AppointmentNotFound(_) => "APPOINTMENT_NOT_FOUND",
            Self::AppointmentCancelled(_) => "APPOINTMENT_ALREADY_CANCELLED",
            Self::UnsupportedStatus(_) => "INVALID_STATUS",
        }
    }
}

/// Every appointment, with the indexes the rules need.
#[derive(Debug, Default)]
pub struct AppointmentBook {
    /// In creation order, deleted ones included (the truth lists them).
    appointments: Vec<Appointment>,
    /// The last `at_ms` announced per appointment, parallel to `appointments`.
    last_event_ms: Vec<i64>,
    by_uuid: HashMap<String, usize>,
    /// Active appointments per `(department, slot start)`.
    slot_load: HashMap<(String, NaiveDateTime), u32>,
    /// The active appointment per `(customer, vehicle)`.
    open_by_vehicle: HashMap<(String, String), String>,
}

impl AppointmentBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every appointment ever booked, in creation order, deleted ones included.
    pub fn all(&self) -> &[Appointment] {
        &self.appointments
    }

    /// The appointment with this id, unless deleted.
    pub fn get(&self, uuid: &str) -> Option<&Appointment> {
        self.get_including_deleted(uuid)
            .filter(|appointment| !appointment.deleted)
    }

    /// The appointment with this id, deleted or not.
    pub fn get_including_deleted(&self, uuid: &str) -> Option<&Appointment> {
        self.by_uuid
            .get(uuid)
            .map(|&index| &self.appointments[index])
    }

    /// The department's appointments (not deleted) on `date`, by slot.
    pub fn on_date(&self, department_uuid: &str, date: NaiveDate) -> Vec<&Appointment> {
        let mut found: Vec<&Appointment> = self
            .appointments
            .iter()
            .filter(|a| !a.deleted && a.department_uuid == department_uuid)
            .filter(|a| a.slot.start.date() == date)
            .collect();
        found.sort_by_key(|a| a.slot.start);
        found
    }

    /// Active appointments in the department's slot starting at `start`.
    pub fn slot_load(&self, department_uuid: &str, start: NaiveDateTime) -> u32 {
        self.slot_load
            .get(&(department_uuid.to_owned(), start))
            .copied()
            .unwrap_or(0)
    }

    /// Books an appointment.
    pub fn create(
        &mut self,
        world: &World,
        rng: &mut impl Rng,
        request: NewAppointment,
        at_ms: i64,
    ) -> Result<Booking, BookError> {
        let dealer = world
            .dealer(&request.dealer_uuid)
            .ok_or_else(|| BookError::UnknownDealer(request.dealer_uuid.clone()))?;
        let department = match &request.department_uuid {
            Some(uuid) => dealer
                .departments
                .iter()
                .find(|department| &department.uuid == uuid)
                .ok_or_else(|| BookError::UnknownDepartment(uuid.clone()))?,
            None => dealer
                .departments
                .first()
                .ok_or_else(|| BookError::UnknownDepartment(String::new()))?,
        };
        let customer_uuid = request
            .customer_uuid
            .as_deref()
            .ok_or(BookError::MissingCustomerUuid)?;
        let customer = world
            .customer(customer_uuid)
            .filter(|customer| customer.dealer_uuid == dealer.uuid)
            .ok_or_else(|| BookError::UnknownCustomer(customer_uuid.to_owned()))?;
        let vehicle = match (&request.vehicle_uuid, &request.vin) {
            (Some(uuid), _) => customer.vehicles.iter().find(|v| &v.uuid == uuid),
            (None, Some(vin)) => customer
                .vehicles
                .iter()
                .find(|v| v.vin.as_str().eq_ignore_ascii_case(vin.trim())),
            (None, None) if customer.vehicles.len() == 1 => customer.vehicles.first(),
            (None, None) => return Err(BookError::MissingVehicle),
        }
        .ok_or_else(|| {
            BookError::UnknownVehicle(
                request
                    .vehicle_uuid
                    .clone()
                    .or(request.vin.clone())
                    .unwrap_or_default(),
            )
        })?;
        let open_key = (customer.uuid.clone(), vehicle.uuid.clone());
        if let Some(existing) = self.open_by_vehicle.get(&open_key) {
            return Err(BookError::DuplicateAppointment(existing.clone()));
        }
        let start = request.start.ok_or(BookError::MissingStartTime)?;
        let mut warnings = Vec::new();
        let slot = self.bookable_slot(department, start, request.end, None, &mut warnings)?;
        let assigned_advisor_uuid = match request.assigned_advisor_uuid {
            Some(uuid) => advisor_in(department, uuid)?,
            None => pick(rng, &department.advisors).uuid.clone(),
        };
        let creator_advisor_uuid = request
            .creator_advisor_uuid
            .map(|uuid| advisor_in(department, uuid))
            .transpose()?;
        let team_uuid = request
            .team_uuid
            .map(|uuid| team_in(department, uuid))
            .transpose()?;
        let transport_option = transport_in(
            department,
            request.transport_option_uuid.as_deref(),
            request.transportation.as_deref(),
        )?;
        let services = opcodes_in(department, &request.opcodes)?;

        let appointment = Appointment {
            uuid: rng.entity_id(),
            dealer_uuid: dealer.uuid.clone(),
            department_uuid: department.uuid.clone(),
            utc_offset_minutes: dealer.utc_offset_minutes,
            customer: customer.clone(),
            mileage: request.mileage.unwrap_or(vehicle.mileage),
            vehicle: vehicle.clone(),
            preferred_date: slot.start.date(),
            slot,
            status: AppointmentStatus::Scheduled,
            appointment_key: None,
            dispatch_code: None,
            assigned_advisor_uuid,
            creator_advisor_uuid,
            team_uuid,
            transport_option,
            services,
            comments: request.comments,
            internal_notes: request.internal_notes,
            communication: request.communication.unwrap_or_default(),
            platform: request.platform.unwrap_or(Platform::Web),
            source: request.source.unwrap_or_else(|| "API".to_owned()),
            reminder_count: 0,
            deleted: false,
        };
        let updated_by = appointment
            .creator_advisor_uuid
            .clone()
            .unwrap_or_else(|| appointment.assigned_advisor_uuid.clone());
        self.open_by_vehicle
            .insert(open_key, appointment.uuid.clone());
        *self
            .slot_load
            .entry((appointment.department_uuid.clone(), slot.start))
            .or_default() += 1;
        self.by_uuid
            .insert(appointment.uuid.clone(), self.appointments.len());
        self.appointments.push(appointment.clone());
        self.last_event_ms.push(at_ms - 1);
        let index = self.appointments.len() - 1;
        let event = request.event.unwrap_or(AppointmentEventName::Scheduled);
        let change = self.announce(index, event, ChangeOrigin::MyKaarma, at_ms, updated_by);
        Ok(Booking {
            change: Some(change),
            appointment,
            warnings,
        })
    }

    /// Applies a partial update: a reschedule, a cancel, or any other edit.
    pub fn update(
        &mut self,
        world: &World,
        department_uuid: &str,
        uuid: &str,
        update: AppointmentUpdate,
        at_ms: i64,
    ) -> Result<Booking, BookError> {
        let index = self.index_in(department_uuid, uuid)?;
        let current = &self.appointments[index];
        let department = world
            .department(department_uuid)
            .ok_or_else(|| BookError::UnknownDepartment(department_uuid.to_owned()))?;
        let mut next = current.clone();
        let mut warnings = Vec::new();

        let cancelling = match &update.status {
            Some(AppointmentStatus::Cancelled) => true,
            Some(status) if *status == current.status => false,
            Some(status) => return Err(BookError::UnsupportedStatus(status.to_string())),
            None => false,
        };
        if current.is_cancelled() {
            return Err(BookError::AppointmentCancelled(uuid.to_owned()));
        }
        if let Some(start) = update.start {
            next.slot =
                self.bookable_slot(department, start, update.end, Some(current), &mut warnings)?;
        }
        if let Some(uuid) = update.assigned_advisor_uuid {
            next.assigned_advisor_uuid = advisor_in(department, uuid)?;
        }
        if let Some(uuid) = update.team_uuid {
            next.team_uuid = Some(team_in(department, uuid)?);
        }
        if update.transport_option_uuid.is_some() || update.transportation.is_some() {
            next.transport_option = transport_in(
                department,
                update.transport_option_uuid.as_deref(),
                update.transportation.as_deref(),
            )?;
        }
        if let Some(opcodes) = &update.opcodes {
            next.services = opcodes_in(department, opcodes)?;
        }
        if let Some(comments) = update.comments {
            next.comments = Some(comments);
        }
        if let Some(notes) = update.internal_notes {
            next.internal_notes = Some(notes);
        }
        if let Some(mileage) = update.mileage {
            next.mileage = mileage;
        }
        if let Some(communication) = update.communication {
            next.communication = communication;
        }

        let moved = next.slot != current.slot;
        let event = if cancelling {
            next.status = AppointmentStatus::Cancelled;
            AppointmentEventName::Cancelled
        } else if moved {
            next.status = AppointmentStatus::Rescheduled;
            AppointmentEventName::Rescheduled
        } else if next != *current {
            AppointmentEventName::Updated
        } else {
            warnings.push(Warning {
                warning_code: "NO_CHANGE",
                warning_description: "the update changes nothing; no event was fired".into(),
            });
            return Ok(Booking {
                change: None,
                appointment: next,
                warnings,
            });
        };
        let updated_by = update
            .updated_by_user_uuid
            .unwrap_or_else(|| next.assigned_advisor_uuid.clone());
        let previous = std::mem::replace(&mut self.appointments[index], next.clone());
        self.release(&previous);
        self.hold(&next);
        let change = self.announce(index, event, ChangeOrigin::MyKaarma, at_ms, updated_by);
        Ok(Booking {
            change: Some(change),
            appointment: next,
            warnings,
        })
    }

    /// Deletes an appointment; the event carries its last full state.
    pub fn delete(
        &mut self,
        department_uuid: &str,
        uuid: &str,
        at_ms: i64,
        updated_by: Option<String>,
    ) -> Result<AppointmentChange, BookError> {
        let index = self.index_in(department_uuid, uuid)?;
        let previous = self.appointments[index].clone();
        self.release(&previous);
        self.appointments[index].deleted = true;
        let updated_by = updated_by.unwrap_or_else(|| previous.assigned_advisor_uuid.clone());
        Ok(self.announce(
            index,
            AppointmentEventName::Deleted,
            ChangeOrigin::MyKaarma,
            at_ms,
            updated_by,
        ))
    }

    /// Applies the DMS's write-back to an appointment and announces it as `UPDATED` with the
    /// appointment's current state. `None` when the appointment is unknown or deleted: the
    /// DMS never acknowledges a deleted appointment.
    pub fn record_dms_update(
        &mut self,
        uuid: &str,
        at_ms: i64,
        dms_user_uuid: &str,
        write_back: impl FnOnce(&mut Appointment),
    ) -> Option<AppointmentChange> {
        let index = *self.by_uuid.get(uuid)?;
        if self.appointments[index].deleted {
            return None;
        }
        write_back(&mut self.appointments[index]);
        Some(self.announce(
            index,
            AppointmentEventName::Updated,
            ChangeOrigin::Dms,
            at_ms,
            dms_user_uuid.to_owned(),
        ))
    }

    fn index_in(&self, department_uuid: &str, uuid: &str) -> Result<usize, BookError> {
        self.by_uuid
            .get(uuid)
            .copied()
            .filter(|&index| {
                let appointment = &self.appointments[index];
                !appointment.deleted && appointment.department_uuid == department_uuid
            })
            .ok_or_else(|| BookError::AppointmentNotFound(uuid.to_owned()))
    }

    /// The slot starting at `start` if it has room (`current` frees its own place).
    fn bookable_slot(
        &self,
        department: &Department,
        start: NaiveDateTime,
        end: Option<NaiveDateTime>,
        current: Option<&Appointment>,
        warnings: &mut Vec<Warning>,
    ) -> Result<Slot, BookError> {
        let slot = department
            .slots
            .slot_starting_at(start)
            .ok_or_else(|| BookError::NoTimeInterval(crate::appointment::wire_time(start)))?;
        match end {
            Some(end) if end < start => return Err(BookError::EndBeforeStart),
            Some(end) if end != slot.end => warnings.push(Warning {
                warning_code: "END_TIME_ADJUSTED",
                warning_description: format!(
                    "appointmentEndDateTime set to the slot's end, {}",
                    crate::appointment::wire_time(slot.end)
                ),
            }),
            _ => {}
        }
        let own_place = current.is_some_and(|a| a.slot == slot);
        if !own_place && self.slot_load(&department.uuid, start) >= department.slots.capacity {
            return Err(BookError::SlotUnavailable(crate::appointment::wire_time(
                start,
            )));
        }
        Ok(slot)
    }

    fn hold(&mut self, appointment: &Appointment) {
        if appointment.is_active() {
            *self
                .slot_load
                .entry((appointment.department_uuid.clone(), appointment.slot.start))
                .or_default() += 1;
            self.open_by_vehicle.insert(
                (
                    appointment.customer.uuid.clone(),
                    appointment.vehicle.uuid.clone(),
                ),
                appointment.uuid.clone(),
            );
        }
    }

    fn release(&mut self, appointment: &Appointment) {
        if appointment.is_active() {
            let key = (appointment.department_uuid.clone(), appointment.slot.start);
            if let Some(load) = self.slot_load.get_mut(&key) {
                *load = load.saturating_sub(1);
            }
            self.open_by_vehicle.remove(&(
                appointment.customer.uuid.clone(),
                appointment.vehicle.uuid.clone(),
            ));
        }
    }

    /// Stamps a change (never at or before the appointment's previous one) and returns it.
    fn announce(
        &mut self,
        index: usize,
        event: AppointmentEventName,
        origin: ChangeOrigin,
        at_ms: i64,
        updated_by_user_uuid: String,
    ) -> AppointmentChange {
        let at_ms = at_ms.max(self.last_event_ms[index] + 1);
        self.last_event_ms[index] = at_ms;
        AppointmentChange {
            event,
            origin,
            at_ms,
            updated_by_user_uuid,
            appointment: self.appointments[index].clone(),
        }
    }
}

fn advisor_in(department: &Department, uuid: String) -> Result<String, BookError> {
    if department
        .advisors
        .iter()
        .any(|advisor| advisor.uuid == uuid)
    {
        Ok(uuid)
    } else {
        Err(BookError::UnknownAdvisor(uuid))
    }
}

fn team_in(department: &Department, uuid: String) -> Result<String, BookError> {
    if department.teams.iter().any(|team| team.uuid == uuid) {
        Ok(uuid)
    } else {
        Err(BookError::UnknownTeam(uuid))
    }
}

fn transport_in(
    department: &Department,
    uuid: Option<&str>,
    name: Option<&str>,
) -> Result<Option<TransportOption>, BookError> {
    let found = match (uuid, name) {
        (None, None) => return Ok(None),
        (Some(uuid), _) => department.transport_options.iter().find(|o| o.uuid == uuid),
        (None, Some(name)) => department.transport_options.iter().find(|o| {
            o.transportation.eq_ignore_ascii_case(name)
                || o.alt_transportation.eq_ignore_ascii_case(name)
        }),
    };
    found
        .cloned()
        .map(Some)
        .ok_or_else(|| BookError::TransportOptionInvalid(uuid.or(name).unwrap_or("").to_owned()))
}

fn opcodes_in(department: &Department, opcodes: &[String]) -> Result<Vec<Opcode>, BookError> {
    opcodes
        .iter()
        .map(|code| {
            department
                .opcodes
                .iter()
                .find(|opcode| opcode.opcode.eq_ignore_ascii_case(code.trim()))
                .cloned()
                .ok_or_else(|| BookError::UnknownOpcode(code.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dms::Dms;
    use crate::world::WorldShape;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    struct Fixture {
        world: World,
        book: AppointmentBook,
        rng: StdRng,
    }

    fn fixture() -> Fixture {
        let mut rng = StdRng::seed_from_u64(4);
        let world = World::generate(&mut rng, &WorldShape::default());
        Fixture {
            world,
            book: AppointmentBook::new(),
            rng,
        }
    }

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").unwrap()
    }

    impl Fixture {
        /// A request for the `n`th customer of the first dealer at `start`.
        fn request(&self, n: usize, start: &str) -> NewAppointment {
            let dealer = &self.world.dealers[0];
            let customer = self
                .world
                .customers
                .iter()
                .filter(|c| c.dealer_uuid == dealer.uuid)
                .nth(n)
                .unwrap();
            NewAppointment {
                dealer_uuid: dealer.uuid.clone(),
                customer_uuid: Some(customer.uuid.clone()),
                vehicle_uuid: Some(customer.vehicles[0].uuid.clone()),
                start: Some(at(start)),
                opcodes: vec!["OIL".into()],
                ..NewAppointment::default()
            }
        }

        fn department(&self) -> String {
            self.world.dealers[0].departments[0].uuid.clone()
        }

        fn create(&mut self, n: usize, start: &str, at_ms: i64) -> Result<Booking, BookError> {
            let request = self.request(n, start);
            self.book.create(&self.world, &mut self.rng, request, at_ms)
        }

        fn update(
            &mut self,
            uuid: &str,
            update: AppointmentUpdate,
            at_ms: i64,
        ) -> Result<Booking, BookError> {
            let department = self.department();
            self.book
                .update(&self.world, &department, uuid, update, at_ms)
        }
    }

    #[test]
    fn each_change_fires_its_event_and_status() {
        let mut f = fixture();
        let created = f.create(0, "2025-01-20T08:00:00", 1_000).unwrap();
        let change = created.change.unwrap();
        assert_eq!(change.event, AppointmentEventName::Scheduled);
        assert_eq!(change.appointment.status, AppointmentStatus::Scheduled);
        assert_eq!(change.appointment.slot.end, at("2025-01-20T08:29:59"));
        assert_eq!(change.appointment.appointment_key, None);
        let uuid = change.appointment.uuid.clone();

        let moved = f
            .update(
                &uuid,
                AppointmentUpdate {
                    start: Some(at("2025-01-21T10:30:00")),
                    ..Default::default()
                },
                2_000,
            )
            .unwrap()
            .change
            .unwrap();
        assert_eq!(moved.event, AppointmentEventName::Rescheduled);
        assert_eq!(moved.appointment.status, AppointmentStatus::Rescheduled);
        assert_eq!(moved.appointment.end_time(), "2025-01-21T10:59:59");

        let edited = f
            .update(
                &uuid,
                AppointmentUpdate {
                    comments: Some("Bring the spare key".into()),
                    ..Default::default()
                },
                3_000,
            )
            .unwrap()
            .change
            .unwrap();
        assert_eq!(edited.event, AppointmentEventName::Updated);
        assert_eq!(edited.appointment.status, AppointmentStatus::Rescheduled);

        let cancelled = f
            .update(
                &uuid,
                AppointmentUpdate {
                    status: Some(AppointmentStatus::Cancelled),
                    ..Default::default()
                },
                4_000,
            )
            .unwrap()
            .change
            .unwrap();
        assert_eq!(cancelled.event, AppointmentEventName::Cancelled);
        assert!(cancelled.appointment.is_cancelled());
        let info = cancelled.appointment.info();
        assert_eq!(info.status, info.new_status);
        assert_eq!(info.is_cancelled, Some(true));

        let department = f.department();
        let deleted = f.book.delete(&department, &uuid, 5_000, None).unwrap();
        assert_eq!(deleted.event, AppointmentEventName::Deleted);
        assert_eq!(deleted.appointment.status, AppointmentStatus::Cancelled);
        assert!(f.book.get(&uuid).is_none());
        assert!(f.book.get_including_deleted(&uuid).unwrap().deleted);
    }

    #[test]
    fn an_update_that_changes_nothing_fires_nothing() {
        let mut f = fixture();
        let uuid = f
            .create(0, "2025-01-20T08:00:00", 1)
            .unwrap()
            .appointment
            .uuid;
        let booking = f
            .update(
                &uuid,
                AppointmentUpdate {
                    start: Some(at("2025-01-20T08:00:00")),
                    ..Default::default()
                },
                2,
            )
            .unwrap();
        assert!(booking.change.is_none());
        assert_eq!(booking.warnings[0].warning_code, "NO_CHANGE");
    }

    #[test]
    fn slots_are_checked() {
        let mut f = fixture();
        assert_eq!(
            f.create(0, "2025-01-20T08:10:00", 1).unwrap_err().code(),
            "NO_TIME_INTERVAL_EXISTS"
        );
        let capacity = f.world.dealers[0].departments[0].slots.capacity as usize;
        for n in 0..capacity {
            f.create(n, "2025-01-20T09:00:00", 1).unwrap();
        }
        let full = f.create(capacity, "2025-01-20T09:00:00", 1).unwrap_err();
        assert_eq!(full.code(), "SLOT_UNAVAILABLE");
        // Cancelling one frees its place.
        let first = f.book.all()[0].uuid.clone();
        f.update(
            &first,
            AppointmentUpdate {
                status: Some(AppointmentStatus::Cancelled),
                ..Default::default()
            },
            2,
        )
        .unwrap();
        f.create(capacity, "2025-01-20T09:00:00", 3).unwrap();
    }

    #[test]
    fn refusals_carry_mykaarma_codes_and_change_nothing() {
        let mut f = fixture();
        let uuid = f
            .create(0, "2025-01-20T08:00:00", 1)
            .unwrap()
            .appointment
            .uuid;
        assert_eq!(
            f.create(0, "2025-01-22T08:00:00", 2).unwrap_err().code(),
            "DUPLICATE_APPOINTMENT_FOUND"
        );
        let bad_transport = AppointmentUpdate {
            comments: Some("changed".into()),
            transport_option_uuid: Some("nope".into()),
            ..Default::default()
        };
        assert_eq!(
            f.update(&uuid, bad_transport, 3).unwrap_err().code(),
            "TRANSPORT_OPTION_INVALID"
        );
        assert_eq!(f.book.get(&uuid).unwrap().comments, None);
        let bad_status = AppointmentUpdate {
            status: Some(AppointmentStatus::Other("DONE".into())),
            ..Default::default()
        };
        assert_eq!(
            f.update(&uuid, bad_status, 3).unwrap_err().code(),
            "INVALID_STATUS"
        );
        assert_eq!(
            f.update("missing", AppointmentUpdate::default(), 3)
                .unwrap_err()
                .code(),
            "APPOINTMENT_NOT_FOUND"
        );
        f.update(
            &uuid,
            AppointmentUpdate {
                status: Some(AppointmentStatus::Cancelled),
                ..Default::default()
            },
            4,
        )
        .unwrap();
        let late_edit = AppointmentUpdate {
            comments: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            f.update(&uuid, late_edit, 5).unwrap_err().code(),
            "APPOINTMENT_ALREADY_CANCELLED"
        );
    }

    #[test]
    fn the_dms_assigns_a_key_once_and_never_acks_a_deleted_appointment() {
        let mut f = fixture();
        let mut dms = Dms::new();
        let uuid = f
            .create(0, "2025-01-20T08:00:00", 10)
            .unwrap()
            .appointment
            .uuid;
        let first = dms.acknowledge(&f.world, &mut f.book, &uuid, 10).unwrap();
        assert_eq!(first.event, AppointmentEventName::Updated);
        assert_eq!(first.origin, ChangeOrigin::Dms);
        assert_eq!(first.at_ms, 11, "never at or before the previous event");
        let key = first.appointment.appointment_key.clone().unwrap();
        assert_eq!(key, "DMS-1000001");
        assert!(first.appointment.dispatch_code.is_some());
        let second = dms.acknowledge(&f.world, &mut f.book, &uuid, 20).unwrap();
        assert_eq!(second.appointment.appointment_key, Some(key));
        let department = f.department();
        f.book.delete(&department, &uuid, 30, None).unwrap();
        assert!(dms.acknowledge(&f.world, &mut f.book, &uuid, 40).is_none());
    }
}
