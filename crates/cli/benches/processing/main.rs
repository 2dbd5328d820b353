//! Processing benchmark: how fast the relay turns stored events into appointment state,
//! history, changes and deliveries, and whether the cost per event stays flat as the store
//! grows — measured on a small store (10,000 events) and on a large one (1,000,000), in the
//! same run, on a real SQLite file (WAL, `synchronous=FULL`), in-process, without HTTP.
//!
//! ```text
//! cargo bench -p kaarma-relay-cli --bench processing               # 10k and 1M stored
//! cargo bench -p kaarma-relay-cli --bench processing -- --quick    # 10k and 100k stored
//! cargo bench -p kaarma-relay-cli --bench processing -- --stored 300000 --measure 20000
//! cargo bench -p kaarma-relay-cli --bench processing -- --stored 10000 --measure 30000 \
//!     --perf target/processing.perf.data                          # profile the processing
//! ```
//!
//! At each size the store is first filled (the emulator's varied appointment lifecycles,
//! stored through `SqlStore::insert_events` 1,000 at a time and processed 1,024 at a time),
//! then the next `--measure` events are timed twice: stored in group-commit-sized batches
//! (`--ingest-batch`, 32), then processed by `Processor::process_batch` with the relay's
//! default batch (`--batch-size`, 128). The report gives both rates at both sizes and the
//! large/small ratios (1.0 = flat).
//!
//! Options: `--quick`, `--stored N` (default 1,000,000; 100,000 with `--quick`), `--small N`
//! (10,000), `--measure N` (10,000), `--ingest-batch N`, `--batch-size N`, `--appointments N`
//! (appointments in the emulator's plan, 2,500), `--dir PATH` (where the database goes,
//! default Cargo's target tmp dir; it is deleted at the end), `--perf PATH` (record the
//! small size's processing with `perf record --call-graph dwarf` into PATH), `--keep DIR`
//! (move the final database into DIR instead of deleting it, for
//! `--bench resources -- --database DIR`).
//!
//! `cargo test` does not build it (`test = false`); run without `--bench` it says so and
//! exits.

#[path = "../machine/mod.rs"]
mod machine;
// Shared with the resources bench, which also starts from a kept database.
#[allow(dead_code)]
#[path = "../store_fill/mod.rs"]
mod store_fill;
#[path = "../workload/mod.rs"]
mod workload;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use machine::{Machine, millis};
use store_fill::{FillStretch, FilledStore};
use workload::Workload;

/// What to run, from the command line.
struct Options {
    small: u64,
    stored: u64,
    measure: usize,
    ingest_batch: usize,
    batch_size: u32,
    appointments: usize,
    dir: PathBuf,
    perf: Option<PathBuf>,
    keep: Option<PathBuf>,
}

impl Options {
    /// Reads the arguments; `None` when not run by `cargo bench`.
    fn parse() -> anyhow::Result<Option<Self>> {
        let mut bench = false;
        let mut quick = false;
        let mut stored = None;
        let mut options = Self {
            small: 10_000,
            stored: 1_000_000,
            measure: 10_000,
            ingest_batch: 32,
            batch_size: 128,
            appointments: 2_500,
            dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
            perf: None,
            keep: None,
        };
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
                "--small" => options.small = value()?.parse()?,
                "--measure" => options.measure = value()?.parse()?,
                "--ingest-batch" => options.ingest_batch = value()?.parse()?,
                "--batch-size" => options.batch_size = value()?.parse()?,
                "--appointments" => options.appointments = value()?.parse()?,
                "--dir" => options.dir = PathBuf::from(value()?),
                "--perf" => options.perf = Some(PathBuf::from(value()?)),
                "--keep" => options.keep = Some(PathBuf::from(value()?)),
                other => eprintln!("processing bench: ignoring argument {other:?}"),
            }
        }
        if !bench {
            return Ok(None);
        }
        options.stored = stored.unwrap_or(if quick { 100_000 } else { 1_000_000 });
        anyhow::ensure!(
            options.ingest_batch > 0 && options.measure > 0,
            "--ingest-batch and --measure must be above 0"
        );
        Ok(Some(options))
    }

    /// The store sizes measured, smallest first.
    fn sizes(&self) -> Vec<u64> {
        let mut sizes = vec![self.small, self.stored];
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }
}

/// What was measured at one store size.
struct Measurement {
    /// Events stored and processed before the measured ones.
    stored: u64,
    /// Time of each `insert_events` call.
    commits: Vec<Duration>,
    /// Events per `insert_events` call.
    ingest_batch: usize,
    /// Time of each `process_batch` call, with the events it took.
    batches: Vec<(Duration, usize)>,
    /// Database files afterwards.
    database_bytes: u64,
}

impl Measurement {
    fn ingest_per_second(&self) -> f64 {
        let elapsed: Duration = self.commits.iter().sum();
        (self.commits.len() * self.ingest_batch) as f64 / elapsed.as_secs_f64()
    }

    fn processed(&self) -> usize {
        self.batches.iter().map(|(_, events)| events).sum()
    }

    fn processing_per_second(&self) -> f64 {
        let elapsed: Duration = self.batches.iter().map(|(elapsed, _)| *elapsed).sum();
        self.processed() as f64 / elapsed.as_secs_f64()
    }

    /// The median commit, in ms.
    fn commit_p50(&self) -> f64 {
        let mut commits = self.commits.clone();
        commits.sort_unstable();
        millis(commits[commits.len() / 2])
    }

    /// Events per second from the median full batch (robust to other work on the machine).
    fn processing_per_second_p50(&self) -> f64 {
        let full = self
            .batches
            .iter()
            .map(|(_, events)| *events)
            .max()
            .unwrap_or(1);
        let mut times: Vec<Duration> = self
            .batches
            .iter()
            .filter(|(_, events)| *events == full)
            .map(|(elapsed, _)| *elapsed)
            .collect();
        times.sort_unstable();
        full as f64 / times[times.len() / 2].as_secs_f64()
    }

    /// The median full batch, in ms.
    fn batch_p50(&self) -> f64 {
        let full = self
            .batches
            .iter()
            .map(|(_, events)| *events)
            .max()
            .unwrap_or(1);
        full as f64 * 1000.0 / self.processing_per_second_p50()
    }
}

fn main() -> anyhow::Result<()> {
    let Some(options) = Options::parse()? else {
        println!(
            "processing bench: run it with `cargo bench -p kaarma-relay-cli --bench processing`"
        );
        return Ok(());
    };
    std::fs::create_dir_all(&options.dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(1, usize::from))
        .thread_name("bench-processing")
        .enable_all()
        .build()?;
    let begun = Instant::now();

    println!("kaarma-relay processing benchmark");
    Machine::describe(&options.dir).print();
    let workload = Workload::plan(options.appointments, 7)?;
    let mix: Vec<String> = workload
        .mix()
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    println!(
        "events:   the emulator's plan of {} appointments, {} events ({:.1} per appointment; {}), \
         mean body {} bytes, planned in {:.2} s; repeated with new appointment uuids and \
         event ids as often as needed",
        workload.appointments_per_copy(),
        workload.events_per_copy(),
        workload.events_per_copy() as f64 / workload.appointments_per_copy().max(1) as f64,
        mix.join(", "),
        workload.mean_body_bytes(),
        workload.planned_in().as_secs_f64()
    );
    println!(
        "store:    SqlStore on a fresh SQLite file under {} (WAL, synchronous=FULL); \
         every change enqueued for one route (no delivery worker)",
        options.dir.display()
    );
    println!(
        "measured: at {} stored events, the next {} stored in batches of {} \
         (insert_events), then processed in batches of {} (Processor::process_batch)",
        options
            .sizes()
            .iter()
            .map(|size| size.to_string())
            .collect::<Vec<_>>()
            .join(" and "),
        options.measure,
        options.ingest_batch,
        options.batch_size
    );
    println!();

    let dir = tempfile::tempdir_in(&options.dir)?;
    let measurements = runtime.block_on(async {
        let mut store = FilledStore::create(dir.path()).await?;
        let mut measurements = Vec::new();
        let mut stretches = Vec::new();
        for (index, &size) in options.sizes().iter().enumerate() {
            let filling = Instant::now();
            stretches.extend(
                store
                    .fill_to(&workload, size, |stretch| report_progress(stretch, size))
                    .await?,
            );
            eprintln!(
                "  filled to {size} events in {:.0} s",
                filling.elapsed().as_secs_f64()
            );
            let perf = match (&options.perf, index) {
                (Some(path), 0) => Some(PerfRecording::start(path)?),
                _ => None,
            };
            let measurement = measure(&mut store, &workload, &options, dir.path()).await?;
            if let Some(perf) = perf {
                perf.stop()?;
            }
            eprintln!(
                "  at {size}: ingest {:.0} events/s, processing {:.0} events/s",
                measurement.ingest_per_second(),
                measurement.processing_per_second()
            );
            measurements.push(measurement);
        }
        let stored = store.stored;
        store.close().await;
        anyhow::Ok((measurements, stretches, stored))
    })?;
    let (measurements, stretches, stored) = measurements;
    let database_bytes = store_fill::directory_bytes(dir.path());
    let kept = match &options.keep {
        Some(keep) => {
            store_fill::keep(dir.path(), keep, stored)?;
            format!("kept in {}", keep.display())
        }
        None => "deleted".to_owned(),
    };
    drop(dir);

    println!();
    println!(
        "load average at the end: {}; whole run {:.0} s; database at the end {:.2} GB ({kept})",
        machine::load_average(),
        begun.elapsed().as_secs_f64(),
        database_bytes as f64 / 1e9
    );
    print_report(&measurements, &options);
    print_fill(&stretches);
    Ok(())
}

/// Stores the next `measure` events in ingest-sized batches, then processes them.
async fn measure(
    store: &mut FilledStore,
    workload: &Workload,
    options: &Options,
    dir: &std::path::Path,
) -> anyhow::Result<Measurement> {
    let stored = store.stored;
    let events = workload.events(stored, options.measure, kaarma_relay::clock::now_millis());
    let mut commits = Vec::with_capacity(events.len() / options.ingest_batch + 1);
    for batch in events.chunks(options.ingest_batch) {
        if batch.len() == options.ingest_batch {
            commits.push(store.insert(batch).await?);
        } else {
            store.insert(batch).await?;
        }
    }
    let processor = store_fill::processor(store.store.clone(), options.batch_size);
    let mut batches = Vec::new();
    loop {
        let started = Instant::now();
        let taken = processor.process_batch().await?;
        if taken == 0 {
            break;
        }
        batches.push((started.elapsed(), taken));
    }
    anyhow::ensure!(
        batches.iter().map(|(_, taken)| taken).sum::<usize>() == options.measure,
        "every measured event was processed"
    );
    Ok(Measurement {
        stored,
        commits,
        ingest_batch: options.ingest_batch,
        batches,
        database_bytes: store_fill::directory_bytes(dir),
    })
}

fn report_progress(stretch: &FillStretch, target: u64) {
    let done = stretch.from + stretch.events;
    if done.is_multiple_of(100_000) || done == target {
        eprintln!(
            "  filling: {done}/{target} stored and processed \
             (last {} : insert {:.0}/s, process {:.0}/s)",
            stretch.events,
            stretch.events as f64 / stretch.inserting.as_secs_f64(),
            stretch.events as f64 / stretch.processing.as_secs_f64()
        );
    }
}

fn print_report(measurements: &[Measurement], options: &Options) {
    println!();
    println!(
        "ingest (insert_events, batches of {}) and processing (process_batch, batches of {}) \
         of {} events on top of the stored ones",
        options.ingest_batch, options.batch_size, options.measure
    );
    println!(
        "{:>9}  {:>10}  {:>10}  {:>13}  {:>11}  {:>13}  {:>12}  {:>8}",
        "stored",
        "ingest/s",
        "ms/commit",
        "processing/s",
        "ms/batch",
        "p50 batch: /s",
        "ms/batch p50",
        "DB GB"
    );
    for m in measurements {
        let processing_elapsed: f64 = m.batches.iter().map(|(e, _)| e.as_secs_f64()).sum();
        println!(
            "{:>9}  {:>10.0}  {:>10.2}  {:>13.0}  {:>11.2}  {:>13.0}  {:>12.2}  {:>8.2}",
            m.stored,
            m.ingest_per_second(),
            m.commit_p50(),
            m.processing_per_second(),
            processing_elapsed * 1000.0 / m.batches.len().max(1) as f64,
            m.processing_per_second_p50(),
            m.batch_p50(),
            m.database_bytes as f64 / 1e9
        );
    }
    if let [small, .., large] = measurements {
        println!();
        println!(
            "{} stored / {} stored (1.00 = the cost per event stays flat; below 1 = slower when large)",
            large.stored, small.stored
        );
        println!(
            "  ingest rate:             {:.2}",
            large.ingest_per_second() / small.ingest_per_second()
        );
        println!(
            "  ingest median commit:    {:.2} (time, above 1 = slower)",
            large.commit_p50() / small.commit_p50()
        );
        println!(
            "  processing rate:         {:.2}",
            large.processing_per_second() / small.processing_per_second()
        );
        println!(
            "  processing, median batch: {:.2}",
            large.processing_per_second_p50() / small.processing_per_second_p50()
        );
    }
}

/// The filling as a growth curve: insert and processing rates (batches of 1,000 and 1,024)
/// at about ten points on the way.
fn print_fill(stretches: &[FillStretch]) {
    println!();
    println!("while filling (insert_events × 1,000, process_batch × 1,024), about ten points");
    println!(
        "{:>9}  {:>11}  {:>13}",
        "stored", "insert/s", "processing/s"
    );
    let step = (stretches.len() / 10).max(1);
    for (index, stretch) in stretches.iter().enumerate() {
        if index % step == 0 || index + 1 == stretches.len() {
            println!(
                "{:>9}  {:>11.0}  {:>13.0}",
                stretch.from,
                stretch.events as f64 / stretch.inserting.as_secs_f64(),
                stretch.events as f64 / stretch.processing.as_secs_f64()
            );
        }
    }
}

/// `perf record` attached to this process while the small store's events are measured.
struct PerfRecording(Child);

impl PerfRecording {
    fn start(path: &std::path::Path) -> anyhow::Result<Self> {
        let child = Command::new("perf")
            .args(["record", "--call-graph", "dwarf,16384", "-F", "199", "-o"])
            .arg(path)
            .args(["-p", &std::process::id().to_string()])
            .spawn()?;
        // perf needs a moment to attach before the work starts.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Self(child))
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let pid = i32::try_from(self.0.id())?;
        // SAFETY: `kill` is called with the id of a child this process started and still owns.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        self.0.wait()?;
        Ok(())
    }
}
