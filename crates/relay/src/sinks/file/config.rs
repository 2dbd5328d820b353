//! The `file` and `stdout` sinks' configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::JsonLinesSink;
use crate::sinks::SinkConfigError;

/// `sink = { type = "file", path = "changes.jsonl" }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to append to (created if missing).
    pub path: PathBuf,
}

/// `sink = { type = "stdout" }`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

impl FileSinkConfig {
    /// Opens the file for appending.
    pub fn build(&self) -> Result<JsonLinesSink, SinkConfigError> {
        JsonLinesSink::file(&self.path).map_err(|error| {
            SinkConfigError(format!("cannot open {}: {error}", self.path.display()))
        })
    }
}

impl StdoutSinkConfig {
    /// The stdout sink.
    pub fn build(&self) -> JsonLinesSink {
        JsonLinesSink::stdout()
    }
}
