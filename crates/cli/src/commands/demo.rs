//! `demo`: the whole product in one command. A relay on a temporary SQLite file with the
//! development secret and a file route, the emulator driving it with faults on, and at the
//! end the emulator's truth compared with the relay's state.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kaarma_relay::config::{DEV_SIGNATURE_SECRET, Secret};
use kaarma_relay::delivery::RouteConfig;
use kaarma_relay::sinks::SinkConfig;
use kaarma_relay::sinks::file::FileSinkConfig;
use kaarma_relay::{Application, Config};
use kaarma_sim::{Faults, LoadOptions};
use serde_json::Value;
use tokio::sync::oneshot;

/// Flags of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Appointments the emulator books, reschedules, cancels and deletes.
    #[arg(long, default_value_t = 300)]
    appointments: usize,
    /// Appointments created per second.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Seeds the emulator (same seed, same events).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Faults the emulator injects (see `sim run --help` for the syntax).
    #[arg(
        long,
        default_value = "duplicates=0.1,reorder=0.2,reorder-window=300ms,fail-first=1,drop-ack=0.05,corrupt=0.02,legacy=0.2"
    )]
    faults: Faults,
    /// Keep the database and the delivered changes in this directory instead of a temporary one.
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// Runs the demo; exits 0 when the relay's state matches the truth.
pub async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let temporary = tempfile::tempdir()?;
    let dir = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.clone()
        }
        None => temporary.path().to_owned(),
    };
    let changes_file = dir.join("changes.jsonl");
    let admin_token = "demo-admin-token".to_owned();
    let mut config = Config {
        listen: "127.0.0.1:0".parse()?,
        database: format!("sqlite://{}", dir.join("kaarma-relay.db").display()),
        admin_token: Some(Secret::new(admin_token.clone())),
        ..Config::default()
    };
    config.mykaarma.signature_secret = Some(Secret::new(DEV_SIGNATURE_SECRET));
    config.routes.push(RouteConfig {
        name: "changes-file".into(),
        when: Default::default(),
        filter: None,
        sink: SinkConfig::File(FileSinkConfig {
            path: changes_file.clone(),
        }),
        retry: Default::default(),
        concurrency: 4,
        rate_limit: None,
    });

    let application = Application::build(&config).await?;
    let relay_url = format!("http://{}", application.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let relay = tokio::spawn(application.run_until(async {
        let _ = stopped.await;
    }));
    eprintln!(
        "relay on {relay_url} (SQLite in {}), emulator with faults {}",
        dir.display(),
        args.faults
    );

    let mut options = LoadOptions::new(
        format!("{relay_url}/webhooks/mykaarma"),
        DEV_SIGNATURE_SECRET,
        args.appointments,
    );
    options.rate = args.rate;
    options.seed = args.seed;
    options.faults = args.faults;
    options.time_scale = 0.05;
    let progress = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} sending {pos}/{len} events [{elapsed_precise}] {wide_bar}",
        )
        .expect("the template is valid"),
    );
    let report = kaarma_sim::run(&options, progress).await?;
    println!("{report}");

    let differences = kaarma_sim::verify::verify_within(
        &relay_url,
        &admin_token,
        &report.truth,
        Duration::from_secs(60),
    )
    .await?;
    let delivered = wait_for_deliveries(&relay_url, &admin_token).await?;
    println!(
        "relay: {} changes written to {} {}",
        delivered,
        changes_file.display(),
        if args.keep.is_some() {
            "(kept)"
        } else {
            "(temporary)"
        }
    );
    let _ = stop.send(());
    relay.await??;
    if differences.is_empty() {
        println!(
            "verify: the relay's state matches the truth for all {} appointments",
            report.truth.appointments.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("verify: {} differences:", differences.len());
        for difference in &differences {
            println!("  {difference}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Waits until the file route has nothing left to deliver; returns how many it delivered.
async fn wait_for_deliveries(relay_url: &str, token: &str) -> anyhow::Result<i64> {
    for _ in 0..600 {
        let routes = api_get(relay_url, token, "/api/v1/routes").await?;
        let counts = &routes["routes"][0]["counts"];
        let open = counts["pending"].as_i64().unwrap_or(0) + counts["failed"].as_i64().unwrap_or(0);
        if open == 0 {
            return Ok(counts["delivered"].as_i64().unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("deliveries still pending after a minute")
}

async fn api_get(relay_url: &str, token: &str, path: &str) -> anyhow::Result<Value> {
    let response = reqwest::Client::new()
        .get(format!("{relay_url}{path}"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?;
    Ok(response.json().await?)
}
