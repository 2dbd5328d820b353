//! The `http` sink's I/O: one signed POST per change; the status decides what comes next.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};

use super::{SigningSecret, sign};
use crate::clock;
use crate::sinks::{Delivered, DeliveryError, Sink};
use crate::store::ChangeRecord;

/// Posts changes to one URL.
pub struct HttpSink {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: SigningSecret,
}

impl HttpSink {
    /// A sink posting to `url` with `client`, signing with `secret`.
    pub fn new(client: reqwest::Client, url: reqwest::Url, secret: SigningSecret) -> Self {
        Self {
            client,
            url,
            secret,
        }
    }
}

#[async_trait]
impl Sink for HttpSink {
    async fn deliver(&self, change: &ChangeRecord) -> Result<Delivered, DeliveryError> {
        let body = change.cloudevent.to_string();
        let timestamp = clock::now_millis() / 1000;
        let response = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/cloudevents+json")
            .header("webhook-id", &change.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign(&self.secret, &change.id, timestamp, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .map_err(|error| {
                // Without the URL: it may carry a token, and the error is logged and shown.
                let reason = if error.is_timeout() {
                    "timed out".to_owned()
                } else {
                    format!("request failed: {}", error.without_url())
                };
                DeliveryError::retryable(reason)
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(Delivered {
                status: Some(status.as_u16()),
            });
        }
        let retry_after = retry_after(response.headers());
        let reason = format!("the destination answered {status}");
        if status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Err(DeliveryError::Retryable {
                reason,
                status: Some(status.as_u16()),
                retry_after,
            })
        } else {
            Err(DeliveryError::Permanent {
                reason,
                status: Some(status.as_u16()),
            })
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.timestamp_millis() - clock::now_millis();
    Some(Duration::from_millis(wait.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a past date means now"
        );
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
