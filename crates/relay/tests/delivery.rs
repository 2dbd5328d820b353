//! The delivery engine over real interfaces: a relay on a real port and SQLite file, routes
//! to HTTP receivers that verify Standard Webhooks signatures themselves, JSON Lines files,
//! and the routes and deliveries API. Retry policies are fast (tens of milliseconds) so the
//! whole file runs in seconds.

mod harness;
mod receiver;

use std::path::Path;
use std::time::{Duration, Instant};

use harness::{TestRelay, fixture};
use kaarma_relay::Application;
use kaarma_relay::config::Config;
use kaarma_relay::delivery::RouteConfig;
use receiver::{Answer, Receiver, SECRET};
use serde_json::{Value, json};

/// The appointment of the fixtures.
const APPOINTMENT: &str = "kR7pX2mQ9vL4nB8wT1yF6hJ3sD5gA0cE-Zu_iOq7rWx";
const DEALER: &str = "7c1e5a9f3b2d4e6a8c0f1e3d5b7a9c2e4f6a8b0d1c3e5f7a9b2d4c6e8f0a1b3c";
const CANCELLED: &str = "c0ffee00-1234-4abc-9def-0123456789ab";

/// The fixtures' appointment lifecycle, in the order myKaarma sends it.
const LIFECYCLE: [&str; 6] = [
    "appointment-created",
    "appointment-created-dms-ack",
    "appointment-rescheduled",
    "appointment-rescheduled-dms-ack",
    "appointment-cancelled",
    "appointment-deleted",
];

fn lifecycle() -> Vec<String> {
    LIFECYCLE
        .iter()
        .map(|name| fixture(&format!("events/{name}.json")))
        .collect()
}

/// A fixture event with its id, timestamp or payload changed.
fn variant(name: &str, id: &str, timestamp: Option<i64>, edit: impl FnOnce(&mut Value)) -> String {
    let mut envelope: Value =
        serde_json::from_str(&fixture(&format!("events/{name}.json"))).unwrap();
    let mut payload: Value = serde_json::from_str(envelope["payload"].as_str().unwrap()).unwrap();
    edit(&mut payload);
    envelope["id"] = json!(id);
    if let Some(timestamp) = timestamp {
        envelope["timestamp"] = json!(timestamp);
    }
    envelope["payload"] = json!(payload.to_string());
    envelope.to_string()
}

/// Event `n` of appointment `uuid`: 0 creates it, each later one moves it to a new start
/// time. Ids are unique and timestamps increase with `n`.
fn appointment_event(uuid: &str, n: u32) -> String {
    let name = if n == 0 {
        "appointment-created"
    } else {
        "appointment-rescheduled"
    };
    let timestamp = 1_736_933_400_000 + i64::from(n) * 60_000;
    variant(name, &format!("{uuid}-{n}"), Some(timestamp), |payload| {
        payload["uuid"] = json!(uuid);
        payload["appointmentInfoResponse"]["uuid"] = json!(uuid);
        if n > 0 {
            payload["appointmentInfoResponse"]["startTime"] =
                json!(format!("2025-02-{n:02}T10:00:00"));
        }
    })
}

/// A route from its TOML table.
fn route(text: &str) -> RouteConfig {
    toml::from_str(text).unwrap_or_else(|error| panic!("{text}\n{error}"))
}

/// An HTTP route to `url` with a custom header and fast retries (20 ms doubling to 1 s).
fn http_route(name: &str, url: &str) -> RouteConfig {
    route(&format!(
        r#"
        name = "{name}"
        [sink]
        type = "http"
        url = "{url}"
        secret = "{SECRET}"
        timeout_secs = 5
        headers = {{ x-partner = "kaarma-tests" }}
        [retry]
        initial_backoff_ms = 20
        max_backoff_secs = 1
        max_attempts = 50
        "#
    ))
}

/// A route appending to a JSON Lines file.
fn file_route(name: &str, path: &Path) -> RouteConfig {
    route(&format!(
        "name = \"{name}\"\nsink = {{ type = \"file\", path = {:?} }}\n",
        path.display().to_string()
    ))
}

/// A URL nothing listens on: every attempt is refused.
async fn unreachable_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}/hook")
}

async fn deliver_all(relay: &TestRelay, bodies: &[String]) {
    for body in bodies {
        let (status, answer) = relay.deliver(body.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    relay.settle().await;
}

/// The whole change stream.
async fn changes(relay: &TestRelay) -> Vec<Value> {
    let mut all = Vec::new();
    let mut since = String::new();
    loop {
        let (status, page) = relay
            .api(&format!("/api/v1/changes?limit=1000&since={since}"))
            .await;
        assert_eq!(status, 200, "{page}");
        let page_changes = page["changes"].as_array().unwrap();
        if page_changes.is_empty() {
            return all;
        }
        all.extend(page_changes.iter().cloned());
        since = page["next_cursor"].as_str().unwrap().to_owned();
    }
}

/// The change ids of `appointment`, in stream order.
fn ids_of(changes: &[Value], appointment: &str) -> Vec<String> {
    changes
        .iter()
        .filter(|change| change["subject"] == appointment)
        .map(|change| change["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The change a fixture event became.
fn change_of<'a>(changes: &'a [Value], event_id: &str) -> &'a Value {
    changes
        .iter()
        .find(|change| change["data"]["origin"]["event_id"] == event_id)
        .unwrap_or_else(|| panic!("no change for event {event_id}"))
}

/// `GET /api/v1/deliveries{query}`.
async fn deliveries(relay: &TestRelay, query: &str) -> Vec<Value> {
    let (status, body) = relay.api(&format!("/api/v1/deliveries{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

fn field<'a>(deliveries: &'a [Value], name: &str) -> Vec<&'a Value> {
    deliveries.iter().map(|delivery| &delivery[name]).collect()
}

/// Polls `done` every 20 ms for up to 10 s.
async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `route` has `count` deliveries in `state`.
async fn wait_for_state(relay: &TestRelay, route: &str, state: &str, count: usize) {
    let query = format!("?route={route}&state={state}&limit=1000");
    wait_until(
        &format!("{count} {state} deliveries on {route}"),
        async || deliveries(relay, &query).await.len() == count,
    )
    .await;
}

fn counts(routes: &Value, name: &str) -> Value {
    routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|route| route["name"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {routes}"))["counts"]
        .clone()
}

#[tokio::test]
async fn the_test_receiver_rejects_what_is_not_signed_with_the_secret() {
    // The receiver's own verification is what the other tests lean on: it must be able to fail.
    let receiver = Receiver::start().await;
    let client = reqwest::Client::new();
    let body = r#"{"id":"msg_1","subject":"a"}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let post = |signature: String, timestamp: u64| {
        client
            .post(&receiver.url)
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
    };
    let other = kaarma_relay::sinks::http::SigningSecret::parse(
        "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
    )
    .unwrap();
    let wrong = kaarma_relay::sinks::http::sign(&other, "msg_1", now as i64, body.as_bytes());
    assert_eq!(post(wrong, now).await.unwrap().status(), 401);
    let ours = kaarma_relay::sinks::http::SigningSecret::parse(SECRET).unwrap();
    let stale = kaarma_relay::sinks::http::sign(&ours, "msg_1", now as i64 - 600, body.as_bytes());
    assert_eq!(post(stale, now - 600).await.unwrap().status(), 401);
    let right = kaarma_relay::sinks::http::sign(&ours, "msg_1", now as i64, body.as_bytes());
    let listed = format!("v1,bm90LWl0 {right}");
    assert_eq!(post(listed, now).await.unwrap().status(), 200);
    assert_eq!(receiver.rejected().len(), 2);
    assert_eq!(receiver.accepted_ids(), ["msg_1"]);
}

#[tokio::test]
async fn http_deliveries_are_signed_retried_and_delivered_once_in_order() {
    let receiver = Receiver::start().await;
    receiver.fail_next(3);
    let hook = http_route("hook", &receiver.url);
    let relay = TestRelay::start_with(|config| config.routes = vec![hook]).await;
    deliver_all(&relay, &lifecycle()).await;
    wait_for_state(&relay, "hook", "delivered", 6).await;

    let changes = changes(&relay).await;
    let expected = ids_of(&changes, APPOINTMENT);
    assert_eq!(expected.len(), 6);
    assert!(receiver.rejected().is_empty(), "{:?}", receiver.rejected());
    assert_eq!(
        receiver.accepted_ids(),
        expected,
        "each change once, in order"
    );
    let requests = receiver.requests();
    assert_eq!(requests.len(), 9, "three failures and six deliveries");
    for request in &requests[..4] {
        assert_eq!(
            request.webhook_id, expected[0],
            "while the first change failed, the next ones waited"
        );
    }
    let gaps: Vec<Duration> = requests[..4]
        .windows(2)
        .map(|pair| pair[1].at - pair[0].at)
        .collect();
    // 20 ms doubling, less 20% jitter at most; a loaded machine only adds to each.
    for (retry, gap) in gaps.iter().enumerate() {
        let least = Duration::from_millis(16 << retry);
        assert!(*gap >= least, "the back-off doubles: {gaps:?}");
    }
    for (request, change) in receiver.accepted().iter().zip(&changes) {
        assert_eq!(&request.event, change, "the body is the CloudEvent");
        assert_eq!(
            request.headers["content-type"],
            "application/cloudevents+json"
        );
        assert_eq!(request.headers["x-partner"], "kaarma-tests");
    }

    let hook = deliveries(&relay, "?route=hook").await;
    assert_eq!(
        field(&hook, "change_id"),
        expected.iter().collect::<Vec<_>>()
    );
    assert_eq!(field(&hook, "attempts"), [4, 1, 1, 1, 1, 1]);
    for delivery in &hook {
        assert_eq!(delivery["state"], "delivered");
        assert_eq!(delivery["appointment"], APPOINTMENT);
        assert_eq!(delivery["last_status"], 200);
        assert_eq!(delivery["last_error"], Value::Null);
        assert_eq!(delivery["next_attempt_at"], Value::Null);
        assert!(delivery["delivered_at"].is_string());
    }
    relay.stop().await;
}

#[tokio::test]
async fn each_appointment_keeps_its_order_under_retries_and_concurrency() {
    let receiver = Receiver::start().await;
    receiver.fail_every(3);
    receiver.delay(Duration::from_millis(30));
    let mut hook = http_route("hook", &receiver.url);
    hook.concurrency = 4;
    let relay = TestRelay::start_with(|config| config.routes = vec![hook]).await;
    let appointments: Vec<String> = (0..6).map(|i| format!("appointment-{i}")).collect();
    let mut bodies = Vec::new();
    for n in 0..4 {
        for appointment in &appointments {
            bodies.push(appointment_event(appointment, n));
        }
    }
    deliver_all(&relay, &bodies).await;
    wait_for_state(&relay, "hook", "delivered", 24).await;

    let changes = changes(&relay).await;
    let requests = receiver.requests();
    assert!(requests.len() > 24, "some attempts failed");
    for appointment in &appointments {
        let expected = ids_of(&changes, appointment);
        assert_eq!(expected.len(), 4);
        let accepted: Vec<String> = receiver
            .accepted()
            .into_iter()
            .filter(|request| &request.subject == appointment)
            .map(|request| request.webhook_id)
            .collect();
        assert_eq!(accepted, expected, "{appointment}: once each, in order");
        let positions: Vec<usize> = requests
            .iter()
            .filter(|request| &request.subject == appointment)
            .map(|request| {
                expected
                    .iter()
                    .position(|id| *id == request.webhook_id)
                    .unwrap()
            })
            .collect();
        assert!(
            positions.windows(2).all(|pair| pair[0] <= pair[1]),
            "{appointment}: no change was tried before the one ahead of it was delivered: {positions:?}"
        );
    }
    assert_eq!(
        receiver.overlaps(),
        0,
        "one request per appointment at a time"
    );
    let most = receiver.most_in_flight();
    assert!((2..=4).contains(&most), "{most} requests in flight at once");
    relay.stop().await;
}

#[tokio::test]
async fn one_failing_appointment_does_not_hold_up_the_others() {
    let receiver = Receiver::start().await;
    receiver.fail_appointment("appointment-a", true);
    let mut hook = http_route("hook", &receiver.url);
    hook.concurrency = 1;
    let relay = TestRelay::start_with(|config| config.routes = vec![hook]).await;
    let bodies = [
        appointment_event("appointment-a", 0),
        appointment_event("appointment-a", 1),
        appointment_event("appointment-b", 0),
        appointment_event("appointment-b", 1),
        appointment_event("appointment-b", 2),
    ];
    deliver_all(&relay, &bodies).await;
    wait_until("appointment b delivered", async || {
        deliveries(&relay, "?appointment=appointment-b&state=delivered")
            .await
            .len()
            == 3
    })
    .await;
    let changes = changes(&relay).await;
    let b: Vec<String> = receiver
        .accepted()
        .into_iter()
        .filter(|request| request.subject == "appointment-b")
        .map(|request| request.webhook_id)
        .collect();
    assert_eq!(b, ids_of(&changes, "appointment-b"));

    let a = deliveries(&relay, "?appointment=appointment-a").await;
    assert_eq!(a.len(), 2);
    assert_eq!(a[0]["state"], "failed");
    assert!(a[0]["attempts"].as_i64().unwrap() >= 1);
    assert_eq!(a[0]["last_status"], 500);
    assert!(a[0]["last_error"].as_str().unwrap().contains("500"));
    assert!(a[0]["next_attempt_at"].is_string());
    assert_eq!(a[1]["state"], "pending", "it waits for the one ahead");
    assert_eq!(a[1]["attempts"], 0);
    let a_ids = ids_of(&changes, "appointment-a");
    assert!(
        receiver
            .requests()
            .iter()
            .filter(|request| request.subject == "appointment-a")
            .all(|request| request.webhook_id == a_ids[0])
    );

    receiver.fail_appointment("appointment-a", false);
    wait_until("appointment a delivered", async || {
        deliveries(&relay, "?appointment=appointment-a&state=delivered")
            .await
            .len()
            == 2
    })
    .await;
    let a: Vec<String> = receiver
        .accepted()
        .into_iter()
        .filter(|request| request.subject == "appointment-a")
        .map(|request| request.webhook_id)
        .collect();
    assert_eq!(a, a_ids);
    relay.stop().await;
}

#[tokio::test]
async fn a_dead_destination_does_not_hold_up_a_file_route() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changes.jsonl");
    let hook = http_route("hook", &unreachable_url().await);
    let archive = file_route("archive", &path);
    let relay = TestRelay::start_with(|config| config.routes = vec![hook, archive]).await;
    deliver_all(&relay, &lifecycle()).await;
    wait_for_state(&relay, "archive", "delivered", 6).await;
    wait_for_state(&relay, "hook", "failed", 1).await;

    let changes = changes(&relay).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines, changes, "one CloudEvent per line, in order");
    assert!(text.ends_with('\n'));

    let hook = deliveries(&relay, "?route=hook").await;
    assert_eq!(hook.len(), 6, "nothing lost");
    assert_eq!(hook[0]["state"], "failed");
    assert!(
        hook[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("request failed")
    );
    assert_eq!(hook[0]["last_status"], Value::Null);
    assert!(
        hook[1..]
            .iter()
            .all(|delivery| delivery["state"] == "pending")
    );
    let (_, routes) = relay.api("/api/v1/routes").await;
    assert_eq!(
        counts(&routes, "archive"),
        json!({"pending": 0, "failed": 0, "delivered": 6, "dead": 0})
    );
    assert_eq!(
        counts(&routes, "hook"),
        json!({"pending": 5, "failed": 1, "delivered": 0, "dead": 0})
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_destination_down_for_a_while_loses_nothing_and_holds_up_no_other_route() {
    let hook_receiver = Receiver::start().await;
    let audit_receiver = Receiver::start().await;
    hook_receiver.go_down();
    let hook = http_route("hook", &hook_receiver.url);
    let audit = http_route("audit", &audit_receiver.url);
    let relay = TestRelay::start_with(|config| config.routes = vec![hook, audit]).await;
    let appointments = ["appointment-x", "appointment-y", "appointment-z"];
    let mut bodies = Vec::new();
    for n in 0..3 {
        for appointment in appointments {
            bodies.push(appointment_event(appointment, n));
        }
    }
    deliver_all(&relay, &bodies).await;
    wait_for_state(&relay, "audit", "delivered", 9).await;
    wait_for_state(&relay, "hook", "failed", 3).await;
    assert!(hook_receiver.accepted().is_empty());
    let (_, routes) = relay.api("/api/v1/routes").await;
    assert_eq!(
        counts(&routes, "hook"),
        json!({"pending": 6, "failed": 3, "delivered": 0, "dead": 0}),
        "the head of each appointment fails, the rest wait"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    hook_receiver.come_back();
    wait_for_state(&relay, "hook", "delivered", 9).await;
    let changes = changes(&relay).await;
    for appointment in appointments {
        for receiver in [&hook_receiver, &audit_receiver] {
            let accepted: Vec<String> = receiver
                .accepted()
                .into_iter()
                .filter(|request| request.subject == appointment)
                .map(|request| request.webhook_id)
                .collect();
            assert_eq!(accepted, ids_of(&changes, appointment), "{appointment}");
        }
    }
    assert!(hook_receiver.requests().len() > 9, "it was retried");
    assert_eq!(
        audit_receiver.requests().len(),
        9,
        "the other route never failed"
    );
    relay.stop().await;
}

#[tokio::test]
async fn the_retry_budget_ends_in_dead_letters_that_do_not_block_the_next_change() {
    let receiver = Receiver::start().await;
    receiver.go_down();
    let mut hook = http_route("hook", &receiver.url);
    hook.retry.max_attempts = 3;
    let relay = TestRelay::start_with(|config| config.routes = vec![hook]).await;
    let bodies = [
        appointment_event("appointment-a", 0),
        appointment_event("appointment-a", 1),
    ];
    deliver_all(&relay, &bodies).await;
    wait_for_state(&relay, "hook", "dead", 2).await;

    let ids = ids_of(&changes(&relay).await, "appointment-a");
    let tried: Vec<String> = receiver
        .requests()
        .into_iter()
        .map(|request| request.webhook_id)
        .collect();
    assert_eq!(
        tried,
        [&ids[0], &ids[0], &ids[0], &ids[1], &ids[1], &ids[1]].map(String::as_str),
        "three attempts each; the second went once the first was dead"
    );
    for delivery in deliveries(&relay, "?route=hook&state=dead").await {
        assert_eq!(delivery["attempts"], 3);
        assert_eq!(delivery["last_status"], 503);
        let error = delivery["last_error"].as_str().unwrap();
        assert!(
            error.contains("503") && error.contains("retry budget"),
            "{error}"
        );
        assert_eq!(delivery["next_attempt_at"], Value::Null);
    }
    relay.stop().await;
}

#[tokio::test]
async fn the_retry_budget_also_ends_by_age() {
    let receiver = Receiver::start().await;
    receiver.go_down();
    let mut hook = http_route("hook", &receiver.url);
    hook.retry.max_age_secs = 1;
    let relay = TestRelay::start_with(|config| config.routes = vec![hook]).await;
    deliver_all(&relay, &[appointment_event("appointment-a", 0)]).await;
    wait_for_state(&relay, "hook", "dead", 1).await;
    let dead = deliveries(&relay, "?route=hook").await;
    let attempts = dead[0]["attempts"].as_i64().unwrap();
    assert!((2..50).contains(&attempts), "{attempts}");
    assert_eq!(receiver.requests().len() as i64, attempts);
    relay.stop().await;
}

#[tokio::test]
async fn a_permanent_refusal_is_dead_after_one_attempt() {
    let receiver = Receiver::start().await;
    receiver.answer_always(Some(Answer::status(422)));
    let hook = http_route("hook", &receiver.url);
    let relay = TestRelay::start_with(|config| config.routes = vec![hook]).await;
    let bodies = [
        appointment_event("appointment-a", 0),
        appointment_event("appointment-a", 1),
    ];
    deliver_all(&relay, &bodies).await;
    wait_for_state(&relay, "hook", "dead", 2).await;
    assert_eq!(receiver.requests().len(), 2);
    for delivery in deliveries(&relay, "?route=hook").await {
        assert_eq!(delivery["attempts"], 1);
        assert_eq!(delivery["last_status"], 422);
        let error = delivery["last_error"].as_str().unwrap();
        assert!(error.contains("permanent"), "{error}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_not_taken_for_delivery() {
    // Following a 302 would re-send the POST as a GET without the body, and a 200 to that GET
    // would count as delivered although the receiver never got the change.
    let receiver = Receiver::start().await;
    receiver.answer_next(Answer::status(302));
    let mut hook = http_route("hook", &receiver.url);
    hook.retry.max_attempts = 1;
    let relay = TestRelay::start_with(|config| config.routes = vec![hook]).await;
    deliver_all(&relay, &[appointment_event("appointment-a", 0)]).await;
    wait_for_state(&relay, "hook", "dead", 1).await;
    let dead = deliveries(&relay, "?route=hook").await;
    assert_eq!(dead[0]["last_status"], 302);
    relay.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let receiver = Receiver::start().await;
    receiver.answer_next(Answer::retry_after(429, "1"));
    let hook = http_route("hook", &receiver.url);
    let relay = TestRelay::start_with(|config| config.routes = vec![hook]).await;
    deliver_all(&relay, &[appointment_event("appointment-a", 0)]).await;
    wait_for_state(&relay, "hook", "failed", 1).await;
    let failed = deliveries(&relay, "?route=hook").await;
    assert_eq!(failed[0]["last_status"], 429);
    let next = chrono::DateTime::parse_from_rfc3339(failed[0]["next_attempt_at"].as_str().unwrap())
        .unwrap();
    let ahead = next.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    assert!(
        (300..=1000).contains(&ahead),
        "next attempt in {ahead} ms: a second, not the 20 ms back-off"
    );

    wait_for_state(&relay, "hook", "delivered", 1).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(950) && gap < Duration::from_millis(2500),
        "the second attempt came {gap:?} after the first, not 20 ms"
    );
    relay.stop().await;
}

#[tokio::test]
async fn the_default_policy_retries_after_about_a_second() {
    let receiver = Receiver::start().await;
    receiver.fail_next(1);
    let mut hook = http_route("hook", &receiver.url);
    hook.retry = Default::default();
    let relay = TestRelay::start_with(|config| config.routes = vec![hook]).await;
    deliver_all(&relay, &[appointment_event("appointment-a", 0)]).await;
    wait_for_state(&relay, "hook", "delivered", 1).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(750) && gap < Duration::from_millis(2000),
        "{gap:?}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn the_rate_limit_spaces_attempts() {
    let receiver = Receiver::start().await;
    let mut hook = http_route("hook", &receiver.url);
    hook.rate_limit = Some(10.0);
    hook.concurrency = 4;
    let relay = TestRelay::start_with(|config| config.routes = vec![hook]).await;
    // All at once, so that without the limit they would all go at once too.
    let posts = (0..6).map(|i| relay.deliver(appointment_event(&format!("appointment-{i}"), 0)));
    for (status, answer) in futures::future::join_all(posts).await {
        assert_eq!(status, 200, "{answer}");
    }
    wait_for_state(&relay, "hook", "delivered", 6).await;
    let mut starts: Vec<Instant> = receiver
        .requests()
        .iter()
        .map(|request| request.at)
        .collect();
    starts.sort();
    // 100 ms apart at the relay; the network may bunch two arrivals a little.
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(50), "{gap:?} between attempts");
    }
    let span = starts[5] - starts[0];
    assert!(
        span >= Duration::from_millis(450),
        "six attempts in {span:?}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn retry_through_the_api() {
    let receiver = Receiver::start().await;
    receiver.go_down();
    let mut dying = http_route("dying", &receiver.url);
    dying.retry.max_attempts = 2;
    // A route whose next retry is ten minutes away: a retry by hand must not wait for it.
    let slow_receiver = Receiver::start().await;
    slow_receiver.fail_next(1);
    let mut slow = http_route("slow", &slow_receiver.url);
    slow.retry.initial_backoff_ms = 600_000;
    slow.retry.max_backoff_secs = 600;
    let relay = TestRelay::start_with(|config| config.routes = vec![dying, slow]).await;
    deliver_all(
        &relay,
        &[
            appointment_event("appointment-a", 0),
            appointment_event("appointment-a", 1),
        ],
    )
    .await;
    wait_for_state(&relay, "dying", "dead", 2).await;
    wait_for_state(&relay, "slow", "failed", 1).await;

    let dead = deliveries(&relay, "?route=dying").await;
    receiver.come_back();
    let id = dead[0]["id"].as_i64().unwrap();
    let (status, body) = relay
        .api_post(&format!("/api/v1/deliveries/{id}/retry"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["was"], "dead");
    wait_for_state(&relay, "dying", "delivered", 1).await;
    let retried = deliveries(&relay, "?route=dying&state=delivered").await;
    assert_eq!(retried[0]["id"], id);
    assert_eq!(retried[0]["attempts"], 1, "a fresh budget");
    assert_eq!(
        receiver.accepted_ids(),
        [dead[0]["change_id"].as_str().unwrap()]
    );
    let (status, body) = relay
        .api_post(&format!("/api/v1/deliveries/{id}/retry"), json!({}))
        .await;
    assert_eq!(status, 409, "delivered: {body}");
    let (status, _) = relay
        .api_post("/api/v1/deliveries/999999/retry", json!({}))
        .await;
    assert_eq!(status, 404);

    let slow = deliveries(&relay, "?route=slow").await;
    assert_eq!(slow[0]["state"], "failed");
    assert_eq!(slow[1]["state"], "pending");
    let (status, body) = relay
        .api_post(
            &format!("/api/v1/deliveries/{}/retry", slow[1]["id"]),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "pending: {body}");
    let (status, body) = relay
        .api_post(
            &format!("/api/v1/deliveries/{}/retry", slow[0]["id"]),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["was"], "failed");
    let started = Instant::now();
    wait_for_state(&relay, "slow", "delivered", 2).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let ids = ids_of(&changes(&relay).await, "appointment-a");
    assert_eq!(slow_receiver.accepted_ids(), ids, "in order");
    relay.stop().await;
}

#[tokio::test]
async fn replay_by_change_ids_and_by_time_range_resends_with_the_same_webhook_id() {
    let receiver = Receiver::start().await;
    let cancellations_receiver = Receiver::start().await;
    let hook = http_route("hook", &receiver.url);
    let mut cancellations = http_route("cancellations", &cancellations_receiver.url);
    cancellations.when.kind = vec!["cancelled".into()];
    let relay = TestRelay::start_with(|config| config.routes = vec![hook, cancellations]).await;
    deliver_all(&relay, &lifecycle()).await;
    wait_for_state(&relay, "hook", "delivered", 6).await;
    wait_for_state(&relay, "cancellations", "delivered", 1).await;
    let ids = ids_of(&changes(&relay).await, APPOINTMENT);

    let (status, body) = relay
        .api_post(
            "/api/v1/routes/hook/replay",
            json!({"change_ids": [ids[1]]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["requeued"], 1);
    wait_until("the replay", async || receiver.accepted().len() == 7).await;
    assert_eq!(
        receiver.accepted_ids()[6],
        ids[1],
        "the same webhook-id again"
    );
    wait_for_state(&relay, "hook", "delivered", 6).await;

    // The rescheduling and its acknowledgement happened on 2025-01-16 around 09:30.
    let (status, body) = relay
        .api_post(
            "/api/v1/routes/hook/replay",
            json!({"from": "2025-01-16T09:00:00Z", "to": "2025-01-16T10:00:00Z"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["requeued"], 2, "only the changes in the range");
    wait_until("the range replay", async || receiver.accepted().len() == 9).await;
    assert_eq!(receiver.accepted_ids()[7..], ids[2..4], "in order");
    wait_for_state(&relay, "hook", "delivered", 6).await;

    // A range replays only what the route takes.
    let (status, body) = relay
        .api_post(
            "/api/v1/routes/cancellations/replay",
            json!({"from": "2025-01-01T00:00:00Z", "to": "2025-12-31T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["requeued"], 1);
    wait_until("the cancellation replay", async || {
        cancellations_receiver.accepted().len() == 2
    })
    .await;
    assert_eq!(
        cancellations_receiver.accepted_ids(),
        [ids[4].as_str(), ids[4].as_str()]
    );
    // So does a list of ids: a change the route never took is not sent to it.
    let (status, body) = relay
        .api_post(
            "/api/v1/routes/cancellations/replay",
            json!({"change_ids": [ids[0]]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["requeued"], 0);
    assert_eq!(body["skipped"][0]["change_id"], ids[0]);
    assert!(
        body["skipped"][0]["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("kinds are [created]"),
        "{body}"
    );

    for (path, request, expected) in [
        ("/api/v1/routes/hook/replay", json!({}), 400),
        (
            "/api/v1/routes/hook/replay",
            json!({"change_ids": [ids[0]], "from": "2025-01-01T00:00:00Z"}),
            400,
        ),
        (
            "/api/v1/routes/hook/replay",
            json!({"from": "yesterday"}),
            400,
        ),
        (
            "/api/v1/routes/hook/replay",
            json!({"change_ids": ["no-such-change"]}),
            404,
        ),
        (
            "/api/v1/routes/nowhere/replay",
            json!({"change_ids": [ids[0]]}),
            404,
        ),
    ] {
        let (status, body) = relay.api_post(path, request.clone()).await;
        assert_eq!(status, expected, "{path} {request}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn the_routes_api_lists_routes_with_counts_and_no_secrets() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut hook = http_route("hook", &receiver.url);
    hook.when.kind = vec!["cancelled".into(), "deleted".into()];
    hook.rate_limit = Some(50.0);
    let archive = file_route("archive", &dir.path().join("all.jsonl"));
    let relay = TestRelay::start_with(|config| config.routes = vec![hook, archive]).await;
    let (status, routes) = relay.api("/api/v1/routes").await;
    assert_eq!(status, 200);
    assert_eq!(
        counts(&routes, "hook"),
        json!({"pending": 0, "failed": 0, "delivered": 0, "dead": 0})
    );
    deliver_all(&relay, &lifecycle()).await;
    wait_for_state(&relay, "hook", "delivered", 2).await;
    wait_for_state(&relay, "archive", "delivered", 6).await;

    let (_, routes) = relay.api("/api/v1/routes").await;
    assert!(
        !routes
            .to_string()
            .contains(SECRET.trim_start_matches("whsec_"))
    );
    let names: Vec<&Value> = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|route| &route["name"])
        .collect();
    assert_eq!(names, ["hook", "archive"], "in configuration order");
    let hook = &routes["routes"][0];
    assert_eq!(hook["sink"], json!({"type": "http", "url": receiver.url}));
    assert_eq!(hook["when"]["kind"], json!(["cancelled", "deleted"]));
    assert_eq!(hook["concurrency"], 4);
    assert_eq!(hook["rate_limit"], 50.0);
    assert_eq!(hook["retry"]["max_attempts"], 50);
    assert_eq!(
        counts(&routes, "hook"),
        json!({"pending": 0, "failed": 0, "delivered": 2, "dead": 0})
    );
    assert_eq!(
        counts(&routes, "archive"),
        json!({"pending": 0, "failed": 0, "delivered": 6, "dead": 0})
    );
    assert_eq!(routes["routes"][1]["sink"]["type"], "file");

    let (status, body) = relay.api("/api/v1/deliveries?state=lost").await;
    assert_eq!(status, 400, "{body}");
    let page = deliveries(&relay, "?route=archive&limit=4").await;
    assert_eq!(page.len(), 4);
    relay.stop().await;
}

#[tokio::test]
async fn testing_routes_by_stored_event_and_by_posted_change_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(format!("{name}.jsonl"));
    let mut cancellations = file_route("cancellations", &file("cancellations"));
    cancellations.when.kind = vec!["cancelled".into()];
    let mut honda = file_route("honda", &file("honda"));
    honda.filter = Some(
        serde_json::from_value(json!({"data.appointment.vehicleInformation.brand": "Honda"}))
            .unwrap(),
    );
    let mut ford = file_route("ford", &file("ford"));
    ford.filter = Some(
        serde_json::from_value(json!({"data.appointment.vehicleInformation.brand": "Ford"}))
            .unwrap(),
    );
    let mut elsewhere = file_route("elsewhere", &file("elsewhere"));
    elsewhere.when.dealer = vec!["another-dealer".into()];
    let everything = file_route("everything", &file("everything"));
    let relay = TestRelay::start_with(|config| {
        config.routes = vec![everything, cancellations, honda, ford, elsewhere]
    })
    .await;
    deliver_all(&relay, &lifecycle()).await;
    let changes = changes(&relay).await;
    let cancelled = change_of(&changes, CANCELLED);

    let (status, body) = relay
        .api_post(
            "/api/v1/routes/test",
            json!({"event": {"type": "appointments", "id": CANCELLED}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["change_id"], cancelled["id"]);
    let verdict = |body: &Value, name: &str| -> (bool, Vec<String>) {
        let route = body["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|route| route["name"] == name)
            .unwrap()
            .clone();
        let reasons = route["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|reason| reason.as_str().unwrap().to_owned())
            .collect();
        (route["matches"].as_bool().unwrap(), reasons)
    };
    assert_eq!(verdict(&body, "everything"), (true, vec![]));
    assert_eq!(verdict(&body, "cancellations"), (true, vec![]));
    assert_eq!(verdict(&body, "honda"), (true, vec![]));
    let (matches, reasons) = verdict(&body, "ford");
    assert!(!matches);
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].starts_with("filter"), "{reasons:?}");
    assert_eq!(
        verdict(&body, "elsewhere"),
        (
            false,
            vec![format!("dealer is {DEALER} (wanted one of another-dealer)")]
        )
    );

    // A posted change: the same cancellation, of a Ford.
    let mut ford_change = cancelled.clone();
    ford_change["data"]["appointment"]["vehicleInformation"]["brand"] = json!("Ford");
    let (status, body) = relay
        .api_post("/api/v1/routes/test", json!({"change": ford_change}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["change_id"], Value::Null);
    assert!(verdict(&body, "ford").0);
    assert!(!verdict(&body, "honda").0);
    let created = change_of(&changes, "6c7e57fe-0e06-4fc9-8120-e1593257f1cf");
    let (_, body) = relay
        .api_post("/api/v1/routes/test", json!({"change": created}))
        .await;
    assert_eq!(
        verdict(&body, "cancellations"),
        (
            false,
            vec!["kinds are [created] (wanted one of cancelled)".to_owned()]
        )
    );

    for (request, expected) in [
        (json!({}), 400),
        (
            json!({"event": {"type": "appointments", "id": CANCELLED}, "change": {}}),
            400,
        ),
        (
            json!({"event": {"type": "appointments", "id": "no-such-event"}}),
            404,
        ),
    ] {
        let (status, body) = relay.api_post("/api/v1/routes/test", request.clone()).await;
        assert_eq!(status, expected, "{request}: {body}");
    }
    relay.stop().await;
}

/// Which of the fixture events each route takes: every `when` key and filter operator, over
/// the CloudEvents the relay really makes.
#[tokio::test]
async fn every_when_key_and_filter_operator_routes_the_right_changes() {
    let mut events: Vec<(&str, String, String)> = [
        ("created", "6c7e57fe-0e06-4fc9-8120-e1593257f1cf"),
        ("created-ack", "0b8f7a55-3d41-4c9e-9a6b-2f1e8d7c6b5a"),
        ("rescheduled", "a3d2c1b0-9f8e-4d7c-8b6a-5e4d3c2b1a09"),
        ("rescheduled-ack", "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"),
        ("cancelled", CANCELLED),
        ("deleted", "de1e7ed0-5678-4abc-8def-fedcba987654"),
        ("customer", "11111111-2222-4333-8444-555555555555"),
        ("service-order", "22222222-3333-4444-8555-666666666666"),
        ("mpi", "33333333-4444-4555-8666-777777777777"),
    ]
    .into_iter()
    .zip(
        LIFECYCLE
            .iter()
            .chain(&["customer", "service-order", "mpi"]),
    )
    .map(|((name, id), file)| (name, id.to_owned(), fixture(&format!("events/{file}.json"))))
    .collect();
    // Another appointment whose only change is a nested field (the mileage).
    let other = |id: &str, timestamp: i64, mileage: &str| {
        let body = variant("appointment-created", id, Some(timestamp), |payload| {
            payload["uuid"] = json!("appointment-other");
            let info = &mut payload["appointmentInfoResponse"];
            info["uuid"] = json!("appointment-other");
            info["vehicleInformation"]["mileage"] = json!(mileage);
        });
        (id.to_owned(), body)
    };
    let (id, body) = other("other-created", 1_737_300_000_000, "128450");
    events.push(("other-created", id, body));
    let (id, body) = other("other-mileage", 1_737_300_060_000, "130000");
    events.push(("mileage", id, body));

    let appointments = vec![
        "created",
        "created-ack",
        "rescheduled",
        "rescheduled-ack",
        "cancelled",
        "deleted",
        "other-created",
        "mileage",
    ];
    let others = ["customer", "service-order", "mpi"];
    let all: Vec<&str> = events.iter().map(|(name, _, _)| *name).collect();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("everything", String::new(), all.clone()),
        ("type", r#"when = { type = ["appointments"] }"#.into(), appointments.clone()),
        ("types", r#"when = { type = ["customers", "mpis"] }"#.into(), vec!["customer", "mpi"]),
        ("event", r#"when = { event = ["RESCHEDULED", "CANCELLED"] }"#.into(), vec!["rescheduled", "cancelled"]),
        ("new-status", r#"when = { new_status = ["CANCELLED"] }"#.into(), vec!["cancelled", "deleted"]),
        ("status", r#"when = { status = ["RESCHEDULED"] }"#.into(), vec!["rescheduled", "rescheduled-ack"]),
        ("kind", r#"when = { kind = ["dms_acknowledged", "deleted"] }"#.into(), vec!["created-ack", "rescheduled-ack", "deleted"]),
        ("secondary-kind", r#"when = { kind = ["status_changed"] }"#.into(), vec!["rescheduled", "cancelled"]),
        ("received", r#"when = { kind = ["received"] }"#.into(), others.to_vec()),
        ("dealer", format!(r#"when = {{ dealer = ["{DEALER}"] }}"#), all.clone()),
        ("other-dealer", r#"when = { dealer = ["another-dealer"] }"#.into(), vec![]),
        ("department", r#"when = { department = ["3a7f1c9e5b2d8f4a6c0e2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c5e7b9d2f4a"] }"#.into(), all.clone()),
        ("field", r#"when = { fields = ["appointmentKey"] }"#.into(), vec!["created-ack"]),
        ("field-pointer", r#"when = { fields = ["/startTime"] }"#.into(), vec!["rescheduled"]),
        ("field-parent", r#"when = { fields = ["/vehicleInformation"] }"#.into(), vec!["mileage"]),
        ("fields-any", r#"when = { fields = ["/customerInformation", "isCancelled"] }"#.into(), vec!["cancelled"]),
        ("kind-updated", r#"when = { kind = ["updated"] }"#.into(), vec!["mileage"]),
        ("keys-and", r#"when = { event = ["UPDATED"], status = ["RESCHEDULED"] }"#.into(), vec!["rescheduled-ack"]),
        ("literal", r#"filter = { "data.origin.event" = "CANCELLED" }"#.into(), vec!["cancelled"]),
        ("eq", r#"filter = { "data.appointment.vehicleInformation.brand" = { "$eq" = "Honda" } }"#.into(), appointments.clone()),
        ("neq", r#"filter = { "data.origin.event" = { "$neq" = "UPDATED" } }"#.into(), vec!["created", "rescheduled", "cancelled", "deleted", "customer", "service-order", "mpi", "other-created", "mileage"]),
        ("in", r#"filter = { type = { "$in" = ["com.mykaarma.appointment.cancelled", "com.mykaarma.appointment.deleted"] } }"#.into(), vec!["cancelled", "deleted"]),
        ("nin", r#"filter = { "data.origin.event_type" = { "$nin" = ["appointments", "mpis"] } }"#.into(), vec!["customer", "service-order"]),
        ("exists", r#"filter = { "data.appointment.appointmentKey" = { "$exists" = true } }"#.into(), vec!["created-ack", "rescheduled", "rescheduled-ack", "cancelled", "deleted"]),
        ("not-exists", r#"filter = { "data.appointment" = { "$exists" = false } }"#.into(), others.to_vec()),
        ("gt", r#"filter = { time = { "$gt" = "2025-01-16T09:30:00.000Z" } }"#.into(), vec!["rescheduled-ack", "cancelled", "deleted", "other-created", "mileage"]),
        ("gte", r#"filter = { time = { "$gte" = "2025-01-16T09:30:00.000Z" } }"#.into(), vec!["rescheduled", "rescheduled-ack", "cancelled", "deleted", "other-created", "mileage"]),
        ("lt", r#"filter = { time = { "$lt" = "2025-01-15T09:30:01.000Z" } }"#.into(), vec!["created"]),
        ("lte", r#"filter = { "data.payload.recommendedTotal" = { "$lte" = 189.5 } }"#.into(), vec!["mpi"]),
        ("number", r#"filter = { "data.appointment.serviceList.duration" = { "$gte" = 30, "$lt" = 31 } }"#.into(), appointments.clone()),
        ("and", r#"filter = { "$and" = [{ type = "com.mykaarma.appointment.dms_acknowledged" }, { "data.state.status" = "RESCHEDULED" }] }"#.into(), vec!["rescheduled-ack"]),
        ("or", r#"filter = { "$or" = [{ "data.origin.event_type" = "mpis" }, { "data.origin.event" = "DELETED" }] }"#.into(), vec!["deleted", "mpi"]),
        ("not", r#"filter = { "$not" = { "data.origin.event_type" = "appointments" } }"#.into(), others.to_vec()),
        ("when-and-filter", r#"filter = { "data.origin.event" = "DELETED" }
                               when = { kind = ["cancelled", "deleted"] }"#.into(), vec!["deleted"]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let routes: Vec<RouteConfig> = cases
        .iter()
        .map(|(name, rule, _)| {
            let path = dir.path().join(format!("{name}.jsonl"));
            route(&format!(
                "name = \"{name}\"\n{rule}\nsink = {{ type = \"file\", path = {:?} }}\n",
                path.display().to_string()
            ))
        })
        .collect();
    let relay = TestRelay::start_with(|config| config.routes = routes).await;
    let bodies: Vec<String> = events.iter().map(|(_, _, body)| body.clone()).collect();
    deliver_all(&relay, &bodies).await;
    let changes = changes(&relay).await;
    assert_eq!(changes.len(), events.len());
    let name_of = |change_id: &Value| -> &str {
        let change = changes
            .iter()
            .find(|change| &change["id"] == change_id)
            .unwrap();
        let event_id = &change["data"]["origin"]["event_id"];
        events.iter().find(|(_, id, _)| event_id == id).unwrap().0
    };
    let mut wrong = Vec::new();
    for (name, rule, expected) in &cases {
        let routed: Vec<&str> = deliveries(&relay, &format!("?route={name}&limit=100"))
            .await
            .iter()
            .map(|delivery| name_of(&delivery["change_id"]))
            .collect();
        if &routed != expected {
            wrong.push(format!(
                "{name} ({rule}): got {routed:?}, expected {expected:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    relay.stop().await;
}

fn write_config(dir: &Path, routes: &str) -> std::path::PathBuf {
    let path = dir.join("relay.toml");
    std::fs::write(
        &path,
        format!("[mykaarma]\nsignature_secret = \"s\"\n\n{routes}"),
    )
    .unwrap();
    path
}

#[derive(serde::Serialize)]
struct NoOverrides {}

#[test]
fn a_route_config_that_does_not_parse_fails_with_the_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[routes]]\nname = \"vins\"\nsink = { type = \"stdout\" }\nfilter = { \"data.appointment.vehicleInformation.vin\" = { \"$regex\" = \"^1HG\" } }\n",
            "line 7",
            "unknown operator \"$regex\"",
        ),
        (
            "[[routes]]\nname = \"any\"\nsink = { type = \"stdout\" }\n\n[[routes]]\nname = \"bad\"\nsink = { type = \"stdout\" }\nfilter = { \"$xor\" = [] }\n",
            "line 11",
            "unknown operator \"$xor\"",
        ),
        (
            "[[routes]]\nname = \"in\"\nsink = { type = \"stdout\" }\nfilter = { type = { \"$in\" = \"x\" } }\n",
            "line 7",
            "$in takes an array",
        ),
        (
            "[[routes]]\nname = \"typo\"\nsink = { type = \"stdout\" }\n[routes.when]\nknd = [\"created\"]\n",
            "line 8",
            "knd",
        ),
        (
            "[[routes]]\nname = \"smtp\"\nsink = { type = \"smtp\" }\n",
            "line 6",
            "smtp",
        ),
        (
            "[[routes]]\nname = \"many\"\nsink = { type = \"stdout\" }\n[routes.retry]\nmax_attempts = \"many\"\n",
            "line 8",
            "max_attempts",
        ),
        (
            "[[routes]]\nsink = { type = \"stdout\" }\n",
            "line 4",
            "name",
        ),
    ];
    for (routes, line, reason) in cases {
        let path = write_config(dir.path(), routes);
        let error = Config::load(Some(&path), &NoOverrides {})
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{routes}"))
            .to_string();
        assert!(
            error.contains(line) && error.contains(reason),
            "{routes}\n→ {error}\n(wanted {line} and {reason})"
        );
    }
    let path = write_config(
        dir.path(),
        "[[routes]]\nname = \"fine\"\nsink = { type = \"stdout\" }\nfilter = { \"$or\" = [{ \"data.origin.event\" = \"CANCELLED\" }, { time = { \"$gte\" = \"2025\" } }] }\n[routes.when]\nkind = [\"created\"]\nfields = [\"startTime\"]\n",
    );
    let config = Config::load(Some(&path), &NoOverrides {}).unwrap();
    assert_eq!(config.routes[0].when.fields, ["startTime"]);
}

#[tokio::test]
async fn a_route_that_cannot_run_fails_the_start_naming_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = |name: &str| {
        route(&format!(
            "name = \"{name}\"\nsink = {{ type = \"stdout\" }}"
        ))
    };
    let mut zero = stdout("zero");
    zero.concurrency = 0;
    let mut unlimited = stdout("unlimited");
    unlimited.rate_limit = Some(0.0);
    let mut never = stdout("never");
    never.retry.max_attempts = 0;
    let mut jumpy = stdout("jumpy");
    jumpy.retry.jitter = 1.5;
    let cases: Vec<(Vec<RouteConfig>, &str)> = vec![
        (
            vec![route(
                "name = \"hook\"\nsink = { type = \"http\", url = \"http://127.0.0.1:9/\", secret = \"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }",
            )],
            "route \"hook\": sink: the secret must have the Standard Webhooks form whsec_<base64>",
        ),
        (
            vec![route(
                "name = \"hook\"\nsink = { type = \"http\", url = \"http://127.0.0.1:9/\", secret = \"whsec_!!\" }",
            )],
            "route \"hook\": sink: the part after whsec_ is not valid base64",
        ),
        (
            vec![route(&format!(
                "name = \"ftp\"\nsink = {{ type = \"http\", url = \"ftp://127.0.0.1/\", secret = \"{SECRET}\" }}"
            ))],
            "route \"ftp\": sink: url \"ftp://127.0.0.1/\": only http and https",
        ),
        (
            vec![route(
                "name = \"wild\"\nsink = { type = \"nats\", subject = \"mykaarma.*.{kind}\" }",
            )],
            "route \"wild\"",
        ),
        (
            vec![stdout("twice"), stdout("twice")],
            "route \"twice\": the name is used twice",
        ),
        (
            vec![stdout("no spaces")],
            "route \"no spaces\": a name is letters",
        ),
        (vec![zero], "route \"zero\": concurrency must be at least 1"),
        (
            vec![unlimited],
            "route \"unlimited\": rate_limit must be a positive number",
        ),
        (
            vec![never],
            "route \"never\": retry.max_attempts must be at least 1",
        ),
        (vec![jumpy], "route \"jumpy\": retry.jitter is a fraction"),
    ];
    for (routes, expected) in cases {
        let mut config = harness::config(dir.path());
        config.routes = routes;
        match Application::build(&config).await {
            Ok(_) => panic!("started with {expected}"),
            Err(error) => {
                let message = format!("{error:#}");
                assert!(message.contains(expected), "{message}\n(wanted {expected})");
                assert!(
                    !message.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                    "no secret in {message}"
                );
            }
        }
    }
}

#[tokio::test]
async fn delivery_metrics_are_exported() {
    let receiver = Receiver::start().await;
    receiver.fail_next(1);
    let metered = http_route("metered", &receiver.url);
    let relay = TestRelay::start_with(|config| config.routes = vec![metered]).await;
    deliver_all(&relay, &[appointment_event("appointment-a", 0)]).await;
    wait_for_state(&relay, "metered", "delivered", 1).await;
    let metrics = async || {
        relay
            .client
            .get(format!("{}/metrics", relay.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let line = |text: &str, name: &str, labels: &[&str]| -> Option<f64> {
        text.lines()
            .find(|line| {
                line.starts_with(&format!("{name}{{"))
                    && labels.iter().all(|label| line.contains(label))
            })
            .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
    };
    let text = metrics().await;
    let route = "route=\"metered\"";
    assert_eq!(
        line(
            &text,
            "kaarma_relay_delivery_attempts_total",
            &[route, "outcome=\"failed\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        line(
            &text,
            "kaarma_relay_delivery_attempts_total",
            &[route, "outcome=\"delivered\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        line(
            &text,
            "kaarma_relay_delivery_attempt_seconds_count",
            &[route]
        ),
        Some(2.0)
    );
    // Every state of every route is reported, zeros included, from the start.
    for state in ["pending", "failed", "delivered", "dead"] {
        assert!(
            line(
                &text,
                "kaarma_relay_deliveries",
                &[route, &format!("state=\"{state}\"")]
            )
            .is_some(),
            "{state}: {text}"
        );
    }
    assert!(
        line(
            &text,
            "kaarma_relay_delivery_oldest_pending_seconds",
            &[route]
        )
        .is_some()
    );
    // The gauges are refreshed every 5 s.
    wait_until("the gauges", async || {
        let text = metrics().await;
        line(
            &text,
            "kaarma_relay_deliveries",
            &[route, "state=\"delivered\""],
        ) == Some(1.0)
    })
    .await;
    let text = metrics().await;
    assert_eq!(
        line(
            &text,
            "kaarma_relay_deliveries",
            &[route, "state=\"failed\""]
        ),
        Some(0.0)
    );
    assert_eq!(
        line(
            &text,
            "kaarma_relay_delivery_oldest_pending_seconds",
            &[route]
        ),
        Some(0.0)
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_worker_with_nothing_to_claim_does_not_poll_the_store() {
    // `backoff`: appointment a's first change failed and retries in ten minutes; its second
    // waits behind it, overdue but not claimable. `busy`: b's change holds the only permit
    // for 1.5 s while c's waits for it. Neither worker has anything to do meanwhile.
    let backoff_receiver = Receiver::start().await;
    backoff_receiver.fail_next(1);
    let mut backoff = http_route("backoff", &backoff_receiver.url);
    backoff.retry.initial_backoff_ms = 600_000;
    backoff.filter = Some(serde_json::from_value(json!({"subject": "appointment-a"})).unwrap());
    let busy_receiver = Receiver::start().await;
    busy_receiver.delay(Duration::from_millis(1500));
    let mut busy = http_route("busy", &busy_receiver.url);
    busy.concurrency = 1;
    busy.filter = Some(
        serde_json::from_value(json!({"subject": {"$in": ["appointment-b", "appointment-c"]}}))
            .unwrap(),
    );

    let relay = TestRelay::start_with(|config| config.routes = vec![backoff, busy]).await;
    deliver_all(
        &relay,
        &[
            appointment_event("appointment-a", 0),
            appointment_event("appointment-a", 1),
            appointment_event("appointment-b", 0),
            appointment_event("appointment-c", 0),
        ],
    )
    .await;
    wait_for_state(&relay, "backoff", "failed", 1).await;
    let started = Instant::now();
    let before = (
        wakeups(&relay, "backoff").await,
        wakeups(&relay, "busy").await,
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let backoff_wakeups = wakeups(&relay, "backoff").await - before.0;
    let busy_wakeups = wakeups(&relay, "busy").await - before.1;
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "b's attempt was still in flight"
    );
    assert!(
        backoff_wakeups <= 2.0,
        "the backoff route woke {backoff_wakeups} times in 0.6 s"
    );
    assert!(
        busy_wakeups <= 1.0,
        "the busy route woke {busy_wakeups} times in 0.6 s"
    );
    relay.stop().await;
}

/// How often `route`'s worker has woken up, from `/metrics`.
async fn wakeups(relay: &TestRelay, route: &str) -> f64 {
    let text = relay
        .client
        .get(format!("{}/metrics", relay.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("kaarma_relay_delivery_worker_wakeups_total{{route=\"{route}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_new_change_goes_out_at_once_not_at_the_next_poll() {
    let receiver = Receiver::start().await;
    let hook = http_route("hook", &receiver.url);
    let relay = TestRelay::start_with(|config| config.routes = vec![hook]).await;
    // Long enough for the idle worker to be in its longest (1 s) sleep.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for n in 0..3 {
        let sent = Instant::now();
        let (status, _) = relay.deliver(appointment_event("appointment-a", n)).await;
        assert_eq!(status, 200);
        wait_until("the delivery", async || {
            receiver.accepted().len() == n as usize + 1
        })
        .await;
        let latency = receiver.accepted()[n as usize].at - sent;
        assert!(
            latency < Duration::from_millis(500),
            "change {n} went out {latency:?} after it was received"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    relay.stop().await;
}
