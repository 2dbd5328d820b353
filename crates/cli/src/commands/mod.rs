//! One module per group of subcommands.

pub mod admin;
pub mod demo;
pub mod serve;
pub mod signing;
