//! Retention benchmark: how fast a sweep removes finished records, and what it does to
//! ingest commits while it runs, measured in one run on a real SQLite file (WAL,
//! `synchronous=FULL`), in-process.
//!
//! ```text
//! cargo bench -p kaarma-relay-cli --bench retention               # 200,000 stored
//! cargo bench -p kaarma-relay-cli --bench retention -- --quick    # 20,000 stored
//! cargo bench -p kaarma-relay-cli --bench retention -- --stored 1000000
//! ```
//!
//! The store is filled as the processing bench fills it (`--stored` events of the emulator's
//! lifecycles, processed, every change enqueued for one route), and every delivery is then
//! marked delivered through the store's own claim and finish calls. Then, in order:
//!
//! - **Baseline:** new events are stored in batches of 32 (the group commit's batch at 64
//!   connections, `docs/BENCHMARKS.md`), back to back, each commit timed (`--commits`, 300).
//! - **During the sweep:** `retention::sweep` removes everything the fill left, while the same
//!   loop keeps storing batches; each commit that ends before the sweep does is timed.
//!
//! The report gives the rows removed by kind, the sweep's time and rows/s, the commit p50,
//! p99 and max with and without the sweep and their ratios, and the database file and its
//! free pages before and after (SQLite reuses freed pages; it does not shrink the file).
//!
//! `cargo test` does not build it (`test = false`); run without `--bench` it says so and
//! exits.

#[path = "../machine/mod.rs"]
mod machine;
// Shared with the processing and resources benches; each uses part of them.
#[allow(dead_code)]
#[path = "../store_fill/mod.rs"]
mod store_fill;
#[allow(dead_code)]
#[path = "../workload/mod.rs"]
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kaarma_relay::clock;
use kaarma_relay::retention;
use kaarma_relay::store::{AttemptResult, FinishedAttempt, Pruned, Store};
use kaarma_sim::publisher::LatencySummary;
use machine::{Machine, millis};
use store_fill::FilledStore;
use tokio_util::sync::CancellationToken;
use workload::Workload;

/// Events per measured commit.
const COMMIT_BATCH: usize = 32;
/// Deliveries claimed and finished at once while marking the fill delivered.
const DELIVERED_BATCH: u32 = 1_000;

struct Options {
    stored: u64,
    commits: usize,
    dir: PathBuf,
}

impl Options {
    /// Reads the arguments; `None` when not run by `cargo bench`.
    fn parse() -> anyhow::Result<Option<Self>> {
        let mut bench = false;
        let mut quick = false;
        let mut stored = None;
        let mut options = Self {
            stored: 0,
            commits: 300,
            dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
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
                "--commits" => options.commits = value()?.parse()?,
                "--dir" => options.dir = PathBuf::from(value()?),
                other => eprintln!("retention bench: ignoring argument {other:?}"),
            }
        }
        if !bench {
            return Ok(None);
        }
        options.stored = stored.unwrap_or(if quick { 20_000 } else { 200_000 });
        anyhow::ensure!(options.commits > 0, "--commits must be above 0");
        Ok(Some(options))
    }
}

fn main() -> anyhow::Result<()> {
    let Some(options) = Options::parse()? else {
        println!(
            "retention bench: run it with `cargo bench -p kaarma-relay-cli --bench retention`"
        );
        return Ok(());
    };
    std::fs::create_dir_all(&options.dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(1, usize::from))
        .thread_name("bench-retention")
        .enable_all()
        .build()?;
    println!("kaarma-relay retention benchmark");
    Machine::describe(&options.dir).print();
    let workload = Workload::plan(2_500, 11)?;
    println!(
        "store:    {} events of the emulator's lifecycles (mean body {} bytes), processed, \
         every change enqueued for one route and delivered; SqlStore on SQLite under {}",
        options.stored,
        workload.mean_body_bytes(),
        options.dir.display()
    );
    println!(
        "measured: {} commits of {COMMIT_BATCH} new events back to back, then the same loop \
         while retention::sweep removes everything the fill left",
        options.commits
    );
    println!();

    let dir = tempfile::tempdir_in(&options.dir)?;
    let database = store_fill::database_path(dir.path());
    runtime.block_on(async {
        let mut store = FilledStore::create(dir.path()).await?;
        let filling = Instant::now();
        store.fill_to(&workload, options.stored, |_| {}).await?;
        let delivered = deliver_everything(store.store.as_ref()).await?;
        eprintln!(
            "  filled to {} events, {delivered} deliveries delivered, in {:.0} s",
            options.stored,
            filling.elapsed().as_secs_f64()
        );
        let before_sweep = clock::now_millis() + 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut baseline = Vec::with_capacity(options.commits);
        for _ in 0..options.commits {
            baseline.push(commit(&mut store, &workload).await?);
        }
        let size_before = (file_bytes(&database), free_pages(&database));

        let sweeper = store.store.clone();
        let started = Instant::now();
        let sweep = tokio::spawn(async move {
            let pruned =
                retention::sweep(sweeper.as_ref(), before_sweep, &CancellationToken::new()).await;
            (pruned, started.elapsed())
        });
        let mut during = Vec::new();
        while !sweep.is_finished() {
            let elapsed = commit(&mut store, &workload).await?;
            if !sweep.is_finished() {
                during.push(elapsed);
            }
        }
        let (pruned, swept_in) = sweep.await?;
        let pruned = pruned?;
        store.close().await;
        let size_after = (file_bytes(&database), free_pages(&database));

        report(
            &pruned,
            swept_in,
            &LatencySummary::of(baseline),
            &LatencySummary::of(during),
            size_before,
            size_after,
        );
        anyhow::Ok(())
    })?;
    println!();
    println!("load average at the end: {}", machine::load_average());
    Ok(())
}

/// Claims every delivery of the fill and records it delivered, oldest change of each
/// appointment first, as the delivery workers would.
async fn deliver_everything(store: &dyn Store) -> anyhow::Result<u64> {
    let mut delivered = 0;
    loop {
        let now = clock::now_millis();
        let claimed = store
            .claim_deliveries("archive", "bench", now, now + 60_000, DELIVERED_BATCH)
            .await?;
        if claimed.is_empty() {
            return Ok(delivered);
        }
        let finished: Vec<FinishedAttempt> = claimed
            .iter()
            .map(|claim| FinishedAttempt {
                id: claim.delivery.id,
                lease_owner: claim.lease_owner.clone(),
                result: AttemptResult::Delivered { status: Some(200) },
                finished_at: now,
            })
            .collect();
        store.finish_attempts(&finished).await?;
        delivered += finished.len() as u64;
    }
}

/// Stores the workload's next batch in one commit; returns how long it took.
async fn commit(store: &mut FilledStore, workload: &Workload) -> anyhow::Result<Duration> {
    let batch = workload.events(store.stored, COMMIT_BATCH, clock::now_millis());
    store.insert(&batch).await
}

fn file_bytes(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

/// `PRAGMA freelist_count`, read with the `sqlite3` shell when there is one.
fn free_pages(path: &std::path::Path) -> Option<u64> {
    let output = std::process::Command::new("sqlite3")
        .arg(path)
        .arg("PRAGMA freelist_count;")
        .output()
        .ok()?;
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

fn report(
    pruned: &Pruned,
    swept_in: Duration,
    baseline: &LatencySummary,
    during: &LatencySummary,
    before: (u64, Option<u64>),
    after: (u64, Option<u64>),
) {
    println!("removed:");
    for (kind, count) in pruned.by_kind() {
        println!("  {kind:<13} {count:>9}");
    }
    println!(
        "sweep:    {} rows in {:.2} s = {:.0} rows/s",
        pruned.total(),
        swept_in.as_secs_f64(),
        pruned.total() as f64 / swept_in.as_secs_f64(),
    );
    println!();
    println!("| commits of {COMMIT_BATCH} | n | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, commits) in [("alone", baseline), ("during the sweep", during)] {
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} |",
            commits.count,
            millis(commits.p50),
            millis(commits.p99),
            millis(commits.max),
        );
    }
    if during.count > 0 {
        let ratio = |during: Duration, alone: Duration| millis(during) / millis(alone);
        println!(
            "| **during / alone** | | **{:.2}** | **{:.2}** | {:.2} |",
            ratio(during.p50, baseline.p50),
            ratio(during.p99, baseline.p99),
            ratio(during.max, baseline.max)
        );
    }
    println!();
    let pages = |pages: Option<u64>| pages.map_or("unknown".to_owned(), |p| p.to_string());
    println!(
        "database file: {:.1} MB with {} free pages before, {:.1} MB with {} free pages after",
        before.0 as f64 / 1e6,
        pages(before.1),
        after.0 as f64 / 1e6,
        pages(after.1)
    );
}
