//! Clients of a running relay's API: `events`, `appointments` and `deliveries`. Each prints
//! a readable table, or the API's JSON with `--json`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

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
    /// The API bearer token (the relay's `admin_token`).
    #[arg(long, env = "KAARMA_RELAY_ADMIN_TOKEN")]
    token: Option<String>,
    /// Print the JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

impl Endpoint {
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }

    async fn get(&self, path: &str, query: &[(&str, Option<String>)]) -> anyhow::Result<Value> {
        let query: Vec<(&str, String)> = query
            .iter()
            .filter_map(|(name, value)| value.clone().map(|value| (*name, value)))
            .collect();
        self.send(reqwest::Client::new().get(self.url(path)).query(&query))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(reqwest::Client::new().post(self.url(path)).json(&body))
            .await
    }

    /// Prints `body` as JSON, or as a table of `columns` (header, JSON key, width) over the
    /// items at `list`.
    fn print(
        &self,
        body: &Value,
        list: &str,
        columns: &[(&str, &str, usize)],
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(body)?);
            return Ok(());
        }
        let line = |cells: Vec<String>| {
            let row: Vec<String> = cells
                .iter()
                .zip(columns)
                .map(|(cell, (_, _, width))| format!("{cell:<width$}"))
                .collect();
            println!("{}", row.join(" ").trim_end());
        };
        line(
            columns
                .iter()
                .map(|(header, _, _)| header.to_string())
                .collect(),
        );
        for item in body[list].as_array().into_iter().flatten() {
            line(
                columns
                    .iter()
                    .map(|(_, key, _)| cell(&item[*key]))
                    .collect(),
            );
        }
        if let Some(cursor) = body["next_cursor"].as_str() {
            println!("(more: --cursor {cursor})");
        }
        Ok(())
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
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
        /// Continue after this cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one event with its raw body and error.
    Get {
        #[command(flatten)]
        endpoint: Endpoint,
        /// The event type.
        event_type: String,
        /// The event id.
        id: String,
    },
    /// Process a failed event again.
    Reprocess {
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
            cursor,
        } => {
            let body = endpoint
                .get(
                    "/api/v1/events",
                    &[
                        ("type", event_type),
                        ("limit", Some(limit.to_string())),
                        ("cursor", cursor),
                    ],
                )
                .await?;
            endpoint.print(
                &body,
                "events",
                &[
                    ("TYPE", "type", 15),
                    ("ID", "id", 37),
                    ("RECEIVED", "received_at", 25),
                    ("SENT", "delivery_count", 5),
                    ("STATE", "state", 10),
                    ("ERROR", "error", 0),
                ],
            )?;
        }
        EventsCommand::Get {
            endpoint,
            event_type,
            id,
        } => {
            let body = endpoint
                .get(&format!("/api/v1/events/{event_type}/{id}"), &[])
                .await?;
            println!("{}", serde_json::to_string_pretty(&body)?);
        }
        EventsCommand::Reprocess {
            endpoint,
            event_type,
            id,
        } => {
            let body = endpoint
                .post(
                    &format!("/api/v1/events/{event_type}/{id}/reprocess"),
                    json!({}),
                )
                .await?;
            println!("{}", cell(&body["status"]));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `appointments` subcommands.
#[derive(Debug, Subcommand)]
pub enum AppointmentsCommand {
    /// List appointments.
    List {
        #[command(flatten)]
        endpoint: Endpoint,
        /// Only this dealer.
        #[arg(long)]
        dealer: Option<String>,
        /// Only this department.
        #[arg(long)]
        department: Option<String>,
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
        /// Only starting on or after (yyyy-MM-dd or yyyy-MM-ddTHH:mm:ss).
        #[arg(long)]
        date_from: Option<String>,
        /// Only starting on or before.
        #[arg(long)]
        date_to: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one appointment's current state.
    Get {
        #[command(flatten)]
        endpoint: Endpoint,
        /// The appointment uuid.
        uuid: String,
    },
    /// Show one appointment's history: every event, its kind and what it changed.
    History {
        #[command(flatten)]
        endpoint: Endpoint,
        /// The appointment uuid.
        uuid: String,
    },
}

/// Runs an `appointments` subcommand.
pub async fn appointments(command: AppointmentsCommand) -> anyhow::Result<ExitCode> {
    match command {
        AppointmentsCommand::List {
            endpoint,
            dealer,
            department,
            status,
            date_from,
            date_to,
            limit,
            cursor,
        } => {
            let query = [
                ("dealer", dealer),
                ("department", department),
                ("status", status),
                ("date_from", date_from),
                ("date_to", date_to),
                ("limit", Some(limit.to_string())),
                ("cursor", cursor),
            ];
            let body = endpoint.get("/api/v1/appointments", &query).await?;
            endpoint.print(
                &body,
                "appointments",
                &[
                    ("UUID", "uuid", 44),
                    ("STATUS", "status", 12),
                    ("KEY", "appointment_key", 12),
                    ("START", "start_time", 20),
                    ("CANCELLED", "is_cancelled", 9),
                    ("DELETED", "deleted", 0),
                ],
            )?;
        }
        AppointmentsCommand::Get { endpoint, uuid } => {
            let body = endpoint
                .get(&format!("/api/v1/appointments/{uuid}"), &[])
                .await?;
            println!("{}", serde_json::to_string_pretty(&body)?);
        }
        AppointmentsCommand::History { endpoint, uuid } => {
            let mut body = endpoint
                .get(&format!("/api/v1/appointments/{uuid}/history"), &[])
                .await?;
            for entry in body["history"].as_array_mut().into_iter().flatten() {
                let paths: Vec<String> = entry["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|field| field["path"].as_str().map(str::to_owned))
                    .collect();
                entry["changed"] = json!(paths.join(" "));
            }
            endpoint.print(
                &body,
                "history",
                &[
                    ("TIMESTAMP", "timestamp", 14),
                    ("EVENT", "event", 12),
                    ("KIND", "kind", 17),
                    ("EVENT ID", "event_id", 37),
                    ("PAIR OF", "pair_of", 37),
                    ("CHANGED", "changed", 0),
                ],
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `deliveries` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries.
    List {
        #[command(flatten)]
        endpoint: Endpoint,
        /// Only this route.
        #[arg(long)]
        route: Option<String>,
        /// Only this state: pending, failed, delivered, dead.
        #[arg(long)]
        state: Option<String>,
        /// Only this appointment.
        #[arg(long)]
        appointment: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Make a failed or dead delivery due now, with a fresh retry budget.
    Retry {
        #[command(flatten)]
        endpoint: Endpoint,
        /// The delivery id.
        id: i64,
    },
    /// Enqueue a route's changes again: a time range (RFC 3339) or change ids.
    Replay {
        #[command(flatten)]
        endpoint: Endpoint,
        /// The route.
        route: String,
        /// From this time.
        #[arg(long)]
        from: Option<String>,
        /// Up to this time.
        #[arg(long)]
        to: Option<String>,
        /// These change ids (repeatable) instead of a range.
        #[arg(long = "change-id")]
        change_ids: Vec<String>,
    },
    /// List the routes with their delivery counts.
    Routes {
        #[command(flatten)]
        endpoint: Endpoint,
    },
}

/// Runs a `deliveries` subcommand.
pub async fn deliveries(command: DeliveriesCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeliveriesCommand::List {
            endpoint,
            route,
            state,
            appointment,
            limit,
            cursor,
        } => {
            let query = [
                ("route", route),
                ("state", state),
                ("appointment", appointment),
                ("limit", Some(limit.to_string())),
                ("cursor", cursor),
            ];
            let body = endpoint.get("/api/v1/deliveries", &query).await?;
            endpoint.print(
                &body,
                "deliveries",
                &[
                    ("ID", "id", 8),
                    ("ROUTE", "route", 14),
                    ("STATE", "state", 10),
                    ("TRIES", "attempts", 5),
                    ("NEXT", "next_attempt_at", 25),
                    ("APPOINTMENT", "appointment", 44),
                    ("ERROR", "last_error", 0),
                ],
            )?;
        }
        DeliveriesCommand::Retry { endpoint, id } => {
            let body = endpoint
                .post(&format!("/api/v1/deliveries/{id}/retry"), json!({}))
                .await?;
            println!(
                "delivery {id}: {} (was {})",
                cell(&body["status"]),
                cell(&body["was"])
            );
        }
        DeliveriesCommand::Replay {
            endpoint,
            route,
            from,
            to,
            change_ids,
        } => {
            let body = if change_ids.is_empty() {
                json!({"from": from, "to": to})
            } else {
                json!({"change_ids": change_ids})
            };
            let answer = endpoint
                .post(&format!("/api/v1/routes/{route}/replay"), body)
                .await?;
            println!(
                "{} changes enqueued again for {route}",
                cell(&answer["requeued"])
            );
        }
        DeliveriesCommand::Routes { endpoint } => {
            let mut body = endpoint.get("/api/v1/routes", &[]).await?;
            for route in body["routes"].as_array_mut().into_iter().flatten() {
                for state in ["pending", "failed", "delivered", "dead"] {
                    route[state] = route["counts"][state].clone();
                }
                route["sink_type"] = route["sink"]["type"].clone();
            }
            endpoint.print(
                &body,
                "routes",
                &[
                    ("NAME", "name", 16),
                    ("SINK", "sink_type", 7),
                    ("PENDING", "pending", 8),
                    ("FAILED", "failed", 7),
                    ("DELIVERED", "delivered", 10),
                    ("DEAD", "dead", 0),
                ],
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
