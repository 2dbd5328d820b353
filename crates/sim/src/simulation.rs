//! The live emulator behind `sim serve`: the world and the appointment book behind one lock,
//! a publisher that announces every accepted change at once, and the DMS answering each one
//! after a delay on a timer. The HTTP API is a thin layer over this type.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use chrono::NaiveDate;
use mykaarma::AppointmentEventName;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::task::TaskTracker;

use crate::appointment::Appointment;
use crate::book::{
    AppointmentBook, AppointmentChange, AppointmentUpdate, BookError, Booking, NewAppointment,
};
use crate::clock::SimClock;
use crate::dms::Dms;
use crate::event::OutgoingEvent;
use crate::faults::{DeliveryFaults, Faults};
use crate::ids::IdSource;
use crate::load::CreationEvent;
use crate::publisher::{Publisher, PublisherConfig};
use crate::truth::Truth;
use crate::world::{Customer, NewCustomer, NewVehicle, Vehicle, World, WorldError, WorldShape};

/// How to build and run a live emulator.
#[derive(Debug, Clone)]
pub struct SimulationConfig {
    /// Seeds the world, the ids and the fault decisions.
    pub seed: u64,
    /// How big a world to build.
    pub world: WorldShape,
    /// The clock's start, epoch milliseconds; the real time when `None`.
    pub start_ms: Option<i64>,
    /// Delay from a change to the DMS's acknowledgement.
    pub dms_delay: Duration,
    /// Faults to inject (changeable at run time).
    pub faults: Faults,
    /// Which event a create fires when the request does not say.
    pub creation_event: CreationEvent,
    /// How events are sent.
    pub publisher: PublisherConfig,
}

impl Default for SimulationConfig {
    /// Seed 1, the default world, the real clock, the DMS answering after 2 s, no faults.
    fn default() -> Self {
        Self {
            seed: 1,
            world: WorldShape::default(),
            start_ms: None,
            dms_delay: Duration::from_secs(2),
            faults: Faults::default(),
            creation_event: CreationEvent::Scheduled,
            publisher: PublisherConfig {
                log_limit: 100_000,
                ..PublisherConfig::default()
            },
        }
    }
}

/// The running emulator. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Simulation {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    publisher: Publisher,
    clock: SimClock,
    dms_delay: Duration,
    faults: RwLock<Faults>,
    creation_event: CreationEvent,
    acknowledgements: TaskTracker,
}

#[derive(Debug)]
struct State {
    world: World,
    book: AppointmentBook,
    dms: Dms,
    rng: StdRng,
    fault_rng: StdRng,
}

/// Mixes the seed into the fault stream, as the load generator does.
const FAULT_STREAM: u64 = 0x9e37_79b9_7f4a_7c15;

impl Simulation {
    /// Builds the world and the publisher (with no subscriptions yet).
    pub fn new(config: SimulationConfig) -> anyhow::Result<Self> {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let world = World::generate(&mut rng, &config.world);
        let publisher = Publisher::new(PublisherConfig {
            seed: config.seed,
            ..config.publisher
        })?;
        let clock = config
            .start_ms
            .map_or_else(SimClock::real, SimClock::starting_at);
        Ok(Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    world,
                    book: AppointmentBook::new(),
                    dms: Dms::new(),
                    rng,
                    fault_rng: StdRng::seed_from_u64(config.seed ^ FAULT_STREAM),
                }),
                publisher,
                clock,
                dms_delay: config.dms_delay,
                faults: RwLock::new(config.faults),
                creation_event: config.creation_event,
                acknowledgements: TaskTracker::new(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation is validated before it is applied, so a poisoned lock still guards a
        // consistent book.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The publisher (subscriptions and the delivery log).
    pub fn publisher(&self) -> &Publisher {
        &self.inner.publisher
    }

    /// The clock events are stamped with.
    pub fn clock(&self) -> SimClock {
        self.inner.clock
    }

    /// A snapshot of the world.
    pub fn world(&self) -> World {
        self.state().world.clone()
    }

    /// Reads the world without copying it.
    pub fn with_world<T>(&self, read: impl FnOnce(&World) -> T) -> T {
        read(&self.state().world)
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.inner
            .faults
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the faults; applies to changes from now on.
    pub fn set_faults(&self, faults: Faults) {
        *self
            .inner
            .faults
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = faults;
    }

    /// The true state of every appointment so far.
    pub fn truth(&self) -> Truth {
        Truth::of(self.state().book.all())
    }

    /// The appointment, unless deleted or in another department.
    pub fn appointment(&self, department_uuid: &str, uuid: &str) -> Option<Appointment> {
        self.state()
            .book
            .get(uuid)
            .filter(|appointment| appointment.department_uuid == department_uuid)
            .cloned()
    }

    /// The department's appointments on `date`.
    pub fn appointments_on(&self, department_uuid: &str, date: NaiveDate) -> Vec<Appointment> {
        self.state()
            .book
            .on_date(department_uuid, date)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Booked appointments per slot start of `date` in the department.
    pub fn slot_load(&self, department_uuid: &str, start: chrono::NaiveDateTime) -> u32 {
        self.state().book.slot_load(department_uuid, start)
    }

    /// Books an appointment and announces it. `request.event` defaults to the configured
    /// creation event.
    pub fn create_appointment(&self, mut request: NewAppointment) -> Result<Booking, BookError> {
        let mut state = self.state();
        let state = &mut *state;
        if request.event.is_none() {
            request.event = Some(match self.inner.creation_event {
                CreationEvent::Created => AppointmentEventName::Created,
                CreationEvent::Scheduled => AppointmentEventName::Scheduled,
                CreationEvent::Mixed if rand::Rng::random_bool(&mut state.rng, 0.5) => {
                    AppointmentEventName::Created
                }
                CreationEvent::Mixed => AppointmentEventName::Scheduled,
            });
        }
        let now = self.inner.clock.now_ms();
        let booking = state
            .book
            .create(&state.world, &mut state.rng, request, now)?;
        if let Some(change) = &booking.change {
            self.announce(state, change);
        }
        Ok(booking)
    }

    /// Updates, reschedules or cancels an appointment and announces it.
    pub fn update_appointment(
        &self,
        department_uuid: &str,
        uuid: &str,
        update: AppointmentUpdate,
    ) -> Result<Booking, BookError> {
        let mut state = self.state();
        let state = &mut *state;
        let now = self.inner.clock.now_ms();
        let booking = state
            .book
            .update(&state.world, department_uuid, uuid, update, now)?;
        if let Some(change) = &booking.change {
            self.announce(state, change);
        }
        Ok(booking)
    }

    /// Deletes an appointment and announces it.
    pub fn delete_appointment(
        &self,
        department_uuid: &str,
        uuid: &str,
        updated_by: Option<String>,
    ) -> Result<AppointmentChange, BookError> {
        let mut state = self.state();
        let state = &mut *state;
        let now = self.inner.clock.now_ms();
        let change = state.book.delete(department_uuid, uuid, now, updated_by)?;
        self.announce(state, &change);
        Ok(change)
    }

    /// The department's dealer, if the department exists.
    pub fn dealer_of(&self, department_uuid: &str) -> Option<String> {
        self.state()
            .world
            .department(department_uuid)
            .map(|department| department.dealer_uuid.clone())
    }

    /// Creates a customer of the department's dealer with the given vehicles.
    pub fn create_customer(
        &self,
        dealer_uuid: &str,
        customer: NewCustomer,
        vehicles: Vec<NewVehicle>,
    ) -> Result<Customer, WorldError> {
        let mut state = self.state();
        let state = &mut *state;
        // Check every VIN first, so a bad one leaves no half-made customer behind.
        for vehicle in &vehicles {
            crate::world::Vin::parse(&vehicle.vin)?;
        }
        let uuid = state
            .world
            .add_customer(&mut state.rng, dealer_uuid, customer)?
            .uuid
            .clone();
        for vehicle in vehicles {
            match state.world.add_vehicle(&mut state.rng, &uuid, vehicle) {
                Ok(_) | Err(WorldError::VehicleExists(_)) => {}
                Err(error) => return Err(error),
            }
        }
        state
            .world
            .customer(&uuid)
            .cloned()
            .ok_or(WorldError::UnknownCustomer(uuid))
    }

    /// Adds a vehicle to a customer of `dealer_uuid`.
    pub fn add_vehicle(
        &self,
        dealer_uuid: &str,
        customer_uuid: &str,
        vehicle: NewVehicle,
    ) -> Result<Vehicle, WorldError> {
        let mut state = self.state();
        let state = &mut *state;
        if state
            .world
            .customer(customer_uuid)
            .is_none_or(|customer| customer.dealer_uuid != dealer_uuid)
        {
            return Err(WorldError::UnknownCustomer(customer_uuid.to_owned()));
        }
        state
            .world
            .add_vehicle(&mut state.rng, customer_uuid, vehicle)
            .cloned()
    }

    /// A customer of `dealer_uuid`.
    pub fn customer(&self, dealer_uuid: &str, uuid: &str) -> Option<Customer> {
        self.state()
            .world
            .customer(uuid)
            .filter(|customer| customer.dealer_uuid == dealer_uuid)
            .cloned()
    }

    /// Waits until every pending DMS acknowledgement has fired and every event is delivered
    /// or out of retries.
    pub async fn settle(&self) {
        self.inner.acknowledgements.close();
        self.inner.acknowledgements.wait().await;
        self.inner.acknowledgements.reopen();
        self.inner.publisher.settle().await;
    }

    /// Publishes a change's event (and a corrupted extra, maybe) and, for myKaarma's own
    /// changes, starts the DMS's timer. Called with the state locked, so ids and fault
    /// decisions follow the order of the changes.
    fn announce(&self, state: &mut State, change: &AppointmentChange) {
        let faults = self.faults();
        let format = faults.envelope_format(&mut state.fault_rng);
        let event = OutgoingEvent::announcing(change, state.rng.event_id(), format);
        let delivery = faults.delivery(&mut state.fault_rng);
        tracing::info!(
            event_id = %event.id,
            appointment = %change.appointment.uuid,
            event = %change.event,
            "appointment event"
        );
        self.inner.publisher.publish(event, delivery);
        if let Some(corruption) = faults.corruption(&mut state.fault_rng) {
            let id = state.fault_rng.event_id();
            self.inner.publisher.publish(
                OutgoingEvent::corrupted(change, id, corruption),
                DeliveryFaults {
                    duplicate_after: None,
                    ..delivery
                },
            );
        }
        if Dms::acknowledges(change) && !faults.drops_ack(&mut state.fault_rng) {
            let simulation = self.clone();
            let uuid = change.appointment.uuid.clone();
            self.inner.acknowledgements.spawn(async move {
                tokio::time::sleep(simulation.inner.dms_delay).await;
                simulation.acknowledge(&uuid);
            });
        }
    }

    /// The DMS's write-back, when its timer fires. Nothing is sent for a deleted appointment.
    fn acknowledge(&self, uuid: &str) {
        let mut state = self.state();
        let state = &mut *state;
        let now = self.inner.clock.now_ms();
        if let Some(change) = state
            .dms
            .acknowledge(&state.world, &mut state.book, uuid, now)
        {
            self.announce(state, &change);
        }
    }
}
