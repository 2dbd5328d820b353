//! "2xx only after commit", checked from outside the process: concurrent senders post
//! distinct events while the relay is stopped by SIGTERM (it must drain and exit 0) or killed
//! by SIGKILL (several times over one database file). Whatever was acknowledged must then be
//! stored exactly once; deliveries in flight at the kill may go either way.
//!
//! SIGKILL ends the process, not the machine: what the kernel had accepted in its page cache
//! survives, so this proves the relay answers only after its commit, not that the commit
//! reached the disk (that is `synchronous = FULL`'s job).

mod relay_process;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use relay_process::{
    EventTemplate, Load, LoadOutcome, RelayProcess, StoredEvent, Webhook, rows_per_id, serve,
};

/// Concurrent senders, each with its own keep-alive connection.
const SENDERS: usize = 16;

/// Checks that every acknowledged id is stored exactly once with one delivery, and that
/// nothing is stored that was not sent.
fn assert_every_ack_is_stored_once(outcome: &LoadOutcome, stored: &[StoredEvent]) {
    let rows = rows_per_id(stored);
    let acked: HashSet<&str> = outcome.acked.iter().map(String::as_str).collect();
    assert_eq!(
        acked.len(),
        outcome.acked.len(),
        "an id was acknowledged twice"
    );
    let lost: Vec<&&str> = acked.iter().filter(|id| !rows.contains_key(**id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged deliveries are not stored, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    let repeated: Vec<(&&str, &usize)> = rows.iter().filter(|(_, rows)| **rows > 1).collect();
    assert!(repeated.is_empty(), "stored more than once: {repeated:?}");
    let sent: HashSet<&str> = acked
        .iter()
        .copied()
        .chain(outcome.in_doubt.iter().map(String::as_str))
        .collect();
    let phantoms: Vec<&StoredEvent> = stored
        .iter()
        .filter(|event| !sent.contains(event.id.as_str()))
        .collect();
    assert!(phantoms.is_empty(), "stored but never sent: {phantoms:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_exits_zero_and_keeps_every_acknowledged_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let template = EventTemplate::load("appointment-created");
    let mut relay = RelayProcess::start(serve(dir.path())).await;
    let webhook = Webhook::new(relay.webhook_url());
    let load = Load::start(&webhook, &template, SENDERS, 1, Arc::new(AtomicU64::new(0)));
    load.wait_for_acks(300).await;

    let status = relay.stop(libc::SIGTERM).await;
    let outcome = load.finish().await;
    assert!(
        status.success(),
        "SIGTERM must end in exit 0, got {status:?}; log:\n{}",
        relay.log()
    );
    assert!(
        relay.log().contains("kaarma-relay stopped"),
        "{}",
        relay.log()
    );
    // A graceful stop answers what it took in: nothing in flight may get a 503 or a 408.
    assert!(
        outcome.refused.is_empty(),
        "answered other than 200 accepted: {:?}",
        &outcome.refused[..outcome.refused.len().min(5)]
    );

    let restarted = RelayProcess::start(serve(dir.path())).await;
    let stored = restarted.stored_events().await;
    assert_every_ack_is_stored_once(&outcome, &stored);
    assert!(
        stored.iter().all(|event| event.delivery_count == 1),
        "each id was sent once"
    );
    eprintln!(
        "sigterm: {} acknowledged, {} in flight at the stop, {} stored",
        outcome.acked.len(),
        outcome.in_doubt.len(),
        stored.len()
    );
}

/// `shutdown_grace_secs` bounds how long SIGTERM waits for in-flight requests: a client
/// that stalls half-way through its request must not keep the relay from exiting.
#[tokio::test]
async fn sigterm_with_a_stalled_client_exits_within_the_grace_period() {
    const GRACE: Duration = Duration::from_secs(1);
    let stalled_requests = [
        (
            "mid-headers",
            "POST /webhooks/mykaarma HTTP/1.1\r\nHost: relay\r\n",
        ),
        (
            "mid-body",
            "POST /webhooks/mykaarma HTTP/1.1\r\nHost: relay\r\nContent-Type: text/plain\r\n\
             Content-Length: 5000\r\n\r\n{\"id\":\"",
        ),
    ];
    for (stall, request) in stalled_requests {
        let dir = tempfile::tempdir().unwrap();
        let mut serve = serve(dir.path());
        serve.env(
            "KAARMA_RELAY_SHUTDOWN_GRACE_SECS",
            GRACE.as_secs().to_string(),
        );
        let mut relay = RelayProcess::start(serve).await;
        let mut client = tokio::net::TcpStream::connect(relay.address).await.unwrap();
        client.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let asked = Instant::now();
        let status = relay
            .stop_within(libc::SIGTERM, GRACE + Duration::from_secs(5))
            .await;
        assert!(
            status.is_some(),
            "{stall}: still running {:?} after SIGTERM with a {GRACE:?} grace period",
            asked.elapsed()
        );
        drop(client);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_never_loses_an_acknowledged_delivery() {
    // How many acknowledgements to wait for, then how long to wait more, before each kill:
    // varied so kills land at different points of the write cycle.
    const KILLS: [(usize, Duration); 3] = [
        (200, Duration::from_millis(0)),
        (100, Duration::from_millis(137)),
        (300, Duration::from_millis(41)),
    ];
    let dir = tempfile::tempdir().unwrap();
    let template = EventTemplate::load("appointment-rescheduled");
    let next = Arc::new(AtomicU64::new(0));
    let mut total = LoadOutcome::default();

    for (round, (acks, extra)) in KILLS.into_iter().enumerate() {
        let mut relay = RelayProcess::start(serve(dir.path())).await;
        let webhook = Webhook::new(relay.webhook_url());

        // What the previous incarnation acknowledged is known to this one: a retry of it is
        // a duplicate, not a second event.
        for id in total.acked.iter().rev().take(10) {
            let (status, answer) = webhook.deliver(template.with_id(id)).await.unwrap();
            assert_eq!(
                (status, answer["status"].as_str()),
                (200, Some("duplicate")),
                "round {round}: retry of acknowledged {id}: {answer}"
            );
        }

        let load = Load::start(&webhook, &template, SENDERS, 2, next.clone());
        load.wait_for_acks(acks).await;
        tokio::time::sleep(extra).await;
        let status = relay.stop(libc::SIGKILL).await;
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "round {round}: {status:?}"
        );
        let outcome = load.finish().await;
        assert!(
            outcome.refused.is_empty(),
            "round {round}: answered other than 200 accepted before the kill: {:?}",
            &outcome.refused[..outcome.refused.len().min(5)]
        );
        eprintln!(
            "kill {round}: {} acknowledged, {} in flight at the kill",
            outcome.acked.len(),
            outcome.in_doubt.len()
        );
        total.acked.extend(outcome.acked);
        total.in_doubt.extend(outcome.in_doubt);
    }

    let restarted = RelayProcess::start(serve(dir.path())).await;
    let stored = restarted.stored_events().await;
    assert_every_ack_is_stored_once(&total, &stored);
    // The ten retried per restart were delivered twice; every other event once.
    let retried = stored
        .iter()
        .filter(|event| event.delivery_count == 2)
        .count();
    assert_eq!(retried, 10 * (KILLS.len() - 1), "{stored:?}");
    assert!(stored.iter().all(|event| event.delivery_count <= 2));
    let sequence: Vec<i64> = stored.iter().map(|event| event.seq).collect();
    assert!(
        sequence.windows(2).all(|pair| pair[0] < pair[1]),
        "the events API pages in arrival order"
    );
    eprintln!(
        "after {} kills: {} acknowledged, {} in doubt, {} stored",
        KILLS.len(),
        total.acked.len(),
        total.in_doubt.len(),
        stored.len()
    );
}
