//! The `http` sink: POST each change as `application/cloudevents+json`, signed per the
//! Standard Webhooks spec so the receiver can verify it and deduplicate by `webhook-id`.

mod config;
mod signature;
mod sink;

pub use config::HttpSinkConfig;
pub use signature::{SigningSecret, sign};
pub use sink::HttpSink;
