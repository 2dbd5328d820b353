//! The reliability suite, over the real `kaarma-relay` binary: crashes under emulated
//! myKaarma traffic with every fault on, a downstream outage mid-run, storage that fills up
//! or turns read-only, the hostile-input corpus, and abusive clients. Each test prints the
//! figures it measured (`-- --nocapture`); `docs/RELIABILITY.md` says what each proves.
//!
//! `cargo test` runs the short form. The long form, for soak runs:
//! `KAARMA_RELIABILITY_LONG=1 cargo test --release -p kaarma-relay-cli --test reliability -- --nocapture --test-threads 1`.

mod relay_process;

#[path = "reliability/admin_api.rs"]
mod admin_api;
#[path = "reliability/bad_inputs.rs"]
mod bad_inputs;
#[path = "reliability/downstream.rs"]
mod downstream;
#[path = "reliability/postgres_database.rs"]
mod postgres_database;
#[path = "reliability/raw_http.rs"]
mod raw_http;
#[path = "reliability/relay_setup.rs"]
mod relay_setup;
#[path = "reliability/small_filesystem.rs"]
mod small_filesystem;
#[path = "reliability/suite_size.rs"]
mod suite_size;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kaarma_sim::{LoadOptions, Progress, RunReport};
use serde_json::Value;

use admin_api::AdminApi;
use downstream::{Downstream, assert_unique_and_ordered};
use postgres_database::PostgresDatabase;
use raw_http::{AbuseCounters, Abusers};
use relay_process::{ADMIN, RelayProcess, SECRET, TOKEN, Webhook, event_id, rows_per_id};
use relay_setup::{RelaySetup, free_address};
use small_filesystem::SmallFilesystem;
use suite_size::SuiteSize;

/// Every fault the emulator has, at the rates of the issue.
const FAULTS: &str = "duplicates=0.3,reorder=0.3,reorder-window=200ms,fail-first=2,drop-ack=0.1,corrupt=0.05,legacy=0.3";

/// How long the suite waits for anything to settle before it calls it stuck.
const SETTLE: Duration = Duration::from_secs(120);

/// myKaarma's side: the emulator against `target` with every fault on, lifecycles 50×
/// faster than real time, and a retry schedule that outlasts a relay restart.
fn emulator(target: String, appointments: usize, seed: u64, rate: f64) -> LoadOptions {
    let mut options = LoadOptions::new(target, SECRET, appointments);
    options.token = Some(TOKEN.into());
    options.seed = seed;
    options.rate = rate;
    options.time_scale = 0.02;
    options.faults = FAULTS.parse().expect("the fault list parses");
    // myKaarma's schedule (5 retries from 1 s) at this time scale would be spent in 0.6 s,
    // less than a restart takes; 8 retries from 0.5 s doubling to 2 s last 6 s or more.
    options.retry.retries = 8;
    options.retry.base = Duration::from_secs(25);
    options.retry.max_delay = Duration::from_secs(100);
    options
}

/// The emulator's progress: events planned and events settled (delivered or out of retries).
#[derive(Clone, Default)]
struct Settled {
    planned: Arc<AtomicU64>,
    settled: Arc<AtomicU64>,
}

impl Progress for Settled {
    fn start(&self, events: u64) {
        self.planned.store(events, Ordering::Relaxed);
    }
    fn advance(&self) {
        self.settled.fetch_add(1, Ordering::Relaxed);
    }
}

/// Checks what a finished emulator run must have left in the relay: nothing given up, the
/// projection equal to the truth, and every acknowledged event stored exactly once (and
/// nothing else). Returns how many attempts were acknowledged.
async fn assert_run_is_stored_once_and_verified(relay: &RelayProcess, report: &RunReport) -> usize {
    assert_eq!(
        report.failures, 0,
        "every event was acknowledged in the end:\n{report}"
    );
    let differences = kaarma_sim::verify::verify_within(&relay.url(), ADMIN, &report.truth, SETTLE)
        .await
        .expect("verify runs");
    assert!(differences.is_empty(), "verify: {differences:#?}");
    let stored = relay.stored_events().await;
    let rows = rows_per_id(&stored);
    let attempts = report.log.attempts();
    let acknowledged: Vec<&str> = attempts
        .iter()
        .filter(|attempt| attempt.outcome.is_acknowledged())
        .map(|attempt| attempt.event_id.as_str())
        .collect();
    let lost: Vec<&&str> = acknowledged
        .iter()
        .filter(|id| !rows.contains_key(**id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let repeated: Vec<_> = rows.iter().filter(|(_, rows)| **rows > 1).collect();
    assert!(repeated.is_empty(), "stored more than once: {repeated:?}");
    assert_eq!(
        stored.len(),
        report.events + report.corrupted_events,
        "one row per event the emulator made, corrupted extras included"
    );
    acknowledged.len()
}

/// Waits until the downstream receiver has every change of the relay's stream, then checks
/// none came under two ids and each appointment's came in order, nothing is dead and every
/// signature verified. Returns (changes, redeliveries).
async fn assert_downstream_has_every_change_once_in_order(
    api: &AdminApi,
    downstream: &Downstream,
    changes_expected: usize,
) -> (usize, usize) {
    api.wait_until_processed(SETTLE).await;
    let expected = api.changes_per_subject().await;
    let changes: usize = expected.values().map(Vec::len).sum();
    assert_eq!(changes, changes_expected, "one change per processed event");
    let deadline = Instant::now() + SETTLE;
    while downstream.distinct() < changes {
        assert!(
            Instant::now() < deadline,
            "the receiver has {} of {changes} changes after {SETTLE:?}; deliveries: {:?}",
            downstream.distinct(),
            api.delivery_counts().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let redeliveries = assert_unique_and_ordered(&downstream.accepted(), &expected);
    assert!(
        downstream.rejected().is_empty(),
        "bad signatures: {:?}",
        downstream.rejected()
    );
    let counts = api.delivery_counts().await;
    assert_eq!(counts.get("dead").copied().unwrap_or(0), 0, "{counts:?}");
    (changes, redeliveries)
}

/// Panics if any of `logs` shows a panic.
fn assert_no_panic(logs: &[String]) {
    for log in logs {
        assert!(
            !log.contains("panicked"),
            "the relay panicked; its log:\n{log}"
        );
    }
}

/// Median and largest of `samples`.
fn median_and_max(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    let median = samples.get(samples.len() / 2).copied().unwrap_or_default();
    (median, samples.last().copied().unwrap_or_default())
}

/// Crash: the emulator sends with every fault on while the relay is SIGKILLed and
/// restarted, again and again, on one database and one address. Afterwards every
/// acknowledged event is stored once, verify finds the truth, and the HTTP receiver got
/// every change, in order per appointment, never one event under two change ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_repeated_sigkill_under_the_emulator_loses_nothing_and_repeats_nothing() {
    let size = SuiteSize::from_env();
    let dir = tempfile::tempdir().unwrap();
    let downstream = Downstream::start().await;
    let mut setup = RelaySetup::sqlite(dir.path());
    setup.listen = free_address();
    setup.route = Some((downstream.url(), Downstream::secret()));
    let mut relay = RelayProcess::start(setup.command(dir.path())).await;

    // About two seconds of sending per kill, plus the tail of the last lifecycles.
    let rate = size.crash_appointments as f64 / (2.0 * (size.kills as f64 + 1.0));
    let options = emulator(relay.webhook_url(), size.crash_appointments, 7, rate);
    let progress = Settled::default();
    let run = tokio::spawn({
        let progress = progress.clone();
        async move { kaarma_sim::run(&options, progress).await }
    });

    // Kill number k once k/(kills+1) of the events have settled, so the kills spread over
    // the run whatever the machine's speed, and land wherever the relay happens to be.
    let mut logs = Vec::new();
    let mut restarts = Vec::new();
    while logs.len() < size.kills && !run.is_finished() {
        let planned = progress.planned.load(Ordering::Relaxed);
        let due = planned * (logs.len() as u64 + 1) / (size.kills as u64 + 1);
        if planned > 0 && progress.settled.load(Ordering::Relaxed) >= due {
            let status = relay.stop(libc::SIGKILL).await;
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&status),
                Some(libc::SIGKILL)
            );
            logs.push(relay.log());
            let killed = Instant::now();
            relay = RelayProcess::start(setup.command(dir.path())).await;
            restarts.push(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kills = logs.len();
    let report = run
        .await
        .expect("the emulator does not panic")
        .expect("the run completes");
    assert!(
        kills >= size.kills.min(3),
        "only {kills} kills landed before the run ended"
    );

    let acknowledged = assert_run_is_stored_once_and_verified(&relay, &report).await;
    let api = AdminApi::new(relay.url());
    let (changes, redeliveries) =
        assert_downstream_has_every_change_once_in_order(&api, &downstream, report.events).await;
    logs.push(relay.log());
    assert_no_panic(&logs);
    let (restart_median, restart_max) = median_and_max(&mut restarts);
    eprintln!(
        "crash [{}]: {} appointments, {} events (+{} corrupted, {} sent twice, {} in the old shape); \
         {} attempts, {} emulator retries, {} acknowledged, 0 given up; {kills} SIGKILLs, restart \
         median {restart_median:?} max {restart_max:?}; every acknowledged event stored once; verify: \
         0 differences; downstream: {changes} changes, {redeliveries} redelivered, 0 under two ids, \
         order kept",
        size.name,
        report.appointments,
        report.events,
        report.corrupted_events,
        report.duplicated_events,
        report.legacy_events,
        report.attempts,
        report.retries,
        acknowledged,
    );
}

/// Downstream outage: the route's receiver goes away mid-run (its port closed) and comes
/// back. Ingest never noticed (the emulator gave up on nothing), nothing was lost or went
/// dead, each appointment's changes arrived in order, and the backlog drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_outage_mid_run_loses_nothing_keeps_order_and_drains() {
    let size = SuiteSize::from_env();
    let dir = tempfile::tempdir().unwrap();
    let mut downstream = Downstream::start().await;
    let mut setup = RelaySetup::sqlite(dir.path());
    setup.route = Some((downstream.url(), Downstream::secret()));
    let relay = RelayProcess::start(setup.command(dir.path())).await;
    let api = AdminApi::new(relay.url());

    // Sending lasts about the outage and a half, so the outage falls in the middle.
    let sending = size.outage.as_secs_f64() * 1.5 + 2.0;
    let rate = size.outage_appointments as f64 / sending;
    let options = emulator(relay.webhook_url(), size.outage_appointments, 21, rate);
    let run = tokio::spawn(async move { kaarma_sim::run(&options, ()).await });

    let deadline = Instant::now() + SETTLE;
    while downstream.distinct() < 10 {
        assert!(Instant::now() < deadline, "no changes reached the receiver");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !run.is_finished(),
        "the outage must start while the emulator is sending"
    );
    let before = downstream.accepted().len();
    downstream.go_down().await;
    tokio::time::sleep(size.outage).await;
    let counts = api.delivery_counts().await;
    let backlog =
        counts.get("pending").copied().unwrap_or(0) + counts.get("failed").copied().unwrap_or(0);
    assert_eq!(
        downstream.accepted().len(),
        before,
        "nothing is received while down"
    );
    downstream.come_back().await;
    let back = Instant::now();
    let sending_when_back = !run.is_finished();

    let report = run
        .await
        .expect("the emulator does not panic")
        .expect("the run completes");
    let acknowledged = assert_run_is_stored_once_and_verified(&relay, &report).await;
    let (changes, redeliveries) =
        assert_downstream_has_every_change_once_in_order(&api, &downstream, report.events).await;
    let drained = back.elapsed();
    assert_no_panic(&[relay.log()]);
    eprintln!(
        "downstream outage [{}]: {} appointments, {} events, {acknowledged} acknowledged, 0 given up \
         (emulator ack p99 {:?}); receiver down {:?} with {before} changes in, backlog {backlog} at \
         the return (emulator still sending: {sending_when_back}); all {changes} changes in {drained:?} \
         after the return, {redeliveries} redelivered, 0 dead, order kept",
        size.name, report.appointments, report.events, report.ack_latency.p99, size.outage,
    );
}

/// A realistic event, `id` set, padded with an unknown envelope key to `size` bytes so that
/// storing it needs that much new space.
fn padded_event(id: &str, size: usize) -> Vec<u8> {
    let mut envelope: Value =
        serde_json::from_slice(&relay_process::fixture("events/appointment-created.json")).unwrap();
    envelope["id"] = Value::from(id);
    envelope["padding"] = Value::from("p".repeat(size));
    serde_json::to_vec(&envelope).unwrap()
}

/// What a storage-fault round measured.
struct FaultFigures {
    refused: usize,
    /// The malformed body's answer: 503, or 202 when the store still found room for it.
    malformed_answer: u16,
    recovered_after: Duration,
}

/// Posts `ids` while the store cannot commit: each must be answered 503 (never 2xx). A
/// malformed body is answered 503 too, or 202 only if it really was quarantined (a full disk
/// may still have room for a row smaller than a failed event's), and `/readyz` answers 503
/// so that a load balancer takes the replica out. Then `heal`, and the same deliveries,
/// retried as myKaarma would, must be accepted, and stored once each, and `/readyz` is 200.
async fn refuse_then_recover(
    relay: &RelayProcess,
    bodies: &[(String, Vec<u8>)],
    heal: impl FnOnce(),
) -> FaultFigures {
    let webhook = Webhook::new(relay.webhook_url());
    let api = AdminApi::new(relay.url());
    let mut refused = 0;
    for (id, body) in bodies {
        let (status, answer) = webhook
            .deliver(body.clone())
            .await
            .expect("the relay answers");
        assert_eq!(status, 503, "{id} while the store cannot commit: {answer}");
        assert_eq!(answer["status"], "unavailable");
        refused += 1;
    }
    let malformed_size = bodies
        .iter()
        .map(|(_, body)| body.len())
        .max()
        .unwrap_or(64 << 10);
    let (malformed_answer, answer) = webhook
        .deliver(format!("not an envelope {}", "q".repeat(malformed_size)).into_bytes())
        .await
        .expect("the relay answers");
    match malformed_answer {
        503 => assert_eq!(answer["status"], "unavailable"),
        202 => {
            let (_, quarantine) = api.get("/api/v1/quarantine").await;
            assert_eq!(
                quarantine["items"].as_array().map(Vec::len),
                Some(1),
                "202 for a body that was not kept: {quarantine}"
            );
        }
        other => panic!("a malformed body while the store cannot commit: {other} {answer}"),
    }
    assert_eq!(
        api.readyz().await,
        503,
        "/readyz while the store cannot commit"
    );

    heal();
    let healed = Instant::now();
    let mut recovered_after = None;
    for (id, body) in bodies {
        let deadline = Instant::now() + SETTLE;
        loop {
            let (status, answer) = webhook
                .deliver(body.clone())
                .await
                .expect("the relay answers");
            if status == 200 {
                assert_eq!(answer["status"], "accepted", "{id}: {answer}");
                recovered_after.get_or_insert(healed.elapsed());
                break;
            }
            assert_eq!(status, 503, "{id} after the fault: {answer}");
            assert!(
                Instant::now() < deadline,
                "{id} still refused {SETTLE:?} after the fault ended"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    api.wait_until_processed(SETTLE).await;
    let stored = relay.stored_events().await;
    let rows = rows_per_id(&stored);
    for (id, _) in bodies {
        assert_eq!(rows.get(id.as_str()), Some(&1), "{id} is stored once");
    }
    assert_eq!(api.readyz().await, 200, "/readyz after the fault");
    FaultFigures {
        refused,
        malformed_answer,
        recovered_after: recovered_after.unwrap_or_default(),
    }
}

/// Disk full: the SQLite database on a tiny filesystem that is filled up under the running
/// relay. Every delivery is answered 503, never 2xx; once space is freed the retries are
/// accepted and stored once, and the relay goes on as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_disk_full_answers_503_never_2xx_and_recovers() {
    let size = SuiteSize::from_env();
    // Room, once the fault ends, for every refused event (2 MiB) twice over: in the database
    // and in the WAL the checkpointer has not yet written back.
    let filesystem = SmallFilesystem::mount(64 + 5 * size.storage_events as u64);
    let mut setup = RelaySetup::sqlite(filesystem.path());
    setup.mykaarma.push("max_body_bytes = 16777216".into());
    // Ready while a delivery fits; not ready once the filler leaves no room.
    setup
        .top_level
        .push("store.min_free_bytes = 1048576".into());
    let relay = RelayProcess::start(setup.command(filesystem.path())).await;
    let webhook = Webhook::new(relay.webhook_url());
    for n in 0..5 {
        let (status, answer) = webhook
            .deliver(padded_event(&event_id(31, n), 10))
            .await
            .unwrap();
        assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    }
    AdminApi::new(relay.url())
        .wait_until_processed(SETTLE)
        .await;

    // Each body is larger than everything the database holds so far, so that no free page or
    // reusable WAL frame can take it: storing it needs space the disk does not have.
    let used: u64 = ["relay.db", "relay.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(filesystem.path().join(name)).ok())
        .map(|metadata| metadata.len())
        .sum();
    let body_size = (2 * used as usize).max(2 << 20);
    let bodies: Vec<(String, Vec<u8>)> = (100..100 + size.storage_events as u64)
        .map(|n| (event_id(31, n), padded_event(&event_id(31, n), body_size)))
        .collect();
    let filler = filesystem.fill();
    let free = filesystem.free_bytes();
    let figures = refuse_then_recover(&relay, &bodies, || {
        std::fs::remove_file(&filler).expect("the filler is removed")
    })
    .await;
    assert_no_panic(&[relay.log()]);
    eprintln!(
        "disk full [{}]: {} deliveries of {} KiB refused 503 with {free} bytes free (0 answered 2xx), \
         a malformed one answered {} (202 only when kept); /readyz 503 while full; first accepted {:?} after space \
         was freed; all stored once and processed; /readyz 200 again",
        size.name,
        figures.refused,
        body_size / 1024,
        figures.malformed_answer,
        figures.recovered_after,
    );
}

/// Read-only database: the relay's PostgreSQL database is switched to read-only under it
/// (every session ended, so the pool reconnects into it, as after a failover to a standby).
/// Every delivery is answered 503, never 2xx; once it is writable again the retries are
/// accepted and stored once.
///
/// SQLite is not used here: Linux refuses to remount a filesystem read-only while a process
/// holds a file on it open for writing (`mount: … mount point is busy`), which the relay
/// always does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_read_only_database_answers_503_never_2xx_and_recovers() {
    let size = SuiteSize::from_env();
    let database = PostgresDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let mut setup = RelaySetup::sqlite(dir.path());
    setup.database = database.url.clone();
    let relay = RelayProcess::start(setup.command(dir.path())).await;
    let webhook = Webhook::new(relay.webhook_url());
    for n in 0..5 {
        let (status, answer) = webhook
            .deliver(padded_event(&event_id(32, n), 10))
            .await
            .unwrap();
        assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    }
    let bodies: Vec<(String, Vec<u8>)> = (100..100 + size.storage_events as u64)
        .map(|n| (event_id(32, n), padded_event(&event_id(32, n), 10)))
        .collect();
    database.set_read_only(true);
    let figures = refuse_then_recover(&relay, &bodies, || database.set_read_only(false)).await;
    assert_no_panic(&[relay.log()]);
    eprintln!(
        "read-only database [{}]: {} deliveries refused 503 (0 answered 2xx), a malformed one \
         answered {} (202 only when kept); /readyz 503 while read-only; first accepted {:?} after it was writable \
         again; all stored once and processed; /readyz 200 again",
        size.name, figures.refused, figures.malformed_answer, figures.recovered_after,
    );
}

/// Hostile input: every case of `fixtures/bad-inputs/cases.json` — deliveries with bad
/// bodies, signatures and tokens, and requests that go wrong at the HTTP layer — gets its
/// answer from the real binary; afterwards the relay still answers, has processed what it
/// kept, stops cleanly on SIGTERM, and its log shows no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_each_get_their_answer_and_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = relay_process::serve(dir.path());
    serve
        .env(
            "KAARMA_RELAY_MYKAARMA__SIGNATURE_SECRET",
            bad_inputs::SECRET,
        )
        .env(
            "KAARMA_RELAY_MYKAARMA__AUTHORIZATION_TOKEN",
            bad_inputs::TOKEN,
        );
    let mut relay = RelayProcess::start(serve).await;
    let api = AdminApi::new(relay.url());
    let client = reqwest::Client::new();
    let corpus = bad_inputs::corpus();
    let cases = corpus["cases"].as_array().expect("cases");
    let http_cases = corpus["http_cases"].as_array().expect("http_cases");
    assert!(cases.len() + http_cases.len() >= 40);

    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    let mut reset_while_sending = 0;
    let mut wrong = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let body = bad_inputs::body_of(case);
        let mut request = client
            .post(relay.webhook_url())
            .header("content-type", "text/plain");
        for (header, value) in bad_inputs::credentials_of(case, &body) {
            request = request.header(header, value);
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            // The relay answers 413 once the limit is passed and closes the connection without
            // reading the rest; a client still writing may see the reset before the answer.
            Err(error) if case["expect_status"] == 413 && error.is_request() => {
                reset_while_sending += 1;
                continue;
            }
            Err(error) => panic!("{name}: no answer: {error}"),
        };
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            status as u64,
            case["expect_status"].as_u64().unwrap(),
            "{name}: {answer}"
        );
        if let Some(reason) = case["expect_reason"].as_str() {
            assert_eq!(answer["reason"], reason, "{name}: {answer}");
        }
        if let Some(state) = case["expect_state"].as_str() {
            assert_eq!(answer["status"], state, "{name}: {answer}");
        }
        *by_status.entry(status).or_default() += 1;
    }
    for case in http_cases {
        let name = case["name"].as_str().unwrap();
        let status = raw_http::exchange(relay.address, &bad_inputs::http_request_of(case)).await;
        let expected = case["expect_status"].as_u64().map(|status| status as u16);
        if status != expected {
            wrong.push(format!("{name}: got {status:?}, expected {expected:?}"));
        }
        *by_status.entry(status.unwrap_or(0)).or_default() += 1;
    }

    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
    // Still up, and the processor got through whatever was stored (and lived).
    let healthz = client
        .get(format!("{}/healthz", relay.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    api.wait_until_processed(SETTLE).await;
    let states = api.event_states().await;
    let status = relay.stop(libc::SIGTERM).await;
    assert!(status.success(), "SIGTERM after the corpus: {status:?}");
    assert_no_panic(&[relay.log()]);
    eprintln!(
        "hostile input: {} delivery cases and {} HTTP-layer cases, answers by status {by_status:?} \
         ({reset_while_sending} oversize bodies cut off before their 413 was read); stored events \
         by state {states:?}; no panic, clean exit on SIGTERM",
        cases.len(),
        http_cases.len()
    );
}

/// Slow and abusive clients: hundreds of idle connections, clients flooding headers, and
/// clients dribbling their headers or body a byte at a time, all at once, while a polite
/// sender keeps posting. Every one of its deliveries is accepted within myKaarma's 5 s, and
/// the abusers are cut off by the configured limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_clients_do_not_keep_the_relay_from_answering_others() {
    const HEADER_TIMEOUT_SECS: u64 = 2;
    const REQUEST_TIMEOUT_SECS: u64 = 5;
    let size = SuiteSize::from_env();
    let dir = tempfile::tempdir().unwrap();
    let mut setup = RelaySetup::sqlite(dir.path());
    setup.top_level = vec![
        format!("header_read_timeout_secs = {HEADER_TIMEOUT_SECS}"),
        format!("request_timeout_secs = {REQUEST_TIMEOUT_SECS}"),
        "max_http_connections = 1024".into(),
    ];
    let relay = RelayProcess::start(setup.command(dir.path())).await;

    let idle = Arc::new(AbuseCounters::default());
    let flood = Arc::new(AbuseCounters::default());
    let slow_headers = Arc::new(AbuseCounters::default());
    let slow_body = Arc::new(AbuseCounters::default());
    let mut abusers = Abusers::new();
    abusers.idle(relay.address, size.idle_connections, idle.clone());
    abusers.header_flood(relay.address, 8, flood.clone());
    abusers.dribble(
        relay.address,
        8,
        false,
        Duration::from_millis(200),
        slow_headers.clone(),
    );
    abusers.dribble(
        relay.address,
        8,
        true,
        Duration::from_millis(200),
        slow_body.clone(),
    );
    // Let the idle connections pile up before the polite sender starts.
    let deadline = Instant::now() + SETTLE;
    while idle.connections.load(Ordering::Relaxed) < size.idle_connections {
        assert!(
            Instant::now() < deadline,
            "the idle connections could not all be opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The polite sender opens a new connection for each delivery, as a sender behind a
    // balancer often does, so it also has to get past the accept loop and connection cap.
    let polite = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let template = relay_process::EventTemplate::load("appointment-rescheduled");
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut n = 0;
    while started.elapsed() < size.abuse {
        let body = template.with_id(&event_id(33, n));
        n += 1;
        let sent = Instant::now();
        let response = polite
            .post(relay.webhook_url())
            .header("content-type", "text/plain")
            .header(
                mykaarma::signature::SIGNATURE_HEADER,
                mykaarma::signature::sign(SECRET.as_bytes(), &body),
            )
            .header(mykaarma::signature::AUTHORIZATION_HEADER, TOKEN)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("delivery {n} under abuse got no answer: {error}"));
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        latencies.push(sent.elapsed());
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("accepted")),
            "delivery {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    abusers.stop().await;

    let (median, max) = median_and_max(&mut latencies);
    assert!(
        max < Duration::from_secs(5),
        "a polite delivery took {max:?}, over myKaarma's timeout"
    );
    let stored = relay.stored_events().await;
    assert_eq!(stored.len() as u64, n, "the abusers stored nothing");
    // The limits did their work: dribblers were cut off near their deadlines, floods refused.
    let slack_ms = 5_000;
    let held = |counters: &AbuseCounters| counters.longest_held_ms.load(Ordering::Relaxed);
    assert!(
        slow_headers.cut_off.load(Ordering::Relaxed) > 0,
        "slow headers never cut off"
    );
    assert!(held(&slow_headers) <= (HEADER_TIMEOUT_SECS * 1000 + slack_ms) as usize);
    assert!(
        slow_body.cut_off.load(Ordering::Relaxed) > 0,
        "slow bodies never cut off"
    );
    assert!(held(&slow_body) <= (REQUEST_TIMEOUT_SECS * 1000 + slack_ms) as usize);
    assert!(
        flood.answered_431.load(Ordering::Relaxed) > 0,
        "header floods never refused with 431"
    );
    assert_no_panic(&[relay.log()]);
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    eprintln!(
        "abusive clients [{}]: {} idle connections held ({} opened, {} closed by the relay), {} \
         header-flood connections ({} answered 431), {} slow-header connections (cut after at most \
         {} ms), {} slow-body connections ({} answered 408, held at most {} ms); the polite sender: \
         {n} deliveries over {:?}, all 200 accepted, latency median {median:?} p99 {p99:?} max {max:?}",
        size.name,
        size.idle_connections,
        idle.connections.load(Ordering::Relaxed),
        idle.cut_off.load(Ordering::Relaxed),
        flood.connections.load(Ordering::Relaxed),
        flood.answered_431.load(Ordering::Relaxed),
        slow_headers.connections.load(Ordering::Relaxed),
        held(&slow_headers),
        slow_body.connections.load(Ordering::Relaxed),
        slow_body.answered_408.load(Ordering::Relaxed),
        held(&slow_body),
        size.abuse,
    );
}

/// The long form is what `KAARMA_RELIABILITY_LONG` says, and the short one is small enough
/// for `cargo test`.
#[test]
fn the_short_form_is_short() {
    let size = SuiteSize::from_env();
    if size.name == "short" {
        assert!(size.outage <= Duration::from_secs(10) && size.kills <= 10);
    }
}
