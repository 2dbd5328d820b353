//! Convergence check: reads a receiver's projection of appointments and lists every way it
//! differs from the [`Truth`].
//!
//! The receiver's side of the contract is Kaarma Relay's query API:
//! `GET {relay}/api/v1/appointments?limit=500[&cursor=C]` with `Authorization: Bearer T`,
//! answering `{"appointments":[{"uuid","dealer_uuid","department_uuid","status",
//! "appointment_key","start_time","end_time","is_cancelled","deleted",…}],"next_cursor":…}`,
//! deleted appointments included, pages followed until `next_cursor` is null. Only
//! appointments of the truth's dealers are compared, so a receiver shared with other
//! traffic can still be checked; extras among those dealers are reported.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;

use crate::truth::{TrueAppointment, Truth};

/// Page size asked of the relay.
const PAGE_LIMIT: usize = 500;

/// One appointment as the relay projects it. Unknown fields are ignored, missing ones read
/// as null.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ProjectedAppointment {
    /// The appointment uuid.
    pub uuid: String,
    /// Its dealer.
    #[serde(default)]
    pub dealer_uuid: Option<String>,
    /// Its department.
    #[serde(default)]
    pub department_uuid: Option<String>,
    /// Current status.
    #[serde(default)]
    pub status: Option<String>,
    /// Current `appointmentKey`.
    #[serde(default)]
    pub appointment_key: Option<String>,
    /// `startTime` as received.
    #[serde(default)]
    pub start_time: Option<String>,
    /// `endTime` as received.
    #[serde(default)]
    pub end_time: Option<String>,
    /// Current `isCancelled`.
    #[serde(default)]
    pub is_cancelled: Option<bool>,
    /// True when the relay saw it deleted.
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Debug, Deserialize)]
struct Page {
    appointments: Vec<ProjectedAppointment>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// One way the relay's projection differs from the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// In the truth, not in the relay.
    Missing {
        /// The appointment.
        uuid: String,
    },
    /// In the relay under one of the truth's dealers, not in the truth.
    Extra {
        /// The appointment.
        uuid: String,
        /// Its dealer.
        dealer_uuid: String,
    },
    /// In both, with a field that differs.
    Field {
        /// The appointment.
        uuid: String,
        /// The field, as the truth file names it.
        field: &'static str,
        /// The truth's value, as JSON.
        expected: String,
        /// The relay's value, as JSON.
        actual: String,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { uuid } => {
                write!(f, "missing    {uuid}: in the truth, not in the relay")
            }
            Self::Extra { uuid, dealer_uuid } => write!(
                f,
                "extra      {uuid}: in the relay (dealer {dealer_uuid}), not in the truth"
            ),
            Self::Field {
                uuid,
                field,
                expected,
                actual,
            } => write!(
                f,
                "different  {uuid}: {field} is {actual}, expected {expected}"
            ),
        }
    }
}

/// Reads the relay's whole projection and compares it with `truth`.
pub async fn verify(
    relay_url: &str,
    token: &str,
    truth: &Truth,
) -> anyhow::Result<Vec<Difference>> {
    let projection = fetch_projection(relay_url, token).await?;
    Ok(compare(truth, &projection))
}

/// Like [`verify`], but while differences remain, checks again every 250 ms until `wait` has
/// passed: a receiver may still be processing what it acknowledged.
pub async fn verify_within(
    relay_url: &str,
    token: &str,
    truth: &Truth,
    wait: Duration,
) -> anyhow::Result<Vec<Difference>> {
    let deadline = Instant::now() + wait;
    loop {
        let differences = verify(relay_url, token, truth).await?;
        if differences.is_empty() || Instant::now() >= deadline {
            return Ok(differences);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every appointment the relay projects, page after page.
pub async fn fetch_projection(
    relay_url: &str,
    token: &str,
) -> anyhow::Result<Vec<ProjectedAppointment>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/api/v1/appointments", relay_url.trim_end_matches('/'));
    let mut appointments = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen_cursors = HashSet::new();
    loop {
        let mut page_url =
            reqwest::Url::parse(&url).with_context(|| format!("{url} is not a URL"))?;
        page_url
            .query_pairs_mut()
            .append_pair("limit", &PAGE_LIMIT.to_string());
        if let Some(cursor) = &cursor {
            page_url.query_pairs_mut().append_pair("cursor", cursor);
        }
        let response = client
            .get(page_url)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("asking {url} for appointments"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .context("reading the relay's answer")?;
        if !status.is_success() {
            let snippet: String = body.chars().take(300).collect();
            anyhow::bail!("the relay answered {status} at {url}: {snippet}");
        }
        let page: Page = serde_json::from_str(&body)
            .with_context(|| format!("the relay's answer at {url} is not an appointments page"))?;
        appointments.extend(page.appointments);
        match page.next_cursor {
            None => return Ok(appointments),
            Some(next) => {
                anyhow::ensure!(
                    seen_cursors.insert(next.clone()),
                    "the relay returned cursor {next:?} twice; stopping to avoid a loop"
                );
                cursor = Some(next);
            }
        }
    }
}

/// Compares a projection with the truth: truth order first, then extras by uuid.
pub fn compare(truth: &Truth, projection: &[ProjectedAppointment]) -> Vec<Difference> {
    let mut by_uuid: HashMap<&str, &ProjectedAppointment> = HashMap::new();
    for appointment in projection {
        by_uuid
            .entry(appointment.uuid.as_str())
            .or_insert(appointment);
    }
    let mut differences = Vec::new();
    for expected in &truth.appointments {
        match by_uuid.get(expected.uuid.as_str()) {
            None => differences.push(Difference::Missing {
                uuid: expected.uuid.clone(),
            }),
            Some(actual) => compare_fields(expected, actual, &mut differences),
        }
    }
    let dealers: HashSet<&str> = truth.dealers().into_iter().collect();
    let known: HashSet<&str> = truth.appointments.iter().map(|a| a.uuid.as_str()).collect();
    let mut extras: Vec<Difference> = by_uuid
        .values()
        .filter(|actual| !known.contains(actual.uuid.as_str()))
        .filter_map(|actual| {
            let dealer = actual.dealer_uuid.as_deref()?;
            dealers.contains(dealer).then(|| Difference::Extra {
                uuid: actual.uuid.clone(),
                dealer_uuid: dealer.to_owned(),
            })
        })
        .collect();
    extras.sort_by(|a, b| format!("{a}").cmp(&format!("{b}")));
    differences.extend(extras);
    differences
}

fn compare_fields(
    expected: &TrueAppointment,
    actual: &ProjectedAppointment,
    differences: &mut Vec<Difference>,
) {
    use serde_json::{Value, json};
    let pairs: [(&'static str, Value, Value); 6] = [
        ("status", json!(expected.status), json!(actual.status)),
        (
            "appointment_key",
            json!(expected.appointment_key),
            json!(actual.appointment_key),
        ),
        (
            "start_time",
            json!(expected.start_time),
            json!(actual.start_time),
        ),
        ("end_time", json!(expected.end_time), json!(actual.end_time)),
        (
            "is_cancelled",
            json!(expected.is_cancelled),
            json!(actual.is_cancelled),
        ),
        ("deleted", json!(expected.deleted), json!(actual.deleted)),
    ];
    for (field, want, got) in pairs {
        if want != got {
            differences.push(Difference::Field {
                uuid: expected.uuid.clone(),
                field,
                expected: want.to_string(),
                actual: got.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth() -> Truth {
        Truth {
            appointments: vec![TrueAppointment {
                uuid: "a1".into(),
                dealer_uuid: "d1".into(),
                department_uuid: "p1".into(),
                status: "RESCHEDULED".into(),
                appointment_key: Some("DMS-1000001".into()),
                start_time: "2025-01-20T08:00:00".into(),
                end_time: "2025-01-20T08:29:59".into(),
                is_cancelled: false,
                deleted: false,
            }],
        }
    }

    fn projected(truth: &TrueAppointment) -> ProjectedAppointment {
        ProjectedAppointment {
            uuid: truth.uuid.clone(),
            dealer_uuid: Some(truth.dealer_uuid.clone()),
            department_uuid: Some(truth.department_uuid.clone()),
            status: Some(truth.status.clone()),
            appointment_key: truth.appointment_key.clone(),
            start_time: Some(truth.start_time.clone()),
            end_time: Some(truth.end_time.clone()),
            is_cancelled: Some(truth.is_cancelled),
            deleted: truth.deleted,
        }
    }

    #[test]
    fn an_exact_projection_has_no_difference() {
        let truth = truth();
        let mut projection = vec![projected(&truth.appointments[0])];
        // Other dealers' appointments are none of this truth's business.
        projection.push(ProjectedAppointment {
            uuid: "other".into(),
            dealer_uuid: Some("d9".into()),
            ..Default::default()
        });
        assert_eq!(compare(&truth, &projection), []);
    }

    #[test]
    fn every_field_difference_is_listed_and_readable() {
        let truth = truth();
        let mut wrong = projected(&truth.appointments[0]);
        wrong.status = Some("SCHEDULED".into());
        wrong.appointment_key = None;
        wrong.start_time = Some("2025-01-20T08:30:00".into());
        wrong.end_time = None;
        wrong.is_cancelled = Some(true);
        wrong.deleted = true;
        let differences = compare(&truth, &[wrong]);
        let text: Vec<String> = differences.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "different  a1: status is \"SCHEDULED\", expected \"RESCHEDULED\"",
                "different  a1: appointment_key is null, expected \"DMS-1000001\"",
                "different  a1: start_time is \"2025-01-20T08:30:00\", expected \"2025-01-20T08:00:00\"",
                "different  a1: end_time is null, expected \"2025-01-20T08:29:59\"",
                "different  a1: is_cancelled is true, expected false",
                "different  a1: deleted is true, expected false",
            ]
        );
    }

    #[test]
    fn missing_and_extra_appointments_are_listed() {
        let truth = truth();
        let extra = ProjectedAppointment {
            uuid: "a2".into(),
            dealer_uuid: Some("d1".into()),
            ..Default::default()
        };
        let differences = compare(&truth, &[extra]);
        assert_eq!(
            differences,
            [
                Difference::Missing { uuid: "a1".into() },
                Difference::Extra {
                    uuid: "a2".into(),
                    dealer_uuid: "d1".into()
                }
            ]
        );
        assert_eq!(
            differences[0].to_string(),
            "missing    a1: in the truth, not in the relay"
        );
        assert_eq!(
            differences[1].to_string(),
            "extra      a2: in the relay (dealer d1), not in the truth"
        );
    }
}
