//! The `nats` sink against the NATS server on this machine (127.0.0.1:4222, JetStream on):
//! changes are published with `Nats-Msg-Id` = the change id, read back by a JetStream
//! consumer, and a replay inside the duplicate window adds nothing to the stream. Every test
//! uses its own stream and subjects and deletes the stream at the end.

mod harness;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use harness::{TestRelay, fixture};
use kaarma_relay::delivery::RouteConfig;
use serde_json::{Value, json};

const NATS_URL: &str = "nats://127.0.0.1:4222";
const DEALER: &str = "7c1e5a9f3b2d4e6a8c0f1e3d5b7a9c2e4f6a8b0d1c3e5f7a9b2d4c6e8f0a1b3c";

const LIFECYCLE: [&str; 6] = [
    "appointment-created",
    "appointment-created-dms-ack",
    "appointment-rescheduled",
    "appointment-rescheduled-dms-ack",
    "appointment-cancelled",
    "appointment-deleted",
];

/// A fixture event for another dealer, under a new id.
fn for_dealer(name: &str, dealer: &str) -> String {
    let mut envelope: Value =
        serde_json::from_str(&fixture(&format!("events/{name}.json"))).unwrap();
    let mut payload: Value = serde_json::from_str(envelope["payload"].as_str().unwrap()).unwrap();
    payload["appointmentInfoResponse"]["dealerUuid"] = json!(dealer);
    envelope["dealeruuid"] = json!(dealer);
    envelope["id"] = json!(format!("{dealer}-{name}"));
    envelope["payload"] = json!(payload.to_string());
    envelope.to_string()
}

/// A stream only this test uses: [`TestStream::remove`] deletes it at the end, and dropping
/// it (a failed test) deletes it too.
struct TestStream {
    name: String,
    removed: bool,
}

impl TestStream {
    fn new(prefix: &str) -> Self {
        Self {
            name: format!("{prefix}_{}", uuid::Uuid::new_v4().simple()),
            removed: false,
        }
    }

    async fn remove(mut self) {
        let js = jetstream().await;
        assert!(js.delete_stream(&self.name).await.unwrap().success);
        assert!(
            js.get_stream(&self.name).await.is_err(),
            "the stream is gone"
        );
        self.removed = true;
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let name = self.name.clone();
        // Drop cannot await; a thread with its own runtime can.
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                if let Ok(client) = async_nats::connect(NATS_URL).await {
                    let _ = jetstream::new(client).delete_stream(&name).await;
                }
            })
        })
        .join()
        .unwrap();
    }
}

async fn jetstream() -> jetstream::Context {
    jetstream::new(
        async_nats::connect(NATS_URL)
            .await
            .expect("NATS on 127.0.0.1:4222"),
    )
}

fn nats_route(name: &str, sink: &str) -> RouteConfig {
    let text = format!(
        "name = \"{name}\"\nsink = {{ type = \"nats\", url = \"{NATS_URL}\", timeout_secs = 2, {sink} }}\n\
         [retry]\ninitial_backoff_ms = 20\nmax_backoff_secs = 1\n"
    );
    toml::from_str(&text).unwrap_or_else(|error| panic!("{text}\n{error}"))
}

async fn deliver_all(relay: &TestRelay, bodies: &[String]) {
    for body in bodies {
        let (status, answer) = relay.deliver(body.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    relay.settle().await;
}

async fn deliveries(relay: &TestRelay, query: &str) -> Vec<Value> {
    let (status, body) = relay.api(&format!("/api/v1/deliveries{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

async fn wait_for_state(relay: &TestRelay, route: &str, state: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let query = format!("?route={route}&state={state}");
    while deliveries(relay, &query).await.len() != count {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {count} {state} deliveries on {route}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn changes(relay: &TestRelay) -> Vec<Value> {
    let (status, body) = relay.api("/api/v1/changes?limit=1000").await;
    assert_eq!(status, 200, "{body}");
    body["changes"].as_array().unwrap().clone()
}

/// Everything a fresh consumer reads from the stream.
async fn read_all(stream: &stream::Stream) -> Vec<jetstream::Message> {
    let consumer = stream
        .create_consumer(consumer::pull::Config::default())
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1000)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        let message = message.unwrap();
        message.ack().await.unwrap();
        messages.push(message);
    }
    messages
}

#[tokio::test]
async fn changes_are_published_with_their_id_and_a_replay_adds_no_duplicates() {
    let stream_name = TestStream::new("KAARMA_RELAY_TEST");
    let prefix = format!("kaarma-relay-test-{}", uuid::Uuid::new_v4().simple());
    let route = nats_route(
        "stream",
        &format!(
            "subject = \"{prefix}.{{dealer}}.{{entity}}.{{kind}}\", create_stream = true, \
             stream = \"{}\", stream_subjects = [\"{prefix}.>\"], duplicate_window_secs = 120",
            stream_name.name
        ),
    );
    let relay = TestRelay::start_with(|config| config.routes = vec![route]).await;
    let mut bodies: Vec<String> = LIFECYCLE
        .iter()
        .map(|name| fixture(&format!("events/{name}.json")))
        .collect();
    bodies.push(fixture("events/customer.json"));
    deliver_all(&relay, &bodies).await;
    wait_for_state(&relay, "stream", "delivered", 7).await;

    let changes = changes(&relay).await;
    assert_eq!(changes.len(), 7);
    let js = jetstream().await;
    let mut stream = js
        .get_stream(&stream_name.name)
        .await
        .expect("the sink created the stream");
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    assert_eq!(info.state.messages, 7);
    let messages = read_all(&stream).await;
    assert_eq!(messages.len(), 7);
    let kinds = [
        "appointment.created",
        "appointment.dms_acknowledged",
        "appointment.rescheduled",
        "appointment.dms_acknowledged",
        "appointment.cancelled",
        "appointment.deleted",
        "customer.received",
    ];
    // Order holds per subject: the customer's change may go out between the appointment's.
    let subject_of = |change: &Value| change["subject"].clone();
    let mut published: Vec<&jetstream::Message> = Vec::new();
    for subject in [subject_of(&changes[0]), subject_of(&changes[6])] {
        published.extend(messages.iter().filter(|message| {
            let body: Value = serde_json::from_slice(&message.payload).unwrap();
            body["subject"] == subject
        }));
    }
    assert_eq!(published.len(), 7);
    for ((message, change), kind) in published.into_iter().zip(&changes).zip(kinds) {
        assert_eq!(
            message.subject.as_str(),
            format!("{prefix}.{DEALER}.{kind}")
        );
        let headers = message.headers.as_ref().expect("headers");
        assert_eq!(
            headers.get("Nats-Msg-Id").map(|id| id.as_str()),
            change["id"].as_str()
        );
        assert_eq!(
            headers.get("Content-Type").map(|id| id.as_str()),
            Some("application/cloudevents+json")
        );
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(&body, change, "the payload is the CloudEvent, in order");
    }

    let ids: Vec<&Value> = changes.iter().map(|change| &change["id"]).collect();
    let (status, body) = relay
        .api_post("/api/v1/routes/stream/replay", json!({"change_ids": ids}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["requeued"], 7);
    wait_for_state(&relay, "stream", "delivered", 7).await;
    let info = stream.info().await.unwrap();
    assert_eq!(
        info.state.messages, 7,
        "JetStream dropped the replayed ids as duplicates"
    );
    assert_eq!(read_all(&stream).await.len(), 7);
    relay.stop().await;
    stream_name.remove().await;
}

#[tokio::test]
async fn the_default_subject_and_no_delivery_without_an_acknowledgement() {
    let stream_name = TestStream::new("KAARMA_RELAY_TEST_DEFAULT");
    // A dealer of its own keeps this test's subjects apart under the default `mykaarma.>`.
    let dealer = format!("dealer-{}", uuid::Uuid::new_v4().simple());
    let route = nats_route("default", "create_stream = false");
    let relay = TestRelay::start_with(|config| config.routes = vec![route]).await;
    deliver_all(&relay, &[for_dealer("appointment-created", &dealer)]).await;

    // No stream captures the subject yet: no acknowledgement, so not delivered.
    wait_for_state(&relay, "default", "failed", 1).await;
    let failed = deliveries(&relay, "?route=default").await;
    let error = failed[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("mykaarma.{dealer}.appointment.created")),
        "{error}"
    );

    let js = jetstream().await;
    let mut stream = js
        .create_stream(stream::Config {
            name: stream_name.name.clone(),
            subjects: vec![format!("mykaarma.{dealer}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    wait_for_state(&relay, "default", "delivered", 1).await;
    let messages = read_all(&stream).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].subject.as_str(),
        format!("mykaarma.{dealer}.appointment.created")
    );
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    relay.stop().await;
    stream_name.remove().await;
}
