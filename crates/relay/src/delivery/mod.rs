//! The delivery engine: one worker per route leases due deliveries from the outbox, sends
//! them through the route's sink, and records each attempt.
//!
//! - **Order**: a route takes only the oldest undelivered change of each appointment, so the
//!   next waits until the previous was delivered or died; other appointments keep flowing.
//! - **Isolation**: each route has its own worker, concurrency and rate limit; a dead
//!   destination holds up nobody else.
//! - **At least once**: a lease that runs out (a crashed worker) makes the delivery due again;
//!   the change id lets receivers drop the repeat.

mod retry;
mod routes;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use retry::{NextStep, RetryPolicy};
pub use routes::{Route, RouteConfig, RouteError, Routes};

use crate::clock;
use crate::sinks::DeliveryError;
use crate::store::{AttemptResult, ClaimedDelivery, DeliveryState, Store};

/// How long a claimed delivery stays leased to its worker; longer than any attempt takes.
const LEASE: Duration = Duration::from_secs(120);

/// Runs the workers of every route.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    routes: Arc<Routes>,
    owner: String,
}

impl Dispatcher {
    /// A dispatcher for `routes`; `owner` names this process in leases.
    pub fn new(store: Arc<dyn Store>, routes: Arc<Routes>, owner: String) -> Self {
        Self {
            store,
            routes,
            owner,
        }
    }

    /// Runs until `shutdown`; attempts in flight are finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut workers = JoinSet::new();
        for route in self.routes.iter() {
            let worker = RouteWorker {
                store: self.store.clone(),
                route: route.clone(),
                owner: format!("{}/{}", self.owner, route.config.name),
                claims: AtomicU64::new(0),
            };
            workers.spawn(worker.run(shutdown.clone()));
        }
        if self.routes.iter().next().is_some() {
            workers.spawn(report_gauges(self.store.clone(), shutdown.clone()));
        }
        while workers.join_next().await.is_some() {}
    }
}

struct RouteWorker {
    store: Arc<dyn Store>,
    route: Arc<Route>,
    owner: String,
    claims: AtomicU64,
}

impl RouteWorker {
    async fn run(self, shutdown: CancellationToken) {
        let worker = Arc::new(self);
        let permits = Arc::new(Semaphore::new(worker.route.config.concurrency as usize));
        let mut pacing = worker.route.config.rate_limit.map(|rate| {
            let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let mut in_flight = JoinSet::new();
        while !shutdown.is_cancelled() {
            let free = permits.available_permits() as u32;
            let claimed = if free == 0 {
                Vec::new()
            } else {
                worker.claim(free).await
            };
            for delivery in claimed {
                if let Some(pacing) = &mut pacing {
                    pacing.tick().await;
                }
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let worker = worker.clone();
                in_flight.spawn(async move {
                    worker.attempt(delivery).await;
                    drop(permit);
                });
            }
            let wait = worker.until_next_due().await;
            tokio::select! {
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = worker.route.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => {}
            }
        }
        while in_flight.join_next().await.is_some() {}
    }

    async fn claim(&self, limit: u32) -> Vec<ClaimedDelivery> {
        let now = clock::now_millis();
        let owner = format!(
            "{}#{}",
            self.owner,
            self.claims.fetch_add(1, Ordering::Relaxed)
        );
        let lease_until = now + LEASE.as_millis() as i64;
        match self
            .store
            .claim_deliveries(&self.route.config.name, &owner, now, lease_until, limit)
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::error!(%error, route = %self.route.config.name, "claiming deliveries failed");
                Vec::new()
            }
        }
    }

    /// How long to sleep when there is nothing to do: until the next delivery is due,
    /// between 10 ms and 1 s.
    async fn until_next_due(&self) -> Duration {
        let due = self
            .store
            .next_delivery_due(&self.route.config.name)
            .await
            .ok()
            .flatten();
        let wait = due
            .map_or(1000, |due| due - clock::now_millis())
            .clamp(10, 1000);
        Duration::from_millis(wait as u64)
    }

    #[tracing::instrument(name = "delivery_attempt", skip_all, fields(route = %self.route.config.name, delivery = claimed.delivery.id))]
    async fn attempt(&self, claimed: ClaimedDelivery) {
        let route = &self.route.config;
        let delivery = &claimed.delivery;
        let started = Instant::now();
        let outcome = self.route.sink.deliver(&claimed.change).await;
        metrics::histogram!("kaarma_relay_delivery_attempt_seconds", "route" => route.name.clone())
            .record(started.elapsed());
        let now = clock::now_millis();
        let attempts = u32::try_from(delivery.attempts)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let result = match outcome {
            Ok(delivered) => AttemptResult::Delivered {
                status: delivered.status,
            },
            Err(DeliveryError::Permanent { reason, status }) => AttemptResult::Dead {
                error: format!("{reason} (permanent)"),
                status,
            },
            Err(DeliveryError::Retryable {
                reason,
                status,
                retry_after,
            }) => match route.retry.after_failure(
                attempts,
                delivery.enqueued_at,
                now,
                retry_after,
                &mut rand::rng(),
            ) {
                NextStep::RetryAt(next_attempt_at) => AttemptResult::Retry {
                    error: reason,
                    status,
                    next_attempt_at,
                },
                NextStep::GiveUp => AttemptResult::Dead {
                    error: format!("{reason} (retry budget spent after {attempts} attempts)"),
                    status,
                },
            },
        };
        let outcome = match &result {
            AttemptResult::Delivered { .. } => "delivered",
            AttemptResult::Retry { error, .. } => {
                tracing::warn!(%error, attempts, "delivery attempt failed; will retry");
                "failed"
            }
            AttemptResult::Dead { error, .. } => {
                tracing::error!(%error, attempts, "delivery is dead");
                "dead"
            }
        };
        metrics::counter!("kaarma_relay_delivery_attempts_total", "route" => route.name.clone(), "outcome" => outcome)
            .increment(1);
        match self
            .store
            .finish_attempt(delivery.id, &claimed.lease_owner, &result, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "the lease ran out before the attempt finished; another worker owns it"
            ),
            Err(error) => {
                tracing::error!(%error, "recording the attempt failed; it will be retried when the lease runs out")
            }
        }
        // The next change of the same appointment may be due now.
        self.route.wake.notify_one();
    }
}

/// Publishes delivery counts and the age of the oldest undelivered delivery, per route.
async fn report_gauges(store: Arc<dyn Store>, shutdown: CancellationToken) {
    loop {
        if let Ok(counts) = store.delivery_counts().await {
            let now = clock::now_millis();
            for count in &counts {
                metrics::gauge!("kaarma_relay_deliveries", "route" => count.route.clone(), "state" => count.state.as_str())
                    .set(count.count as f64);
                if matches!(count.state, DeliveryState::Pending | DeliveryState::Failed) {
                    let age = count
                        .oldest_enqueued_at
                        .map_or(0, |oldest| now - oldest)
                        .max(0);
                    metrics::gauge!("kaarma_relay_delivery_oldest_pending_seconds", "route" => count.route.clone(), "state" => count.state.as_str())
                        .set(age as f64 / 1000.0);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = shutdown.cancelled() => break,
        }
    }
}
