//! A real relay on a random port with a real database (a SQLite file by default, or a fresh
//! PostgreSQL database), and a client that speaks to it as myKaarma does.
//!
//! A test meant for both backends is written once as `async fn case(backend: Backend)` and
//! listed in [`backend_tests!`], which makes `case::sqlite` and `case::postgres` of it.

#![allow(dead_code)]

mod database;

#[allow(unused_imports)]
pub use database::{
    POSTGRES_SERVER, TestDatabase, create_postgres_database, drop_postgres_database,
    postgres_admin_connection,
};
pub use kaarma_relay::store::Backend;

use std::path::PathBuf;
use std::sync::Arc;

use kaarma_relay::config::Secret;
use kaarma_relay::store::{SqlStore, Store};
use kaarma_relay::{Application, Config};
use mykaarma::signature::{self, AUTHORIZATION_HEADER, SIGNATURE_HEADER};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The secret the test relay verifies with.
pub const SECRET: &str = "fixture-secret";
/// The authorization token the test relay expects.
pub const TOKEN: &str = "myKaarma_00000000-0000-4000-8000-000000000000";
/// The admin bearer token.
pub const ADMIN: &str = "admin-token";

/// A running relay.
pub struct TestRelay {
    pub url: String,
    pub database: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
    /// The database made for this relay by [`TestRelay::start_on_backend`], removed after it.
    _database: Option<TestDatabase>,
}

/// The configuration tests start from: a fresh SQLite file in a temporary directory.
pub fn config(dir: &std::path::Path) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: format!("sqlite://{}", dir.join("relay.db").display()),
        admin_token: Some(Secret::new(ADMIN)),
        ..Config::default()
    };
    config.mykaarma.signature_secret = Some(Secret::new(SECRET));
    config.mykaarma.authorization_token = Some(Secret::new(TOKEN));
    config
}

impl TestRelay {
    /// Starts a relay with the default test configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a relay after `adjust` has changed the configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        adjust(&mut config);
        let application = Application::build(&config).await.unwrap();
        Self::run(application, config.database.clone(), Some(dir))
    }

    /// Starts a relay on a fresh database of `backend` after `adjust` has changed the
    /// configuration; the database is removed when the relay is stopped or dropped.
    pub async fn start_on_backend(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut database = TestDatabase::create(backend).await;
        let mut config = config(database.dir());
        config.database = database.url.clone();
        adjust(&mut config);
        let application = Application::build(&config).await.unwrap();
        let mut relay = Self::run(application, config.database.clone(), None);
        relay._database = Some(database);
        relay
    }

    /// Starts a relay with the default test configuration on a fresh database of `backend`.
    pub async fn start_backend(backend: Backend) -> Self {
        Self::start_on_backend(backend, |_| {}).await
    }

    /// Starts a relay on a store the test provides (e.g. one that fails on purpose).
    pub async fn start_on(store: Arc<dyn Store>, dir: tempfile::TempDir) -> Self {
        let config = config(dir.path());
        let application = Application::with_store(&config, store).await.unwrap();
        Self::run(application, config.database.clone(), Some(dir))
    }

    fn run(application: Application, database: String, dir: Option<tempfile::TempDir>) -> Self {
        let url = format!("http://{}", application.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(application.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            url,
            database,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
            _database: None,
        }
    }

    /// The ingest URL.
    pub fn webhook_url(&self) -> String {
        format!("{}/webhooks/mykaarma", self.url)
    }

    /// Posts `body` signed and with the token, as myKaarma does.
    pub async fn deliver(&self, body: impl Into<Vec<u8>>) -> (u16, serde_json::Value) {
        let body = body.into();
        let response = self
            .client
            .post(self.webhook_url())
            .header("content-type", "text/plain")
            .header(SIGNATURE_HEADER, signature::sign(SECRET.as_bytes(), &body))
            .header(AUTHORIZATION_HEADER, TOKEN)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// GETs an API path with the admin token.
    pub async fn api(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits until the processor has taken every stored event (pending → processed/failed).
    pub async fn settle(&self) {
        for _ in 0..200 {
            let mut cursor = String::new();
            let mut pending = 0;
            loop {
                let (_, page) = self
                    .api(&format!("/api/v1/events?limit=1000&cursor={cursor}"))
                    .await;
                pending += page["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["state"] == "pending")
                    .count();
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = next.to_owned(),
                    None => break,
                }
            }
            if pending == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("events still pending after 10 s");
    }

    /// POSTs to an API path with the admin token.
    pub async fn api_post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Opens a second handle on the relay's database, to check what was committed.
    pub async fn open_store(&self) -> SqlStore {
        SqlStore::connect(&self.database).await.unwrap()
    }

    /// Stops the relay gracefully and waits until it has finished.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// A fixture file from the workspace's `fixtures/`.
pub fn fixture(path: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// Turns each `async fn NAME(backend: Backend)` of the test file into two tests, `NAME::sqlite`
/// and `NAME::postgres`, so `cargo test postgres` runs one backend's half.
#[allow(unused_macros)]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name(kaarma_relay::store::Backend::Sqlite).await
                }

                #[tokio::test]
                async fn postgres() {
                    super::$name(kaarma_relay::store::Backend::Postgres).await
                }
            }
        )+
    };
}
#[allow(unused_imports)]
pub(crate) use backend_tests;
