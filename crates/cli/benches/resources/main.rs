//! Resource benchmark: the release `kaarma-relay serve` binary's resident memory at rest and
//! at its peak under load, and its CPU time per 1,000 events (ingested, processed and
//! delivered), on a database holding 1,000,000 events against one holding 10,000 — the
//! baseline, measured the same way in the same run.
//!
//! ```text
//! cargo bench -p kaarma-relay-cli --bench resources               # 10k and 1M stored
//! cargo bench -p kaarma-relay-cli --bench resources -- --quick    # 10k and 100k stored
//! cargo bench -p kaarma-relay-cli --bench resources -- --stored 300000 --events 40000
//! cargo bench -p kaarma-relay-cli --bench processing -- --keep target/db-1m &&
//!     cargo bench -p kaarma-relay-cli --bench resources -- --database target/db-1m
//! ```
//!
//! For each size: a database is filled in this process as the processing bench fills it
//! (the emulator's appointment lifecycles, stored with `SqlStore::insert_events` and
//! processed by the relay's `Processor`) and closed; the binary starts on it with one `http`
//! route to a local receiver; after 5 s at rest `/proc/<pid>/status` gives `VmRSS` and
//! `VmHWM`; then the emulator sends about `--events` new events (signed, up to 64 requests
//! in flight, as fast as the relay answers) and, once the receiver has every change,
//! `/proc/<pid>/stat` gives the CPU time (`utime` + `stime`) the load cost, `VmHWM` the peak,
//! and after 5 s more at rest `VmRSS` again.
//!
//! Options: `--quick`, `--stored N` (1,000,000; 100,000 with `--quick`), `--small N`
//! (10,000), `--events N` (20,000), `--dir PATH` (where the databases go, default Cargo's
//! target tmp dir; each is deleted after its run), `--database DIR` (instead of filling the
//! large one, use the database `--bench processing -- --keep DIR` left; it is not deleted,
//! and gets the load's events added).
//!
//! `cargo test` does not build it (`test = false`); run without `--bench` it says so and
//! exits.

// Shared with the end-to-end bench, which reports the lags too.
#[allow(dead_code)]
#[path = "../change_receiver/mod.rs"]
mod change_receiver;
#[path = "../machine/mod.rs"]
mod machine;
// Shared with the end-to-end bench, which reads the relay's metrics.
#[allow(dead_code)]
#[path = "../relay_process/mod.rs"]
mod relay_process;
// Shared with the processing bench, which also keeps its database.
#[allow(dead_code)]
#[path = "../store_fill/mod.rs"]
mod store_fill;
// Shared with the processing bench, which reports more of it.
#[allow(dead_code)]
#[path = "../workload/mod.rs"]
mod workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use change_receiver::ChangeReceiver;
use kaarma_sim::{LoadOptions, LoadPlan};
use machine::Machine;
use relay_process::{Memory, RelayProcess};
use store_fill::FilledStore;
use workload::Workload;

/// What to run, from the command line.
struct Options {
    small: u64,
    stored: u64,
    events: usize,
    dir: PathBuf,
    database: Option<PathBuf>,
}

impl Options {
    /// Reads the arguments; `None` when not run by `cargo bench`.
    fn parse() -> anyhow::Result<Option<Self>> {
        let mut bench = false;
        let mut quick = false;
        let mut stored = None;
        let mut small = 10_000;
        let mut events = 20_000;
        let mut dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let mut database = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
            };
            match arg.as_str() {
                "--bench" => bench = true,
                "--quick" => quick = true,
                "--stored" => stored = Some(value()?.parse()?),
                "--small" => small = value()?.parse()?,
                "--events" => events = value()?.parse()?,
                "--dir" => dir = PathBuf::from(value()?),
                "--database" => database = Some(PathBuf::from(value()?)),
                other => eprintln!("resources bench: ignoring argument {other:?}"),
            }
        }
        if !bench {
            return Ok(None);
        }
        Ok(Some(Self {
            small,
            stored: stored.unwrap_or(if quick { 100_000 } else { 1_000_000 }),
            events,
            dir,
            database,
        }))
    }
}

/// A database to run the relay on.
enum Database {
    /// Filled here to this many events, deleted afterwards.
    Filled(u64),
    /// Kept by `--bench processing -- --keep DIR`, used as it is.
    Kept(PathBuf),
}

/// Fills a fresh store in `dir` to `size` events, as the processing bench does, and closes it.
fn fill(
    runtime: &tokio::runtime::Runtime,
    workload: &Workload,
    dir: &std::path::Path,
    size: u64,
) -> anyhow::Result<()> {
    let filling = Instant::now();
    let stretches = runtime.block_on(async {
        let mut store = FilledStore::create(dir).await?;
        let stretches = store
            .fill_to(workload, size, |stretch| {
                let done = stretch.from + stretch.events;
                if done % 100_000 == 0 || done == size {
                    eprintln!("  filling: {done}/{size}");
                }
            })
            .await?;
        store.close().await;
        anyhow::Ok(stretches)
    })?;
    let inserting: Duration = stretches.iter().map(|stretch| stretch.inserting).sum();
    let processing: Duration = stretches.iter().map(|stretch| stretch.processing).sum();
    eprintln!(
        "  filled to {size} events in {:.0} s ({:.0} s inserting, {:.0} s processing)",
        filling.elapsed().as_secs_f64(),
        inserting.as_secs_f64(),
        processing.as_secs_f64()
    );
    Ok(())
}

/// What one database size measured.
struct Run {
    stored: u64,
    database_bytes: u64,
    at_rest: Memory,
    under_load: Memory,
    /// Highest `VmRSS` seen by sampling every 100 ms during the load.
    sampled_peak_kib: u64,
    after_load: Memory,
    events: usize,
    cpu: Duration,
    elapsed: Duration,
    retries: u64,
    ack_p99: Duration,
}

impl Run {
    fn cpu_per_thousand(&self) -> Duration {
        self.cpu.mul_f64(1000.0 / self.events.max(1) as f64)
    }
}

fn main() -> anyhow::Result<()> {
    let Some(options) = Options::parse()? else {
        println!(
            "resources bench: run it with `cargo bench -p kaarma-relay-cli --bench resources`"
        );
        return Ok(());
    };
    std::fs::create_dir_all(&options.dir)?;
    let begun = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(1, usize::from))
        .thread_name("bench-resources")
        .enable_all()
        .build()?;

    println!("kaarma-relay resource benchmark");
    Machine::describe(&options.dir).print();
    let workload = Workload::plan(2_500, 7)?;
    println!(
        "stored:   the processing bench's fill ({} events per copy of the emulator's plan of {} \
         appointments), stored and processed in this process, then closed",
        workload.events_per_copy(),
        workload.appointments_per_copy()
    );
    println!(
        "relay:    {} serve on it, one http route to a local receiver",
        env!("CARGO_BIN_EXE_kaarma-relay")
    );
    println!(
        "load:     about {} new events from kaarma_sim (new appointments), signed, 64 in flight, \
         as fast as the relay answers; CPU = utime + stime of the relay process",
        options.events
    );
    println!();

    let receiver = ChangeReceiver::start()?;
    let mut runs = Vec::new();
    let mut databases = vec![Database::Filled(options.small)];
    match &options.database {
        Some(kept) => databases.push(Database::Kept(kept.clone())),
        None if options.stored != options.small => {
            databases.push(Database::Filled(options.stored));
        }
        None => {}
    }
    for (index, database) in databases.iter().enumerate() {
        let temporary = tempfile::tempdir_in(&options.dir)?;
        let (dir, stored, seed) = match database {
            Database::Filled(size) => {
                fill(&runtime, &workload, temporary.path(), *size)?;
                (temporary.path().to_owned(), *size, 200 + index as u64)
            }
            // A kept database may hold an earlier run's load already: a seed of its own gives
            // new event ids, which a repeat of the old ones (dropped as duplicates) would not.
            Database::Kept(dir) => (
                dir.clone(),
                store_fill::kept_events(dir)?,
                kaarma_relay::clock::now_millis() as u64,
            ),
        };
        let database_bytes = store_fill::directory_bytes(&dir);
        let run = measure(&runtime, &receiver, &dir, stored, options.events, seed)?;
        eprintln!(
            "  {stored} stored: rest {} MiB, peak {} MiB, {:.3} s CPU per 1,000 events",
            run.at_rest.rss_kib / 1024,
            run.under_load.peak_kib / 1024,
            run.cpu_per_thousand().as_secs_f64()
        );
        runs.push(Run {
            database_bytes,
            ..run
        });
    }
    receiver.stop();

    println!();
    println!(
        "load average at the end: {}; whole run {:.0} s",
        machine::load_average(),
        begun.elapsed().as_secs_f64()
    );
    print_report(&runs);
    Ok(())
}

/// Starts the relay on the database in `dir`, measures it at rest, under the load and after.
fn measure(
    runtime: &tokio::runtime::Runtime,
    receiver: &ChangeReceiver,
    dir: &std::path::Path,
    stored: u64,
    events: usize,
    seed: u64,
) -> anyhow::Result<Run> {
    let relay = RelayProcess::start(dir, &store_fill::database_url(dir), &receiver.url(), None)?;
    std::thread::sleep(Duration::from_secs(5));
    let at_rest = relay.memory()?;

    // About 4.3 events per appointment; the emulator creates them far faster than the
    // relay answers, so the 64 requests in flight are the limit.
    let appointments = events * 10 / 43;
    let mut sim = LoadOptions::new(relay.ingest_url(), relay_process::SECRET, appointments);
    sim.token = Some(relay_process::TOKEN.to_owned());
    sim.rate = 5_000.0;
    sim.seed = seed;
    sim.time_scale = 0.01;
    sim.concurrency = 64;
    let plan = LoadPlan::generate(&sim)?;
    let planned = plan.events.len();

    let _ = receiver.take();
    let sampling = AtomicBool::new(true);
    let sampled_peak = AtomicU64::new(0);
    let cpu_before = relay.cpu_time()?;
    let started = Instant::now();
    let report = std::thread::scope(|scope| {
        scope.spawn(|| {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(memory) = relay.memory() {
                    sampled_peak.fetch_max(memory.rss_kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let report = runtime.block_on(kaarma_sim::load::execute(plan, &sim, ()));
        if let Ok(report) = &report {
            receiver.wait_for(report.events, Duration::from_secs(600));
        }
        sampling.store(false, Ordering::Relaxed);
        report
    })?;
    let elapsed = started.elapsed();
    let cpu = relay.cpu_time()? - cpu_before;
    let under_load = relay.memory()?;
    let delivered = receiver.take().changes;
    anyhow::ensure!(
        delivered == report.events && report.events == planned,
        "{delivered} changes delivered for {} events sent ({planned} planned)",
        report.events
    );
    std::thread::sleep(Duration::from_secs(5));
    let after_load = relay.memory()?;
    relay.stop()?;
    Ok(Run {
        stored,
        database_bytes: 0,
        at_rest,
        under_load,
        sampled_peak_kib: sampled_peak.into_inner(),
        after_load,
        events: report.events,
        cpu,
        elapsed,
        retries: report.retries,
        ack_p99: report.ack_latency.p99,
    })
}

fn print_report(runs: &[Run]) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!();
    println!(
        "the relay process (MiB; CPU = utime + stime while the load was ingested, processed and delivered)"
    );
    println!(
        "{:>9}  {:>7}  {:>8}  {:>9}  {:>11}  {:>10}  {:>7}  {:>8}  {:>12}  {:>8}  {:>8}  {:>7}",
        "stored",
        "DB GB",
        "rest RSS",
        "peak HWM",
        "sampled max",
        "after RSS",
        "events",
        "CPU s",
        "CPU ms/1000",
        "events/s",
        "ack p99",
        "retries"
    );
    for run in runs {
        println!(
            "{:>9}  {:>7.2}  {:>8.1}  {:>9.1}  {:>11.1}  {:>10.1}  {:>7}  {:>8.2}  {:>12.0}  {:>8.0}  {:>5.0} ms  {:>7}",
            run.stored,
            run.database_bytes as f64 / 1e9,
            mib(run.at_rest.rss_kib),
            mib(run.under_load.peak_kib),
            mib(run.sampled_peak_kib),
            mib(run.after_load.rss_kib),
            run.events,
            run.cpu.as_secs_f64(),
            run.cpu_per_thousand().as_secs_f64() * 1000.0,
            run.events as f64 / run.elapsed.as_secs_f64(),
            machine::millis(run.ack_p99),
            run.retries
        );
    }
    if let [small, .., large] = runs {
        let ratio = |large: f64, small: f64| large / small.max(f64::MIN_POSITIVE);
        println!();
        println!(
            "{} stored / {} stored (1.00 = no growth)",
            large.stored, small.stored
        );
        println!(
            "  RSS at rest:         {:.2}",
            ratio(large.at_rest.rss_kib as f64, small.at_rest.rss_kib as f64)
        );
        println!(
            "  peak RSS (VmHWM):    {:.2}",
            ratio(
                large.under_load.peak_kib as f64,
                small.under_load.peak_kib as f64
            )
        );
        println!(
            "  CPU per 1,000 events: {:.2}",
            ratio(
                large.cpu_per_thousand().as_secs_f64(),
                small.cpu_per_thousand().as_secs_f64()
            )
        );
    }
}
