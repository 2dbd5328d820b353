//! `serve` and `migrate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use kaarma_relay::config::DEV_SIGNATURE_SECRET;
use kaarma_relay::store::SqlStore;
use kaarma_relay::{Application, Config, startup};
use serde::Serialize;

/// Where the configuration comes from; flags win over the environment, which wins over the file.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, short, env = "KAARMA_RELAY_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://PATH (default sqlite://kaarma-relay.db) or postgres://…
    #[arg(long)]
    database: Option<String>,
}

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Development mode: use the printed development secret when none is configured, and
    /// listen on loopback only.
    #[arg(long)]
    dev: bool,
    /// Do not apply migrations at start.
    #[arg(long)]
    no_migrate: bool,
}

/// Flags of `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

/// The flags that override configuration keys (absent flags override nothing).
#[derive(Debug, Default, Serialize)]
struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    migrate: Option<bool>,
}

/// Runs the relay until SIGTERM or SIGINT.
pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        listen: args.listen,
        database: args.config.database,
        migrate: args.no_migrate.then_some(false),
    };
    let mut config = Config::load(args.config.config.as_deref(), &overrides)?;
    if args.dev {
        let uses_dev_secret = config.mykaarma.signature_secret.is_none();
        config = config.into_dev();
        if uses_dev_secret {
            eprintln!(
                "development mode: signature secret {DEV_SIGNATURE_SECRET:?}; sign with \
                 `kaarma-relay sign --secret {DEV_SIGNATURE_SECRET} FILE`"
            );
        }
    }
    let application = Application::build(&config).await?;
    application.run_until(startup::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Applies migrations and exits.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        database: args.config.database,
        ..Overrides::default()
    };
    let config = Config::load(args.config.config.as_deref(), &overrides)?;
    let store = SqlStore::connect(&config.database).await?;
    store.migrate().await?;
    eprintln!("migrations applied to {}", redact_url(&config.database));
    Ok(ExitCode::SUCCESS)
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}
