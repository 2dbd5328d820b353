//! Logs and metrics. Logs go through `tracing` (human-readable or JSON lines; secrets are
//! never fields). Metrics go to one process-wide Prometheus recorder served at `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people at a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global log subscriber (filter from `RUST_LOG`, default `info`). Later calls
/// are ignored, so tests may call it freely.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(Matcher::Suffix("_size".into()), &sizes)
                })
                .expect("bucket lists are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("a thread can be spawned at start-up");
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "kaarma_relay_webhooks_received_total",
        "Deliveries that reached the ingest endpoint."
    );
    describe_counter!("kaarma_relay_webhooks_accepted_total", "New events stored.");
    describe_counter!(
        "kaarma_relay_webhooks_duplicate_total",
        "Repeat deliveries of stored events."
    );
    describe_counter!(
        "kaarma_relay_webhooks_rejected_total",
        "Deliveries refused, by reason."
    );
    describe_counter!(
        "kaarma_relay_webhooks_quarantined_total",
        "Verified deliveries that were not usable envelopes."
    );
    describe_counter!(
        "kaarma_relay_webhooks_unavailable_total",
        "Deliveries answered 503 because the store could not commit."
    );
    describe_histogram!(
        "kaarma_relay_ack_seconds",
        Unit::Seconds,
        "Time from request to answer on the ingest endpoint."
    );
    describe_histogram!(
        "kaarma_relay_ingest_commit_seconds",
        Unit::Seconds,
        "Time one group commit took."
    );
    describe_histogram!(
        "kaarma_relay_ingest_batch_size",
        Unit::Count,
        "Events per group commit."
    );
    describe_counter!(
        "kaarma_relay_delivery_attempts_total",
        "Delivery attempts, by route and outcome (delivered, failed, dead)."
    );
    describe_histogram!(
        "kaarma_relay_delivery_attempt_seconds",
        Unit::Seconds,
        "Time one delivery attempt took, by route."
    );
    describe_gauge!(
        "kaarma_relay_deliveries",
        "Deliveries by route and state (refreshed every 5 s)."
    );
    describe_gauge!(
        "kaarma_relay_delivery_oldest_pending_seconds",
        Unit::Seconds,
        "Age of the oldest pending or failed delivery, by route and state (refreshed every 5 s)."
    );
    describe_counter!(
        "kaarma_relay_delivery_worker_wakeups_total",
        "Times a route's delivery worker woke up to look for work."
    );
}
