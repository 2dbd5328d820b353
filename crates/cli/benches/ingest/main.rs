//! Ingest benchmark: throughput and acknowledgement latency of the relay (in-process
//! `Application` on a fresh SQLite file, WAL + `synchronous=FULL` + group commit, signature
//! and token checked) against a bare hyper server that reads the body and answers 200,
//! with the same signed ~5 KB appointment deliveries (a distinct `id` each), the same client
//! and the same machine, at several numbers of concurrent keep-alive connections.
//!
//! ```text
//! cargo bench -p kaarma-relay-cli --bench ingest                 # 2 s warm-up + 8 s per run
//! cargo bench -p kaarma-relay-cli --bench ingest -- --quick      # 0.5 s + 1.5 s per run
//! cargo bench -p kaarma-relay-cli --bench ingest -- --connections 64 --seconds 20 --servers relay
//! ```
//!
//! Options: `--quick`, `--connections 1,16,64,256`, `--servers bare,relay` (or `none`: only
//! the store on its own), `--warm-up S`,
//! `--seconds S` (measured), `--body-bytes N` (default 5120; 0 keeps the fixture's size),
//! `--dir PATH` (where the relay's database goes; default Cargo's target tmp dir, on disk).
//!
//! `cargo test` does not build it (`test = false`); run without `--bench` (as
//! `cargo test --benches` would) it says so and exits.

mod bare_server;
mod commit_stats;
mod deliveries;
mod load;
#[path = "../machine/mod.rs"]
mod machine;
mod server_under_test;
mod store_alone;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commit_stats::{CommitStats, CommitSummary};
use deliveries::Deliveries;
use load::{Measurement, Window};
use machine::{Machine, millis};
use server_under_test::{PATH, ServerKind, ServerUnderTest};

/// What to run, from the command line.
struct Options {
    connections: Vec<usize>,
    servers: Vec<ServerKind>,
    window: Window,
    body_bytes: usize,
    dir: PathBuf,
}

impl Options {
    /// Reads the arguments; `None` when not run by `cargo bench`.
    fn parse() -> anyhow::Result<Option<Self>> {
        let mut bench = false;
        let mut quick = false;
        let mut connections = vec![1, 16, 64, 256];
        let mut servers = vec![ServerKind::Bare, ServerKind::Relay];
        let mut warm_up = None;
        let mut measure = None;
        let mut body_bytes = 5 * 1024;
        let mut dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
            };
            match arg.as_str() {
                "--bench" => bench = true,
                "--quick" => quick = true,
                "--connections" => {
                    connections = value()?
                        .split(',')
                        .map(|n| n.trim().parse())
                        .collect::<Result<_, _>>()?;
                }
                "--servers" => {
                    servers = value()?
                        .split(',')
                        .filter(|name| !matches!(name.trim(), "" | "none"))
                        .map(|name| match name.trim() {
                            "bare" => Ok(ServerKind::Bare),
                            "relay" => Ok(ServerKind::Relay),
                            other => Err(anyhow::anyhow!("no server {other:?}: bare or relay")),
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--warm-up" => warm_up = Some(Duration::from_secs_f64(value()?.parse()?)),
                "--seconds" => measure = Some(Duration::from_secs_f64(value()?.parse()?)),
                "--body-bytes" => body_bytes = value()?.parse()?,
                "--dir" => dir = PathBuf::from(value()?),
                other => eprintln!("ingest bench: ignoring argument {other:?}"),
            }
        }
        if !bench {
            return Ok(None);
        }
        let (default_warm_up, default_measure) = if quick {
            (Duration::from_millis(500), Duration::from_millis(1500))
        } else {
            (Duration::from_secs(2), Duration::from_secs(8))
        };
        Ok(Some(Self {
            connections,
            servers,
            window: Window {
                warm_up: warm_up.unwrap_or(default_warm_up),
                measure: measure.unwrap_or(default_measure),
            },
            body_bytes,
            dir,
        }))
    }
}

/// One server at one level.
struct Run {
    connections: usize,
    kind: ServerKind,
    measurement: Measurement,
    commits: Option<CommitSummary>,
    /// Size of the relay's database files after the run.
    database_bytes: u64,
}

fn main() -> anyhow::Result<()> {
    let Some(options) = Options::parse()? else {
        println!("ingest bench: run it with `cargo bench -p kaarma-relay-cli --bench ingest`");
        return Ok(());
    };
    std::fs::create_dir_all(&options.dir)?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let deliveries = Arc::new(Deliveries::new(options.body_bytes));

    println!("kaarma-relay ingest benchmark");
    Machine::describe(&options.dir).print();
    println!(
        "requests: POST {PATH}, text/plain, {} bytes (fixtures/events/appointment-created.json, \
         comment lengthened), a distinct id each, signed (HMAC-SHA256) with x-authorization-token",
        deliveries.body_len()
    );
    println!(
        "client:   one keep-alive HTTP/1.1 connection per task (hyper 1.x), closed loop, \
         building and signing a delivery takes {:.1} µs",
        client_cost(&deliveries).as_secs_f64() * 1e6
    );
    println!(
        "runs:     {:.1} s warm-up + {:.1} s measured per server and level; servers and \
         client on their own {cpus}-thread Tokio runtimes",
        options.window.warm_up.as_secs_f64(),
        options.window.measure.as_secs_f64()
    );
    println!(
        "relay:    in-process Application on a fresh SQLite file under {} \
         (WAL, synchronous=FULL, group commit)",
        options.dir.display()
    );
    println!();

    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    let mut run_number = 0_u32;
    for &connections in &options.connections {
        for &kind in &options.servers {
            run_number += 1;
            let dir = tempfile::tempdir_in(&options.dir)?;
            let server = ServerUnderTest::start(kind, dir.path(), cpus)?;
            let before = CommitStats::now();
            let started = Instant::now();
            let measurement = client.block_on(load::drive(
                server.address,
                PATH,
                connections,
                options.window,
                deliveries.clone(),
                run_number,
            ));
            let commits = (kind == ServerKind::Relay)
                .then(|| CommitStats::now().since(&before, started.elapsed()));
            server.stop()?;
            let database_bytes = directory_bytes(dir.path());
            eprintln!(
                "  {:>4} connections, {:<10}: {:>8.0} req/s",
                connections,
                kind.name(),
                measurement.throughput()
            );
            runs.push(Run {
                connections,
                kind,
                measurement,
                commits,
                database_bytes,
            });
        }
    }
    let mut store_runs = Vec::new();
    for batch in STORE_BATCHES {
        run_number += 1;
        let dir = tempfile::tempdir_in(&options.dir)?;
        store_runs.push(client.block_on(store_alone::run(
            dir.path(),
            deliveries.clone(),
            batch,
            options.window.measure / 2,
            run_number,
        ))?);
    }
    println!();
    println!("load average at the end: {}", machine::load_average());
    print_report(&runs);
    print_store_report(&store_runs);
    Ok(())
}

/// Batch sizes the store is timed with on its own: one event, and about what the relay's
/// group commit gathers at 16, 64 and 256 connections.
const STORE_BATCHES: [usize; 4] = [1, 8, 32, 128];

fn print_store_report(runs: &[store_alone::StoreRun]) {
    println!();
    println!("store alone: SqlStore::insert_events back to back, no HTTP, no processor");
    println!(
        "{:>5}  {:>9}  {:>9}  {:>9}  {:>9}  {:>8}",
        "batch", "commits", "ms/commit", "events/s", "ms/event", "KB/event"
    );
    for run in runs {
        println!(
            "{:>5}  {:>9}  {:>9.3}  {:>9.0}  {:>9.3}  {:>8.1}",
            run.batch,
            run.commits,
            millis(run.per_commit()),
            run.events_per_second(),
            millis(run.per_commit()) / run.batch as f64,
            run.database_bytes as f64 / 1024.0 / (run.commits * run.batch).max(1) as f64
        );
    }
}

/// The size of the files in `dir` (the database, its WAL and shared memory).
fn directory_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum()
}

/// Mean time to build and sign one delivery, the client's own share of each request.
fn client_cost(deliveries: &Deliveries) -> Duration {
    const SAMPLES: u32 = 2_000;
    let started = Instant::now();
    for sequence in 0..SAMPLES {
        std::hint::black_box(deliveries.delivery(0, 0, u64::from(sequence)));
    }
    started.elapsed() / SAMPLES
}

fn print_report(runs: &[Run]) {
    println!("throughput and acknowledgement latency (client side, request written → answer read)");
    println!(
        "{:>5}  {:<10}  {:>9}  {:>8}  {:>8}  {:>8}  {:>9}  {:>7}  {:>6}",
        "conns", "server", "answered", "req/s", "p50 ms", "p99 ms", "max ms", "non-200", "failed"
    );
    for run in runs {
        let m = &run.measurement;
        println!(
            "{:>5}  {:<10}  {:>9}  {:>8.0}  {:>8.2}  {:>8.2}  {:>9.2}  {:>7}  {:>6}",
            run.connections,
            run.kind.name(),
            m.completed,
            m.throughput(),
            millis(m.quantile(0.50)),
            millis(m.quantile(0.99)),
            millis(m.quantile(1.0)),
            m.non_200,
            m.failed
        );
    }
    println!();
    println!("relay / bare hyper (throughput ratio; latency as a multiple of bare's)");
    println!(
        "{:>5}  {:>11}  {:>8}  {:>8}",
        "conns", "req/s ratio", "p50 ×", "p99 ×"
    );
    for relay in runs.iter().filter(|run| run.kind == ServerKind::Relay) {
        let Some(bare) = runs
            .iter()
            .find(|run| run.kind == ServerKind::Bare && run.connections == relay.connections)
        else {
            continue;
        };
        let (r, b) = (&relay.measurement, &bare.measurement);
        let times = |q: f64| r.quantile(q).as_secs_f64() / b.quantile(q).as_secs_f64().max(1e-9);
        println!(
            "{:>5}  {:>11.3}  {:>8.1}  {:>8.1}",
            relay.connections,
            r.throughput() / b.throughput().max(1e-9),
            times(0.50),
            times(0.99)
        );
    }
    println!();
    println!("relay group commit (from its own histograms, warm-up included)");
    println!(
        "{:>5}  {:>9}  {:>13}  {:>9}  {:>11}  {:>10}  {:>11}  {:>8}",
        "conns",
        "commits/s",
        "events/commit",
        "ms/commit",
        "writer busy",
        "handler ms",
        "processed/s",
        "KB/event"
    );
    for run in runs {
        if let Some(commits) = &run.commits {
            println!(
                "{:>5}  {:>9.0}  {:>13.1}  {:>9.3}  {:>10.0}%  {:>10.3}  {:>11.0}  {:>8.1}",
                run.connections,
                commits.commits_per_second,
                commits.mean_batch,
                millis(commits.mean_commit),
                commits.writer_busy * 100.0,
                millis(commits.mean_handler),
                commits.processed_per_second,
                run.database_bytes as f64 / 1024.0 / commits.accepted.max(1) as f64
            );
        }
    }
}
