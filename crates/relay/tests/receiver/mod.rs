//! A webhook receiver as a careful partner runs one: it verifies every request's Standard
//! Webhooks signature itself (written from the spec, not with the relay's code), records what
//! it saw, and can be told to fail, be down, refuse or ask for patience.

// Shared by several test files, each of which uses part of it.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::task::JoinHandle;

/// The signing secret every test route uses (the Standard Webhooks spec's example secret).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How far `webhook-timestamp` may be from now, as the spec recommends.
const TOLERANCE_SECS: i64 = 5 * 60;

/// One request that passed signature verification.
#[derive(Debug, Clone)]
pub struct Request {
    /// `webhook-id`.
    pub webhook_id: String,
    /// The CloudEvent's `subject` (the appointment).
    pub subject: String,
    /// The body.
    pub event: Value,
    /// Every header.
    pub headers: HeaderMap,
    /// What the receiver answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

/// One answer: a status and an optional `Retry-After`.
#[derive(Debug, Clone)]
pub struct Answer {
    status: u16,
    retry_after: Option<String>,
}

impl Answer {
    /// Answers `status`.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
        }
    }

    /// Answers `status` with `Retry-After: {retry_after}`.
    pub fn retry_after(status: u16, retry_after: &str) -> Self {
        Self {
            status,
            retry_after: Some(retry_after.to_owned()),
        }
    }
}

/// How the receiver answers, checked in this order.
#[derive(Debug, Default)]
struct Script {
    /// Answers for the next requests, one each.
    next: VecDeque<Answer>,
    /// The answer to every request (a destination that is down, or refuses).
    always: Option<Answer>,
    /// Appointments whose requests get a 500.
    failing: HashSet<String>,
    /// Every `n`th request gets a 503.
    fail_every: Option<usize>,
    /// How long each request takes.
    delay: Duration,
}

#[derive(Default)]
struct Seen {
    requests: Vec<Request>,
    /// Requests whose signature did not verify, with the reason.
    rejected: Vec<String>,
    /// Requests in flight per appointment, and how often two overlapped.
    in_flight: HashMap<String, usize>,
    overlaps: usize,
    /// Requests in flight overall, and the most at once.
    total_in_flight: usize,
    most_in_flight: usize,
    count: usize,
}

struct Shared {
    key: Vec<u8>,
    script: Mutex<Script>,
    seen: Mutex<Seen>,
}

/// A running receiver on 127.0.0.1.
pub struct Receiver {
    /// The URL to post to.
    pub url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver that verifies with [`SECRET`] and answers 200.
    pub async fn start() -> Self {
        let key = STANDARD
            .decode(SECRET.strip_prefix("whsec_").unwrap())
            .unwrap();
        let shared = Arc::new(Shared {
            key,
            script: Mutex::new(Script::default()),
            seen: Mutex::new(Seen::default()),
        });
        let router = Router::new()
            .route("/hook", post(receive))
            .route("/elsewhere", any(|| async { StatusCode::OK }))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { url, shared, task }
    }

    /// Answers the next `n` requests with 503.
    pub fn fail_next(&self, n: usize) {
        let mut script = self.shared.script.lock().unwrap();
        script.next.extend((0..n).map(|_| Answer::status(503)));
    }

    /// Answers the next request with `answer`.
    pub fn answer_next(&self, answer: Answer) {
        self.shared.script.lock().unwrap().next.push_back(answer);
    }

    /// Answers every request with `answer` (`None`: back to normal).
    pub fn answer_always(&self, answer: Option<Answer>) {
        self.shared.script.lock().unwrap().always = answer;
    }

    /// Answers 503 to every request: the destination is down.
    pub fn go_down(&self) {
        self.answer_always(Some(Answer::status(503)));
    }

    /// Answers normally again.
    pub fn come_back(&self) {
        self.answer_always(None);
    }

    /// Answers 500 to every request about `appointment` (`false`: no longer).
    pub fn fail_appointment(&self, appointment: &str, failing: bool) {
        let mut script = self.shared.script.lock().unwrap();
        if failing {
            script.failing.insert(appointment.to_owned());
        } else {
            script.failing.remove(appointment);
        }
    }

    /// Answers 503 to every `n`th request.
    pub fn fail_every(&self, n: usize) {
        self.shared.script.lock().unwrap().fail_every = Some(n);
    }

    /// Takes `delay` over every request.
    pub fn delay(&self, delay: Duration) {
        self.shared.script.lock().unwrap().delay = delay;
    }

    /// Every verified request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.seen.lock().unwrap().requests.clone()
    }

    /// The verified requests it answered with a 2xx.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|request| (200..300).contains(&request.status))
            .collect()
    }

    /// The `webhook-id`s it accepted, in order.
    pub fn accepted_ids(&self) -> Vec<String> {
        self.accepted()
            .into_iter()
            .map(|request| request.webhook_id)
            .collect()
    }

    /// Requests whose signature did not verify.
    pub fn rejected(&self) -> Vec<String> {
        self.shared.seen.lock().unwrap().rejected.clone()
    }

    /// How often a request arrived while another one for the same appointment was in flight.
    pub fn overlaps(&self) -> usize {
        self.shared.seen.lock().unwrap().overlaps
    }

    /// The most requests in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.shared.seen.lock().unwrap().most_in_flight
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let webhook_id = match verify(&shared.key, &headers, &body) {
        Ok(id) => id,
        Err(reason) => {
            shared.seen.lock().unwrap().rejected.push(reason);
            return StatusCode::UNAUTHORIZED.into_response();
        }
    };
    let event: Value = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(error) => {
            shared
                .seen
                .lock()
                .unwrap()
                .rejected
                .push(format!("not JSON: {error}"));
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    if event["id"] != webhook_id.as_str() {
        let reason = format!(
            "webhook-id {webhook_id} is not the CloudEvent id {}",
            event["id"]
        );
        shared.seen.lock().unwrap().rejected.push(reason);
        return StatusCode::BAD_REQUEST.into_response();
    }
    let subject = event["subject"].as_str().unwrap_or_default().to_owned();
    let at = Instant::now();
    let (answer, delay) = {
        let mut seen = shared.seen.lock().unwrap();
        seen.count += 1;
        let count = seen.count;
        let running = seen.in_flight.entry(subject.clone()).or_default();
        *running += 1;
        if *running > 1 {
            seen.overlaps += 1;
        }
        seen.total_in_flight += 1;
        seen.most_in_flight = seen.most_in_flight.max(seen.total_in_flight);
        let mut script = shared.script.lock().unwrap();
        let answer = script
            .next
            .pop_front()
            .or_else(|| script.always.clone())
            .or_else(|| {
                script
                    .failing
                    .contains(&subject)
                    .then(|| Answer::status(500))
            })
            .or_else(|| {
                script
                    .fail_every
                    .filter(|n| count % n == 0)
                    .map(|_| Answer::status(503))
            })
            .unwrap_or(Answer::status(200));
        (answer, script.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut seen = shared.seen.lock().unwrap();
    *seen.in_flight.get_mut(&subject).unwrap() -= 1;
    seen.total_in_flight -= 1;
    seen.requests.push(Request {
        webhook_id,
        subject,
        event,
        headers,
        status: answer.status,
        at,
    });
    let status = StatusCode::from_u16(answer.status).unwrap();
    let mut response = status.into_response();
    if let Some(retry_after) = answer.retry_after {
        response
            .headers_mut()
            .insert("retry-after", retry_after.parse().unwrap());
    }
    if status.is_redirection() {
        let location = "/elsewhere".parse().unwrap();
        response.headers_mut().insert("location", location);
    }
    response
}

/// Standard Webhooks verification: the signed content is `{id}.{timestamp}.{body}`, the key is
/// the base64 after `whsec_`, the header a space-separated list of `v1,<base64 HMAC-SHA256>`
/// of which one must match; the timestamp must be within the tolerance. Returns the id.
pub fn verify(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| format!("no {name} header"))
    };
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    let seconds: i64 = timestamp
        .parse()
        .map_err(|_| format!("webhook-timestamp {timestamp:?} is not integer seconds"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - seconds).abs() > TOLERANCE_SECS {
        return Err(format!("webhook-timestamp {seconds} is too far from {now}"));
    }
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let signatures = header("webhook-signature")?;
    let verified = signatures.split(' ').any(|candidate| {
        let Some(("v1", encoded)) = candidate.split_once(',') else {
            return false;
        };
        let Ok(signature) = STANDARD.decode(encoded) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(&signed);
        mac.verify_slice(&signature).is_ok()
    });
    if verified {
        Ok(id.to_owned())
    } else {
        Err(format!("no v1 signature in {signatures:?} matches"))
    }
}
