//! Probes for orchestrators and scrapers: `/healthz` (the process is up), `/readyz` (the
//! store takes writes and has room for more) and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::store::Store;

#[derive(Clone)]
struct ProbeState {
    store: Arc<dyn Store>,
    metrics: PrometheusHandle,
}

/// The probe routes.
pub fn router(store: Arc<dyn Store>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(ProbeState { store, metrics })
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<ProbeState>) -> Response {
    match state.store.check_writable().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "error": error.to_string()})),
        )
            .into_response(),
    }
}

async fn render_metrics(State(state): State<ProbeState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
