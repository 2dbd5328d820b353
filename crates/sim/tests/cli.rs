//! The `sim` commands as the binary runs them: argument parsing, help, and `run` then
//! `verify` against a receiver, with their exit codes.

mod support;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use kaarma_sim::cli::SimCommand;
use serde_json::json;
use support::FakeRelay;

/// Stands in for `kaarma-relay sim`.
#[derive(Debug, Parser)]
#[command(name = "sim")]
struct Sim {
    #[command(subcommand)]
    command: SimCommand,
}

fn parse(args: &[&str]) -> Result<SimCommand, clap::Error> {
    Sim::try_parse_from(std::iter::once("sim").chain(args.iter().copied())).map(|sim| sim.command)
}

#[test]
fn the_commands_are_well_formed_and_documented() {
    Sim::command().debug_assert();
    let mut command = Sim::command();
    for name in ["serve", "run", "verify"] {
        let help = command
            .find_subcommand_mut(name)
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.len() > 500, "{name}: {help}");
        if name != "verify" {
            assert!(
                help.contains("reorder-window=D"),
                "{name} documents the fault syntax"
            );
            assert!(help.contains("--timeout"), "{name}");
        }
    }
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let error = parse(&[
        "run", "--target", "http://x", "--secret", "s", "--faults", "chaos=1",
    ])
    .unwrap_err();
    assert!(
        error.to_string().contains("unknown fault \"chaos\""),
        "{error}"
    );
    let error = parse(&[
        "run",
        "--target",
        "http://x",
        "--secret",
        "s",
        "--dms-delay",
        "5",
    ])
    .unwrap_err();
    assert!(error.to_string().contains("invalid duration"), "{error}");
    let error = parse(&[
        "run",
        "--target",
        "http://x",
        "--secret",
        "s",
        "--start-time",
        "noon",
    ])
    .unwrap_err();
    assert!(error.to_string().contains("RFC 3339"), "{error}");
    assert!(parse(&["serve", "--listen", "127.0.0.1:0", "--faults", "legacy=0.5"]).is_ok());
}

#[tokio::test]
async fn run_writes_the_truth_and_verify_checks_it() {
    let relay = FakeRelay::start("secret", "token", "api").await;
    let directory = tempfile::tempdir().unwrap();
    let truth = directory.path().join("truth.json");
    let truth_arg = truth.to_str().unwrap();
    let run = parse(&[
        "run",
        "--target",
        &relay.webhook_url,
        "--secret",
        "secret",
        "--token",
        "token",
        "--appointments",
        "8",
        "--rate",
        "200",
        "--seed",
        "12",
        "--time-scale",
        "0.01",
        "--start-time",
        "2026-01-01T10:00:00Z",
        "--faults",
        "duplicates=0.5,legacy=0.5,fail-first=1",
        "--truth",
        truth_arg,
        "--no-progress",
    ])
    .unwrap();
    assert_eq!(run.execute().await.unwrap(), ExitCode::SUCCESS);
    let written = kaarma_sim::Truth::read(&truth).unwrap();
    assert_eq!(written.appointments.len(), 8);

    let verify = |wait: &str| {
        parse(&[
            "verify",
            "--relay",
            &relay.base_url,
            "--token",
            "api",
            "--truth",
            truth_arg,
            "--wait",
            wait,
        ])
        .unwrap()
    };
    assert_eq!(verify("0").execute().await.unwrap(), ExitCode::SUCCESS);
    relay
        .insert_row(json!({"uuid": "planted", "dealer_uuid": written.appointments[0].dealer_uuid}));
    assert_eq!(verify("300ms").execute().await.unwrap(), ExitCode::from(1));
}

#[tokio::test]
async fn run_exits_non_zero_when_deliveries_fail() {
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", listener.local_addr().unwrap())
    };
    let run = parse(&[
        "run",
        "--target",
        &unreachable,
        "--secret",
        "s",
        "--appointments",
        "1",
        "--rate",
        "100",
        "--retries",
        "1",
        "--retry-base",
        "1ms",
        "--time-scale",
        "0.01",
        "--no-progress",
    ])
    .unwrap();
    assert_eq!(run.execute().await.unwrap(), ExitCode::from(1));
}
