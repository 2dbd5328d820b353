//! Sinks: where a route delivers its changes. Every sink implements [`Sink`] and lives in a
//! folder of the same shape: `config.rs` (the user's TOML, validated, building the sink) and
//! `sink.rs` (the I/O).
//!
//! - `http`: POST the CloudEvent, signed per the Standard Webhooks spec;
//! - `nats`: publish to NATS JetStream with `Nats-Msg-Id` = the change id;
//! - `file` / `stdout`: append JSON Lines (fsynced for files).

pub mod file;
pub mod http;
pub mod nats;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::store::ChangeRecord;

/// A destination for changes.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Delivers one change. `Ok` only when the destination has it (a 2xx, a JetStream ack,
    /// an fsync).
    async fn deliver(&self, change: &ChangeRecord) -> Result<Delivered, DeliveryError>;
}

/// A successful delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivered {
    /// The HTTP status, for HTTP sinks.
    pub status: Option<u16>,
}

/// A failed delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth trying again later (timeouts, 429, 5xx, connection errors).
    #[error("{reason}")]
    Retryable {
        /// What happened.
        reason: String,
        /// The HTTP status, if there was one.
        status: Option<u16>,
        /// How long the destination asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Trying again will not help (4xx other than 408 and 429, redirects): the delivery is
    /// dead at once.
    #[error("{reason}")]
    Permanent {
        /// What happened.
        reason: String,
        /// The HTTP status, if there was one.
        status: Option<u16>,
    },
}

impl DeliveryError {
    /// A retryable failure without an HTTP status.
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::Retryable {
            reason: reason.into(),
            status: None,
            retry_after: None,
        }
    }

    /// The HTTP status, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Retryable { status, .. } | Self::Permanent { status, .. } => *status,
        }
    }
}

/// The `sink` table of a route.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// An HTTP endpoint.
    Http(http::HttpSinkConfig),
    /// A NATS JetStream subject.
    Nats(nats::NatsSinkConfig),
    /// A JSON Lines file.
    File(file::FileSinkConfig),
    /// JSON Lines on standard output.
    Stdout(file::StdoutSinkConfig),
}

/// Why a sink could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkConfigError(pub String);

impl SinkConfig {
    /// Builds the sink.
    pub fn build(&self) -> Result<Box<dyn Sink>, SinkConfigError> {
        Ok(match self {
            Self::Http(config) => Box::new(config.build()?),
            Self::Nats(config) => Box::new(config.build()?),
            Self::File(config) => Box::new(config.build()?),
            Self::Stdout(config) => Box::new(config.build()),
        })
    }

    /// The longest one attempt may take, for sinks with a timeout.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        match self {
            Self::Http(config) => Some(Duration::from_secs(config.timeout_secs)),
            Self::Nats(config) => Some(Duration::from_secs(config.timeout_secs)),
            Self::File(_) | Self::Stdout(_) => None,
        }
    }

    /// The sink type and its destination, with nothing secret in it.
    pub fn describe(&self) -> serde_json::Value {
        match self {
            Self::Http(config) => serde_json::json!({"type": "http", "url": config.url}),
            Self::Nats(config) => {
                serde_json::json!({"type": "nats", "url": config.url, "subject": config.subject})
            }
            Self::File(config) => serde_json::json!({"type": "file", "path": config.path}),
            Self::Stdout(_) => serde_json::json!({"type": "stdout"}),
        }
    }
}
