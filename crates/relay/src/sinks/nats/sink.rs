//! The `nats` sink's I/O: a lazily connected JetStream context and one publish per change.

use std::time::Duration;

use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::NatsSinkConfig;
use crate::sinks::{Delivered, DeliveryError, Sink};
use crate::store::ChangeRecord;

/// Publishes changes to JetStream.
pub struct NatsSink {
    config: NatsSinkConfig,
    context: OnceCell<Context>,
}

impl NatsSink {
    /// A sink that connects at its first delivery (so a NATS outage never stops the relay
    /// from starting; deliveries retry until it is back).
    pub fn new(config: NatsSinkConfig) -> Self {
        Self {
            config,
            context: OnceCell::new(),
        }
    }

    async fn context(&self) -> Result<&Context, DeliveryError> {
        self.context
            .get_or_try_init(|| async {
                let client = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(self.config.timeout_secs.max(1)))
                    .connect(&self.config.url)
                    .await
                    .map_err(|error| {
                        DeliveryError::retryable(format!("connect to {}: {error}", self.config.url))
                    })?;
                let mut context = jetstream::new(client);
                context.set_timeout(Duration::from_secs(self.config.timeout_secs.max(1)));
                if self.config.create_stream {
                    context
                        .get_or_create_stream(jetstream::stream::Config {
                            name: self.config.stream.clone(),
                            subjects: self.config.stream_subjects.clone(),
                            duplicate_window: Duration::from_secs(
                                self.config.duplicate_window_secs,
                            ),
                            ..Default::default()
                        })
                        .await
                        .map_err(|error| {
                            DeliveryError::retryable(format!(
                                "create stream {}: {error}",
                                self.config.stream
                            ))
                        })?;
                }
                Ok(context)
            })
            .await
    }

    /// The subject for `change`, from the template.
    pub fn subject_for(&self, change: &ChangeRecord) -> String {
        let event = &change.cloudevent;
        let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
        let entity = text("/type")
            .and_then(|kind| kind.strip_prefix("com.mykaarma."))
            .and_then(|rest| rest.rsplit_once('.'))
            .map(|(entity, _)| entity);
        let token = |value: Option<&str>| -> String {
            let cleaned: String = value
                .unwrap_or("unknown")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if cleaned.is_empty() {
                "unknown".into()
            } else {
                cleaned
            }
        };
        self.config
            .subject
            .replace("{dealer}", &token(text("/data/origin/dealer_uuid")))
            .replace("{department}", &token(text("/data/origin/department_uuid")))
            .replace("{entity}", &token(entity))
            .replace("{kind}", change.kind.as_str())
            .replace("{subject}", &token(change.subject.as_deref()))
    }
}

#[async_trait]
impl Sink for NatsSink {
    async fn deliver(&self, change: &ChangeRecord) -> Result<Delivered, DeliveryError> {
        let context = self.context().await?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", change.id.as_str());
        headers.insert("Content-Type", "application/cloudevents+json");
        let subject = self.subject_for(change);
        let acknowledgement = context
            .publish_with_headers(
                subject.clone(),
                headers,
                change.cloudevent.to_string().into(),
            )
            .await
            .map_err(|error| DeliveryError::retryable(format!("publish to {subject}: {error}")))?;
        acknowledgement.await.map_err(|error| {
            DeliveryError::retryable(format!("no acknowledgement for {subject}: {error}"))
        })?;
        Ok(Delivered::default())
    }
}
