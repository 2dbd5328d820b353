//! Scale-out benchmark: ingest and processing throughput of the real `kaarma-relay serve`
//! processes (bench profile, i.e. release) on SQLite (one process), on PostgreSQL with one
//! replica and with two replicas sharing one database, in one run, on one machine.
//!
//! ```text
//! cargo bench -p kaarma-relay-cli --bench replicas
//! cargo bench -p kaarma-relay-cli --bench replicas -- --events 5000 --setups pg1,pg2
//! ```
//!
//! Each setup gets a fresh database. The sender posts `--events` signed ~5 KB appointment
//! events (distinct ids, spread over `--appointments` appointments) over `--connections`
//! keep-alive connections, each pinned to one replica in turn (a balancer's round robin),
//! each connection sending its next event as soon as the last is answered. The processor
//! runs meanwhile, as in production. Reported per setup:
//!
//! - **ingest**: events acknowledged per second, and the acknowledgement latency;
//! - **processed during ingest**: how many the processor had finished when the last ack came;
//! - **drain**: events per second the processor finished after ingest stopped (the processor
//!   alone, nothing competing); **end to end**: all events over the time from the first send
//!   until the last was processed.
//!
//! Processed counts come from each process's `/metrics`
//! (`kaarma_relay_events_processed_total`). `cargo test` never builds it (`test = false`).

mod bodies;
#[allow(dead_code)]
#[path = "../machine/mod.rs"]
mod machine;
#[path = "../../tests/relay_process/mod.rs"]
mod relay_process;
mod setup;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bodies::{Body, TOKEN};
use mykaarma::signature::{AUTHORIZATION_HEADER, SIGNATURE_HEADER};
use setup::{Running, Setup};

/// What to run, from the command line.
struct Options {
    events: usize,
    connections: usize,
    appointments: usize,
    body_bytes: usize,
    setups: Vec<Setup>,
    dir: PathBuf,
}

impl Options {
    /// Reads the arguments; `None` when not run by `cargo bench`.
    fn parse() -> anyhow::Result<Option<Self>> {
        let mut options = Self {
            events: 20_000,
            connections: 64,
            appointments: 2_000,
            body_bytes: 5 * 1024,
            setups: vec![
                Setup::Sqlite,
                Setup::Postgres { replicas: 1 },
                Setup::Postgres { replicas: 2 },
            ],
            dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        };
        let mut bench = false;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
            };
            match arg.as_str() {
                "--bench" => bench = true,
                "--events" => options.events = value()?.parse()?,
                "--connections" => options.connections = value()?.parse()?,
                "--appointments" => options.appointments = value()?.parse()?,
                "--body-bytes" => options.body_bytes = value()?.parse()?,
                "--dir" => options.dir = PathBuf::from(value()?),
                "--setups" => {
                    options.setups = value()?
                        .split(',')
                        .map(|name| match name.trim() {
                            "sqlite" => Ok(Setup::Sqlite),
                            "pg1" => Ok(Setup::Postgres { replicas: 1 }),
                            "pg2" => Ok(Setup::Postgres { replicas: 2 }),
                            "pg3" => Ok(Setup::Postgres { replicas: 3 }),
                            other => {
                                Err(anyhow::anyhow!("no setup {other:?}: sqlite, pg1, pg2, pg3"))
                            }
                        })
                        .collect::<Result<_, _>>()?;
                }
                other => eprintln!("replicas bench: ignoring argument {other:?}"),
            }
        }
        Ok(bench.then_some(options))
    }
}

/// What one setup measured.
struct Figures {
    setup: Setup,
    ingest: Duration,
    latencies: Vec<Duration>,
    refused: usize,
    processed_at_ingest_end: u64,
    all_processed: Duration,
}

impl Figures {
    fn ingest_rate(&self) -> f64 {
        self.latencies.len() as f64 / self.ingest.as_secs_f64()
    }

    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted
            .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    }

    fn drain_rate(&self, events: usize) -> Option<f64> {
        let backlog = events as u64 - self.processed_at_ingest_end.min(events as u64);
        let drain = self.all_processed.saturating_sub(self.ingest);
        (backlog >= 100 && !drain.is_zero()).then(|| backlog as f64 / drain.as_secs_f64())
    }
}

fn main() -> anyhow::Result<()> {
    let Some(options) = Options::parse()? else {
        println!(
            "the replicas benchmark runs with `cargo bench -p kaarma-relay-cli --bench replicas`"
        );
        return Ok(());
    };
    // The sender's runtime; the relays are processes of their own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(options))
}

async fn run(options: Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.dir)?;
    println!(
        "replicas benchmark: {} events per setup, {} connections, {} appointments",
        options.events, options.connections, options.appointments
    );
    machine::Machine::describe(&options.dir).print();
    let mut results = Vec::new();
    for (index, setup) in options.setups.iter().enumerate() {
        let run = index as u32 + 1;
        let bodies = Arc::new(bodies::make(
            run,
            options.events,
            options.appointments,
            options.body_bytes,
        ));
        if index == 0 {
            println!("  body:        {} bytes", bodies[0].bytes.len());
        }
        eprintln!("{}: starting", setup.name());
        let running = Running::start(*setup, &options.dir, run).await?;
        let figures = measure(*setup, &running, bodies, options.connections).await?;
        eprintln!(
            "{}: {:.0} acks/s, all processed after {:.1} s",
            setup.name(),
            figures.ingest_rate(),
            figures.all_processed.as_secs_f64()
        );
        drop(running);
        results.push(figures);
    }
    println!();
    println!(
        "| setup | ingest ev/s | ack p50 ms | ack p99 ms | non-200 | processed when ingest ended | drain ev/s (processor alone) | end to end ev/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for figures in &results {
        let drain = figures
            .drain_rate(options.events)
            .map_or("—".to_owned(), |rate| format!("{rate:.0}"));
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {} | {} of {} | {} | {:.0} |",
            figures.setup.name(),
            figures.ingest_rate(),
            machine::millis(figures.quantile(0.5)),
            machine::millis(figures.quantile(0.99)),
            figures.refused,
            figures.processed_at_ingest_end,
            options.events,
            drain,
            options.events as f64 / figures.all_processed.as_secs_f64(),
        );
    }
    println!("load average after the run: {}", machine::load_average());
    Ok(())
}

/// Sends every body (connection `i` to replica `i % replicas`), then waits until all are
/// processed.
async fn measure(
    setup: Setup,
    running: &Running,
    bodies: Arc<Vec<Body>>,
    connections: usize,
) -> anyhow::Result<Figures> {
    let urls: Vec<String> = running
        .relays
        .iter()
        .map(|relay| relay.webhook_url())
        .collect();
    let metrics: Vec<String> = running
        .relays
        .iter()
        .map(|relay| format!("{}/metrics", relay.url()))
        .collect();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()?;
    let started = Instant::now();
    let mut senders = Vec::new();
    for connection in 0..connections {
        let client = client.clone();
        let url = urls[connection % urls.len()].clone();
        let bodies = bodies.clone();
        senders.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0;
            for body in bodies.iter().skip(connection).step_by(connections) {
                let sent = Instant::now();
                let answer = client
                    .post(&url)
                    .header("content-type", "text/plain")
                    .header(SIGNATURE_HEADER, &body.signature)
                    .header(AUTHORIZATION_HEADER, TOKEN)
                    .body(body.bytes.clone())
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status() == 200 => {
                        let _ = response.bytes().await;
                        latencies.push(sent.elapsed());
                    }
                    _ => refused += 1,
                }
            }
            (latencies, refused)
        }));
    }
    let mut latencies = Vec::with_capacity(bodies.len());
    let mut refused = 0;
    for sender in senders {
        let (more, refusals) = sender.await?;
        latencies.extend(more);
        refused += refusals;
    }
    let ingest = started.elapsed();
    let processed_at_ingest_end = processed(&client, &metrics).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = processed(&client, &metrics).await;
        if done >= latencies.len() as u64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{}: only {done} of {} processed after 5 minutes",
            setup.name(),
            latencies.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Figures {
        setup,
        ingest,
        latencies,
        refused,
        processed_at_ingest_end,
        all_processed: started.elapsed(),
    })
}

/// Events processed so far, summed over the processes' `/metrics`.
async fn processed(client: &reqwest::Client, metrics: &[String]) -> u64 {
    let mut total = 0.0;
    for url in metrics {
        let Ok(response) = client.get(url).send().await else {
            continue;
        };
        let text = response.text().await.unwrap_or_default();
        total += text
            .lines()
            .filter(|line| line.starts_with("kaarma_relay_events_processed_total"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total as u64
}
