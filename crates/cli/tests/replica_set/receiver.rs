//! The downstream system of an HTTP route: records every delivery it gets (the
//! `webhook-id` and the CloudEvent's `subject`) in arrival order, takes a moment to answer so
//! that attempts are in flight when a replica is killed, and answers 200.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// `webhook-id`: the change id.
    pub change_id: String,
    /// The CloudEvent's `subject`: the appointment.
    pub subject: String,
}

/// A running receiver.
pub struct Receiver {
    /// Where it listens.
    pub address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver that answers each delivery after `delay`.
    pub async fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("an address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| record(log.clone(), delay, request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            address,
            received,
            task,
        }
    }

    /// The URL to configure as the route's sink.
    pub fn url(&self) -> String {
        format!("http://{}/changes", self.address)
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    log: Arc<Mutex<Vec<Received>>>,
    delay: Duration,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let change_id = request
        .headers()
        .get("webhook-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes());
    let event: Value = body
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null);
    let subject = event["subject"].as_str().unwrap_or_default().to_owned();
    log.lock().unwrap().push(Received { change_id, subject });
    tokio::time::sleep(delay).await;
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}
