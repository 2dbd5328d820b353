//! Clients of a running relay's API: `events`, and later `appointments` and `deliveries`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

/// Where the relay is and how to authenticate.
#[derive(Debug, Args)]
pub struct Endpoint {
    /// The relay's base URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        env = "KAARMA_RELAY_URL"
    )]
    url: String,
    /// The API bearer token.
    #[arg(long, env = "KAARMA_RELAY_ADMIN_TOKEN")]
    token: Option<String>,
    /// Print the JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

impl Endpoint {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let mut request =
            reqwest::Client::new().get(format!("{}{path}", self.url.trim_end_matches('/')));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.url))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .context("the relay did not answer JSON")?;
        if !status.is_success() {
            anyhow::bail!(
                "{status}: {}",
                body["error"].as_str().unwrap_or("request failed")
            );
        }
        Ok(body)
    }
}

/// `events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List stored events in arrival order.
    List {
        #[command(flatten)]
        endpoint: Endpoint,
        /// Only this type (appointments, customers, service-orders, mpis…).
        #[arg(long = "type")]
        event_type: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one event with its raw body.
    Get {
        #[command(flatten)]
        endpoint: Endpoint,
        /// The event type.
        event_type: String,
        /// The event id.
        id: String,
    },
}

/// Runs an `events` subcommand.
pub async fn events(command: EventsCommand) -> anyhow::Result<ExitCode> {
    match command {
        EventsCommand::List {
            endpoint,
            event_type,
            limit,
        } => {
            let mut path = format!("/api/v1/events?limit={limit}");
            if let Some(event_type) = event_type {
                path.push_str(&format!("&type={event_type}"));
            }
            let body = endpoint.get(&path).await?;
            if endpoint.json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                println!(
                    "{:<16} {:<38} {:<24} {:>5}  STATE",
                    "TYPE", "ID", "RECEIVED", "SENT"
                );
                for event in body["events"].as_array().into_iter().flatten() {
                    println!(
                        "{:<16} {:<38} {:<24} {:>5}  {}",
                        text(&event["type"]),
                        text(&event["id"]),
                        text(&event["received_at"]),
                        event["delivery_count"],
                        text(&event["state"]),
                    );
                }
            }
        }
        EventsCommand::Get {
            endpoint,
            event_type,
            id,
        } => {
            let body = endpoint
                .get(&format!("/api/v1/events/{event_type}/{id}"))
                .await?;
            println!("{}", serde_json::to_string_pretty(&body)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}
