//! The `nats` sink's configuration.

use serde::{Deserialize, Serialize};

use super::NatsSink;
use crate::sinks::SinkConfigError;

/// `sink = { type = "nats", url = "nats://127.0.0.1:4222", subject = "mykaarma.{dealer}.{entity}.{kind}" }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// The NATS server.
    #[serde(default = "default_url")]
    pub url: String,
    /// The subject template. Placeholders: `{dealer}`, `{department}`, `{entity}`
    /// (`appointment`, `customer`, `service-order`, `mpi`), `{kind}`, `{subject}`. For an
    /// appointment the default reads `mykaarma.{dealer}.appointment.{kind}`.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Create the stream at the first delivery if it does not exist.
    #[serde(default)]
    pub create_stream: bool,
    /// The stream's name (used with `create_stream`).
    #[serde(default = "default_stream")]
    pub stream: String,
    /// The subjects the created stream captures.
    #[serde(default = "default_stream_subjects")]
    pub stream_subjects: Vec<String>,
    /// The created stream's duplicate window: repeats of a change id within it are dropped.
    #[serde(default = "default_duplicate_window_secs")]
    pub duplicate_window_secs: u64,
    /// Seconds to wait for the publish acknowledgement.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_url() -> String {
    "nats://127.0.0.1:4222".into()
}
fn default_subject() -> String {
    "mykaarma.{dealer}.{entity}.{kind}".into()
}
fn default_stream() -> String {
    "MYKAARMA".into()
}
fn default_stream_subjects() -> Vec<String> {
    vec!["mykaarma.>".into()]
}
fn default_duplicate_window_secs() -> u64 {
    24 * 60 * 60
}
fn default_timeout_secs() -> u64 {
    10
}

const PLACEHOLDERS: [&str; 5] = [
    "{dealer}",
    "{department}",
    "{entity}",
    "{kind}",
    "{subject}",
];

impl NatsSinkConfig {
    /// Validates the template and builds the sink (it connects at the first delivery).
    pub fn build(&self) -> Result<NatsSink, SinkConfigError> {
        let mut rest = self.subject.clone();
        for placeholder in PLACEHOLDERS {
            rest = rest.replace(placeholder, "x");
        }
        if rest.contains(['{', '}', ' ', '*', '>']) || rest.split('.').any(str::is_empty) {
            return Err(SinkConfigError(format!(
                "subject {:?}: tokens must be non-empty, without spaces or wildcards; placeholders are {}",
                self.subject,
                PLACEHOLDERS.join(" ")
            )));
        }
        Ok(NatsSink::new(self.clone()))
    }
}
