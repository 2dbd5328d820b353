//! The load generator: realistic appointment lifecycles, planned on a virtual timeline and
//! then sent in real time.
//!
//! Planning is a small discrete-event simulation, entirely determined by the seed and the
//! start time: appointments are created at `rate` per second, each in a fresh customer's
//! name (the manual test path: customer, vehicle by VIN, appointment); some are rescheduled,
//! edited, cancelled and deleted a few (scaled) seconds apart; the DMS acknowledges each
//! myKaarma change after `dms_delay`. The plan is every event with the moment it is due, its
//! fault decisions, and the [`Truth`]. Running it sends each event when it falls due,
//! concurrently, and reports what the target did.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeDelta};
use mykaarma::{AppointmentEventName, AppointmentStatus, Platform};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use tokio_util::task::TaskTracker;

use crate::book::{AppointmentBook, AppointmentChange, AppointmentUpdate, NewAppointment};
use crate::dms::Dms;
use crate::duration::format_duration;
use crate::event::{EventKind, OutgoingEvent};
use crate::faults::{DeliveryFaults, Faults};
use crate::ids::IdSource;
use crate::publisher::{
    DeliveryLog, LatencySummary, Publisher, PublisherConfig, RetryPolicy, Subscription,
};
use crate::truth::Truth;
use crate::world::catalog::{self, pick};
use crate::world::{Department, World, WorldShape};

/// Which `event` a create fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CreationEvent {
    /// `SCHEDULED`, what myKaarma's own bookings fire (the FAQ).
    #[default]
    Scheduled,
    /// `CREATED`, the name the event page uses.
    Created,
    /// Either, half and half.
    Mixed,
}

/// Everything a load run needs. [`LoadOptions::new`] fills in myKaarma-like defaults.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The partner endpoint.
    pub target: String,
    /// The signature secret.
    pub secret: String,
    /// The `x-authorization-token`, if the partner checks one.
    pub token: Option<String>,
    /// Appointments to create.
    pub appointments: usize,
    /// Appointments created per second (real time).
    pub rate: f64,
    /// Seeds the world, the lifecycles, the ids and the fault decisions.
    pub seed: u64,
    /// The virtual clock's start, epoch milliseconds; the real time when `None`.
    pub start_ms: Option<i64>,
    /// Dealers in the world.
    pub dealers: usize,
    /// Which event a create fires.
    pub creation_event: CreationEvent,
    /// Faults to inject.
    pub faults: Faults,
    /// The retry schedule, before `time_scale`.
    pub retry: RetryPolicy,
    /// How long an attempt may take (not scaled).
    pub timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Delay from a change to the DMS's acknowledgement, before `time_scale`.
    pub dms_delay: Duration,
    /// Mean gap between the steps of one appointment's lifecycle, before `time_scale`.
    pub step_gap: Duration,
    /// Multiplies `dms_delay`, `step_gap` and the retry schedule: 0.01 runs them 100× faster.
    pub time_scale: f64,
}

impl LoadOptions {
    /// Options for `appointments` appointments against `target`, signed with `secret`: 10
    /// per second, seed 1, 3 dealers, no faults, myKaarma's retries and timeout, the DMS
    /// answering after 2 s, lifecycle steps 3 s apart.
    pub fn new(target: impl Into<String>, secret: impl Into<String>, appointments: usize) -> Self {
        Self {
            target: target.into(),
            secret: secret.into(),
            token: None,
            appointments,
            rate: 10.0,
            seed: 1,
            start_ms: None,
            dealers: 3,
            creation_event: CreationEvent::default(),
            faults: Faults::default(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(5),
            concurrency: 64,
            dms_delay: Duration::from_secs(2),
            step_gap: Duration::from_secs(3),
            time_scale: 1.0,
        }
    }

    fn scaled(&self, duration: Duration) -> Duration {
        duration.mul_f64(if self.time_scale.is_finite() && self.time_scale >= 0.0 {
            self.time_scale
        } else {
            1.0
        })
    }
}

/// One event of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEvent {
    /// When it is sent, from the start of the run (its timestamp minus the start time).
    pub due: Duration,
    /// The event.
    pub event: OutgoingEvent,
    /// How its delivery misbehaves.
    pub faults: DeliveryFaults,
}

/// A whole run, decided before anything is sent.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The virtual clock's start, epoch milliseconds.
    pub start_ms: i64,
    /// The world the appointments live in.
    pub world: World,
    /// Every event, in the order it falls due.
    pub events: Vec<PlannedEvent>,
    /// The final state of every appointment.
    pub truth: Truth,
}

/// A step of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Create,
    Reschedule,
    Edit,
    Cancel,
    Delete,
    Acknowledge,
}

/// A step due at `at` for appointment `index`; `sequence` keeps equal times in plan order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    at: Duration,
    sequence: u64,
    index: usize,
    step: Step,
}

/// Mixes the seed into a second, independent stream for fault decisions, so turning faults
/// on or off does not change the appointments themselves.
const FAULT_STREAM: u64 = 0x9e37_79b9_7f4a_7c15;

struct Planner<'a> {
    options: &'a LoadOptions,
    start_ms: i64,
    rng: StdRng,
    fault_rng: StdRng,
    world: World,
    book: AppointmentBook,
    dms: Dms,
    queue: BinaryHeap<Reverse<Scheduled>>,
    sequence: u64,
    uuids: Vec<Option<String>>,
    events: Vec<PlannedEvent>,
    horizon_days: i64,
}

impl LoadPlan {
    /// Plans a run. The same options (seed and start time included) give the same plan.
    pub fn generate(options: &LoadOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(
            options.rate.is_finite() && options.rate > 0.0,
            "the rate must be a positive number of appointments per second"
        );
        let start_ms = options
            .start_ms
            .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let mut rng = StdRng::seed_from_u64(options.seed);
        let world = World::generate(
            &mut rng,
            &WorldShape {
                dealers: options.dealers.max(1),
                customers_per_dealer: 0,
            },
        );
        // Enough days that slots never run out: at most half the capacity is booked.
        let capacity_per_day: usize = world
            .departments()
            .map(|d| d.slots.slots_per_day() * d.slots.capacity as usize)
            .sum();
        let horizon_days = (options.appointments * 2)
            .div_ceil(capacity_per_day.max(1))
            .max(14) as i64;
        let mut planner = Planner {
            options,
            start_ms,
            fault_rng: StdRng::seed_from_u64(options.seed ^ FAULT_STREAM),
            rng,
            world,
            book: AppointmentBook::new(),
            dms: Dms::new(),
            queue: BinaryHeap::new(),
            sequence: 0,
            uuids: vec![None; options.appointments],
            events: Vec::new(),
            horizon_days,
        };
        for index in 0..options.appointments {
            let at = Duration::from_secs_f64(index as f64 / options.rate);
            planner.schedule(at, index, Step::Create);
        }
        while let Some(Reverse(scheduled)) = planner.queue.pop() {
            planner.perform(scheduled);
        }
        let truth = Truth::of(planner.book.all());
        Ok(Self {
            start_ms,
            world: planner.world,
            events: planner.events,
            truth,
        })
    }
}

impl Planner<'_> {
    fn schedule(&mut self, at: Duration, index: usize, step: Step) {
        self.sequence += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            sequence: self.sequence,
            index,
            step,
        }));
    }

    fn at_ms(&self, at: Duration) -> i64 {
        self.start_ms + i64::try_from(at.as_millis()).unwrap_or(i64::MAX / 2)
    }

    fn perform(&mut self, scheduled: Scheduled) {
        let at_ms = self.at_ms(scheduled.at);
        if scheduled.step == Step::Create {
            if let Some(change) = self.create(scheduled.index, scheduled.at, at_ms) {
                self.emit(scheduled.index, &change);
            }
            return;
        }
        let Some(uuid) = self.uuids[scheduled.index].clone() else {
            return;
        };
        let change = match scheduled.step {
            Step::Acknowledge => self
                .dms
                .acknowledge(&self.world, &mut self.book, &uuid, at_ms),
            Step::Reschedule => self.reschedule(&uuid, at_ms),
            Step::Edit => self.edit(&uuid, at_ms),
            Step::Cancel => self.change(&uuid, at_ms, |update| {
                update.status = Some(AppointmentStatus::Cancelled);
            }),
            Step::Delete => {
                let department = self.book.get(&uuid).map(|a| a.department_uuid.clone());
                department
                    .and_then(|department| self.book.delete(&department, &uuid, at_ms, None).ok())
            }
            Step::Create => None,
        };
        if let Some(change) = change {
            self.emit(scheduled.index, &change);
        }
    }

    /// Announces a change: its event (and a corrupted extra, maybe) and the DMS's answer.
    fn emit(&mut self, index: usize, change: &AppointmentChange) {
        let faults = &self.options.faults;
        let due = Duration::from_millis(u64::try_from(change.at_ms - self.start_ms).unwrap_or(0));
        let format = faults.envelope_format(&mut self.fault_rng);
        let event = OutgoingEvent::announcing(change, self.rng.event_id(), format);
        let delivery = faults.delivery(&mut self.fault_rng);
        self.events.push(PlannedEvent {
            due,
            event,
            faults: delivery,
        });
        if let Some(corruption) = faults.corruption(&mut self.fault_rng) {
            let id = self.fault_rng.event_id();
            self.events.push(PlannedEvent {
                due,
                event: OutgoingEvent::corrupted(change, id, corruption),
                faults: DeliveryFaults {
                    duplicate_after: None,
                    ..delivery
                },
            });
        }
        if Dms::acknowledges(change) && !faults.drops_ack(&mut self.fault_rng) {
            let at = due + self.options.scaled(self.options.dms_delay);
            self.schedule(at, index, Step::Acknowledge);
        }
    }

    /// Books appointment `index` for a new customer and plans the rest of its life.
    fn create(&mut self, index: usize, at: Duration, at_ms: i64) -> Option<AppointmentChange> {
        let rng = &mut self.rng;
        let dealer = pick(rng, &self.world.dealers).clone();
        let department = pick(rng, &dealer.departments).clone();
        let customer = self.world.add_random_customer(rng, &dealer.uuid).clone();
        let vehicle = customer.vehicles.first()?.clone();
        let start = self.free_slot(&department, None)?;
        let rng = &mut self.rng;
        let by_advisor = rng.random_bool(0.7);
        let services = rng.random_range(1..=3);
        let opcodes: Vec<String> = department
            .opcodes
            .choose_multiple(rng, services)
            .map(|opcode| opcode.opcode.clone())
            .collect();
        let event = match self.options.creation_event {
            CreationEvent::Scheduled => AppointmentEventName::Scheduled,
            CreationEvent::Created => AppointmentEventName::Created,
            CreationEvent::Mixed if rng.random_bool(0.5) => AppointmentEventName::Created,
            CreationEvent::Mixed => AppointmentEventName::Scheduled,
        };
        let request = NewAppointment {
            dealer_uuid: dealer.uuid.clone(),
            department_uuid: Some(department.uuid.clone()),
            customer_uuid: Some(customer.uuid.clone()),
            vehicle_uuid: Some(vehicle.uuid.clone()),
            vin: None,
            start: Some(start),
            end: None,
            mileage: Some(vehicle.mileage + rng.random_range(0..3_000)),
            opcodes,
            comments: rng
                .random_bool(0.7)
                .then(|| pick(rng, catalog::COMMENTS).to_string()),
            internal_notes: rng
                .random_bool(0.3)
                .then(|| pick(rng, catalog::INTERNAL_NOTES).to_string()),
            transport_option_uuid: rng
                .random_bool(0.8)
                .then(|| pick(rng, &department.transport_options).uuid.clone()),
            transportation: None,
            assigned_advisor_uuid: Some(pick(rng, &department.advisors).uuid.clone()),
            creator_advisor_uuid: by_advisor.then(|| pick(rng, &department.advisors).uuid.clone()),
            team_uuid: rng
                .random_bool(0.5)
                .then(|| pick(rng, &department.teams).uuid.clone()),
            communication: None,
            platform: Some(if by_advisor {
                Platform::DealerApp
            } else {
                Platform::Web
            }),
            source: Some(
                if by_advisor {
                    "SERVICE_ADVISOR"
                } else {
                    "ONLINE_SCHEDULER"
                }
                .to_owned(),
            ),
            event: Some(event),
        };
        let booking = match self.book.create(&self.world, &mut self.rng, request, at_ms) {
            Ok(booking) => booking,
            Err(error) => {
                tracing::debug!(%error, "planned create refused");
                return None;
            }
        };
        self.uuids[index] = Some(booking.appointment.uuid.clone());
        self.plan_lifecycle(index, at);
        booking.change
    }

    /// Plans what happens to appointment `index` after its creation at `created`.
    fn plan_lifecycle(&mut self, index: usize, created: Duration) {
        let rng = &mut self.rng;
        let mut steps = Vec::new();
        if rng.random_bool(0.35) {
            steps.push(Step::Reschedule);
            if rng.random_bool(0.25) {
                steps.push(Step::Reschedule);
            }
        }
        if rng.random_bool(0.4) {
            steps.push(Step::Edit);
            if rng.random_bool(0.3) {
                steps.push(Step::Edit);
            }
        }
        steps.shuffle(rng);
        if rng.random_bool(0.2) {
            steps.push(Step::Cancel);
        }
        if rng.random_bool(0.12) {
            steps.push(Step::Delete);
        }
        let mut at = created;
        let gap = self.options.scaled(self.options.step_gap);
        for step in steps {
            at += gap.mul_f64(self.rng.random_range(0.5..1.5));
            self.schedule(at, index, step);
        }
    }

    /// A slot start in the department with room, other than `avoid`, within the horizon.
    fn free_slot(
        &mut self,
        department: &Department,
        avoid: Option<chrono::NaiveDateTime>,
    ) -> Option<chrono::NaiveDateTime> {
        let first_day = chrono::DateTime::from_timestamp_millis(self.start_ms)
            .unwrap_or_default()
            .date_naive()
            + TimeDelta::days(1);
        let has_room = |book: &AppointmentBook, start| {
            Some(start) != avoid
                && book.slot_load(&department.uuid, start) < department.slots.capacity
        };
        for _ in 0..20 {
            let day = first_day + TimeDelta::days(self.rng.random_range(0..self.horizon_days));
            let slots = department.slots.slots_on(day);
            let slot = slots.choose(&mut self.rng)?;
            if has_room(&self.book, slot.start) {
                return Some(slot.start);
            }
        }
        // Crowded: the first free slot from the first day on.
        (0..self.horizon_days * 2)
            .map(|offset| first_day + TimeDelta::days(offset))
            .flat_map(|day: NaiveDate| department.slots.slots_on(day))
            .map(|slot| slot.start)
            .find(|&start| has_room(&self.book, start))
    }

    fn reschedule(&mut self, uuid: &str, at_ms: i64) -> Option<AppointmentChange> {
        let appointment = self.book.get(uuid)?;
        if !appointment.is_active() {
            return None;
        }
        let current = appointment.slot.start;
        let department = self.world.department(&appointment.department_uuid)?.clone();
        let start = self.free_slot(&department, Some(current))?;
        self.change(uuid, at_ms, |update| update.start = Some(start))
    }

    /// An edit of the kind a person makes: comments, services, advisor, transport or notes.
    fn edit(&mut self, uuid: &str, at_ms: i64) -> Option<AppointmentChange> {
        let appointment = self.book.get(uuid)?;
        let department = self.world.department(&appointment.department_uuid)?.clone();
        let rng = &mut self.rng;
        let mut update = AppointmentUpdate::default();
        match rng.random_range(0..5) {
            0 => update.comments = Some(format!("{} (updated)", pick(rng, catalog::COMMENTS))),
            1 => {
                let mut opcodes: Vec<String> = appointment
                    .services
                    .iter()
                    .map(|s| s.opcode.clone())
                    .collect();
                let extra = pick(rng, &department.opcodes).opcode.clone();
                if !opcodes.contains(&extra) {
                    opcodes.push(extra);
                } else if opcodes.len() > 1 {
                    opcodes.retain(|opcode| *opcode != extra);
                }
                update.opcodes = Some(opcodes);
            }
            2 => update.assigned_advisor_uuid = Some(pick(rng, &department.advisors).uuid.clone()),
            3 => {
                update.transport_option_uuid =
                    Some(pick(rng, &department.transport_options).uuid.clone())
            }
            _ => update.internal_notes = Some(pick(rng, catalog::INTERNAL_NOTES).to_string()),
        }
        let before = self.book.get(uuid)?.clone();
        let change = self.change(uuid, at_ms, move |target| *target = update);
        if change.is_none() {
            // The edit happened to change nothing (same advisor picked): make it a note.
            let note = format!(
                "Checked by advisor at {}",
                before.local_time(at_ms).format("%H:%M")
            );
            return self.change(uuid, at_ms, |update| update.internal_notes = Some(note));
        }
        change
    }

    fn change(
        &mut self,
        uuid: &str,
        at_ms: i64,
        fill: impl FnOnce(&mut AppointmentUpdate),
    ) -> Option<AppointmentChange> {
        let department = self.book.get(uuid)?.department_uuid.clone();
        let mut update = AppointmentUpdate::default();
        fill(&mut update);
        match self
            .book
            .update(&self.world, &department, uuid, update, at_ms)
        {
            Ok(booking) => booking.change,
            Err(error) => {
                tracing::debug!(%error, uuid, "planned change refused");
                None
            }
        }
    }
}

/// Follows a run's progress: told how many events there are, then once per event settled.
pub trait Progress: Send + Sync + 'static {
    /// The run has `events` events to send.
    fn start(&self, events: u64) {
        let _ = events;
    }
    /// One more event is delivered or out of retries.
    fn advance(&self) {}
    /// Everything is settled.
    fn finish(&self) {}
}

/// No progress display.
impl Progress for () {}

/// A terminal progress bar.
impl Progress for indicatif::ProgressBar {
    fn start(&self, events: u64) {
        self.set_length(events);
    }
    fn advance(&self) {
        self.inc(1);
    }
    fn finish(&self) {
        self.finish_and_clear();
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Appointments created.
    pub appointments: usize,
    /// Genuine events, by the payload's `event` (DMS acknowledgements counted apart).
    pub events_by_name: BTreeMap<String, usize>,
    /// DMS acknowledgements among the genuine events.
    pub dms_acknowledgements: usize,
    /// Genuine events in all.
    pub events: usize,
    /// Corrupted extra events.
    pub corrupted_events: usize,
    /// Events sent in the older envelope shape.
    pub legacy_events: usize,
    /// Events delivered a second time on purpose.
    pub duplicated_events: usize,
    /// Copies delivered or out of retries (events × endpoints, plus duplicates).
    pub deliveries: u64,
    /// Requests made.
    pub attempts: u64,
    /// Requests after the first of their delivery.
    pub retries: u64,
    /// Deliveries that ran out of retries.
    pub failures: u64,
    /// The target's answer times over its 2xx answers.
    pub ack_latency: LatencySummary,
    /// Wall time of the sending.
    pub elapsed: Duration,
    /// Every attempt and delivery.
    pub log: DeliveryLog,
    /// The final state of every appointment.
    pub truth: Truth,
}

/// Plans and runs a load, reporting progress to `progress`.
pub async fn run(options: &LoadOptions, progress: impl Progress) -> anyhow::Result<RunReport> {
    let plan = LoadPlan::generate(options)?;
    execute(plan, options, progress).await
}

/// Sends a plan: each event when it falls due, concurrently, with the plan's faults.
pub async fn execute(
    plan: LoadPlan,
    options: &LoadOptions,
    progress: impl Progress,
) -> anyhow::Result<RunReport> {
    let publisher = Publisher::new(PublisherConfig {
        retry: options.retry.clone().scaled(options.time_scale),
        timeout: options.timeout,
        concurrency: options.concurrency,
        seed: options.seed,
        log_limit: usize::MAX,
    })?;
    publisher.subscribe(Subscription::new(
        options.target.clone(),
        options.secret.clone(),
        options.token.clone(),
    ));
    let mut report = RunReport {
        appointments: plan.truth.appointments.len(),
        events_by_name: BTreeMap::new(),
        dms_acknowledgements: 0,
        events: 0,
        corrupted_events: 0,
        legacy_events: 0,
        duplicated_events: 0,
        deliveries: 0,
        attempts: 0,
        retries: 0,
        failures: 0,
        ack_latency: LatencySummary::default(),
        elapsed: Duration::ZERO,
        log: publisher.log().clone(),
        truth: plan.truth,
    };
    for planned in &plan.events {
        match &planned.event.kind {
            EventKind::Genuine { event, origin } => {
                report.events += 1;
                if *origin == crate::book::ChangeOrigin::Dms {
                    report.dms_acknowledgements += 1;
                } else {
                    *report.events_by_name.entry(event.clone()).or_default() += 1;
                }
            }
            EventKind::Corrupted { .. } => report.corrupted_events += 1,
        }
        report.legacy_events += usize::from(planned.event.legacy);
        report.duplicated_events += usize::from(planned.faults.duplicate_after.is_some());
    }
    tracing::info!(
        events = plan.events.len(),
        appointments = report.appointments,
        target = %options.target,
        faults = %options.faults,
        "load run starting"
    );

    let progress = Arc::new(progress);
    progress.start(plan.events.len() as u64);
    let tasks = TaskTracker::new();
    let started = Instant::now();
    for planned in plan.events {
        tokio::time::sleep_until((started + planned.due).into()).await;
        let publisher = publisher.clone();
        let progress = Arc::clone(&progress);
        tasks.spawn(async move {
            publisher
                .deliver(Arc::new(planned.event), planned.faults)
                .await;
            progress.advance();
        });
    }
    tasks.close();
    tasks.wait().await;
    progress.finish();

    let totals = publisher.log().totals();
    report.deliveries = totals.deliveries;
    report.attempts = totals.attempts;
    report.retries = totals.retries;
    report.failures = totals.failures;
    report.ack_latency = publisher.log().ack_latency();
    report.elapsed = started.elapsed();
    Ok(report)
}

impl fmt::Display for RunReport {
    /// The summary `sim run` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by_name: Vec<String> = self
            .events_by_name
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        writeln!(f, "appointments  {}", self.appointments)?;
        writeln!(
            f,
            "events        {}  ({}, DMS acks {})",
            self.events,
            by_name.join(", "),
            self.dms_acknowledgements
        )?;
        writeln!(
            f,
            "              + {} corrupted extras; {} in the old shape; {} duplicated",
            self.corrupted_events, self.legacy_events, self.duplicated_events
        )?;
        writeln!(f, "deliveries    {}", self.deliveries)?;
        writeln!(f, "attempts      {}", self.attempts)?;
        writeln!(f, "retries       {}", self.retries)?;
        writeln!(f, "failures      {}", self.failures)?;
        let latency = &self.ack_latency;
        writeln!(
            f,
            "ack latency   p50 {}  p90 {}  p99 {}  max {}  ({} answers)",
            millis(latency.p50),
            millis(latency.p90),
            millis(latency.p99),
            millis(latency.max),
            latency.count
        )?;
        write!(
            f,
            "elapsed       {}",
            format_duration(round_millis(self.elapsed))
        )
    }
}

fn round_millis(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

fn millis(duration: Duration) -> String {
    format!("{:.1}ms", duration.as_secs_f64() * 1000.0)
}
