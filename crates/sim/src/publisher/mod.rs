//! The publisher: sends every event to every subscription that wants it, the way myKaarma
//! does: `POST` with `content-type: text/plain`, the HMAC-SHA256 signature of the raw body in
//! `mykaarma-signature-token`, the static token in `x-authorization-token`, a 2xx expected
//! within 5 s, failures retried on a [`RetryPolicy`], many events in flight at once (bounded),
//! and every attempt written to the [`DeliveryLog`].

pub mod log;
pub mod retry;
pub mod subscription;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mykaarma::signature::{AUTHORIZATION_HEADER, SIGNATURE_HEADER, sign};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::event::OutgoingEvent;
use crate::faults::DeliveryFaults;
pub use log::{
    AttemptOutcome, DeliveryAttempt, DeliveryLog, DeliveryRecord, DeliveryTotals, LatencySummary,
};
pub use retry::{Jitter, RetryPolicy};
pub use subscription::Subscription;

/// How the publisher sends.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// When failed attempts are retried.
    pub retry: RetryPolicy,
    /// How long an attempt may take before it counts as failed (myKaarma: 5 s).
    pub timeout: Duration,
    /// Requests in flight at once, across all events and endpoints.
    pub concurrency: usize,
    /// Seeds the jitter, so a run's retry schedule can be repeated.
    pub seed: u64,
    /// Entries the delivery log keeps of each kind.
    pub log_limit: usize,
}

impl Default for PublisherConfig {
    /// myKaarma's schedule and timeout, 64 requests in flight.
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(5),
            concurrency: 64,
            seed: 0,
            log_limit: 1_000_000,
        }
    }
}

/// Sends events. Cheap to clone; clones share subscriptions, log and in-flight deliveries.
#[derive(Debug, Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    config: PublisherConfig,
    subscriptions: RwLock<Vec<Subscription>>,
    log: DeliveryLog,
    permits: Semaphore,
    tasks: TaskTracker,
}

impl Publisher {
    /// A publisher with no subscriptions yet.
    pub fn new(config: PublisherConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("kaarma-sim/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                permits: Semaphore::new(config.concurrency.max(1)),
                log: DeliveryLog::with_limit(config.log_limit),
                config,
                subscriptions: RwLock::default(),
                tasks: TaskTracker::new(),
            }),
        })
    }

    /// Adds a subscription.
    pub fn subscribe(&self, subscription: Subscription) {
        self.write_subscriptions().push(subscription);
    }

    /// Removes the subscriptions named `name`; true when there was one.
    pub fn unsubscribe(&self, name: &str) -> bool {
        let mut subscriptions = self.write_subscriptions();
        let before = subscriptions.len();
        subscriptions.retain(|subscription| subscription.name != name);
        subscriptions.len() != before
    }

    /// The current subscriptions.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.inner
            .subscriptions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn write_subscriptions(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Subscription>> {
        self.inner
            .subscriptions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The delivery log.
    pub fn log(&self) -> &DeliveryLog {
        &self.inner.log
    }

    /// The configuration it sends with.
    pub fn config(&self) -> &PublisherConfig {
        &self.inner.config
    }

    /// Starts delivering `event` in the background; [`Publisher::settle`] waits for it.
    pub fn publish(&self, event: OutgoingEvent, faults: DeliveryFaults) {
        let publisher = self.clone();
        self.inner.tasks.spawn(async move {
            publisher.deliver(Arc::new(event), faults).await;
        });
    }

    /// Waits until every delivery started with [`Publisher::publish`] has finished.
    pub async fn settle(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.tasks.reopen();
    }

    /// Delivers `event` (and its duplicate, if the faults call for one) to every subscription
    /// that wants it; returns when every copy is delivered or out of retries.
    pub async fn deliver(
        &self,
        event: Arc<OutgoingEvent>,
        faults: DeliveryFaults,
    ) -> Vec<DeliveryRecord> {
        let targets: Vec<Subscription> = self
            .subscriptions()
            .into_iter()
            .filter(|subscription| subscription.wants(&event.dealer_uuid))
            .collect();
        let mut copies = Vec::new();
        for subscription in &targets {
            copies.push(self.deliver_copy(
                subscription,
                &event,
                0,
                faults.hold,
                faults.failing_attempts,
            ));
            if let Some(gap) = faults.duplicate_after {
                copies.push(self.deliver_copy(subscription, &event, 1, faults.hold + gap, 0));
            }
        }
        // Concurrently: a duplicate may race its original.
        futures::future::join_all(copies).await
    }

    /// One copy to one endpoint: wait, then attempt until a 2xx is accepted or the retries
    /// run out.
    async fn deliver_copy(
        &self,
        subscription: &Subscription,
        event: &OutgoingEvent,
        copy: u32,
        hold: Duration,
        failing_attempts: u32,
    ) -> DeliveryRecord {
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
        let policy = &self.inner.config.retry;
        let mut rng = StdRng::seed_from_u64(jitter_seed(
            self.inner.config.seed,
            &event.id,
            &subscription.url,
            copy,
        ));
        let signature = sign(subscription.secret.as_bytes(), &event.body);
        let mut attempt = 0;
        let delivered = loop {
            attempt += 1;
            if attempt > 1 {
                tokio::time::sleep(policy.delay(attempt - 1, &mut rng)).await;
            }
            let record = self
                .attempt(
                    subscription,
                    event,
                    &signature,
                    copy,
                    attempt,
                    attempt <= failing_attempts,
                )
                .await;
            let succeeded = record.succeeded();
            tracing::debug!(
                event_id = %event.id,
                url = %subscription.url,
                copy,
                attempt,
                outcome = ?record.outcome,
                abandoned = record.abandoned,
                "delivery attempt"
            );
            self.inner.log.record_attempt(record);
            if succeeded {
                break true;
            }
            if attempt >= policy.attempts() {
                tracing::warn!(event_id = %event.id, url = %subscription.url, attempts = attempt, "delivery failed: retries exhausted");
                break false;
            }
        };
        let record = DeliveryRecord {
            event_id: event.id.clone(),
            url: subscription.url.clone(),
            copy,
            attempts: attempt,
            delivered,
        };
        self.inner.log.record_delivery(record.clone());
        record
    }

    /// One HTTP request, timed.
    async fn attempt(
        &self,
        subscription: &Subscription,
        event: &OutgoingEvent,
        signature: &str,
        copy: u32,
        attempt: u32,
        abandoned: bool,
    ) -> DeliveryAttempt {
        // Held only for the request itself, never across a back-off.
        let _permit = self.inner.permits.acquire().await;
        let sent_at_ms = chrono::Utc::now().timestamp_millis();
        let started = Instant::now();
        let mut request = self
            .inner
            .client
            .post(&subscription.url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .header(SIGNATURE_HEADER, signature)
            .body(event.body.clone());
        if let Some(token) = &subscription.token {
            request = request.header(AUTHORIZATION_HEADER, token);
        }
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status();
                // Read the answer to its end: an attempt is over when the target has finished
                // answering, and the timeout covers the body too.
                match response.bytes().await {
                    Ok(_) if status.is_success() => AttemptOutcome::Acknowledged {
                        status: status.as_u16(),
                    },
                    Ok(_) => AttemptOutcome::Refused {
                        status: status.as_u16(),
                    },
                    Err(error) => failure(error),
                }
            }
            Err(error) => failure(error),
        };
        DeliveryAttempt {
            event_id: event.id.clone(),
            appointment_uuid: event.appointment_uuid.clone(),
            url: subscription.url.clone(),
            copy,
            attempt,
            sent_at_ms,
            latency: started.elapsed(),
            outcome,
            abandoned,
        }
    }
}

fn failure(error: reqwest::Error) -> AttemptOutcome {
    if error.is_timeout() {
        AttemptOutcome::TimedOut
    } else {
        // The full chain says why ("connection refused"), the top level only that it failed.
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        AttemptOutcome::Unreachable { error: message }
    }
}

/// A stable seed per delivery (FNV-1a over its identity), so jitter repeats with the run seed.
fn jitter_seed(seed: u64, event_id: &str, url: &str, copy: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in event_id
        .bytes()
        .chain(url.bytes())
        .chain(copy.to_le_bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
