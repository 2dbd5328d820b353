//! Builds the whole service from a [`Config`] on any address (port 0 in tests), runs it, and
//! shuts it down in order: stop accepting, finish in-flight requests, commit, close.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::api::{self, AdminAuth, ApiState};
use crate::config::{Config, ConfigError};
use crate::delivery::{Dispatcher, Routes};
use crate::ingest::{self, Gate, GroupCommit, Ingest};
use crate::pipeline::Processor;
use crate::probes;
use crate::retention::Retention;
use crate::server::{self, ServerLimits};
use crate::store::{SqlStore, Store};
use crate::telemetry;

/// A relay bound to its address, ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    store: Arc<dyn Store>,
    writer: JoinHandle<()>,
    processor: Processor,
    dispatcher: Dispatcher,
    retention: Option<Retention>,
    limits: ServerLimits,
}

impl Application {
    /// Validates `config`, opens (and migrates) the store, and binds the listener.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        config.validate()?;
        let store = SqlStore::connect_with(&config.database, &config.store).await?;
        if config.migrate {
            store.migrate().await?;
        }
        Self::with_store(config, Arc::new(store)).await
    }

    /// Builds on an already opened store (tests use this to inject store faults).
    pub async fn with_store(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let gate = Gate::new(&config.mykaarma).ok_or(ConfigError::MissingSignatureSecret)?;
        config.delivery.check(&config.routes)?;
        let routes = Arc::new(Routes::build(&config.routes)?);
        let wake = Arc::new(Notify::new());
        let (writer, writer_task) = GroupCommit::start(store.clone(), wake.clone());
        let processor = Processor::new(
            store.clone(),
            config.processing.rules(),
            routes.clone(),
            wake.clone(),
            config.processing.batch_size,
        );
        let dispatcher = Dispatcher::new(
            store.clone(),
            routes.clone(),
            replica_name(),
            &config.delivery,
        );
        let ingest = Arc::new(Ingest {
            gate,
            writer,
            store: store.clone(),
        });
        let auth = AdminAuth {
            token: config.admin_token.clone(),
        };
        let router = Router::new()
            .route(&config.mykaarma.path, post(ingest::receive))
            .with_state(ingest)
            .merge(api::router(
                ApiState {
                    store: store.clone(),
                    processor_wake: wake,
                    routes,
                },
                auth,
            ))
            .merge(probes::router(store.clone(), telemetry::prometheus()))
            .layer(TraceLayer::new_for_http())
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(config.request_timeout_secs),
            ));
        let retention = Retention::new(store.clone(), &config.retention);
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Self {
            listener,
            router,
            store,
            writer: writer_task,
            processor,
            dispatcher,
            retention,
            limits: ServerLimits {
                header_read_timeout: Duration::from_secs(config.header_read_timeout_secs.max(1)),
                max_connections: config.max_http_connections,
                shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
            },
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then drains in-flight requests, lets the writer
    /// commit what it holds, and closes the store.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(address = %self.local_addr(), "kaarma-relay listening");
        let workers = CancellationToken::new();
        let processor = tokio::spawn(self.processor.run(workers.clone()));
        let dispatcher = tokio::spawn(self.dispatcher.run(workers.clone()));
        let retention = self
            .retention
            .map(|retention| tokio::spawn(retention.run(workers.clone())));
        server::serve(self.listener, self.router, self.limits, shutdown).await;
        // The router (and with it every handle to the writer) is gone: the writer finishes
        // the batches it holds and stops.
        self.writer.await?;
        workers.cancel();
        processor.await?;
        dispatcher.await?;
        if let Some(retention) = retention {
            retention.await?;
        }
        self.store.close().await;
        tracing::info!("kaarma-relay stopped");
        Ok(())
    }
}

/// This process's name in delivery leases: host-free and unique per start.
fn replica_name() -> String {
    format!(
        "relay-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested");
}
