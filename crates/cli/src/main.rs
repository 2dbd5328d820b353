//! `kaarma-relay`: receive myKaarma webhooks durably, and emulate myKaarma to test it.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kaarma_relay::telemetry::{self, LogFormat};

/// Kaarma Relay: verified, durable myKaarma webhook ingest, appointment state and delivery.
#[derive(Debug, Parser)]
#[command(name = "kaarma-relay", version)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "KAARMA_RELAY_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay: the webhook endpoint, the API and the background workers.
    Serve(commands::serve::ServeArgs),
    /// Apply database migrations and exit.
    Migrate(commands::serve::MigrateArgs),
    /// Print the `mykaarma-signature-token` value for a file.
    Sign(commands::signing::SignArgs),
    /// Check a `mykaarma-signature-token` value against a file.
    Verify(commands::signing::VerifyArgs),
    /// Post files to a webhook endpoint exactly as myKaarma would.
    Send(commands::signing::SendArgs),
    /// Read stored events from a running relay.
    #[command(subcommand)]
    Events(commands::admin::EventsCommand),
    /// Read appointment state and history from a running relay.
    #[command(subcommand)]
    Appointments(commands::admin::AppointmentsCommand),
    /// List, retry and replay deliveries of a running relay.
    #[command(subcommand)]
    Deliveries(commands::admin::DeliveriesCommand),
    /// The myKaarma emulator: serve its API, drive a load, verify a receiver.
    #[command(subcommand)]
    Sim(kaarma_sim::cli::SimCommand),
    /// Everything at once: a relay on a temporary SQLite file, the emulator driving it with
    /// faults on, a file route, and the verify result (exit 0 when it passes).
    Demo(commands::demo::DemoArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_tracing(cli.log_format);
    // reqwest and sqlx both use rustls; name the process-wide provider once.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let result = match cli.command {
        Command::Serve(args) => commands::serve::serve(args).await,
        Command::Migrate(args) => commands::serve::migrate(args).await,
        Command::Sign(args) => commands::signing::sign(args),
        Command::Verify(args) => commands::signing::verify(args),
        Command::Send(args) => commands::signing::send(args).await,
        Command::Events(command) => commands::admin::events(command).await,
        Command::Appointments(command) => commands::admin::appointments(command).await,
        Command::Deliveries(command) => commands::admin::deliveries(command).await,
        Command::Sim(command) => command.execute().await,
        Command::Demo(args) => commands::demo::demo(args).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
