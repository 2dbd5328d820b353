//! HTTP basic authentication, as myKaarma's APIs use (`Authorization: Basic …` built from the
//! partner's username and password). A missing or wrong header is answered 401 in the
//! response wrapper, with a `WWW-Authenticate` challenge.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;

use super::response::ApiError;

/// The one username and password the API accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The partner's API username (also myKaarma's current signature secret).
    pub username: String,
    /// The password.
    pub password: String,
}

impl Credentials {
    /// True when `header` is `Basic base64(username:password)` for these credentials.
    pub fn accepts(&self, header: Option<&HeaderValue>) -> bool {
        let Some(encoded) = header
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Basic ")
                    .or(value.strip_prefix("basic "))
            })
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let expected = format!("{}:{}", self.username, self.password);
        bool::from(decoded.as_slice().ct_eq(expected.as_bytes()))
    }
}

/// Middleware: lets the request through only with valid basic-auth credentials.
pub async fn require_basic_auth(
    State(credentials): State<Credentials>,
    request: Request,
    next: Next,
) -> Response {
    if credentials.accepts(request.headers().get(header::AUTHORIZATION)) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "missing or wrong basic-auth credentials",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"kaarma-sim\""),
    );
    response
}
