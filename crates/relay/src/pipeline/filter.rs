//! Route filters: a JSON-match expression over the CloudEvent, in the subset of MongoDB-style
//! operators that webhook gateways use.
//!
//! - `{"data.appointment.vehicleInformation.brand": "Honda"}` — a dotted path equals a value;
//! - `{"path": {"$eq" | "$neq" | "$gt" | "$gte" | "$lt" | "$lte": value}}`,
//!   `{"path": {"$in" | "$nin": [values]}}`, `{"path": {"$exists": true}}`;
//! - `{"$and": [expr…]}`, `{"$or": [expr…]}`, `{"$not": expr}`;
//! - several keys in one object must all hold. A path into an array tests each item.
//!
//! An expression that names an unknown operator or has the wrong shape is rejected when the
//! configuration is read, so it fails at start with the line and the reason.

use std::cmp::Ordering;
use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expression: Expression,
    source: Value,
}

#[derive(Debug, Clone, PartialEq)]
enum Expression {
    All(Vec<Expression>),
    Any(Vec<Expression>),
    Not(Box<Expression>),
    Path(Vec<String>, Vec<Test>),
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Eq(Value),
    Neq(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Compare(Ordering, bool, Value),
}

/// Why an expression was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid filter: {}", self.0)
    }
}

impl std::error::Error for FilterError {}

const OPERATORS: &str = "$eq $neq $in $nin $exists $gt $gte $lt $lte $and $or $not";

impl Filter {
    /// Parses an expression (see the module docs).
    pub fn parse(source: Value) -> Result<Self, FilterError> {
        let expression = parse_expression(&source)?;
        Ok(Self { expression, source })
    }

    /// True when `event` satisfies the expression.
    pub fn matches(&self, event: &Value) -> bool {
        evaluate(&self.expression, event)
    }

    /// The expression as written.
    pub fn source(&self) -> &Value {
        &self.source
    }
}

fn error(message: impl Into<String>) -> FilterError {
    FilterError(message.into())
}

fn parse_expression(value: &Value) -> Result<Expression, FilterError> {
    let Value::Object(entries) = value else {
        return Err(error(format!("expected an object, got {value}")));
    };
    let mut all = Vec::new();
    for (key, operand) in entries {
        all.push(match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = operand else {
                    return Err(error(format!("{key} takes an array of expressions")));
                };
                let parsed = items
                    .iter()
                    .map(parse_expression)
                    .collect::<Result<Vec<_>, _>>()?;
                if key == "$and" {
                    Expression::All(parsed)
                } else {
                    Expression::Any(parsed)
                }
            }
            "$not" => Expression::Not(Box::new(parse_expression(operand)?)),
            operator if operator.starts_with('$') => {
                return Err(error(format!(
                    "unknown operator {operator:?} (known: {OPERATORS})"
                )));
            }
            path => {
                if path.is_empty() || path.split('.').any(str::is_empty) {
                    return Err(error(format!("invalid path {path:?}")));
                }
                let segments = path.split('.').map(str::to_owned).collect();
                Expression::Path(segments, parse_tests(operand)?)
            }
        });
    }
    Ok(Expression::All(all))
}

/// An operand is either an operator object (`{"$in": […]}`) or a literal to equal.
fn parse_tests(operand: &Value) -> Result<Vec<Test>, FilterError> {
    let operators = match operand {
        Value::Object(entries) if entries.keys().any(|key| key.starts_with('$')) => entries,
        literal => return Ok(vec![Test::Eq(literal.clone())]),
    };
    operators
        .iter()
        .map(|(operator, value)| {
            let list = || match value {
                Value::Array(items) => Ok(items.clone()),
                _ => Err(error(format!("{operator} takes an array"))),
            };
            Ok(match operator.as_str() {
                "$eq" => Test::Eq(value.clone()),
                "$neq" => Test::Neq(value.clone()),
                "$in" => Test::In(list()?),
                "$nin" => Test::Nin(list()?),
                "$exists" => Test::Exists(
                    value
                        .as_bool()
                        .ok_or_else(|| error("$exists takes true or false"))?,
                ),
                "$gt" => Test::Compare(Ordering::Greater, false, value.clone()),
                "$gte" => Test::Compare(Ordering::Greater, true, value.clone()),
                "$lt" => Test::Compare(Ordering::Less, false, value.clone()),
                "$lte" => Test::Compare(Ordering::Less, true, value.clone()),
                "$and" | "$or" | "$not" => {
                    return Err(error(format!(
                        "{operator} combines expressions; it cannot test a path"
                    )));
                }
                other => {
                    return Err(error(format!(
                        "unknown operator {other:?} (known: {OPERATORS})"
                    )));
                }
            })
        })
        .collect()
}

fn evaluate(expression: &Expression, event: &Value) -> bool {
    match expression {
        Expression::All(items) => items.iter().all(|item| evaluate(item, event)),
        Expression::Any(items) => items.iter().any(|item| evaluate(item, event)),
        Expression::Not(inner) => !evaluate(inner, event),
        Expression::Path(path, tests) => {
            let mut found = Vec::new();
            resolve(event, path, &mut found);
            tests.iter().all(|test| passes(test, &found))
        }
    }
}

/// Every value at `path`; arrays on the way fan out to their items.
fn resolve<'a>(value: &'a Value, path: &[String], found: &mut Vec<&'a Value>) {
    let Some((segment, rest)) = path.split_first() else {
        match value {
            Value::Array(items) => found.extend(items.iter()),
            other => found.push(other),
        }
        return;
    };
    match value {
        Value::Object(entries) => {
            if let Some(child) = entries.get(segment) {
                resolve(child, rest, found);
            }
        }
        Value::Array(items) => match segment.parse::<usize>() {
            Ok(index) => {
                if let Some(item) = items.get(index) {
                    resolve(item, rest, found);
                }
            }
            Err(_) => items.iter().for_each(|item| resolve(item, path, found)),
        },
        _ => {}
    }
}

fn passes(test: &Test, found: &[&Value]) -> bool {
    let present: Vec<&Value> = found
        .iter()
        .copied()
        .filter(|value| !value.is_null())
        .collect();
    match test {
        Test::Eq(Value::Null) => present.is_empty(),
        Test::Eq(expected) => present.iter().any(|value| equal(value, expected)),
        Test::Neq(expected) => !passes(&Test::Eq(expected.clone()), found),
        Test::In(options) => options
            .iter()
            .any(|option| passes(&Test::Eq(option.clone()), found)),
        Test::Nin(options) => !passes(&Test::In(options.clone()), found),
        Test::Exists(wanted) => present.is_empty() != *wanted,
        Test::Compare(direction, or_equal, bound) => present.iter().any(|value| {
            compare(value, bound)
                .is_some_and(|order| order == *direction || (*or_equal && order == Ordering::Equal))
        }),
    }
}

fn equal(value: &Value, expected: &Value) -> bool {
    match (value, expected) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => value == expected,
    }
}

/// Numbers compare as numbers, strings as strings (so ISO dates order correctly).
fn compare(value: &Value, bound: &Value) -> Option<Ordering> {
    match (value, bound) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = Value::deserialize(deserializer)?;
        Filter::parse(source).map_err(D::Error::custom)
    }
}

impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event() -> Value {
        json!({
            "type": "com.mykaarma.appointment.rescheduled",
            "data": {
                "appointment": {
                    "vehicleInformation": {"vin": "1HGCM82633A004352", "brand": "Honda", "mileage": "128450"},
                    "reminderCount": 2,
                    "startTime": "2025-01-22T10:30:00",
                    "serviceList": [{"opcode": "OIL"}, {"opcode": "ROT"}],
                    "teamUuid": null
                },
                "change": {"kinds": ["rescheduled", "status_changed"]}
            }
        })
    }

    #[test]
    fn every_operator() {
        let cases = [
            (
                json!({"data.appointment.vehicleInformation.brand": "Honda"}),
                true,
            ),
            (
                json!({"data.appointment.vehicleInformation.brand": "Ford"}),
                false,
            ),
            (
                json!({"data.appointment.vehicleInformation.brand": {"$eq": "Honda"}}),
                true,
            ),
            (
                json!({"data.appointment.vehicleInformation.brand": {"$neq": "Honda"}}),
                false,
            ),
            (
                json!({"data.appointment.vehicleInformation.brand": {"$in": ["Ford", "Honda"]}}),
                true,
            ),
            (
                json!({"data.appointment.vehicleInformation.brand": {"$nin": ["Ford", "Honda"]}}),
                false,
            ),
            (
                json!({"data.appointment.vehicleInformation.vin": {"$exists": true}}),
                true,
            ),
            (
                json!({"data.appointment.teamUuid": {"$exists": true}}),
                false,
            ),
            (
                json!({"data.appointment.teamUuid": {"$exists": false}}),
                true,
            ),
            (
                json!({"data.appointment.nothing": {"$exists": false}}),
                true,
            ),
            (json!({"data.appointment.reminderCount": {"$gt": 1}}), true),
            (json!({"data.appointment.reminderCount": {"$gt": 2}}), false),
            (
                json!({"data.appointment.reminderCount": {"$gte": 2, "$lte": 2.0}}),
                true,
            ),
            (json!({"data.appointment.reminderCount": {"$lt": 2}}), false),
            (
                json!({"data.appointment.startTime": {"$gte": "2025-01-22", "$lt": "2025-01-23"}}),
                true,
            ),
            (json!({"data.appointment.serviceList.opcode": "ROT"}), true),
            (
                json!({"data.appointment.serviceList.0.opcode": "ROT"}),
                false,
            ),
            (json!({"data.change.kinds": "status_changed"}), true),
            (
                json!({"$and": [{"type": "com.mykaarma.appointment.rescheduled"}, {"data.change.kinds": "rescheduled"}]}),
                true,
            ),
            (
                json!({"$or": [{"type": "x"}, {"data.appointment.vehicleInformation.brand": "Honda"}]}),
                true,
            ),
            (json!({"$or": [{"type": "x"}, {"type": "y"}]}), false),
            (json!({"$not": {"type": "x"}}), true),
            (
                json!({"type": "com.mykaarma.appointment.rescheduled", "data.appointment.reminderCount": 3}),
                false,
            ),
            (json!({"data.appointment.teamUuid": null}), true),
            (json!({}), true),
        ];
        for (expression, expected) in cases {
            let filter =
                Filter::parse(expression.clone()).unwrap_or_else(|e| panic!("{expression}: {e}"));
            assert_eq!(filter.matches(&event()), expected, "{expression}");
        }
    }

    #[test]
    fn bad_expressions_are_rejected_with_the_reason() {
        let cases = [
            (
                json!({"data.x": {"$regex": "a"}}),
                "unknown operator \"$regex\"",
            ),
            (json!({"$xor": []}), "unknown operator \"$xor\""),
            (json!({"$and": {}}), "$and takes an array"),
            (json!({"a": {"$in": "x"}}), "$in takes an array"),
            (
                json!({"a": {"$exists": "yes"}}),
                "$exists takes true or false",
            ),
            (json!({"a": {"$not": {}}}), "$not combines expressions"),
            (json!({"a..b": 1}), "invalid path"),
            (json!([1]), "expected an object"),
        ];
        for (expression, expected) in cases {
            let message = Filter::parse(expression.clone()).unwrap_err().to_string();
            assert!(message.contains(expected), "{expression}: {message}");
        }
    }
}
