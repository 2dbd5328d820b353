//! `kaarma-sim`: an emulator of myKaarma's side of the webhook contract, to test, load and
//! break an integration without a myKaarma account. It drives *any* partner endpoint.
//!
//! The pieces, in the order an appointment passes through them:
//!
//! - [`world`]: dealers and departments (64-hex ids), advisors, teams, transport options,
//!   opcodes, slots, customers and vehicles (43-character ids, VINs with check digits).
//! - [`book`]: the appointments and the rules for changing them; every accepted change is an
//!   [`book::AppointmentChange`] (`SCHEDULED`/`CREATED`, `RESCHEDULED`, `UPDATED`,
//!   `CANCELLED`, `DELETED`). [`appointment`] writes one as myKaarma's payload.
//! - [`dms`]: the DMS that acknowledges each change a moment later with an `UPDATED` event,
//!   assigning the `appointmentKey` on the first one.
//! - [`event`]: a change as the exact envelope body myKaarma posts.
//! - [`publisher`]: signing, `text/plain`, the 5 s timeout, retries with back-off and jitter,
//!   concurrency and the delivery log; [`faults`] makes it misbehave on purpose.
//! - [`simulation`] and [`api`]: the live emulator behind `sim serve`, with an HTTP API
//!   shaped like myKaarma's; [`server`] starts it on any port.
//! - [`load`]: the lifecycle generator behind `sim run`, deterministic for a seed; it yields a
//!   [`truth::Truth`] that [`verify`](mod@verify) compares with a receiver's projection.
//! - [`cli`]: the `sim serve|run|verify` commands.
//!
//! [`clock`], [`ids`] and [`duration`] are the small shared vocabulary: virtual time,
//! myKaarma's id shapes and human-written durations.

#![warn(missing_docs)]

pub mod api;
pub mod appointment;
pub mod book;
pub mod cli;
pub mod clock;
pub mod dms;
pub mod duration;
pub mod event;
pub mod faults;
pub mod ids;
pub mod load;
pub mod publisher;
pub mod server;
pub mod simulation;
pub mod truth;
pub mod verify;
pub mod world;

pub use faults::Faults;
pub use load::{LoadOptions, LoadPlan, Progress, RunReport, run};
pub use truth::{TrueAppointment, Truth};
pub use verify::{Difference, verify};
