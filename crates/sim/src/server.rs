//! Starting the live emulator: the API on any address (port 0 picks a free one, so tests run
//! the real thing), the publisher and the DMS, until shut down.

use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, Credentials};
use crate::publisher::Subscription;
use crate::simulation::{Simulation, SimulationConfig};

/// What `sim serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The API's basic-auth credentials.
    pub credentials: Credentials,
    /// The emulator.
    pub simulation: SimulationConfig,
    /// Subscriptions to start with.
    pub subscriptions: Vec<Subscription>,
}

/// A running emulator.
#[derive(Debug)]
pub struct RunningServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The emulator behind the API.
    pub simulation: Simulation,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

/// Binds, builds the world and starts serving in the background.
pub async fn start(options: ServeOptions) -> anyhow::Result<RunningServer> {
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let simulation = Simulation::new(options.simulation)?;
    for subscription in options.subscriptions {
        simulation.publisher().subscribe(subscription);
    }
    let router = api::router(simulation.clone(), options.credentials);
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(signal)
            .await
    });
    tracing::info!(%addr, "myKaarma emulator listening");
    Ok(RunningServer {
        addr,
        simulation,
        shutdown,
        task,
    })
}

impl RunningServer {
    /// The base URL, e.g. `http://127.0.0.1:8700`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests, waits for the DMS and the deliveries in flight, and returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        self.simulation.settle().await;
        Ok(())
    }

    /// Serves until `signal` resolves, then shuts down.
    pub async fn serve_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::select! {
            () = signal => {}
            () = self.shutdown.cancelled() => {}
        }
        self.shutdown().await
    }
}
