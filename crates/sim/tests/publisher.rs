//! The publisher against real HTTP endpoints: what it sends, the retry schedule, the 5 s
//! timeout, abandoned attempts, duplicates and concurrency.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use kaarma_sim::event::OutgoingEvent;
use kaarma_sim::faults::DeliveryFaults;
use kaarma_sim::publisher::{
    AttemptOutcome, Jitter, Publisher, PublisherConfig, RetryPolicy, Subscription,
};
use kaarma_sim::{LoadOptions, LoadPlan};
use mykaarma::{Envelope, SignatureScope, signature};
use support::Recorder;

const SECRET: &str = "partner-username";
const TOKEN: &str = "myKaarma_00000000-0000-4000-8000-000000000000";

/// A few genuine events from a one-appointment plan.
fn events(count: usize) -> Vec<OutgoingEvent> {
    let mut options = LoadOptions::new("http://unused", SECRET, count);
    options.start_ms = Some(1_736_933_400_000);
    options.rate = 1000.0;
    let plan = LoadPlan::generate(&options).unwrap();
    plan.events
        .into_iter()
        .map(|planned| planned.event)
        .take(count)
        .collect()
}

fn publisher(retry: RetryPolicy, url: &str) -> Publisher {
    let publisher = Publisher::new(PublisherConfig {
        retry,
        ..PublisherConfig::default()
    })
    .unwrap();
    publisher.subscribe(Subscription::new(url, SECRET, Some(TOKEN.into())));
    publisher
}

fn fast(retries: u32, base_ms: u64, jitter: Jitter) -> RetryPolicy {
    RetryPolicy {
        retries,
        base: Duration::from_millis(base_ms),
        jitter,
        ..RetryPolicy::default()
    }
}

#[tokio::test]
async fn an_event_is_sent_as_mykaarma_sends_it() {
    let recorder = Recorder::accepting().await;
    let publisher = publisher(RetryPolicy::default(), &recorder.url);
    let event = events(1).remove(0);
    let records = publisher
        .deliver(Arc::new(event.clone()), DeliveryFaults::default())
        .await;
    assert!(records[0].delivered);
    let requests = recorder.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.body, event.body);
    assert_eq!(request.headers["content-type"], "text/plain");
    assert_eq!(request.headers[signature::AUTHORIZATION_HEADER], TOKEN);
    let header = request.headers[signature::SIGNATURE_HEADER]
        .to_str()
        .unwrap();
    assert!(header.starts_with("sha256="));
    signature::verify(
        SECRET.as_bytes(),
        Some(header),
        &request.body,
        SignatureScope::Body,
    )
    .unwrap();
    let envelope = Envelope::parse(&request.body).unwrap();
    assert_eq!(envelope.id, event.id);
    assert!(envelope.payload.is_stringified());
    let attempts = publisher.log().attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        attempts[0].outcome,
        AttemptOutcome::Acknowledged { status: 200 }
    );
}

#[tokio::test]
async fn a_failing_endpoint_gets_one_attempt_and_five_retries_on_the_schedule() {
    let recorder = Recorder::start(|_| (StatusCode::INTERNAL_SERVER_ERROR, Duration::ZERO)).await;
    let policy = fast(5, 40, Jitter::None);
    let publisher = publisher(policy.clone(), &recorder.url);
    let records = publisher
        .deliver(Arc::new(events(1).remove(0)), DeliveryFaults::default())
        .await;
    assert!(!records[0].delivered);
    assert_eq!(records[0].attempts, 6);
    let requests = recorder.requests();
    assert_eq!(requests.len(), 6, "1 attempt + 5 retries");
    for (retry, pair) in (1..).zip(requests.windows(2)) {
        let gap = pair[1].arrived - pair[0].arrived;
        let backoff = policy.backoff(retry);
        assert_eq!(backoff, Duration::from_millis(40 << (retry - 1)));
        assert!(gap >= backoff, "retry {retry}: {gap:?} < {backoff:?}");
        assert!(
            gap < backoff + Duration::from_millis(400),
            "retry {retry}: {gap:?}"
        );
    }
    let totals = publisher.log().totals();
    assert_eq!(
        (totals.attempts, totals.retries, totals.failures),
        (6, 5, 1)
    );
    assert!(
        publisher
            .log()
            .attempts()
            .iter()
            .all(|attempt| attempt.outcome == AttemptOutcome::Refused { status: 500 })
    );
}

#[tokio::test]
async fn equal_jitter_keeps_each_wait_between_half_and_the_whole_backoff() {
    let recorder = Recorder::start(|n| {
        let status = if n < 4 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        (status, Duration::ZERO)
    })
    .await;
    let policy = fast(5, 80, Jitter::Equal);
    let publisher = publisher(policy.clone(), &recorder.url);
    let records = publisher
        .deliver(Arc::new(events(1).remove(0)), DeliveryFaults::default())
        .await;
    assert!(records[0].delivered);
    assert_eq!(records[0].attempts, 5);
    let requests = recorder.requests();
    for (retry, pair) in (1..).zip(requests.windows(2)) {
        let gap = pair[1].arrived - pair[0].arrived;
        let backoff = policy.backoff(retry);
        assert!(gap >= backoff / 2, "retry {retry}: {gap:?}");
        assert!(
            gap < backoff + Duration::from_millis(400),
            "retry {retry}: {gap:?}"
        );
    }
}

#[tokio::test]
async fn a_slow_endpoint_times_out_at_five_seconds_and_the_retry_succeeds() {
    let recorder = Recorder::start(|n| {
        let delay = if n == 0 {
            Duration::from_secs(8)
        } else {
            Duration::ZERO
        };
        (StatusCode::OK, delay)
    })
    .await;
    // The default timeout (5 s) is the real one; only the back-off is shortened.
    let publisher = publisher(fast(5, 10, Jitter::None), &recorder.url);
    assert_eq!(publisher.config().timeout, Duration::from_secs(5));
    let records = publisher
        .deliver(Arc::new(events(1).remove(0)), DeliveryFaults::default())
        .await;
    assert!(records[0].delivered);
    let attempts = publisher.log().attempts();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].outcome, AttemptOutcome::TimedOut);
    assert!(
        attempts[0].latency >= Duration::from_secs(5)
            && attempts[0].latency < Duration::from_millis(5_900),
        "{:?}",
        attempts[0].latency
    );
    assert_eq!(
        attempts[1].outcome,
        AttemptOutcome::Acknowledged { status: 200 }
    );
}

#[tokio::test]
async fn fail_first_sends_the_attempts_and_abandons_them() {
    let recorder = Recorder::accepting().await;
    let publisher = publisher(fast(5, 5, Jitter::None), &recorder.url);
    let event = events(1).remove(0);
    let faults = DeliveryFaults {
        failing_attempts: 2,
        ..DeliveryFaults::default()
    };
    let records = publisher.deliver(Arc::new(event.clone()), faults).await;
    assert!(records[0].delivered);
    assert_eq!(records[0].attempts, 3);
    let requests = recorder.requests();
    assert_eq!(
        requests.len(),
        3,
        "the abandoned attempts reach the receiver"
    );
    assert!(requests.iter().all(|request| request.body == event.body));
    let abandoned: Vec<bool> = publisher
        .log()
        .attempts()
        .iter()
        .map(|a| a.abandoned)
        .collect();
    assert_eq!(abandoned, [true, true, false]);
}

#[tokio::test]
async fn a_duplicate_is_the_same_body_sent_again() {
    let recorder = Recorder::accepting().await;
    let publisher = publisher(RetryPolicy::default(), &recorder.url);
    let event = events(1).remove(0);
    let faults = DeliveryFaults {
        duplicate_after: Some(Duration::from_millis(20)),
        ..DeliveryFaults::default()
    };
    let records = publisher.deliver(Arc::new(event.clone()), faults).await;
    assert_eq!(records.len(), 2);
    let requests = recorder.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|request| request.body == event.body));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retried_and_reported() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let publisher = publisher(
        fast(2, 5, Jitter::None),
        &format!("http://127.0.0.1:{port}/hook"),
    );
    let records = publisher
        .deliver(Arc::new(events(1).remove(0)), DeliveryFaults::default())
        .await;
    assert!(!records[0].delivered);
    let attempts = publisher.log().attempts();
    assert_eq!(attempts.len(), 3);
    assert!(
        matches!(&attempts[0].outcome, AttemptOutcome::Unreachable { error } if !error.is_empty()),
        "{:?}",
        attempts[0].outcome
    );
}

#[tokio::test]
async fn many_events_are_in_flight_at_once() {
    let recorder = Recorder::start(|_| (StatusCode::OK, Duration::from_millis(300))).await;
    let publisher = publisher(RetryPolicy::default(), &recorder.url);
    let events = events(20);
    assert_eq!(events.len(), 20);
    let started = Instant::now();
    for event in events {
        publisher.publish(event, DeliveryFaults::default());
    }
    publisher.settle().await;
    let elapsed = started.elapsed();
    assert_eq!(recorder.requests().len(), 20);
    // One at a time would take 20 × 300 ms.
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(publisher.log().ack_latency().count, 20);
}
