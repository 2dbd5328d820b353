//! The emulator drives a real relay (in-process, real HTTP, real SQLite, a file route) with
//! faults on; `verify` finds the relay's state equal to the truth, and finds planted
//! differences; the file route received every change exactly once.

use std::collections::HashSet;
use std::time::Duration;

use kaarma_relay::config::Secret;
use kaarma_relay::delivery::RouteConfig;
use kaarma_relay::sinks::SinkConfig;
use kaarma_relay::sinks::file::FileSinkConfig;
use kaarma_relay::{Application, Config};
use kaarma_sim::{Difference, LoadOptions, TrueAppointment};
use serde_json::Value;
use tokio::sync::oneshot;

const SECRET: &str = "end-to-end-secret";
const TOKEN: &str = "myKaarma_99999999-8888-4777-8666-555555555555";
const ADMIN: &str = "end-to-end-admin";

struct Relay {
    url: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_relay(dir: &std::path::Path) -> Relay {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: format!("sqlite://{}", dir.join("relay.db").display()),
        admin_token: Some(Secret::new(ADMIN)),
        ..Config::default()
    };
    config.mykaarma.signature_secret = Some(Secret::new(SECRET));
    config.mykaarma.authorization_token = Some(Secret::new(TOKEN));
    config.routes.push(RouteConfig {
        name: "everything".into(),
        when: Default::default(),
        filter: None,
        sink: SinkConfig::File(FileSinkConfig {
            path: dir.join("changes.jsonl"),
        }),
        retry: Default::default(),
        concurrency: 4,
        rate_limit: None,
    });
    let application = Application::build(&config).await.unwrap();
    let url = format!("http://{}", application.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(application.run_until(async {
        let _ = stopped.await;
    }));
    Relay { url, stop, task }
}

async fn api(relay: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{relay}{path}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every event the relay stored, paging through `/api/v1/events`.
async fn all_events(relay: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = api(relay, &format!("/api/v1/events?limit=1000&cursor={cursor}")).await;
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return events,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_with_faults_converges_on_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(dir.path()).await;
    let mut options = LoadOptions::new(format!("{}/webhooks/mykaarma", relay.url), SECRET, 120);
    options.token = Some(TOKEN.into());
    options.seed = 42;
    options.rate = 200.0;
    options.time_scale = 0.02;
    options.faults = "duplicates=0.3,reorder=0.3,reorder-window=200ms,fail-first=2,drop-ack=0.1,corrupt=0.05,legacy=0.3"
        .parse()
        .unwrap();
    let report = kaarma_sim::run(&options, ()).await.unwrap();
    assert_eq!(
        report.failures, 0,
        "every event was eventually acknowledged:\n{report}"
    );
    assert!(
        report.duplicated_events > 0 && report.legacy_events > 0 && report.corrupted_events > 0
    );

    let differences = kaarma_sim::verify::verify_within(
        &relay.url,
        ADMIN,
        &report.truth,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(differences.is_empty(), "differences: {differences:#?}");

    // Each event stored once, whatever the duplicates and abandoned attempts; the corrupted
    // extras are kept and marked failed, everything else processed.
    let events = all_events(&relay.url).await;
    assert_eq!(events.len(), report.events + report.corrupted_events);
    let failed = events
        .iter()
        .filter(|event| event["state"] == "failed")
        .count();
    assert_eq!(failed, report.corrupted_events);
    assert!(
        events
            .iter()
            .any(|event| event["delivery_count"].as_i64().unwrap() > 1)
    );

    // The file route got every change exactly once.
    let mut delivered = 0;
    for _ in 0..300 {
        let routes = api(&relay.url, "/api/v1/routes").await;
        let counts = &routes["routes"][0]["counts"];
        delivered = counts["delivered"].as_i64().unwrap();
        if delivered as usize == report.events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivered as usize, report.events);
    let lines = std::fs::read_to_string(dir.path().join("changes.jsonl")).unwrap();
    let ids: Vec<String> = lines
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), report.events);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "no change written twice"
    );

    // Planted differences are found, each for what it is.
    let mut planted = report.truth.clone();
    let changed = planted.appointments[0].uuid.clone();
    planted.appointments[0].status = "NOT-A-STATUS".into();
    let removed = planted.appointments.remove(1);
    let mut invented: TrueAppointment = planted.appointments[2].clone();
    invented.uuid = "invented-appointment-uuid-00000000000000000".into();
    planted.appointments.push(invented);
    let differences = kaarma_sim::verify(&relay.url, ADMIN, &planted)
        .await
        .unwrap();
    assert_eq!(differences.len(), 3, "{differences:#?}");
    assert!(differences.iter().any(
        |d| matches!(d, Difference::Field { uuid, field, .. } if *uuid == changed && *field == "status")
    ));
    assert!(
        differences
            .iter()
            .any(|d| matches!(d, Difference::Extra { uuid, .. } if *uuid == removed.uuid))
    );
    assert!(differences.iter().any(
        |d| matches!(d, Difference::Missing { uuid } if uuid == "invented-appointment-uuid-00000000000000000")
    ));

    relay.stop.send(()).unwrap();
    relay.task.await.unwrap().unwrap();
}
