//! Realistic appointment traffic for the store, as much of it as a benchmark asks for.
//!
//! The emulator plans one run ([`kaarma_sim::LoadPlan`]): many appointments, each with its
//! own lifecycle — created, acknowledged by the DMS, sometimes rescheduled or edited (each
//! change acknowledged again), sometimes cancelled or deleted — interleaved in time as
//! myKaarma would send them. Planning costs a fraction of a millisecond per event, too slow
//! for a million, so the plan is a template: copy `k` of it is the same traffic about a new
//! set of appointments. Each body is rewritten with cheap string replacement — the
//! appointment uuid (43 URL-safe characters) gets copy `k` in its last 8 characters, the
//! envelope id (a UUID) gets it in its last 12 hex digits — so every event id and every
//! appointment is unique across copies, and the bodies stay exactly as valid as the
//! emulator wrote them.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use kaarma_relay::store::NewEvent;
use kaarma_sim::event::EventKind;
use kaarma_sim::{LoadOptions, LoadPlan};

/// The virtual clock's start for every plan: 2026-01-01T00:00:00Z, so plans are repeatable.
const START_MS: i64 = 1_767_225_600_000;

/// The URL-safe alphabet of myKaarma's entity ids, for writing a copy number into one.
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// An endless stream of appointment events: the plan, copy after copy.
pub struct Workload {
    templates: Vec<Template>,
    appointments: usize,
    planned_in: Duration,
    mix: BTreeMap<String, usize>,
}

/// One planned event, with what must change in each copy.
struct Template {
    body: String,
    event_id: String,
    appointment_uuid: String,
    occurred_at: Option<i64>,
    dealer_uuid: Option<String>,
    department_uuid: Option<String>,
}

impl Workload {
    /// Plans `appointments` appointments with the emulator (seeded, so the same every run),
    /// 20 created per (virtual) second across 5 dealers, with myKaarma's own pacing (the DMS
    /// answers after 2 s, lifecycle steps about 3 s apart), no faults.
    pub fn plan(appointments: usize, seed: u64) -> anyhow::Result<Self> {
        let mut options = LoadOptions::new("http://127.0.0.1:9/unused", "unused", appointments);
        options.seed = seed;
        options.rate = 20.0;
        options.dealers = 5;
        options.start_ms = Some(START_MS);
        let started = Instant::now();
        let plan = LoadPlan::generate(&options)?;
        let planned_in = started.elapsed();

        let mut mix = BTreeMap::new();
        let mut templates = Vec::with_capacity(plan.events.len());
        let mut appointment_prefixes = HashSet::new();
        let mut id_prefixes = HashSet::new();
        for planned in &plan.events {
            let event = &planned.event;
            let name = match &event.kind {
                EventKind::Genuine { event, origin } => match origin {
                    kaarma_sim::book::ChangeOrigin::Dms => "DMS acknowledgement".to_owned(),
                    _ => event.clone(),
                },
                EventKind::Corrupted { .. } => "corrupted".to_owned(),
            };
            *mix.entry(name).or_default() += 1;
            let body = std::str::from_utf8(&event.body)?.to_owned();
            let envelope = mykaarma::Envelope::parse(body.as_bytes())?;
            anyhow::ensure!(
                event.appointment_uuid.len() == 43 && event.id.len() == 36,
                "the emulator's ids have myKaarma's shapes"
            );
            appointment_prefixes.insert(event.appointment_uuid[..35].to_owned());
            id_prefixes.insert(event.id[..24].to_owned());
            templates.push(Template {
                body,
                event_id: event.id.clone(),
                appointment_uuid: event.appointment_uuid.clone(),
                occurred_at: envelope.timestamp,
                dealer_uuid: envelope.dealer_uuid.clone(),
                department_uuid: envelope.department_uuid.clone(),
            });
        }
        let appointments = plan.truth.appointments.len();
        // The rewritten part is what tells copies apart; what is left must tell the
        // originals apart.
        anyhow::ensure!(
            appointment_prefixes.len() == appointments && id_prefixes.len() == templates.len(),
            "two planned ids share the part a copy keeps"
        );
        Ok(Self {
            templates,
            appointments,
            planned_in,
            mix,
        })
    }

    /// Events in one copy of the plan.
    pub fn events_per_copy(&self) -> usize {
        self.templates.len()
    }

    /// Appointments in one copy of the plan.
    pub fn appointments_per_copy(&self) -> usize {
        self.appointments
    }

    /// How long the emulator took to plan one copy.
    pub fn planned_in(&self) -> Duration {
        self.planned_in
    }

    /// Mean body size in bytes.
    pub fn mean_body_bytes(&self) -> usize {
        self.templates.iter().map(|t| t.body.len()).sum::<usize>() / self.templates.len().max(1)
    }

    /// Events of one copy by the payload's `event` (DMS acknowledgements apart).
    pub fn mix(&self) -> &BTreeMap<String, usize> {
        &self.mix
    }

    /// Events `first..first + count` of the endless stream (event `n` is event
    /// `n % events_per_copy` of copy `n / events_per_copy`), as ingest would store them,
    /// received at `received_at`.
    pub fn events(&self, first: u64, count: usize, received_at: i64) -> Vec<NewEvent> {
        let per_copy = self.templates.len() as u64;
        (first..first + count as u64)
            .map(|n| {
                let template = &self.templates[(n % per_copy) as usize];
                let copy = n / per_copy;
                let event_id = format!("{}{:012x}", &template.event_id[..24], copy);
                let uuid = appointment_uuid(&template.appointment_uuid, copy);
                let body = template
                    .body
                    .replace(&template.appointment_uuid, &uuid)
                    .replace(&template.event_id, &event_id);
                NewEvent {
                    event_type: "appointments".to_owned(),
                    event_id,
                    occurred_at: template.occurred_at,
                    dealer_uuid: template.dealer_uuid.clone(),
                    department_uuid: template.department_uuid.clone(),
                    received_at,
                    raw: body.into(),
                }
            })
            .collect()
    }
}

/// `original` with `copy` written into its last 8 characters (48 bits, URL-safe).
fn appointment_uuid(original: &str, copy: u64) -> String {
    let mut uuid = original[..35].to_owned();
    for digit in (0..8).rev() {
        uuid.push(char::from(URL_SAFE[((copy >> (6 * digit)) & 63) as usize]));
    }
    uuid
}
