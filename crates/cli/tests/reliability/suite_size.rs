//! The numbers each reliability test runs with: a short form for `cargo test` and CI, and a
//! long form for soak runs on a workstation, chosen by `KAARMA_RELIABILITY_LONG=1`.

use std::time::Duration;

/// The environment variable that selects the long form.
pub const LONG_VARIABLE: &str = "KAARMA_RELIABILITY_LONG";

/// How big each test is.
#[derive(Debug, Clone, Copy)]
pub struct SuiteSize {
    /// `long` or `short`, for the figures.
    pub name: &'static str,
    /// Appointments the emulator books in the crash test.
    pub crash_appointments: usize,
    /// SIGKILLs (each followed by a restart) during the crash test.
    pub kills: usize,
    /// Appointments in the downstream-outage test.
    pub outage_appointments: usize,
    /// How long the downstream receiver stays down.
    pub outage: Duration,
    /// Deliveries refused (and then retried) while storage is faulty.
    pub storage_events: usize,
    /// Idle connections held open in the abusive-client test.
    pub idle_connections: usize,
    /// How long the abusive-client test keeps the pressure on.
    pub abuse: Duration,
}

impl SuiteSize {
    /// The long form when `KAARMA_RELIABILITY_LONG` is set (and not `0`), else the short one.
    pub fn from_env() -> Self {
        let long =
            std::env::var(LONG_VARIABLE).is_ok_and(|value| !value.is_empty() && value != "0");
        if long {
            Self {
                name: "long",
                crash_appointments: 1500,
                kills: 25,
                outage_appointments: 1000,
                outage: Duration::from_secs(45),
                storage_events: 200,
                idle_connections: 900,
                abuse: Duration::from_secs(90),
            }
        } else {
            Self {
                name: "short",
                crash_appointments: 150,
                kills: 5,
                outage_appointments: 120,
                outage: Duration::from_secs(4),
                storage_events: 20,
                idle_connections: 500,
                abuse: Duration::from_secs(8),
            }
        }
    }
}
