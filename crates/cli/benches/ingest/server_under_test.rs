//! The two servers the client drives, each on its own Tokio runtime (as the `kaarma-relay`
//! binary runs the relay) so that the client's tasks and the server's do not share a
//! scheduler: the relay in-process on a fresh SQLite file with its configured durability, or
//! the bare hyper server.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use kaarma_relay::config::Secret;
use kaarma_relay::{Application, Config};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::bare_server;
use crate::deliveries::{SECRET, TOKEN};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// `kaarma_relay::Application`: verify, group-commit to SQLite (WAL, synchronous=FULL),
    /// answer.
    Relay,
    /// Read the body, answer 200.
    Bare,
}

impl ServerKind {
    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Relay => "relay",
            Self::Bare => "bare hyper",
        }
    }
}

/// The path both servers are posted to.
pub const PATH: &str = "/webhooks/mykaarma";

/// A server listening on loopback, on a runtime of its own.
pub struct ServerUnderTest {
    /// Where it listens.
    pub address: SocketAddr,
    runtime: Runtime,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl ServerUnderTest {
    /// Starts `kind`; the relay keeps its database in `dir`. Call from outside any runtime.
    pub fn start(kind: ServerKind, dir: &Path, worker_threads: usize) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads)
            .thread_name(format!("{}-server", kind.name().replace(' ', "-")))
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let (address, task) = match kind {
            ServerKind::Relay => {
                let config = relay_config(dir);
                let application = runtime.block_on(Application::build(&config))?;
                let address = application.local_addr();
                (address, runtime.spawn(application.run_until(stopped)))
            }
            ServerKind::Bare => {
                let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
                let address = listener.local_addr()?;
                let task = runtime.spawn(async move {
                    tokio::select! {
                        () = bare_server::serve(listener) => {}
                        () = stopped => {}
                    }
                    Ok(())
                });
                (address, task)
            }
        };
        Ok(Self {
            address,
            runtime,
            stop: Some(stop),
            task,
        })
    }

    /// Stops it the way `serve` stops on SIGTERM (the relay drains and closes its store).
    pub fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = self.runtime.block_on(self.task)?;
        self.runtime.shutdown_timeout(Duration::from_secs(5));
        result
    }
}

/// The relay as deployed, with both checks on: signature and authorization token.
fn relay_config(dir: &Path) -> Config {
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        database: format!("sqlite://{}", dir.join("relay.db").display()),
        ..Config::default()
    };
    config.mykaarma.path = PATH.to_owned();
    config.mykaarma.signature_secret = Some(Secret::new(SECRET));
    config.mykaarma.authorization_token = Some(Secret::new(TOKEN));
    config
}
