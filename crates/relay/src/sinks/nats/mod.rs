//! The `nats` sink: publish each change to NATS JetStream. `Nats-Msg-Id` is the change id,
//! so JetStream drops a repeat within the stream's duplicate window; success means the
//! stream acknowledged the message.

mod config;
mod sink;

pub use config::NatsSinkConfig;
pub use sink::NatsSink;
