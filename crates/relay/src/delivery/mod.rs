//! The delivery engine: one worker per route leases due deliveries from the outbox, sends
//! them through the route's sink, and records each attempt.
//!
//! - **Order**: a route takes only the oldest undelivered change of each appointment, so the
//!   next waits until the previous was delivered or died; other appointments keep flowing.
//! - **Isolation**: each route has its own worker, concurrency and rate limit; a dead
//!   destination holds up nobody else.
//! - **At least once**: a lease that runs out (a crashed worker) makes the delivery due again;
//!   the change id lets receivers drop the repeat.

mod pacing;
mod retry;
mod routes;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use pacing::Pacing;
pub use retry::{NextStep, RetryPolicy};
pub use routes::{Route, RouteConfig, RouteError, Routes};

use crate::clock;
use crate::sinks::DeliveryError;
use crate::store::{AttemptResult, ClaimedDelivery, DeliveryState, FinishedAttempt, Store};

/// The `[delivery]` table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Seconds a claimed delivery stays leased to its worker. Longer than any attempt takes;
    /// when a replica dies mid-attempt, another takes the delivery over after this long.
    pub lease_secs: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self { lease_secs: 60 }
    }
}

impl DeliveryConfig {
    /// Checks that every route's attempts end well inside the lease, so a worker never loses
    /// a delivery it is still attempting.
    pub fn check(&self, routes: &[RouteConfig]) -> Result<(), RouteError> {
        for route in routes {
            if let Some(timeout) = route.sink.attempt_timeout()
                && timeout.as_secs() >= self.lease_secs
            {
                return Err(RouteError {
                    route: route.name.clone(),
                    reason: format!(
                        "the sink's timeout_secs ({}) must be shorter than [delivery] lease_secs ({})",
                        timeout.as_secs(),
                        self.lease_secs
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Runs the workers of every route.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    routes: Arc<Routes>,
    owner: String,
    lease: Duration,
}

impl Dispatcher {
    /// A dispatcher for `routes`; `owner` names this process in leases.
    pub fn new(
        store: Arc<dyn Store>,
        routes: Arc<Routes>,
        owner: String,
        config: &DeliveryConfig,
    ) -> Self {
        Self {
            store,
            routes,
            owner,
            lease: Duration::from_secs(config.lease_secs.max(1)),
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
                lease: self.lease,
            };
            workers.spawn(worker.run(shutdown.clone()));
        }
        if self.routes.iter().next().is_some() {
            workers.spawn(report_gauges(
                self.store.clone(),
                self.routes.clone(),
                shutdown.clone(),
            ));
        }
        while workers.join_next().await.is_some() {}
    }
}

struct RouteWorker {
    store: Arc<dyn Store>,
    route: Arc<Route>,
    owner: String,
    claims: AtomicU64,
    lease: Duration,
}

impl RouteWorker {
    /// Records the attempts that have ended (all in one transaction), claims as many due
    /// deliveries as there are free permits (and the rate limit allows), starts an attempt for
    /// each, then sleeps until an attempt ends, new work may have come (a wake), the next
    /// delivery is due (at most 1 s) or shutdown.
    async fn run(self, shutdown: CancellationToken) {
        let worker = Arc::new(self);
        let permits = Arc::new(Semaphore::new(worker.route.config.concurrency as usize));
        let mut pacing = worker
            .route
            .config
            .rate_limit
            .map(|rate| Pacing::new(rate, Instant::now()));
        let mut in_flight = JoinSet::new();
        let mut ended = Vec::new();
        // How often the loop runs: it must not spin while there is nothing to claim.
        let wakeups = metrics::counter!("kaarma_relay_delivery_worker_wakeups_total", "route" => worker.route.config.name.clone());
        while !shutdown.is_cancelled() {
            wakeups.increment(1);
            // A subject's next change becomes claimable once its previous attempt is recorded.
            while let Some(Ok(attempt)) = in_flight.try_join_next() {
                ended.push(attempt);
            }
            worker.record(std::mem::take(&mut ended)).await;
            let allowance = pacing
                .as_ref()
                .map_or(u32::MAX, |pacing| pacing.allowance(Instant::now()));
            let free = (permits.available_permits() as u32).min(allowance);
            if free > 0 {
                for delivery in worker.claim(free).await {
                    if let Some(pacing) = &mut pacing {
                        pacing.started(Instant::now());
                    }
                    let permit = permits
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed");
                    let worker = worker.clone();
                    // The permit is given back once the attempt is recorded, so no more than
                    // `concurrency` attempts are ever unrecorded (what a crash can repeat).
                    in_flight.spawn(async move { (worker.attempt(delivery).await, permit) });
                }
            }
            // With every permit taken only a finished attempt frees one, so there is nothing
            // to poll for; under a rate limit, nothing may start before the gap has passed.
            let wait = if permits.available_permits() == 0 {
                None
            } else {
                let paced = pacing
                    .as_ref()
                    .map_or(Duration::ZERO, |pacing| pacing.wait(Instant::now()));
                Some(if paced.is_zero() {
                    worker.until_next_due().await
                } else {
                    paced
                })
            };
            tokio::select! {
                Some(attempt) = in_flight.join_next(), if !in_flight.is_empty() => {
                    ended.extend(attempt.ok());
                }
                () = worker.route.wake.notified(), if wait.is_some() => {}
                () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
                () = shutdown.cancelled() => {}
            }
        }
        while let Some(attempt) = in_flight.join_next().await {
            ended.extend(attempt.ok());
        }
        worker.record(ended).await;
    }

    /// Records how attempts ended, then frees their permits. What cannot be recorded is
    /// attempted again once its lease runs out.
    async fn record(&self, ended: Vec<(FinishedAttempt, OwnedSemaphorePermit)>) {
        if ended.is_empty() {
            return;
        }
        let (attempts, permits): (Vec<_>, Vec<_>) = ended.into_iter().unzip();
        match self.store.finish_attempts(&attempts).await {
            Ok(recorded) => {
                let lost = recorded.iter().filter(|recorded| !**recorded).count();
                if lost > 0 {
                    tracing::warn!(
                        lost,
                        "leases ran out before their attempts ended; other workers own them"
                    );
                }
            }
            Err(error) => {
                tracing::error!(%error, attempts = attempts.len(), "recording attempts failed; they will be retried when their leases run out")
            }
        }
        drop(permits);
    }

    async fn claim(&self, limit: u32) -> Vec<ClaimedDelivery> {
        let now = clock::now_millis();
        let owner = format!(
            "{}#{}",
            self.owner,
            self.claims.fetch_add(1, Ordering::Relaxed)
        );
        let lease_until = now + self.lease.as_millis() as i64;
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

    /// How long to sleep when there is nothing to claim: until the next delivery can be
    /// claimed, between 10 ms and 1 s (the cap bounds how late a change the worker was not
    /// woken for goes out).
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
    async fn attempt(&self, claimed: ClaimedDelivery) -> FinishedAttempt {
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
        // No wake here: the worker's loop sees the attempt end (`join_next`), records it with
        // the others that ended, and claims the appointment's next change then.
        FinishedAttempt {
            id: delivery.id,
            lease_owner: claimed.lease_owner,
            result,
            finished_at: now,
        }
    }
}

/// Publishes delivery counts and the age of the oldest undelivered delivery, per route and
/// state, every 5 s. Every state of every route is set, zeros included: a gauge that is not
/// set keeps its last value, so a state that emptied would go on showing its old count.
async fn report_gauges(store: Arc<dyn Store>, routes: Arc<Routes>, shutdown: CancellationToken) {
    loop {
        if let Ok(counts) = store.delivery_counts().await {
            let now = clock::now_millis();
            for route in routes.iter() {
                let name = &route.config.name;
                for state in DeliveryState::ALL {
                    let count = counts
                        .iter()
                        .find(|count| &count.route == name && count.state == state);
                    metrics::gauge!("kaarma_relay_deliveries", "route" => name.clone(), "state" => state.as_str())
                        .set(count.map_or(0, |count| count.count) as f64);
                    if matches!(state, DeliveryState::Pending | DeliveryState::Failed) {
                        let age = count
                            .and_then(|count| count.oldest_enqueued_at)
                            .map_or(0, |oldest| now - oldest)
                            .max(0);
                        metrics::gauge!("kaarma_relay_delivery_oldest_pending_seconds", "route" => name.clone(), "state" => state.as_str())
                            .set(age as f64 / 1000.0);
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = shutdown.cancelled() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_timeout_must_fit_in_the_lease() {
        let route: RouteConfig = toml::from_str(
            "name = \"slow\"\nsink = { type = \"http\", url = \"http://127.0.0.1:9/\", secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\", timeout_secs = 60 }",
        )
        .unwrap();
        let error = DeliveryConfig { lease_secs: 60 }
            .check(std::slice::from_ref(&route))
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("must be shorter than [delivery] lease_secs (60)"),
            "{error}"
        );
        DeliveryConfig { lease_secs: 61 }.check(&[route]).unwrap();
    }
}
