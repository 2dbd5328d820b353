//! A circuit breaker for PostgreSQL: once the database is found unreachable, every store call
//! fails at once with [`StoreError::Unreachable`] (the sender gets 503 in milliseconds)
//! instead of each waiting out the pool's acquire timeout, which would pile up requests past
//! myKaarma's 5 s limit. One background probe reconnects meanwhile; the first connection it
//! makes closes the breaker, and the pool replaces its dead connections by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, ConnectOptions, Connection};

use crate::store::StoreError;

/// How often the probe tries to connect while the database is unreachable.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// Whether the database can be reached, and the probe that finds out when it can again.
pub(super) struct Breaker {
    /// True while the database is unreachable: calls fail without trying.
    open: AtomicBool,
    /// How the probe connects (the store's own URL and options).
    connect: AnyConnectOptions,
}

impl Breaker {
    /// A closed breaker for the database `connect` reaches.
    pub(super) fn new(connect: AnyConnectOptions) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicBool::new(false),
            connect,
        })
    }

    /// `Err(Unreachable)` while the breaker is open.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        if self.open.load(Ordering::Acquire) {
            Err(StoreError::Unreachable)
        } else {
            Ok(())
        }
    }

    /// Looks at a failed call: if it says the database is gone, opens the breaker and starts
    /// the probe (once).
    pub(super) fn observe(self: &Arc<Self>, error: &StoreError) {
        if !is_unreachable(error) {
            return;
        }
        if self.open.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(%error, "PostgreSQL is unreachable: answering 503 until it is back");
        tokio::spawn(probe(Arc::downgrade(self)));
    }
}

/// Tries to connect until it can (then closes the breaker) or the store is gone.
async fn probe(breaker: Weak<Breaker>) {
    loop {
        let Some(live) = breaker.upgrade() else {
            return;
        };
        let connect = live.connect.clone();
        drop(live);
        let attempt = tokio::time::timeout(PROBE_INTERVAL * 4, async {
            let mut connection: AnyConnection = connect.connect().await?;
            sqlx::query("SELECT 1").execute(&mut connection).await?;
            connection.close().await
        })
        .await;
        if let Ok(Ok(())) = attempt {
            if let Some(breaker) = breaker.upgrade() {
                breaker.open.store(false, Ordering::Release);
                tracing::info!("PostgreSQL is reachable again");
            }
            return;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// True for errors that mean the server is down or the connection is gone, rather than a
/// refusal of this one statement: I/O and protocol errors, a pool that could not open a
/// connection in time, and SQLSTATE classes 08 (connection exception) and 57P (shutdown,
/// crash, starting up).
fn is_unreachable(error: &StoreError) -> bool {
    let StoreError::Database(error) = error else {
        return false;
    };
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(error) => error
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}
