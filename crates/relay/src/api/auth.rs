//! Who may use the API: holders of the bearer `admin_token`, or, when none is configured,
//! clients on the loopback interface only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// The API's access rule.
#[derive(Debug, Clone)]
pub struct AdminAuth {
    /// The bearer token; `None` means loopback clients only.
    pub token: Option<Secret>,
}

/// Middleware: lets the request through or answers 401/403 with a JSON error.
pub async fn require_admin(
    State(auth): State<Arc<AdminAuth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let denied =
        |status: StatusCode, error: &str| (status, Json(json!({"error": error}))).into_response();
    match &auth.token {
        Some(token) => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(str::trim);
            match presented {
                Some(presented)
                    if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) =>
                {
                    next.run(request).await
                }
                Some(_) => denied(StatusCode::UNAUTHORIZED, "wrong bearer token"),
                None => denied(
                    StatusCode::UNAUTHORIZED,
                    "missing bearer token (Authorization: Bearer …)",
                ),
            }
        }
        None if peer.ip().is_loopback() => next.run(request).await,
        None => denied(
            StatusCode::FORBIDDEN,
            "no admin_token is configured, so the API answers loopback clients only",
        ),
    }
}
