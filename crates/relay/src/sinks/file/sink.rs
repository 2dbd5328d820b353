//! The JSON Lines writer behind the `file` and `stdout` sinks.

use std::io::Write;
use std::path::Path;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::sinks::{Delivered, DeliveryError, Sink};
use crate::store::ChangeRecord;

/// Appends one CloudEvent per line.
pub struct JsonLinesSink {
    target: Mutex<Target>,
}

enum Target {
    File(tokio::fs::File),
    Stdout,
}

impl JsonLinesSink {
    /// Appends to `path`, creating it if needed.
    pub fn file(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            target: Mutex::new(Target::File(tokio::fs::File::from_std(file))),
        })
    }

    /// Writes to standard output.
    pub fn stdout() -> Self {
        Self {
            target: Mutex::new(Target::Stdout),
        }
    }
}

#[async_trait]
impl Sink for JsonLinesSink {
    async fn deliver(&self, change: &ChangeRecord) -> Result<Delivered, DeliveryError> {
        let mut line = change.cloudevent.to_string();
        line.push('\n');
        let mut target = self.target.lock().await;
        let written = match &mut *target {
            // One write of the whole line keeps lines whole. A tokio file finishes writes in
            // the background: `flush` waits for this one and reports its error (`sync_data`
            // would wait too, but keep the error for the next call); `sync_data` makes it
            // durable.
            Target::File(file) => {
                async {
                    file.write_all(line.as_bytes()).await?;
                    file.flush().await?;
                    file.sync_data().await
                }
                .await
            }
            Target::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(line.as_bytes())
                    .and_then(|()| stdout.flush())
            }
        };
        written.map_err(|error| DeliveryError::retryable(format!("write failed: {error}")))?;
        Ok(Delivered::default())
    }
}
