//! The `file` and `stdout` sinks: one CloudEvent per line (JSON Lines). A file line is
//! fsynced before the delivery counts as done.

mod config;
mod sink;

pub use config::{FileSinkConfig, StdoutSinkConfig};
pub use sink::JsonLinesSink;
