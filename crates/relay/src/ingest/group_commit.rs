//! Group commit: concurrent deliveries share one transaction, and so one fsync.
//!
//! Each request hands its event to a single writer task and waits for the answer. While a
//! commit is in flight new events queue up; the next transaction takes all of them. Under
//! load the batch grows by itself; alone, an event commits at once.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::store::{Insertion, NewEvent, Store, StoreError};

/// Most events one transaction takes.
const MAX_BATCH: usize = 256;

/// A handle to the writer task. Cloning is cheap; the task ends when every handle is gone.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

struct Pending {
    event: NewEvent,
    reply: oneshot::Sender<Result<Insertion, Arc<StoreError>>>,
}

impl GroupCommit {
    /// Starts the writer task on `store`; `committed` is notified after each commit.
    pub fn start(store: Arc<dyn Store>, committed: Arc<Notify>) -> (Self, JoinHandle<()>) {
        let (queue, incoming) = mpsc::channel(MAX_BATCH * 4);
        let writer = tokio::spawn(write_batches(store, incoming, committed));
        (Self { queue }, writer)
    }

    /// Stores `event`, returning once its transaction has committed (or failed).
    pub async fn insert(&self, event: NewEvent) -> Result<Insertion, Arc<StoreError>> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { event, reply })
            .await
            .map_err(|_| Arc::new(StoreError::Closed))?;
        answer.await.map_err(|_| Arc::new(StoreError::Closed))?
    }
}

async fn write_batches(
    store: Arc<dyn Store>,
    mut incoming: mpsc::Receiver<Pending>,
    committed: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while incoming.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, replies): (Vec<NewEvent>, Vec<_>) = batch
            .drain(..)
            .map(|pending| (pending.event, pending.reply))
            .unzip();
        let started = std::time::Instant::now();
        let result = store.insert_events(&events).await;
        metrics::histogram!("kaarma_relay_ingest_commit_seconds").record(started.elapsed());
        metrics::histogram!("kaarma_relay_ingest_batch_size").record(events.len() as f64);
        match result {
            Ok(outcomes) => {
                committed.notify_one();
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::error!(%error, events = events.len(), "ingest commit failed");
                let error = Arc::new(error);
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}
