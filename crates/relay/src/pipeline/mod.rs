//! The processor: turns stored events, in arrival order, into appointment state, history and
//! changes.
//!
//! It reads a batch of pending events, works out in memory what each one does (parse,
//! [`projection::apply`], [`change`]), and commits the whole batch in one transaction:
//! projection rows, history entries, changes and the events' processed state together. A
//! crash before the commit leaves the events pending; after it, done. Running a batch twice
//! is impossible (each event moves out of `pending` exactly once) and would change nothing
//! (the work is deterministic). It runs beside ingest, never in its path.

mod change;
mod classify;
mod diff;
mod filter;
mod projection;
mod route;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use mykaarma::{AppointmentEvent, Envelope, EventType};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use change::change_id;
pub use classify::{Before, ChangeKind, Classification, Origin, PairingRules};
pub use diff::{FieldChange, diff, pointer};
pub use filter::{Filter, FilterError};
pub use projection::ProjectionRules;
pub use route::{Facts, Matcher, When};

use crate::clock;
use crate::delivery::Routes;
use crate::store::{
    AppointmentOutcome, AppointmentRecord, EventRecord, ProcessedEvent, ProcessingOutcome, Store,
    StoreError,
};

/// How long the processor lets new events gather once it has caught up.
const GATHER: Duration = Duration::from_millis(20);

/// Processes pending events until told to stop.
pub struct Processor {
    store: Arc<dyn Store>,
    rules: ProjectionRules,
    routes: Arc<Routes>,
    wake: Arc<Notify>,
    batch_size: u32,
}

impl Processor {
    /// A processor on `store` that enqueues each change for the `routes` it matches; `wake`
    /// is notified when new events are stored.
    pub fn new(
        store: Arc<dyn Store>,
        rules: ProjectionRules,
        routes: Arc<Routes>,
        wake: Arc<Notify>,
        batch_size: u32,
    ) -> Self {
        Self {
            store,
            rules,
            routes,
            wake,
            batch_size: batch_size.max(1),
        }
    }

    /// Processes batches until `shutdown`; finishes the batch in hand first.
    pub async fn run(self, shutdown: CancellationToken) {
        let full = self.batch_size as usize;
        loop {
            let idle = match self.store.lead_processing().await {
                // Another replica processes; stand by and ask again.
                Ok(false) => Duration::from_secs(1),
                Ok(true) => match self.process_batch().await {
                    Ok(_) if shutdown.is_cancelled() => break,
                    // A backlog: keep going.
                    Ok(taken) if taken >= full => continue,
                    // Caught up: let the next events gather so that processing takes the
                    // shared writer in few, full transactions instead of one per commit.
                    Ok(taken) if taken > 0 => GATHER,
                    Ok(_) => Duration::from_secs(1),
                    Err(error) => {
                        tracing::error!(%error, "processing batch failed; retrying");
                        Duration::from_secs(1)
                    }
                },
                Err(error) => {
                    tracing::error!(%error, "cannot reach the store to lead processing; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = self.wake.notified(), if idle > GATHER => {
                    tokio::select! {
                        () = tokio::time::sleep(GATHER) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
                () = tokio::time::sleep(idle) => {}
                () = shutdown.cancelled() => break,
            }
        }
    }

    /// Processes one batch of pending events and commits it; returns how many it took.
    ///
    /// When the store refuses the batch for what is in it (a value it cannot keep), the
    /// events are taken again one at a time, so that the one it refuses fails with the reason
    /// and the rest go on: one bad event never stops the stream.
    #[tracing::instrument(name = "process_batch", skip(self))]
    pub async fn process_batch(&self) -> Result<usize, StoreError> {
        match self.process_up_to(self.batch_size).await {
            Err(error) if error.refuses_the_data() && self.batch_size > 1 => {
                tracing::warn!(%error, "the store refused a batch; processing it one event at a time");
                let mut taken = 0;
                while taken < self.batch_size as usize {
                    match self.process_up_to(1).await? {
                        0 => break,
                        one => taken += one,
                    }
                }
                Ok(taken)
            }
            other => other,
        }
    }

    /// Processes and commits up to `limit` pending events. A single event whose outcome the
    /// store refuses for what is in it is committed as failed instead.
    async fn process_up_to(&self, limit: u32) -> Result<usize, StoreError> {
        let events = self.store.pending_events(limit).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let now = clock::now_millis();
        let mut states = HashMap::new();
        let mut processed = Vec::with_capacity(events.len());
        for record in &events {
            let outcome = self.process(record, &mut states, now).await?;
            let routes = match &outcome {
                ProcessingOutcome::Failed(_) => Vec::new(),
                ProcessingOutcome::Appointment(outcome) => {
                    self.routes.matching(&outcome.change.cloudevent)
                }
                ProcessingOutcome::Received(change) => self.routes.matching(&change.cloudevent),
            };
            processed.push(ProcessedEvent {
                seq: record.seq,
                outcome,
                routes,
            });
        }
        if let Err(error) = self.store.commit_processing(&processed).await {
            let [event] = processed.as_mut_slice() else {
                return Err(error);
            };
            if !error.refuses_the_data() {
                return Err(error);
            }
            tracing::error!(%error, seq = event.seq, "the store refused what processing produced; the event fails");
            event.outcome = ProcessingOutcome::Failed(format!(
                "the store refused what processing produced: {error}"
            ));
            event.routes.clear();
            self.store.commit_processing(&processed).await?;
        }
        self.routes.wake_all();
        for (record, event) in events.iter().zip(&processed) {
            let outcome = match &event.outcome {
                ProcessingOutcome::Failed(_) => "failed",
                ProcessingOutcome::Appointment(outcome) => {
                    outcome.history.classification.kind.as_str()
                }
                ProcessingOutcome::Received(_) => "received",
            };
            metrics::counter!("kaarma_relay_events_processed_total", "outcome" => outcome)
                .increment(1);
            let lag = (now - record.received_at).max(0) as f64 / 1000.0;
            metrics::histogram!("kaarma_relay_processing_lag_seconds").record(lag);
        }
        if let Some(oldest) = events.first() {
            metrics::gauge!("kaarma_relay_processing_lag_current_seconds")
                .set((now - oldest.received_at).max(0) as f64 / 1000.0);
        }
        Ok(events.len())
    }

    /// Works out what one event does. `states` holds the appointments this batch has already
    /// touched, so later events in the batch see earlier ones.
    async fn process(
        &self,
        record: &EventRecord,
        states: &mut HashMap<String, Option<AppointmentRecord>>,
        now: i64,
    ) -> Result<ProcessingOutcome, StoreError> {
        let failed = ProcessingOutcome::Failed;
        let parsed = match parse(record) {
            Ok(parsed) => parsed,
            Err(error) => return Ok(failed(error)),
        };
        let (envelope, payload) = parsed;
        if envelope.event_type != EventType::Appointments {
            return Ok(ProcessingOutcome::Received(change::received_change(
                record, payload,
            )));
        }
        let event = match AppointmentEvent::from_value(&payload) {
            Ok(event) => event,
            Err(error) => return Ok(failed(error.to_string())),
        };
        let Some(uuid) = event.appointment_uuid().map(str::to_owned) else {
            return Ok(failed(
                "payload: no appointment uuid (neither appointmentInfoResponse.uuid nor uuid)"
                    .into(),
            ));
        };
        let info = payload
            .get("appointmentInfoResponse")
            .filter(|info| info.is_object())
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));

        let current = match states.entry(uuid.clone()) {
            Entry::Occupied(entry) => entry.get().clone(),
            Entry::Vacant(entry) => entry
                .insert(self.store.get_appointment(&uuid).await?)
                .clone(),
        };
        let input = projection::AppointmentInput {
            record,
            envelope: &envelope,
            event: &event,
            info: &info,
            uuid: &uuid,
        };
        let applied = projection::apply(current.as_ref(), &input, &self.rules, now);
        let shown = applied
            .state
            .as_ref()
            .or(current.as_ref())
            .expect("a stale event always has a current state");
        let change = change::appointment_change(record, &applied.history, shown);
        if let Some(state) = &applied.state {
            states.insert(uuid, Some(state.clone()));
        }
        Ok(ProcessingOutcome::Appointment(Box::new(
            AppointmentOutcome {
                state: applied.state,
                replaces: current.map(|current| current.version.seq),
                history: applied.history,
                change,
            },
        )))
    }
}

/// Reads the stored body back into its envelope and the payload's JSON.
fn parse(record: &EventRecord) -> Result<(Envelope, Value), String> {
    let raw = record.raw.as_deref().unwrap_or_default();
    let envelope = Envelope::parse(raw).map_err(|error| format!("envelope: {error}"))?;
    let text = envelope.payload.text().map_err(|error| error.to_string())?;
    let payload: Value =
        serde_json::from_str(&text).map_err(|error| format!("payload: not valid JSON: {error}"))?;
    if !payload.is_object() {
        return Err("payload: expected a JSON object".into());
    }
    // JSON can only carry a NUL as `\u0000`, so most payloads need no walk.
    if text.contains("\\u0000")
        && let Some(path) = nul_string_path(&payload, String::new())
    {
        return Err(format!("payload: `{path}` contains a NUL character"));
    }
    Ok((envelope, payload))
}

/// The JSON Pointer of the first key or string holding a NUL: no store keeps one in a text
/// column, and myKaarma never sends one, so such a payload is failed rather than half-stored.
/// The pointer itself shows a NUL as `\0`.
fn nul_string_path(value: &Value, at: String) -> Option<String> {
    let child = |key: &str| format!("{at}/{}", key.escape_debug());
    match value {
        Value::String(text) if text.contains('\0') => Some(at),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| nul_string_path(item, format!("{at}/{index}"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(child(key))
            } else {
                nul_string_path(item, child(key))
            }
        }),
        _ => None,
    }
}
