//! The `http` sink's configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{HttpSink, SigningSecret};
use crate::config::Secret;
use crate::sinks::SinkConfigError;

/// `sink = { type = "http", url = "…", secret = "whsec_…" }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where to POST.
    pub url: String,
    /// The Standard Webhooks signing secret, `whsec_<base64>`.
    pub secret: Secret,
    /// Extra headers on every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Seconds before an attempt counts as timed out (retryable).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    10
}

impl HttpSinkConfig {
    /// Validates the URL and secret and builds the sink.
    pub fn build(&self) -> Result<HttpSink, SinkConfigError> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|error| SinkConfigError(format!("url {:?}: {error}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SinkConfigError(format!(
                "url {:?}: only http and https",
                self.url
            )));
        }
        let secret = SigningSecret::parse(self.secret.expose()).map_err(SinkConfigError)?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &self.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SinkConfigError(format!("header name {name:?} is not valid")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| SinkConfigError(format!("header {name} has an invalid value")))?;
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(self.timeout_secs.max(1)))
            // A redirect is an answer, not a delivery: following a 302 would re-send the POST
            // as a GET without the body, and a 200 to that would count as delivered.
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .map_err(|error| SinkConfigError(format!("HTTP client: {error}")))?;
        Ok(HttpSink::new(client, url, secret))
    }
}
