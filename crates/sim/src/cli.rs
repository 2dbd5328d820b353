//! The `sim` commands: `serve` runs the emulator, `run` drives a load against any partner
//! endpoint, `verify` checks a receiver against the truth a run wrote. The binary wires
//! [`SimCommand`] in as `kaarma-relay sim …` and initialises tracing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::api::Credentials;
use crate::duration::{format_duration, parse_duration};
use crate::faults::Faults;
use crate::load::{self, CreationEvent, LoadOptions};
use crate::publisher::{Jitter, PublisherConfig, RetryPolicy, Subscription};
use crate::server::{self, ServeOptions};
use crate::simulation::SimulationConfig;
use crate::truth::Truth;
use crate::verify::verify_within;
use crate::world::WorldShape;

const FAULTS_HELP: &str = "Faults to inject, comma-separated knob=value pairs (or `none`):
  duplicates=P      fraction of events delivered twice (same body and id; the copies may race)
  reorder=P         fraction of events held back up to reorder-window, so later ones overtake
  reorder-window=D  window of reorder and duplicates (default 500ms)
  delay=D           every event waits D before its first attempt
  fail-first=N      first N attempts of every event are sent but treated as failed, then retried
  drop-ack=P        fraction of changes the DMS never acknowledges
  corrupt=P         fraction of events followed by an extra event with a broken payload
  legacy=P          fraction of envelopes in the old shape (dataType, eventType: pointInTime)
Example: duplicates=0.2,reorder=0.3,reorder-window=500ms,fail-first=2,drop-ack=0.1,corrupt=0.05,legacy=0.3,delay=50ms";

/// The emulator's commands.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Run the myKaarma emulator: its Appointment and Customer APIs, the DMS and the
    /// publisher, sending every change to the subscribed partner endpoints.
    #[command(long_about = "Run the myKaarma emulator until Ctrl-C.\n\n\
        Serves myKaarma's Appointment API (/appointment/v2/…) and Customer API \
        (/customer/v2/…) behind HTTP basic auth, plus control endpoints under /sim/v1 \
        (world, slots, subscriptions, deliveries, truth, faults). Every change fires \
        myKaarma's event at once and the DMS acknowledges it --dms-delay later with an \
        UPDATED event carrying the appointmentKey. Events go to --target (if given) and to \
        subscriptions added with POST /sim/v1/subscriptions.")]
    Serve(ServeArgs),
    /// Drive realistic appointment lifecycles against a partner endpoint and report what it
    /// did.
    #[command(
        long_about = "Drive realistic appointment lifecycles against a partner endpoint.\n\n\
        Creates --appointments appointments at --rate per second, each for a new customer and \
        vehicle; some are rescheduled, edited, cancelled and deleted, and the DMS acknowledges \
        each change. Events are sent exactly as myKaarma sends them, with the faults asked \
        for. Prints a summary (events, attempts, retries, failures, the target's ack latency \
        p50/p90/p99/max) and, with --truth, writes the true final state of every appointment \
        for `sim verify`. The same --seed and --start-time produce the same events.\n\n\
        Exits 1 when some event could not be delivered within its retries."
    )]
    Run(RunArgs),
    /// Compare a receiver's projection of appointments with a truth file and list every
    /// difference.
    #[command(long_about = "Compare a receiver's projection with a truth file.\n\n\
        Reads GET {relay}/api/v1/appointments (Bearer --token, every page) and lists every \
        appointment of the truth's dealers that is missing, extra, or different in status, \
        appointment_key, start_time, end_time, is_cancelled or deleted.\n\n\
        Exits 1 when there is any difference.")]
    Verify(VerifyArgs),
}

/// How events are sent: retries, timeout, concurrency.
#[derive(Debug, Clone, Args)]
pub struct SendingArgs {
    /// Retries after the first attempt (myKaarma: 5).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Back-off before the first retry; it doubles for each next one.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub retry_base: Duration,
    /// Longest back-off.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub retry_max: Duration,
    /// How the back-off is randomised.
    #[arg(long, value_enum, default_value_t = Jitter::Equal)]
    pub jitter: Jitter,
    /// How long the target has to answer 2xx (myKaarma: 5s).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

impl SendingArgs {
    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.retries,
            base: self.retry_base,
            multiplier: 2.0,
            max_delay: self.retry_max,
            jitter: self.jitter,
        }
    }
}

/// Arguments of `sim serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the API listens on.
    #[arg(long, default_value = "127.0.0.1:8700")]
    pub listen: SocketAddr,
    /// The API's basic-auth username.
    #[arg(long, env = "KAARMA_SIM_USERNAME", default_value = "partner")]
    pub username: String,
    /// The API's basic-auth password.
    #[arg(
        long,
        env = "KAARMA_SIM_PASSWORD",
        default_value = "partner-password",
        hide_env_values = true
    )]
    pub password: String,
    /// A partner endpoint to send events to (more can be added through /sim/v1/subscriptions).
    #[arg(long)]
    pub target: Option<String>,
    /// Signature secret for --target; defaults to the username, as myKaarma does today.
    #[arg(long, env = "KAARMA_SIM_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// x-authorization-token for --target (myKaarma's form: myKaarma_ and a UUID).
    #[arg(long, env = "KAARMA_SIM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Dealers in the world.
    #[arg(long, default_value_t = 3)]
    pub dealers: usize,
    /// Customers created up front per dealer.
    #[arg(long, default_value_t = 20)]
    pub customers: usize,
    /// Seeds the world, the ids and the fault decisions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The clock's start (RFC 3339 or epoch milliseconds); the real time by default.
    #[arg(long, value_parser = parse_start_time)]
    pub start_time: Option<i64>,
    /// Delay before the DMS acknowledges a change.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub dms_delay: Duration,
    /// Which event an API create fires unless the request says (?event=CREATED).
    #[arg(long, value_enum, default_value_t = CreationEvent::Scheduled)]
    pub creation_event: CreationEvent,
    #[arg(long, default_value = "none", long_help = FAULTS_HELP)]
    /// Faults to inject (see --help); changeable later with PUT /sim/v1/faults.
    pub faults: Faults,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sending: SendingArgs,
}

/// Arguments of `sim run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The partner endpoint to send events to.
    #[arg(long)]
    pub target: String,
    /// Signature secret (HMAC-SHA256 key of mykaarma-signature-token).
    #[arg(long, env = "KAARMA_SIM_SECRET", hide_env_values = true)]
    pub secret: String,
    /// x-authorization-token to send (myKaarma's form: myKaarma_ and a UUID); none if absent.
    #[arg(long, env = "KAARMA_SIM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Appointments to create.
    #[arg(long, default_value_t = 100)]
    pub appointments: usize,
    /// Appointments created per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seeds everything; random (and printed) when absent.
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value = "none", long_help = FAULTS_HELP)]
    /// Faults to inject (see --help).
    pub faults: Faults,
    /// Write the true final state of every appointment to this file.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Dealers in the world.
    #[arg(long, default_value_t = 3)]
    pub dealers: usize,
    /// The virtual clock's start (RFC 3339 or epoch milliseconds); now by default.
    #[arg(long, value_parser = parse_start_time)]
    pub start_time: Option<i64>,
    /// Delay before the DMS acknowledges a change (scaled by --time-scale).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub dms_delay: Duration,
    /// Mean gap between the steps of one appointment's life (scaled by --time-scale).
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub step_gap: Duration,
    /// Multiplies the DMS delay, the step gap and the retry schedule (0.01 = 100× faster);
    /// the timeout is not scaled.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Which event a create fires.
    #[arg(long, value_enum, default_value_t = CreationEvent::Scheduled)]
    pub creation_event: CreationEvent,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sending: SendingArgs,
}

/// Arguments of `sim verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The receiver's base URL (its query API is under /api/v1).
    #[arg(long)]
    pub relay: String,
    /// Bearer token of the receiver's query API.
    #[arg(long, env = "KAARMA_RELAY_API_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The truth file `sim run --truth` wrote.
    #[arg(long)]
    pub truth: PathBuf,
    /// Keep checking for this long while differences remain (the receiver may still be
    /// processing).
    #[arg(long, value_parser = parse_duration, default_value = "0")]
    pub wait: Duration,
}

/// Reads `--start-time`: epoch milliseconds or an RFC 3339 instant.
fn parse_start_time(text: &str) -> Result<i64, String> {
    if let Ok(millis) = text.trim().parse::<i64>() {
        return Ok(millis);
    }
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|instant| instant.timestamp_millis())
        .map_err(|_| format!("{text:?} is neither epoch milliseconds nor an RFC 3339 time"))
}

impl SimCommand {
    /// Runs the command.
    pub async fn execute(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Serve(args) => serve(args).await,
            Self::Run(args) => run(args).await,
            Self::Verify(args) => check(args).await,
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let credentials = Credentials {
        username: args.username.clone(),
        password: args.password.clone(),
    };
    let subscriptions = args
        .target
        .iter()
        .map(|target| Subscription {
            name: "target".to_owned(),
            ..Subscription::new(
                target.clone(),
                args.secret.clone().unwrap_or_else(|| args.username.clone()),
                args.token.clone(),
            )
        })
        .collect();
    let running = server::start(ServeOptions {
        listen: args.listen,
        credentials,
        subscriptions,
        simulation: SimulationConfig {
            seed: args.seed,
            world: WorldShape {
                dealers: args.dealers,
                customers_per_dealer: args.customers,
            },
            start_ms: args.start_time,
            dms_delay: args.dms_delay,
            faults: args.faults.clone(),
            creation_event: args.creation_event,
            publisher: PublisherConfig {
                retry: args.sending.retry(),
                timeout: args.sending.timeout,
                concurrency: args.sending.concurrency,
                seed: args.seed,
                log_limit: 100_000,
            },
        },
    })
    .await?;
    print_welcome(&running, &args);
    running
        .serve_until(async {
            // If the signal cannot be installed, serve until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

fn print_welcome(running: &server::RunningServer, args: &ServeArgs) {
    let url = running.url();
    println!(
        "myKaarma emulator on {url}  (basic auth user {:?})",
        args.username
    );
    println!(
        "faults: {}   DMS delay: {}   retries: {}",
        args.faults,
        format_duration(args.dms_delay),
        args.sending.retry()
    );
    match &args.target {
        Some(target) => println!("sending events to {target}"),
        None => println!("no --target: add one with POST {url}/sim/v1/subscriptions"),
    }
    let world = running.simulation.world();
    for dealer in &world.dealers {
        println!("\ndealer {}  {}", dealer.uuid, dealer.name);
        for department in &dealer.departments {
            println!("  department {}  {}", department.uuid, department.name);
        }
    }
    if let Some(customer) = world.customers.first()
        && let (Some(vehicle), Some(department)) = (
            customer.vehicles.first(),
            world
                .dealer(&customer.dealer_uuid)
                .and_then(|d| d.departments.first()),
        )
    {
        let tomorrow = chrono::Utc::now().date_naive() + chrono::TimeDelta::days(1);
        println!(
            "\ntry:\n  curl -u {user}:… -X POST {url}/appointment/v2/dealer/{dealer}/appointment \\\n    -H 'content-type: application/json' \\\n    -d '{{\"customerUuid\":\"{customer}\",\"vehicleInformation\":{{\"vehicleUuid\":\"{vehicle}\"}},\"appointmentInformation\":{{\"departmentUuid\":\"{department}\",\"appointmentStartDateTime\":\"{date}T09:00:00\",\"serviceList\":[{{\"opcode\":\"OIL\"}}]}}}}'",
            user = args.username,
            dealer = customer.dealer_uuid,
            customer = customer.uuid,
            vehicle = vehicle.uuid,
            department = department.uuid,
            date = tomorrow.format("%Y-%m-%d"),
        );
    }
    println!("\nworld, slots, deliveries and truth: {url}/sim/v1/…   Ctrl-C to stop");
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let options = LoadOptions {
        target: args.target,
        secret: args.secret,
        token: args.token,
        appointments: args.appointments,
        rate: args.rate,
        seed,
        start_ms: args.start_time,
        dealers: args.dealers,
        creation_event: args.creation_event,
        faults: args.faults,
        retry: args.sending.retry(),
        timeout: args.sending.timeout,
        concurrency: args.sending.concurrency,
        dms_delay: args.dms_delay,
        step_gap: args.step_gap,
        time_scale: args.time_scale,
    };
    println!(
        "seed {seed}; {} appointments at {}/s to {}; faults: {}",
        options.appointments, options.rate, options.target, options.faults
    );
    let report = if args.no_progress {
        load::run(&options, ()).await?
    } else {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} events settled  eta {eta}",
            )
            .context("progress bar template")?,
        );
        load::run(&options, bar).await?
    };
    println!("{report}");
    if let Some(path) = &args.truth {
        report.truth.write(path)?;
        println!(
            "truth         {} appointments written to {}",
            report.truth.appointments.len(),
            path.display()
        );
    }
    Ok(if report.failures == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{} deliveries ran out of retries", report.failures);
        ExitCode::from(1)
    })
}

async fn check(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let truth = Truth::read(&args.truth)?;
    let differences = verify_within(&args.relay, &args.token, &truth, args.wait).await?;
    for difference in &differences {
        println!("{difference}");
    }
    if differences.is_empty() {
        println!(
            "no differences: the relay agrees with the truth on {} appointments",
            truth.appointments.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        let count = differences.len();
        println!("{count} difference{}", if count == 1 { "" } else { "s" });
        Ok(ExitCode::from(1))
    }
}
