//! The downstream system the relay delivers to: a hyper 1.x HTTP/1.1 server on loopback, on
//! a runtime of its own, that answers every POST with 200 and records, for each change it
//! has not seen before (deliveries are at-least-once; the CloudEvent `id` is stable), how
//! long after the relay received the source event it arrived: now − `data.origin.received_at`
//! (RFC 3339 with milliseconds, written by the relay).

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// The path the relay's route posts to.
pub const PATH: &str = "/changes";

/// A running receiver.
pub struct ChangeReceiver {
    /// Where it listens.
    pub address: SocketAddr,
    received: Arc<Mutex<Received>>,
    runtime: Runtime,
}

/// What arrived so far.
#[derive(Default)]
struct Received {
    ids: HashSet<String>,
    lags_ms: Vec<i64>,
    first: Option<Instant>,
    last: Option<Instant>,
    repeats: usize,
    unreadable: usize,
}

/// What a receiver got, ready to report.
pub struct Arrivals {
    /// Distinct changes.
    pub changes: usize,
    /// Deliveries of a change already received.
    pub repeats: usize,
    /// Bodies without a readable `id` or `data.origin.received_at`.
    pub unreadable: usize,
    /// Receipt-to-delivery lag of every distinct change, sorted, in milliseconds.
    pub lags_ms: Vec<i64>,
    /// When the first and the last distinct change arrived.
    pub span: Option<(Instant, Instant)>,
}

impl Arrivals {
    /// The `q` quantile (0..=1) of the lags, in milliseconds.
    pub fn lag_quantile(&self, q: f64) -> i64 {
        if self.lags_ms.is_empty() {
            return 0;
        }
        let rank = ((self.lags_ms.len() as f64 * q).ceil() as usize).clamp(1, self.lags_ms.len());
        self.lags_ms[rank - 1]
    }
}

impl ChangeReceiver {
    /// Starts listening on an ephemeral loopback port. Call from outside any runtime.
    pub fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("change-receiver")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let address = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Received::default()));
        runtime.spawn(serve(listener, received.clone()));
        Ok(Self {
            address,
            received,
            runtime,
        })
    }

    /// The URL to give the relay's route.
    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.address)
    }

    /// Distinct changes received so far.
    pub fn changes(&self) -> usize {
        self.received.lock().expect("not poisoned").ids.len()
    }

    /// Waits until `count` distinct changes have arrived or `timeout` passes; `true` if they
    /// did.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while self.changes() < count {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// What arrived since the last call, and forgets it.
    pub fn take(&self) -> Arrivals {
        let received = std::mem::take(&mut *self.received.lock().expect("not poisoned"));
        let mut lags_ms = received.lags_ms;
        lags_ms.sort_unstable();
        Arrivals {
            changes: received.ids.len(),
            repeats: received.repeats,
            unreadable: received.unreadable,
            lags_ms,
            span: received.first.zip(received.last),
        }
    }

    /// Stops serving.
    pub fn stop(self) {
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

async fn serve(listener: TcpListener, received: Arc<Mutex<Received>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let received = received.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, received.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    received: Arc<Mutex<Received>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Ok(body) = request.into_body().collect().await {
        let arrived = Instant::now();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64);
        record(&body.to_bytes(), arrived, now_ms, &received);
    }
    Ok(Response::new(Full::new(Bytes::new())))
}

fn record(body: &[u8], arrived: Instant, now_ms: i64, received: &Mutex<Received>) {
    let change: Option<(String, i64)> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|event| {
            let id = event["id"].as_str()?.to_owned();
            let received_at = epoch_millis(event["data"]["origin"]["received_at"].as_str()?)?;
            Some((id, received_at))
        });
    let mut received = received.lock().expect("not poisoned");
    let Some((id, received_at)) = change else {
        received.unreadable += 1;
        return;
    };
    if !received.ids.insert(id) {
        received.repeats += 1;
        return;
    }
    received.lags_ms.push(now_ms - received_at);
    received.first.get_or_insert(arrived);
    received.last = Some(arrived);
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (the relay's RFC 3339) as epoch milliseconds.
fn epoch_millis(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 24 || bytes[23] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second, milli) = (
        number(11..13)?,
        number(14..16)?,
        number(17..19)?,
        number(20..23)?,
    );
    // Days from 1970-01-01 to the civil date (Howard Hinnant's `days_from_civil`).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + milli)
}
