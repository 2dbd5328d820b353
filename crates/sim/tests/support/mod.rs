//! Test servers on random ports: a recording webhook endpoint with scripted answers, and a
//! small but faithful receiver ("fake relay") that verifies, deduplicates, projects newest
//! by timestamp and serves the relay's appointments query API.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mykaarma::{AppointmentEventName, Envelope, SignatureScope, signature};
use serde::Deserialize;
use serde_json::{Value, json};

/// One request as the endpoint received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub arrived: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type Script = dyn Fn(usize) -> (StatusCode, Duration) + Send + Sync;

#[derive(Clone)]
struct RecorderState {
    requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Script>,
}

/// A webhook endpoint that records every request and answers as its script says for the
/// n-th request (0-based): a status, after a delay.
pub struct Recorder {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    pub async fn start(
        script: impl Fn(usize) -> (StatusCode, Duration) + Send + Sync + 'static,
    ) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = RecorderState {
            requests: Arc::clone(&requests),
            script: Arc::new(script),
        };
        let router = axum::Router::new()
            .route("/hook", post(record))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { url, requests }
    }

    /// Answers 200 at once.
    pub async fn accepting() -> Self {
        Self::start(|_| (StatusCode::OK, Duration::ZERO)).await
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn record(State(state): State<RecorderState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let index = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(Recorded {
            arrived: Instant::now(),
            headers,
            body,
        });
        requests.len() - 1
    };
    let (status, delay) = (state.script)(index);
    tokio::time::sleep(delay).await;
    status
}

/// What the fake relay knows of one appointment.
#[derive(Debug, Clone)]
pub struct Projected {
    pub timestamp: i64,
    pub row: Value,
}

#[derive(Default)]
pub struct RelayState {
    pub seen: HashSet<(String, String)>,
    pub appointments: BTreeMap<String, Projected>,
    pub duplicates: usize,
    pub failed_payloads: usize,
    pub stale: usize,
    pub legacy: usize,
}

#[derive(Clone)]
struct RelayContext {
    state: Arc<Mutex<RelayState>>,
    secret: String,
    token: String,
    api_token: String,
}

/// A minimal receiver with the relay's contract: 401 without the right token and signature,
/// dedup on (type, id), payload failures kept apart, newest timestamp wins, and
/// `GET /api/v1/appointments` paged with a cursor.
pub struct FakeRelay {
    pub base_url: String,
    pub webhook_url: String,
    pub state: Arc<Mutex<RelayState>>,
}

impl FakeRelay {
    pub async fn start(secret: &str, token: &str, api_token: &str) -> Self {
        let state = Arc::new(Mutex::new(RelayState::default()));
        let context = RelayContext {
            state: Arc::clone(&state),
            secret: secret.into(),
            token: token.into(),
            api_token: api_token.into(),
        };
        let router = axum::Router::new()
            .route("/webhooks/mykaarma", post(ingest))
            .route("/api/v1/appointments", get(appointments))
            .with_state(context);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            webhook_url: format!("{base_url}/webhooks/mykaarma"),
            base_url,
            state,
        }
    }

    /// Serves rows as given (for testing `verify` alone).
    pub fn insert_row(&self, row: Value) {
        let uuid = row["uuid"].as_str().unwrap().to_owned();
        self.state
            .lock()
            .unwrap()
            .appointments
            .insert(uuid, Projected { timestamp: 0, row });
    }

    pub fn edit_row(&self, uuid: &str, edit: impl FnOnce(&mut Value)) {
        let mut state = self.state.lock().unwrap();
        edit(&mut state.appointments.get_mut(uuid).unwrap().row);
    }
}

async fn ingest(State(context): State<RelayContext>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if header("content-type") != Some("text/plain")
        || header(signature::AUTHORIZATION_HEADER) != Some(context.token.as_str())
        || signature::verify(
            context.secret.as_bytes(),
            header(signature::SIGNATURE_HEADER),
            &body,
            SignatureScope::Body,
        )
        .is_err()
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(envelope) = Envelope::parse(&body) else {
        return (StatusCode::BAD_REQUEST, "not an envelope").into_response();
    };
    let mut state = context.state.lock().unwrap();
    if !state
        .seen
        .insert((envelope.event_type.to_string(), envelope.id.clone()))
    {
        state.duplicates += 1;
        return Json(json!({"status": "duplicate"})).into_response();
    }
    if matches!(envelope.format, mykaarma::EnvelopeFormat::Legacy { .. }) {
        state.legacy += 1;
    }
    let Ok(event) = envelope.appointment() else {
        state.failed_payloads += 1;
        return Json(json!({"status": "stored", "payload": "failed"})).into_response();
    };
    let (Some(uuid), Some(info)) = (
        event.appointment_uuid().map(str::to_owned),
        event.appointment_info_response.as_ref(),
    ) else {
        state.failed_payloads += 1;
        return Json(json!({"status": "stored", "payload": "failed"})).into_response();
    };
    let timestamp = envelope.timestamp.unwrap_or(0);
    if state
        .appointments
        .get(&uuid)
        .is_some_and(|known| known.timestamp > timestamp)
    {
        state.stale += 1;
        return Json(json!({"status": "stored"})).into_response();
    }
    let row = json!({
        "uuid": uuid,
        "dealer_uuid": envelope.dealer_uuid,
        "department_uuid": envelope.department_uuid,
        "status": info.status,
        "new_status": info.new_status,
        "appointment_key": info.appointment_key,
        "start_time": info.start_time.as_ref().map(|time| time.original()),
        "end_time": info.end_time.as_ref().map(|time| time.original()),
        "is_cancelled": info.is_cancelled,
        "deleted": event.event == Some(AppointmentEventName::Deleted),
        "version": {"timestamp": timestamp, "event_id": envelope.id},
        "updated_at": "2026-01-01T00:00:00Z",
        "appointment": serde_json::to_value(info).unwrap(),
    });
    state
        .appointments
        .insert(uuid, Projected { timestamp, row });
    Json(json!({"status": "stored"})).into_response()
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn appointments(
    State(context): State<RelayContext>,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> Response {
    let expected = format!("Bearer {}", context.api_token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "unauthorized"})),
        )
            .into_response();
    }
    let state = context.state.lock().unwrap();
    let offset: usize = query.cursor.as_deref().map_or(0, |c| c.parse().unwrap());
    // A small page size even when asked for more, so paging is exercised.
    let limit = query.limit.unwrap_or(100).min(7);
    let rows: Vec<Value> = state
        .appointments
        .values()
        .skip(offset)
        .take(limit)
        .map(|projected| projected.row.clone())
        .collect();
    let next =
        (offset + rows.len() < state.appointments.len()).then(|| (offset + rows.len()).to_string());
    Json(json!({"appointments": rows, "next_cursor": next})).into_response()
}
