//! Field-level differences between two versions of an appointment.
//!
//! Paths are JSON Pointers relative to `appointmentInfoResponse` (`/startTime`,
//! `/vehicleInformation/mileage`). A missing key and `null` are the same thing (myKaarma may
//! omit nulls). Arrays of objects that carry an identity (`opcode`, `uuid`…) are matched by it,
//! so reordering a service list is no change; other arrays are compared by position.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One changed field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// JSON Pointer into the appointment (the new version's indices for arrays).
    pub path: String,
    /// The value before (`null` when it was absent).
    pub old: Value,
    /// The value after (`null` when it is gone).
    pub new: Value,
}

/// Keys that identify an item of an array, tried in order.
const IDENTITY_KEYS: [&str; 6] = [
    "opcode",
    "opCode",
    "laborOpCode",
    "uuid",
    "id",
    "transportOptionUuid",
];

/// The changes from `old` to `new`, leaving out paths under any of `ignored` (pointers).
pub fn diff(old: &Value, new: &Value, ignored: &[String]) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    walk(&mut String::new(), old, new, ignored, &mut changes);
    changes
}

/// A field as a JSON Pointer: `appointmentKey` and `/appointmentKey` both name `/appointmentKey`.
pub fn pointer(field: &str) -> String {
    if field.starts_with('/') {
        field.to_owned()
    } else {
        format!("/{field}")
    }
}

/// True when `path` is `pattern` or lies under it.
pub fn path_is_under(path: &str, pattern: &str) -> bool {
    path == pattern
        || (path.starts_with(pattern) && path.as_bytes().get(pattern.len()) == Some(&b'/'))
}

fn walk(
    path: &mut String,
    old: &Value,
    new: &Value,
    ignored: &[String],
    out: &mut Vec<FieldChange>,
) {
    if ignored.iter().any(|pattern| path_is_under(path, pattern)) {
        return;
    }
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => walk_objects(path, old, new, ignored, out),
        (Value::Array(old), Value::Array(new)) => walk_arrays(path, old, new, ignored, out),
        _ if same_scalar(old, new) => {}
        _ => out.push(FieldChange {
            path: path.clone(),
            old: old.clone(),
            new: new.clone(),
        }),
    }
}

fn walk_objects(
    path: &mut String,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    ignored: &[String],
    out: &mut Vec<FieldChange>,
) {
    let keys = old
        .keys()
        .chain(new.keys().filter(|key| !old.contains_key(*key)));
    for key in keys {
        let len = path.len();
        path.push('/');
        push_escaped(path, key);
        walk(
            path,
            old.get(key).unwrap_or(&Value::Null),
            new.get(key).unwrap_or(&Value::Null),
            ignored,
            out,
        );
        path.truncate(len);
    }
}

fn walk_arrays(
    path: &mut String,
    old: &[Value],
    new: &[Value],
    ignored: &[String],
    out: &mut Vec<FieldChange>,
) {
    let at = |path: &mut String, index: usize| {
        let len = path.len();
        path.push('/');
        path.push_str(&index.to_string());
        len
    };
    let Some(key) = identity_key(old, new) else {
        for index in 0..old.len().max(new.len()) {
            let len = at(path, index);
            walk(
                path,
                old.get(index).unwrap_or(&Value::Null),
                new.get(index).unwrap_or(&Value::Null),
                ignored,
                out,
            );
            path.truncate(len);
        }
        return;
    };
    let identity = |item: &Value| item.get(key).cloned().unwrap_or(Value::Null);
    for (index, item) in new.iter().enumerate() {
        let before = old
            .iter()
            .find(|candidate| identity(candidate) == identity(item));
        let len = at(path, index);
        walk(path, before.unwrap_or(&Value::Null), item, ignored, out);
        path.truncate(len);
    }
    for (index, item) in old.iter().enumerate() {
        if !new
            .iter()
            .any(|candidate| identity(candidate) == identity(item))
        {
            let len = at(path, index);
            walk(path, item, &Value::Null, ignored, out);
            path.truncate(len);
        }
    }
}

/// The identity key every item of both arrays carries, with no repeats, if there is one.
fn identity_key(old: &[Value], new: &[Value]) -> Option<&'static str> {
    if old.is_empty() && new.is_empty() {
        return None;
    }
    IDENTITY_KEYS.into_iter().find(|key| {
        [old, new].iter().all(|items| {
            let ids: Vec<&Value> = items.iter().filter_map(|item| item.get(*key)).collect();
            ids.len() == items.len()
                && ids.iter().all(|id| !id.is_null())
                && ids.iter().enumerate().all(|(i, id)| !ids[..i].contains(id))
        })
    })
}

/// Scalars equal by value: `1` and `1.0` are the same number.
fn same_scalar(old: &Value, new: &Value) -> bool {
    match (old, new) {
        (Value::Number(a), Value::Number(b)) => a == b || a.as_f64() == b.as_f64(),
        _ => old == new,
    }
}

/// Escapes a key per RFC 6901 (`~` → `~0`, `/` → `~1`).
fn push_escaped(path: &mut String, key: &str) {
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(changes: &[FieldChange]) -> Vec<&str> {
        changes.iter().map(|change| change.path.as_str()).collect()
    }

    #[test]
    fn finds_nested_scalar_changes() {
        let old = json!({"startTime": "2025-01-20T08:00:00", "vehicleInformation": {"mileage": "100", "vin": "V"}});
        let new = json!({"startTime": "2025-01-21T08:00:00", "vehicleInformation": {"mileage": "200", "vin": "V"}});
        let changes = diff(&old, &new, &[]);
        assert_eq!(
            paths(&changes),
            ["/startTime", "/vehicleInformation/mileage"]
        );
        assert_eq!(changes[0].old, "2025-01-20T08:00:00");
        assert_eq!(changes[0].new, "2025-01-21T08:00:00");
    }

    #[test]
    fn missing_and_null_are_the_same() {
        assert!(diff(&json!({"a": null, "b": 1}), &json!({"b": 1.0}), &[]).is_empty());
        let changes = diff(&json!({}), &json!({"appointmentKey": "DMS-1"}), &[]);
        assert_eq!(
            changes,
            vec![FieldChange {
                path: "/appointmentKey".into(),
                old: Value::Null,
                new: json!("DMS-1")
            }]
        );
    }

    #[test]
    fn keyed_arrays_match_by_identity() {
        let old = json!({"serviceList": [{"opcode": "OIL", "price": 50}, {"opcode": "ROT", "price": 20}]});
        let reordered = json!({"serviceList": [{"opcode": "ROT", "price": 20}, {"opcode": "OIL", "price": 50}]});
        assert!(
            diff(&old, &reordered, &[]).is_empty(),
            "reordering is not a change"
        );
        let changed = json!({"serviceList": [{"opcode": "ROT", "price": 25}, {"opcode": "BRK", "price": 90}]});
        let changes = diff(&old, &changed, &[]);
        assert_eq!(
            paths(&changes),
            ["/serviceList/0/price", "/serviceList/1", "/serviceList/0"]
        );
        assert_eq!(changes[1].old, Value::Null, "BRK was added");
        assert_eq!(changes[2].new, Value::Null, "OIL was removed");
    }

    #[test]
    fn other_arrays_compare_by_position() {
        let changes = diff(&json!({"list": [1, 2]}), &json!({"list": [1, 3, 4]}), &[]);
        assert_eq!(paths(&changes), ["/list/1", "/list/2"]);
    }

    #[test]
    fn ignored_paths_and_their_children_are_left_out() {
        let old = json!({"reminderCount": 0, "sarmetaData": {"x": 1}, "sarmetaDataX": 1});
        let new = json!({"reminderCount": 1, "sarmetaData": {"x": 2}, "sarmetaDataX": 2});
        let changes = diff(
            &old,
            &new,
            &["/reminderCount".into(), "/sarmetaData".into()],
        );
        assert_eq!(paths(&changes), ["/sarmetaDataX"]);
    }

    #[test]
    fn keys_are_escaped() {
        let changes = diff(
            &json!({"a/b": 1, "c~d": 1}),
            &json!({"a/b": 2, "c~d": 2}),
            &[],
        );
        assert_eq!(paths(&changes), ["/a~1b", "/c~0d"]);
    }
}
