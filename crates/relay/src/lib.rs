//! Kaarma Relay: the partner's side of myKaarma's webhooks, done properly.
//!
//! - [`ingest`] receives deliveries, verifies them and stores them before answering 2xx;
//! - [`store`] keeps everything, on SQLite (embedded default) or PostgreSQL;
//! - [`pipeline`] turns stored events into appointment state, history and changes, and
//!   matches each change against the routes;
//! - [`delivery`] sends each route its changes through its [`sinks`], in order, with retries;
//! - [`api`] shows what was received and lets an operator act on it;
//! - [`retention`] removes finished records once they are old enough;
//! - [`server`] is the HTTP server with its client limits; [`startup`] wires it all into
//!   one service; [`config`] and [`telemetry`] support it.

pub mod api;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod ingest;
pub mod pipeline;
pub mod probes;
pub mod retention;
pub mod server;
pub mod sinks;
pub mod startup;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use startup::Application;
