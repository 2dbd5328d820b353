//! Several `kaarma-relay serve` processes on one PostgreSQL database behave as one relay,
//! checked with real processes, a real balancer in front (a round-robin proxy), the emulator
//! with faults on, real kills and a real database restart:
//!
//! - the same `(type, id)` posted to two replicas at once is stored once (one `accepted`,
//!   one `duplicate`);
//! - a load run spread over three replicas converges (`sim verify`) and every event is
//!   processed exactly once;
//! - the replica that processes is SIGKILLed mid-run, later a second one: another takes over
//!   processing and the route's deliveries, nothing is lost or applied twice, every change is
//!   delivered in order per appointment, and a change is repeated only for a kill;
//! - PostgreSQL is stopped and started mid-run: ingest answers 503 while it is down, the
//!   relays recover by themselves, `sim verify` passes and every change is delivered.
//!
//! The restart test runs its own PostgreSQL (`initdb` in a temporary directory), so stopping
//! it disturbs nothing else on the machine; the others use fresh databases on 127.0.0.1:5432.

mod relay_process;
mod replica_set;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kaarma_sim::LoadOptions;
use kaarma_sim::publisher::RetryPolicy;
use kaarma_sim::publisher::log::AttemptOutcome;
use relay_process::{ADMIN, EventTemplate, RelayProcess, SECRET, TOKEN, Webhook, event_id};
use replica_set::postgres::{Database, PrivateServer, SHARED_SERVER};
use replica_set::proxy::RoundRobin;
use replica_set::receiver::Receiver;
use replica_set::{
    Api, ReplicaConfig, assert_delivered_in_order, assert_processed_exactly_once, leader, migrate,
    start_replica,
};

/// The faults of the load runs: everything myKaarma's side can do wrong.
const FAULTS: &str = "duplicates=0.2,reorder=0.2,reorder-window=300ms,fail-first=1,drop-ack=0.05,\
                      corrupt=0.02,legacy=0.2";

/// A load run of `appointments` appointments through `target`, faults on, 20× faster than
/// real time.
fn load(target: String, appointments: usize, seed: u64) -> LoadOptions {
    let mut options = LoadOptions::new(target, SECRET, appointments);
    options.token = Some(TOKEN.to_owned());
    options.rate = 40.0;
    options.seed = seed;
    options.faults = FAULTS.parse().expect("valid faults");
    options.time_scale = 0.05;
    options
}

/// Starts `count` replicas on `config` (migrated first with `kaarma-relay migrate`).
async fn replicas(
    config: &ReplicaConfig,
    count: usize,
) -> (Vec<RelayProcess>, Vec<tempfile::TempDir>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    migrate(dir.path(), &config.database);
    let path = config.write(dir.path());
    let mut processes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..count {
        let (process, dir) = start_replica(&path).await;
        processes.push(process);
        dirs.push(dir);
    }
    (processes, dirs, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_posted_to_two_replicas_at_once_is_stored_once() {
    let database = Database::create(SHARED_SERVER);
    let config = ReplicaConfig {
        database: database.url.clone(),
        lease_secs: 60,
        route_to: None,
    };
    let (relays, _dirs, _config_dir) = replicas(&config, 2).await;
    let one = Webhook::new(relays[0].webhook_url());
    let two = Webhook::new(relays[1].webhook_url());
    let template = EventTemplate::load("appointment-created");
    let rounds = 200;
    for n in 0..rounds {
        let body = template.with_id(&event_id(7, n));
        let (a, b) = tokio::join!(one.deliver(body.clone()), two.deliver(body));
        let (a, b) = (
            a.expect("replica one answers"),
            b.expect("replica two answers"),
        );
        assert_eq!((a.0, b.0), (200, 200), "round {n}: {a:?} {b:?}");
        let mut statuses = [
            a.1["status"].as_str().unwrap().to_owned(),
            b.1["status"].as_str().unwrap().to_owned(),
        ];
        statuses.sort();
        assert_eq!(statuses, ["accepted", "duplicate"], "round {n}");
    }
    let stored = relays[1].stored_events().await;
    assert_eq!(stored.len(), rounds as usize);
    let ids: HashSet<&str> = stored.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(ids.len(), stored.len(), "an id stored twice");
    assert!(stored.iter().all(|event| event.delivery_count == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_run_spread_over_three_replicas_is_processed_exactly_once() {
    let database = Database::create(SHARED_SERVER);
    let config = ReplicaConfig {
        database: database.url.clone(),
        lease_secs: 60,
        route_to: None,
    };
    let (relays, _dirs, _config_dir) = replicas(&config, 3).await;
    let proxy = RoundRobin::start(relays.iter().map(RelayProcess::url).collect()).await;
    let report = kaarma_sim::run(&load(proxy.webhook_url(), 150, 11), ())
        .await
        .expect("the run completes");
    assert_eq!(report.failures, 0, "every event was acknowledged");

    let api = Api::new(relays[2].url());
    api.wait_until_processed(Duration::from_secs(60)).await;
    let differences =
        kaarma_sim::verify::verify_within(&api.url, ADMIN, &report.truth, Duration::from_secs(30))
            .await
            .expect("verify runs");
    assert!(differences.is_empty(), "sim verify: {differences:#?}");
    let processed = assert_processed_exactly_once(&api).await;
    assert!(
        processed >= report.events,
        "{processed} < {}",
        report.events
    );
    let leaders = relays
        .iter()
        .filter(|relay| relay.log().contains(replica_set::LEADS));
    assert_eq!(leaders.count(), 1, "one replica processed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replicas_lose_nothing_and_apply_nothing_twice() {
    let database = Database::create(SHARED_SERVER);
    let receiver = Receiver::start(Duration::from_millis(20)).await;
    let config = ReplicaConfig {
        database: database.url.clone(),
        lease_secs: 3,
        route_to: Some(receiver.url()),
    };
    let (mut relays, _dirs, _config_dir) = replicas(&config, 3).await;
    let first = leader(&relays.iter().collect::<Vec<_>>()).await;
    let proxy = RoundRobin::start(relays.iter().map(RelayProcess::url).collect()).await;
    let options = load(proxy.webhook_url(), 200, 12);
    let started = Instant::now();
    let run = tokio::spawn(async move { kaarma_sim::run(&options, ()).await });

    // The leader dies mid-run; later a second replica. One is left.
    tokio::time::sleep(Duration::from_secs(2)).await;
    relays[first].stop(libc::SIGKILL).await;
    let survivors: Vec<usize> = (0..relays.len()).filter(|&i| i != first).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = survivors[0];
    relays[second].stop(libc::SIGKILL).await;
    let last = survivors[1];

    let report = run.await.unwrap().expect("the run completes");
    eprintln!("run done after {:?}", started.elapsed());
    assert_eq!(report.failures, 0, "every event was acknowledged at last");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !relays[last].log().contains(replica_set::LEADS) {
        assert!(
            Instant::now() < deadline,
            "the survivor never took over processing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let api = Api::new(relays[last].url());
    api.wait_until_processed(Duration::from_secs(60)).await;
    let differences =
        kaarma_sim::verify::verify_within(&api.url, ADMIN, &report.truth, Duration::from_secs(30))
            .await
            .expect("verify runs");
    assert!(differences.is_empty(), "sim verify: {differences:#?}");
    eprintln!("verified after {:?}", started.elapsed());
    assert_processed_exactly_once(&api).await;
    api.wait_until_delivered(Duration::from_secs(60)).await;
    eprintln!("delivered after {:?}", started.elapsed());
    let received = receiver.received();
    let repeats = assert_delivered_in_order(&api, &received).await;
    // Each kill can cut short at most the attempts in flight: `concurrency` (4) per replica.
    assert!(
        repeats <= 2 * 4,
        "{repeats} repeated deliveries for two kills"
    );
    eprintln!(
        "{} deliveries, {repeats} repeated after the kills",
        received.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_is_answered_503_and_recovered_from() {
    let postgres = PrivateServer::start();
    let database = Database::create(postgres.server);
    let receiver = Receiver::start(Duration::from_millis(5)).await;
    let config = ReplicaConfig {
        database: database.url.clone(),
        lease_secs: 3,
        route_to: Some(receiver.url()),
    };
    let (relays, _dirs, _config_dir) = replicas(&config, 2).await;
    let proxy = RoundRobin::start(relays.iter().map(RelayProcess::url).collect()).await;
    let mut options = load(proxy.webhook_url(), 200, 13);
    // myKaarma's schedule, long enough (after the time scale) to outlast the restart.
    options.retry = RetryPolicy {
        retries: 6,
        base: Duration::from_secs(10),
        ..RetryPolicy::default()
    };
    let run = tokio::spawn(async move { kaarma_sim::run(&options, ()).await });

    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped_at = Instant::now();
    postgres.stop();
    // While it is down, ingest answers 503 at once (not after the pool's acquire timeout).
    let probe = Webhook::new(relays[0].webhook_url());
    let body = EventTemplate::load("customer").with_id(&event_id(13, 1));
    let asked = Instant::now();
    let (status, _) = probe
        .deliver(body.clone())
        .await
        .expect("the relay answers");
    assert_eq!(status, 503, "ingest with the database down");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "503 took {:?}",
        asked.elapsed()
    );
    let ready = reqwest::get(format!("{}/readyz", relays[1].url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "/readyz with the database down");
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(stopped_at.elapsed())).await;
    postgres.start_again();

    let report = run.await.unwrap().expect("the run completes");
    let refused_503 = report
        .log
        .attempts()
        .iter()
        .filter(|attempt| attempt.outcome == AttemptOutcome::Refused { status: 503 })
        .count();
    assert!(refused_503 > 0, "the sender saw no 503 during the restart");
    assert_eq!(
        report.failures, 0,
        "the sender's retries covered the restart"
    );

    // Recovered by itself: probes, ingest, processing and delivery.
    for relay in &relays {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = reqwest::get(format!("{}/readyz", relay.url()))
                .await
                .unwrap();
            if ready.status() == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz stays {}",
                ready.status()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (status, answer) = probe.deliver(body).await.expect("the relay answers");
    assert_eq!(status, 200, "{answer}");
    let api = Api::new(relays[0].url());
    api.wait_until_processed(Duration::from_secs(60)).await;
    let differences =
        kaarma_sim::verify::verify_within(&api.url, ADMIN, &report.truth, Duration::from_secs(30))
            .await
            .expect("verify runs");
    assert!(differences.is_empty(), "sim verify: {differences:#?}");
    assert_processed_exactly_once(&api).await;
    api.wait_until_delivered(Duration::from_secs(60)).await;
    assert_delivered_in_order(&api, &receiver.received()).await;
    eprintln!("{refused_503} attempts answered 503 during the restart");
}
