//! Routes as configured (`[[routes]]`) and as running: a name, a matcher, a sink, a retry
//! policy, a concurrency and a rate limit.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use super::retry::RetryPolicy;
use crate::pipeline::{Filter, Matcher, When, pointer};
use crate::sinks::{Sink, SinkConfig};

/// One `[[routes]]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The route's name (letters, digits, `-` and `_`), used in the API and in metrics.
    pub name: String,
    /// Which changes it takes; every list empty means all of them.
    #[serde(default)]
    pub when: When,
    /// A JSON-match expression over the CloudEvent, on top of `when`.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Where the changes go.
    pub sink: SinkConfig,
    /// Retry budget and back-off.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Attempts in flight at once (for different appointments; one appointment's changes
    /// always go one after another).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Most attempts started per second; none when absent.
    #[serde(default)]
    pub rate_limit: Option<f64>,
}

fn default_concurrency() -> u32 {
    4
}

/// A running route.
pub struct Route {
    /// Its configuration.
    pub config: RouteConfig,
    /// What it takes.
    pub matcher: Matcher,
    /// Where it delivers.
    pub sink: Box<dyn Sink>,
    /// Notified when it may have new work.
    pub wake: Notify,
}

/// Why the routes cannot run.
#[derive(Debug, thiserror::Error)]
#[error("route {route:?}: {reason}")]
pub struct RouteError {
    /// The route.
    pub route: String,
    /// What is wrong.
    pub reason: String,
}

/// Every configured route.
#[derive(Default)]
pub struct Routes(Vec<Arc<Route>>);

impl Routes {
    /// Validates the configuration and builds every sink.
    pub fn build(configs: &[RouteConfig]) -> Result<Self, RouteError> {
        let mut routes: Vec<Arc<Route>> = Vec::with_capacity(configs.len());
        for config in configs {
            let fail = |reason: String| RouteError {
                route: config.name.clone(),
                reason,
            };
            let valid_name = !config.name.is_empty()
                && config
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_name {
                return Err(fail("a name is letters, digits, `-` and `_`".into()));
            }
            if routes.iter().any(|route| route.config.name == config.name) {
                return Err(fail("the name is used twice".into()));
            }
            if config.concurrency == 0 {
                return Err(fail("concurrency must be at least 1".into()));
            }
            if config
                .rate_limit
                .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
            {
                return Err(fail(
                    "rate_limit must be a positive number of attempts per second".into(),
                ));
            }
            if config.retry.max_attempts == 0 {
                return Err(fail("retry.max_attempts must be at least 1".into()));
            }
            if !(0.0..=1.0).contains(&config.retry.jitter) {
                return Err(fail(
                    "retry.jitter is a fraction of each delay, from 0 to 1".into(),
                ));
            }
            let sink = config
                .sink
                .build()
                .map_err(|error| fail(format!("sink: {error}")))?;
            let when = When {
                fields: config
                    .when
                    .fields
                    .iter()
                    .map(|field| pointer(field))
                    .collect(),
                ..config.when.clone()
            };
            routes.push(Arc::new(Route {
                matcher: Matcher {
                    when,
                    filter: config.filter.clone(),
                },
                config: config.clone(),
                sink,
                wake: Notify::new(),
            }));
        }
        Ok(Self(routes))
    }

    /// The names of the routes `cloudevent` goes to.
    pub fn matching(&self, cloudevent: &Value) -> Vec<String> {
        self.0
            .iter()
            .filter(|route| route.matcher.matches(cloudevent))
            .map(|route| route.config.name.clone())
            .collect()
    }

    /// The route called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Route>> {
        self.0.iter().find(|route| route.config.name == name)
    }

    /// Every route, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.0.iter()
    }

    /// Tells every route there may be new work.
    pub fn wake_all(&self) {
        self.0.iter().for_each(|route| route.wake.notify_one());
    }
}
