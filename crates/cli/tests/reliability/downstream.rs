//! The downstream system of an HTTP route, as a careful partner runs one: it checks every
//! request's Standard Webhooks signature itself (HMAC over `{id}.{timestamp}.{body}`, written
//! from the spec), records what it accepted in arrival order, and can be taken down (its
//! port closed, so the relay's attempts are refused) and brought back on the same port.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};

/// The raw signing key; the route's secret is `whsec_` and its base64.
const SIGNING_KEY: &[u8] = b"reliability-suite-signing-key-0123";

/// One delivery the receiver accepted.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `webhook-id`: the change id.
    pub webhook_id: String,
    /// The CloudEvent's `subject`: the appointment.
    pub subject: String,
    /// `data.origin.event_type` and `data.origin.event_id`: the myKaarma event it came from.
    pub origin: (String, String),
}

#[derive(Default)]
struct Seen {
    accepted: Vec<Delivery>,
    rejected: Vec<String>,
}

/// A receiver on a fixed loopback port.
pub struct Downstream {
    /// Where it listens, up or down.
    pub address: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Downstream {
    /// The route secret to configure: `whsec_<base64 of the key>`.
    pub fn secret() -> String {
        format!("whsec_{}", BASE64.encode(SIGNING_KEY))
    }

    /// Starts a receiver on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("an address");
        let mut downstream = Self {
            address,
            seen: Arc::default(),
            server: None,
        };
        downstream.serve(listener);
        downstream
    }

    /// The URL to configure as the route's sink.
    pub fn url(&self) -> String {
        format!("http://{}/changes", self.address)
    }

    fn serve(&mut self, listener: TcpListener) {
        let seen = self.seen.clone();
        self.server = Some(tokio::spawn(async move {
            // The connections live in the server task, so aborting it closes them too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let seen = seen.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| receive(seen.clone(), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }

    /// Closes the port and every open connection: attempts now fail to connect.
    pub async fn go_down(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens on the same port again.
    pub async fn come_back(&mut self) {
        let listener = TcpListener::bind(self.address)
            .await
            .expect("the receiver's port is free again");
        self.serve(listener);
    }

    /// Every accepted delivery, in arrival order.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().accepted.clone()
    }

    /// Requests that failed the signature check, with the reason.
    pub fn rejected(&self) -> Vec<String> {
        self.seen.lock().unwrap().rejected.clone()
    }

    /// How many distinct change ids it accepted.
    pub fn distinct(&self) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.accepted
            .iter()
            .map(|delivery| delivery.webhook_id.as_str())
            .collect::<HashSet<_>>()
            .len()
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Checks that no myKaarma event reached the receiver under two change ids, and that each
/// appointment's changes first arrived in `expected` order (the relay's stream order, per
/// subject). Redeliveries (at least once) are allowed; they are counted and returned.
pub fn assert_unique_and_ordered(
    accepted: &[Delivery],
    expected: &HashMap<String, Vec<String>>,
) -> usize {
    let mut ids_per_origin: HashMap<&(String, String), HashSet<&str>> = HashMap::new();
    for delivery in accepted {
        ids_per_origin
            .entry(&delivery.origin)
            .or_default()
            .insert(&delivery.webhook_id);
    }
    let twice: Vec<_> = ids_per_origin
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "one event under several change ids: {twice:?}"
    );

    let mut first_seen: HashSet<&str> = HashSet::new();
    let mut arrived: HashMap<&str, Vec<String>> = HashMap::new();
    let mut redeliveries = 0;
    for delivery in accepted {
        if first_seen.insert(&delivery.webhook_id) {
            arrived
                .entry(&delivery.subject)
                .or_default()
                .push(delivery.webhook_id.clone());
        } else {
            redeliveries += 1;
        }
    }
    for (subject, order) in expected {
        let got = arrived.get(subject.as_str()).cloned().unwrap_or_default();
        assert_eq!(
            &got, order,
            "the changes of {subject} arrived out of order or incomplete"
        );
    }
    let unexpected: Vec<&&str> = arrived
        .keys()
        .filter(|s| !expected.contains_key(**s))
        .collect();
    assert!(
        unexpected.is_empty(),
        "changes of unknown subjects: {unexpected:?}"
    );
    redeliveries
}

async fn receive(
    seen: Arc<Mutex<Seen>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signatures) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(answer(StatusCode::BAD_REQUEST)),
    };
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(&body);
    let expected = BASE64.encode(hmac_sha256(SIGNING_KEY, &signed));
    let verified = signatures
        .split(' ')
        .any(|candidate| candidate.strip_prefix("v1,") == Some(expected.as_str()));
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut seen = seen.lock().unwrap();
    if !verified || event["id"] != id.as_str() {
        seen.rejected
            .push(format!("webhook-id {id:?}: signature {signatures:?}"));
        return Ok(answer(StatusCode::UNAUTHORIZED));
    }
    let origin = &event["data"]["origin"];
    seen.accepted.push(Delivery {
        webhook_id: id,
        subject: event["subject"].as_str().unwrap_or_default().to_owned(),
        origin: (
            origin["event_type"].as_str().unwrap_or_default().to_owned(),
            origin["event_id"].as_str().unwrap_or_default().to_owned(),
        ),
    });
    Ok(answer(StatusCode::OK))
}

fn answer(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// HMAC-SHA256 through the `mykaarma` crate's signer (which is plain HMAC-SHA256 in hex),
/// so the check needs no crypto crate of its own and none of the relay's code.
fn hmac_sha256(key: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(bytes);
    mac.finalize().into_bytes().to_vec()
}
