//! The webhook endpoint myKaarma posts to.
//!
//! A delivery is answered 2xx only once its raw body is committed: new events `200
//! accepted`, repeats `200 duplicate`, verified but unusable bodies `202 quarantined`. Bad
//! credentials get 401, oversize bodies 413, strangers 403, and a store that cannot commit
//! 503 so that myKaarma retries. The ack path reads the envelope and nothing more.

mod gate;
mod group_commit;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use mykaarma::Envelope;
use serde_json::json;
use sha2::{Digest, Sha256};

pub use gate::{Gate, Rejection};
pub use group_commit::GroupCommit;

use crate::clock;
use crate::store::{Insertion, NewEvent, NewQuarantine, Store};

/// What the endpoint needs: the checks, the writer and the store (for quarantine).
pub struct Ingest {
    /// Source, size and credential checks.
    pub gate: Gate,
    /// The batched writer for events.
    pub writer: GroupCommit,
    /// The store, for quarantine.
    pub store: Arc<dyn Store>,
}

/// How a delivery was answered.
enum Outcome {
    Stored(Insertion, Envelope),
    Quarantined { error: String },
    Rejected(Rejection),
    Unavailable(String),
}

/// `POST {mykaarma.path}`: verify, store, answer.
#[tracing::instrument(name = "ingest", skip_all, fields(peer = %peer))]
pub async fn receive(
    State(ingest): State<Arc<Ingest>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    metrics::counter!("kaarma_relay_webhooks_received_total").increment(1);
    let outcome = admit(&ingest, peer, &headers, body).await;
    let response = respond(&outcome);
    metrics::histogram!("kaarma_relay_ack_seconds").record(started.elapsed());
    response
}

async fn admit(ingest: &Ingest, peer: SocketAddr, headers: &HeaderMap, body: Body) -> Outcome {
    if let Err(rejection) = ingest.gate.check_source(peer, headers) {
        return Outcome::Rejected(rejection);
    }
    let body = match read_body(headers, body, ingest.gate.max_body_bytes).await {
        Ok(body) => body,
        Err(rejection) => return Outcome::Rejected(rejection),
    };
    if let Err(rejection) = ingest.gate.check_credentials(headers, &body) {
        return Outcome::Rejected(rejection);
    }
    let received_at = clock::now_millis();
    let envelope = match Envelope::parse(&body) {
        Ok(envelope) => envelope,
        Err(error) => return quarantine(ingest, body, error.to_string(), received_at).await,
    };
    let event = NewEvent {
        event_type: envelope.event_type.as_str().to_owned(),
        event_id: envelope.id.clone(),
        occurred_at: envelope.timestamp,
        dealer_uuid: envelope.dealer_uuid.clone(),
        department_uuid: envelope.department_uuid.clone(),
        received_at,
        raw: body,
    };
    match ingest.writer.insert(event).await {
        Ok(insertion) => Outcome::Stored(insertion, envelope),
        Err(error) => Outcome::Unavailable(error.to_string()),
    }
}

/// Reads the body, refusing more than `limit` bytes (early, when `content-length` says so).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Rejection::BodyTooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Rejection::BodyTooLarge(limit))
        }
        Err(error) => Err(Rejection::UnreadableBody(error.to_string())),
    }
}

async fn quarantine(ingest: &Ingest, raw: Bytes, error: String, received_at: i64) -> Outcome {
    let item = NewQuarantine {
        sha256: hex::encode(Sha256::digest(&raw)),
        error,
        raw,
        received_at,
    };
    match ingest.store.quarantine(&item).await {
        Ok(_) => Outcome::Quarantined { error: item.error },
        Err(error) => Outcome::Unavailable(error.to_string()),
    }
}

fn respond(outcome: &Outcome) -> Response {
    match outcome {
        Outcome::Stored(insertion, envelope) => {
            let status = match insertion {
                Insertion::Accepted => {
                    metrics::counter!("kaarma_relay_webhooks_accepted_total").increment(1);
                    "accepted"
                }
                Insertion::Duplicate => {
                    metrics::counter!("kaarma_relay_webhooks_duplicate_total").increment(1);
                    "duplicate"
                }
            };
            tracing::debug!(status, id = %envelope.id, r#type = %envelope.event_type, "stored");
            let body = json!({"status": status, "type": envelope.event_type, "id": envelope.id});
            (StatusCode::OK, Json(body)).into_response()
        }
        Outcome::Quarantined { error } => {
            metrics::counter!("kaarma_relay_webhooks_quarantined_total").increment(1);
            tracing::warn!(%error, "quarantined a verified but malformed delivery");
            let body = json!({"status": "quarantined", "error": error});
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Outcome::Rejected(rejection) => {
            let reason = rejection.reason();
            metrics::counter!("kaarma_relay_webhooks_rejected_total", "reason" => reason)
                .increment(1);
            tracing::info!(reason, "rejected a delivery");
            let body =
                json!({"status": "rejected", "reason": reason, "error": rejection.to_string()});
            (rejection.status(), Json(body)).into_response()
        }
        Outcome::Unavailable(error) => {
            metrics::counter!("kaarma_relay_webhooks_unavailable_total").increment(1);
            tracing::error!(%error, "answered 503: nothing was committed");
            let body = json!({"status": "unavailable", "error": "the store could not commit the event; retry later"});
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                Json(body),
            )
                .into_response()
        }
    }
}
