//! Routes: which changes each downstream system asked for.
//!
//! A route's `when` table lists accepted values per fact of a change (each list empty means
//! any); its optional `filter` is a [`Filter`] over the whole CloudEvent. A change matches
//! when every non-empty list contains its value and the filter holds. Matching reads only
//! the CloudEvent, so a stored change can be tested against the routes at any time.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::diff::path_is_under;
use super::filter::Filter;

/// The `when` table of a route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct When {
    /// Event types: `appointments`, `customers`, `service-orders`, `mpis`.
    #[serde(rename = "type")]
    pub event_type: Vec<String>,
    /// The payload's `event`: `CREATED`, `SCHEDULED`, `RESCHEDULED`, `UPDATED`…
    pub event: Vec<String>,
    /// The payload's `newStatus`.
    pub new_status: Vec<String>,
    /// The appointment's `status` after the change.
    pub status: Vec<String>,
    /// Change kinds; a change matches when any of its kinds is listed.
    pub kind: Vec<String>,
    /// Dealer uuids.
    pub dealer: Vec<String>,
    /// Department uuids.
    pub department: Vec<String>,
    /// JSON Pointers into the appointment: deliver only if one of these (or a field under
    /// one) changed.
    pub fields: Vec<String>,
}

/// What a change is, as routes see it; read from the CloudEvent.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts<'a> {
    event_type: Option<&'a str>,
    event: Option<&'a str>,
    new_status: Option<&'a str>,
    status: Option<&'a str>,
    kinds: Vec<&'a str>,
    dealer: Option<&'a str>,
    department: Option<&'a str>,
    fields: Vec<&'a str>,
}

impl<'a> Facts<'a> {
    /// Reads the facts out of a change's CloudEvent.
    pub fn of(cloudevent: &'a Value) -> Self {
        let text = |pointer: &str| cloudevent.pointer(pointer).and_then(Value::as_str);
        let strings = |pointer: &str, key: Option<&str>| -> Vec<&'a str> {
            cloudevent
                .pointer(pointer)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| match key {
                            Some(key) => item.get(key).and_then(Value::as_str),
                            None => item.as_str(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            event_type: text("/data/origin/event_type"),
            event: text("/data/origin/event"),
            new_status: text("/data/origin/new_status"),
            status: text("/data/state/status"),
            kinds: strings("/data/change/kinds", None),
            dealer: text("/data/origin/dealer_uuid"),
            department: text("/data/origin/department_uuid"),
            fields: strings("/data/change/fields", Some("path")),
        }
    }
}

impl When {
    /// The reasons the change does not match (empty when it does).
    pub fn mismatches(&self, facts: &Facts<'_>) -> Vec<String> {
        let mut reasons = Vec::new();
        let mut check = |name: &str, accepted: &[String], actual: Option<&str>| {
            if !accepted.is_empty()
                && !actual.is_some_and(|value| accepted.iter().any(|a| a == value))
            {
                reasons.push(format!(
                    "{name} is {} (wanted one of {})",
                    shown(actual),
                    accepted.join(", ")
                ));
            }
        };
        check("type", &self.event_type, facts.event_type);
        check("event", &self.event, facts.event);
        check("new_status", &self.new_status, facts.new_status);
        check("status", &self.status, facts.status);
        check("dealer", &self.dealer, facts.dealer);
        check("department", &self.department, facts.department);
        if !self.kind.is_empty()
            && !facts
                .kinds
                .iter()
                .any(|kind| self.kind.iter().any(|k| k == kind))
        {
            reasons.push(format!(
                "kinds are [{}] (wanted one of {})",
                facts.kinds.join(", "),
                self.kind.join(", ")
            ));
        }
        if !self.fields.is_empty()
            && !facts.fields.iter().any(|path| {
                self.fields
                    .iter()
                    .any(|pattern| path_is_under(path, pattern))
            })
        {
            reasons.push(format!("none of {} changed", self.fields.join(", ")));
        }
        reasons
    }
}

fn shown(value: Option<&str>) -> &str {
    value.unwrap_or("absent")
}

/// A route's matching rule: `when` and the optional `filter`.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The `when` table.
    pub when: When,
    /// The filter expression.
    pub filter: Option<Filter>,
}

impl Matcher {
    /// The reasons `cloudevent` does not match (empty when it does).
    pub fn mismatches(&self, cloudevent: &Value) -> Vec<String> {
        let mut reasons = self.when.mismatches(&Facts::of(cloudevent));
        if let Some(filter) = &self.filter
            && !filter.matches(cloudevent)
        {
            reasons.push(format!("filter {} does not hold", filter.source()));
        }
        reasons
    }

    /// True when `cloudevent` matches.
    pub fn matches(&self, cloudevent: &Value) -> bool {
        self.mismatches(cloudevent).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn change() -> Value {
        json!({
            "type": "com.mykaarma.appointment.rescheduled",
            "data": {
                "state": {"status": "RESCHEDULED"},
                "change": {"kinds": ["rescheduled", "status_changed"], "fields": [{"path": "/startTime"}, {"path": "/vehicleInformation/mileage"}]},
                "origin": {"event_type": "appointments", "event": "RESCHEDULED", "new_status": "RESCHEDULED", "dealer_uuid": "d1", "department_uuid": "p1"},
                "appointment": {"vehicleInformation": {"brand": "Honda"}}
            }
        })
    }

    fn list(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    #[test]
    fn every_when_key() {
        type Edit = fn(&mut When, Vec<String>);
        let keys: [(&str, Edit, &[&str], &[&str]); 8] = [
            (
                "type",
                |w, v| w.event_type = v,
                &["appointments"],
                &["customers"],
            ),
            (
                "event",
                |w, v| w.event = v,
                &["SCHEDULED", "RESCHEDULED"],
                &["CREATED"],
            ),
            (
                "new_status",
                |w, v| w.new_status = v,
                &["RESCHEDULED"],
                &["CANCELLED"],
            ),
            (
                "status",
                |w, v| w.status = v,
                &["RESCHEDULED"],
                &["SCHEDULED"],
            ),
            (
                "kind",
                |w, v| w.kind = v,
                &["status_changed"],
                &["created", "cancelled"],
            ),
            ("dealer", |w, v| w.dealer = v, &["d0", "d1"], &["d2"]),
            ("department", |w, v| w.department = v, &["p1"], &["p2"]),
            (
                "fields",
                |w, v| w.fields = v,
                &["/vehicleInformation"],
                &["/comments"],
            ),
        ];
        let event = change();
        for (name, set, matching, other) in keys {
            let mut when = When::default();
            set(&mut when, list(matching));
            assert!(
                when.mismatches(&Facts::of(&event)).is_empty(),
                "{name} {matching:?}"
            );
            let mut when = When::default();
            set(&mut when, list(other));
            let reasons = when.mismatches(&Facts::of(&event));
            assert_eq!(reasons.len(), 1, "{name} {other:?}");
            let reason_name = if name == "kind" {
                "kinds"
            } else if name == "fields" {
                "none of"
            } else {
                name
            };
            assert!(reasons[0].starts_with(reason_name), "{reasons:?}");
        }
        assert!(
            When::default().mismatches(&Facts::of(&event)).is_empty(),
            "empty lists match anything"
        );
    }

    #[test]
    fn the_filter_joins_the_when_table() {
        let matcher = Matcher {
            when: When {
                kind: list(&["rescheduled"]),
                ..When::default()
            },
            filter: Some(
                Filter::parse(json!({"data.appointment.vehicleInformation.brand": "Ford"}))
                    .unwrap(),
            ),
        };
        let reasons = matcher.mismatches(&change());
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].starts_with("filter"), "{reasons:?}");
        assert!(!matcher.matches(&change()));
    }
}
