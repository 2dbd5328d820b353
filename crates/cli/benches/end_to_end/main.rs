//! End-to-end benchmark: the emulator (myKaarma's side) → the release `kaarma-relay serve`
//! binary on SQLite → a local HTTP receiver (the downstream system), at several offered
//! rates. For each it reports the sustained delivered rate, the lag from the relay's
//! receipt of an event to the delivery of its change (p50, p99, max), and the emulator's
//! acknowledgement latency.
//!
//! ```text
//! cargo bench -p kaarma-relay-cli --bench end_to_end               # 20 s of sending per rate
//! cargo bench -p kaarma-relay-cli --bench end_to_end -- --quick    # 5 s per rate
//! cargo bench -p kaarma-relay-cli --bench end_to_end -- --rates 400 --seconds 60 \
//!     --faults duplicate=0.05,reorder=0.05
//! ```
//!
//! Each rate gets a fresh relay and database. The emulator plans appointments with their
//! whole lifecycle (create, DMS acknowledgement, reschedules, edits, cancels, deletes) with
//! its timeline compressed (`time_scale` 0.01: a DMS answer 20 ms after a change, steps about
//! 30 ms apart) and creates appointments fast enough to offer the rate asked for, sending
//! each event when it falls due from up to 64 concurrent requests, signed and with the
//! authorization token, retrying like myKaarma (the schedule scaled by 0.01 too). The relay
//! has one `http` route taking every change, to the receiver, with the route defaults (4
//! attempts in flight, per-appointment order).
//!
//! Options: `--quick`, `--rates 100,250,500,1000` (events offered per second), `--seconds S`
//! (sending time per rate), `--faults SPEC` (the emulator's fault knobs, default none),
//! `--dir PATH` (where the databases go, default Cargo's target tmp dir; deleted after each
//! rate).
//!
//! `cargo test` does not build it (`test = false`); run without `--bench` it says so and
//! exits.

#[path = "../change_receiver/mod.rs"]
mod change_receiver;
#[path = "../machine/mod.rs"]
mod machine;
// Shared with the resources bench, which also reads the relay's memory and CPU time.
#[allow(dead_code)]
#[path = "../relay_process/mod.rs"]
mod relay_process;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use change_receiver::{Arrivals, ChangeReceiver};
use kaarma_sim::{Faults, LoadOptions, LoadPlan, RunReport};
use machine::{Machine, millis};
use relay_process::RelayProcess;

/// What to run, from the command line.
struct Options {
    rates: Vec<f64>,
    sending: Duration,
    faults: Faults,
    route_concurrency: Option<u32>,
    dir: PathBuf,
}

impl Options {
    /// Reads the arguments; `None` when not run by `cargo bench`.
    fn parse() -> anyhow::Result<Option<Self>> {
        let mut bench = false;
        let mut quick = false;
        let mut seconds = None;
        let mut rates = vec![100.0, 250.0, 500.0, 1000.0];
        let mut faults = Faults::default();
        let mut route_concurrency = None;
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
                "--rates" => {
                    rates = value()?
                        .split(',')
                        .map(|rate| rate.trim().parse())
                        .collect::<Result<_, _>>()?;
                }
                "--seconds" => seconds = Some(value()?.parse::<f64>()?),
                "--faults" => faults = value()?.parse()?,
                "--route-concurrency" => route_concurrency = Some(value()?.parse()?),
                "--dir" => dir = PathBuf::from(value()?),
                other => eprintln!("end_to_end bench: ignoring argument {other:?}"),
            }
        }
        if !bench {
            return Ok(None);
        }
        let seconds = seconds.unwrap_or(if quick { 5.0 } else { 20.0 });
        Ok(Some(Self {
            rates,
            sending: Duration::from_secs_f64(seconds),
            faults,
            route_concurrency,
            dir,
        }))
    }
}

/// Events per appointment in the emulator's lifecycles (measured on a small plan), to turn
/// an event rate into an appointment rate.
fn events_per_appointment() -> anyhow::Result<f64> {
    let plan = LoadPlan::generate(&sim_options("http://127.0.0.1:9/", 1_000, 100.0, 1))?;
    Ok(plan.events.len() as f64 / plan.truth.appointments.len().max(1) as f64)
}

/// The emulator's settings for `appointments` created at `rate` per second against `target`.
fn sim_options(target: &str, appointments: usize, rate: f64, seed: u64) -> LoadOptions {
    let mut options = LoadOptions::new(target, relay_process::SECRET, appointments);
    options.token = Some(relay_process::TOKEN.to_owned());
    options.rate = rate;
    options.seed = seed;
    options.time_scale = 0.01;
    options.concurrency = 64;
    options
}

/// One offered rate.
struct Level {
    offered: f64,
    report: RunReport,
    arrivals: Arrivals,
    /// From the first event sent to the last change delivered.
    elapsed: Duration,
    /// Whether every change arrived before the deadline.
    complete: bool,
    /// Mean receipt-to-processed time, from the relay's own histogram.
    processing_lag: Duration,
}

fn main() -> anyhow::Result<()> {
    let Some(options) = Options::parse()? else {
        println!(
            "end_to_end bench: run it with `cargo bench -p kaarma-relay-cli --bench end_to_end`"
        );
        return Ok(());
    };
    std::fs::create_dir_all(&options.dir)?;
    let begun = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(1, usize::from))
        .thread_name("bench-sim")
        .enable_all()
        .build()?;

    println!("kaarma-relay end-to-end benchmark");
    Machine::describe(&options.dir).print();
    let per_appointment = events_per_appointment()?;
    println!(
        "sender:   kaarma_sim (the emulator) in this process: lifecycles of {per_appointment:.2} \
         events per appointment, time_scale 0.01, up to 64 requests in flight, signed, \
         faults: {}",
        options.faults
    );
    println!(
        "relay:    {} serve, a fresh SQLite file per rate under {}, one http route to the \
         receiver ({} attempts in flight)",
        env!("CARGO_BIN_EXE_kaarma-relay"),
        options.dir.display(),
        options
            .route_concurrency
            .map_or("the default 4".to_owned(), |n| n.to_string())
    );
    println!(
        "receiver: hyper 1.x on loopback, answers 200, lag = arrival − data.origin.received_at"
    );
    println!(
        "runs:     {:.0} s of sending per rate; then until every change is delivered (at most 5 min)",
        options.sending.as_secs_f64()
    );
    println!();

    let receiver = ChangeReceiver::start()?;
    let mut levels = Vec::new();
    for (index, &offered) in options.rates.iter().enumerate() {
        let dir = tempfile::tempdir_in(&options.dir)?;
        let relay = RelayProcess::start(
            dir.path(),
            &format!("sqlite://{}", dir.path().join("relay.db").display()),
            &receiver.url(),
            options.route_concurrency,
        )?;
        let appointment_rate = offered / per_appointment;
        let appointments = (appointment_rate * options.sending.as_secs_f64()).ceil() as usize;
        let mut sim = sim_options(
            &relay.ingest_url(),
            appointments,
            appointment_rate,
            100 + index as u64,
        );
        sim.faults = options.faults.clone();
        let plan = LoadPlan::generate(&sim)?;
        let _ = receiver.take();
        let started = Instant::now();
        let report = runtime.block_on(kaarma_sim::load::execute(plan, &sim, ()))?;
        let complete = receiver.wait_for(report.events, Duration::from_secs(300));
        let arrivals = receiver.take();
        let elapsed = arrivals
            .span
            .map_or(started.elapsed(), |(_, last)| last - started);
        let processing_lag = mean_seconds(&relay, "kaarma_relay_processing_lag_seconds")?;
        relay.stop()?;
        eprintln!(
            "  offered {offered:>6.0}/s: delivered {} of {} in {:.1} s",
            arrivals.changes,
            report.events,
            elapsed.as_secs_f64()
        );
        levels.push(Level {
            offered,
            report,
            arrivals,
            elapsed,
            complete,
            processing_lag,
        });
    }
    receiver.stop();

    println!();
    println!(
        "load average at the end: {}; whole run {:.0} s",
        machine::load_average(),
        begun.elapsed().as_secs_f64()
    );
    print_report(&levels);
    Ok(())
}

/// The mean of the relay's histogram `name` (`_sum / _count`).
fn mean_seconds(relay: &RelayProcess, name: &str) -> anyhow::Result<Duration> {
    let sum = relay.metric(&format!("{name}_sum"))?;
    let count = relay.metric(&format!("{name}_count"))?;
    Ok(Duration::from_secs_f64(if count > 0.0 {
        sum / count
    } else {
        0.0
    }))
}

fn print_report(levels: &[Level]) {
    println!();
    println!("events sent by the emulator → changes delivered to the receiver");
    println!(
        "{:>8}  {:>7}  {:>8}  {:>9}  {:>10}  {:>7}  {:>8}  {:>8}  {:>8}  {:>12}  {:>9}  {:>9}  {:>7}",
        "offered/s",
        "events",
        "sent/s",
        "delivered",
        "deliv./s",
        "d/sent",
        "lag p50",
        "lag p99",
        "lag max",
        "processed in",
        "ack p50",
        "ack p99",
        "retries"
    );
    for level in levels {
        let report = &level.report;
        let sent_per_second = report.events as f64 / report.elapsed.as_secs_f64();
        let delivered_per_second = level.arrivals.changes as f64 / level.elapsed.as_secs_f64();
        println!(
            "{:>9.0}  {:>7}  {:>8.0}  {:>9}{}  {:>10.0}  {:>7.2}  {:>6} ms  {:>6} ms  {:>6} ms  {:>9.0} ms  {:>6.1} ms  {:>6.1} ms  {:>7}",
            level.offered,
            report.events,
            sent_per_second,
            level.arrivals.changes,
            if level.complete { " " } else { "!" },
            delivered_per_second,
            delivered_per_second / sent_per_second,
            level.arrivals.lag_quantile(0.50),
            level.arrivals.lag_quantile(0.99),
            level.arrivals.lag_quantile(1.0),
            millis(level.processing_lag),
            millis(report.ack_latency.p50),
            millis(report.ack_latency.p99),
            report.retries
        );
    }
    println!();
    println!(
        "sent/s: events the emulator got acknowledged per second while sending; deliv./s: changes \
         delivered per second from the first send to the last delivery; d/sent: their ratio \
         (1.00 = the relay keeps up end to end); lag: receipt → delivered, per change; \
         processed in: receipt → processed (the relay's mean); ack: the emulator's answer times; \
         ! = not every change arrived within 5 min"
    );
    for level in levels {
        if level.arrivals.repeats > 0 || level.arrivals.unreadable > 0 || level.report.failures > 0
        {
            println!(
                "  offered {:.0}/s: {} repeated deliveries, {} unreadable bodies, {} sends out of retries",
                level.offered,
                level.arrivals.repeats,
                level.arrivals.unreadable,
                level.report.failures
            );
        }
    }
}
