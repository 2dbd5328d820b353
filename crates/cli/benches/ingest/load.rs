//! The client: a closed loop of `connections` keep-alive HTTP/1.1 connections, one task each,
//! every task sending its next delivery as soon as the last one is answered. The same code
//! drives both servers.
//!
//! A run is a warm-up followed by a measured window; a request counts when its answer
//! arrives inside the window, and its latency is from just before the request is written to
//! the end of the answer's body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use mykaarma::signature::{AUTHORIZATION_HEADER, SIGNATURE_HEADER};
use tokio::net::TcpStream;

use crate::deliveries::{Deliveries, TOKEN};

/// How long to warm up and how long to measure.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Requests answered before this much time has passed are not counted.
    pub warm_up: Duration,
    /// Requests answered in this much time after the warm-up are counted.
    pub measure: Duration,
}

/// What one run measured.
pub struct Measurement {
    /// Answers that arrived in the measured window.
    pub completed: usize,
    /// Of those, answers other than 200.
    pub non_200: usize,
    /// Requests that failed in transit (counted over the whole run).
    pub failed: usize,
    /// The measured window.
    pub window: Duration,
    /// Latency of every counted request, sorted.
    pub latencies: Vec<Duration>,
}

impl Measurement {
    /// Answers per second in the window.
    pub fn throughput(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank =
            ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1]
    }
}

#[derive(Default)]
struct ConnectionTally {
    completed: usize,
    non_200: usize,
    failed: usize,
    latencies: Vec<Duration>,
}

/// Drives `target` (`POST path`) from `connections` connections for `window`; `run` keeps
/// ids distinct from every other run of the process.
pub async fn drive(
    target: SocketAddr,
    path: &'static str,
    connections: usize,
    window: Window,
    deliveries: Arc<Deliveries>,
    run: u32,
) -> Measurement {
    let started = Instant::now();
    let counted_from = started + window.warm_up;
    let counted_until = counted_from + window.measure;
    let tasks: Vec<_> = (0..connections)
        .map(|connection| {
            let deliveries = deliveries.clone();
            let connection = u32::try_from(connection).expect("fewer than 2^32 connections");
            tokio::spawn(async move {
                let mut tally = ConnectionTally::default();
                let mut sequence = 0_u64;
                'reconnect: while Instant::now() < counted_until {
                    let Ok(mut sender) = connect(target).await else {
                        tally.failed += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    loop {
                        let delivery = deliveries.delivery(run, connection, sequence);
                        sequence += 1;
                        let request = Request::post(path)
                            .header(HOST, target.to_string())
                            .header(CONTENT_TYPE, "text/plain")
                            .header(SIGNATURE_HEADER, delivery.signature)
                            .header(AUTHORIZATION_HEADER, TOKEN)
                            .body(Full::new(delivery.body))
                            .expect("a valid request");
                        if sender.ready().await.is_err() {
                            tally.failed += 1;
                            continue 'reconnect;
                        }
                        let sent = Instant::now();
                        let answer = match sender.send_request(request).await {
                            Ok(response) => {
                                let status = response.status();
                                response.into_body().collect().await.map(|_| status)
                            }
                            Err(error) => Err(error),
                        };
                        let answered = Instant::now();
                        match answer {
                            Ok(status) => {
                                if answered >= counted_from && answered <= counted_until {
                                    tally.completed += 1;
                                    tally.non_200 += usize::from(status != 200);
                                    tally.latencies.push(answered - sent);
                                }
                            }
                            Err(_) => {
                                tally.failed += 1;
                                continue 'reconnect;
                            }
                        }
                        if answered >= counted_until {
                            break 'reconnect;
                        }
                    }
                }
                tally
            })
        })
        .collect();

    let mut measurement = Measurement {
        completed: 0,
        non_200: 0,
        failed: 0,
        window: window.measure,
        latencies: Vec::new(),
    };
    for task in tasks {
        let tally = task.await.expect("a connection task does not panic");
        measurement.completed += tally.completed;
        measurement.non_200 += tally.non_200;
        measurement.failed += tally.failed;
        measurement.latencies.extend(tally.latencies);
    }
    measurement.latencies.sort_unstable();
    measurement
}

async fn connect(target: SocketAddr) -> anyhow::Result<http1::SendRequest<Full<bytes::Bytes>>> {
    let stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}
