//! Field ownership as server-side apply records it: FieldsV1 tries (`{"f:spec":
//! {"f:replicas": {}}}`), and the JSON merges the verbs need.
//!
//! Approximations of the real apiserver, good enough for one applier per object: list items
//! are keyed (`k:{...}`) by the first of containerPort, port, mountPath, uid, name that every
//! item has, lists of scalars and unkeyed lists are atomic leaves, and an apply replaces a
//! list whole rather than merging items of other managers into it.

use serde_json::{Map, Value, json};

/// The key fields of the items of a list, if it is an associative list.
fn list_key(items: &[Value]) -> Option<&'static [&'static str]> {
    const CANDIDATES: [&[&str]; 5] = [
        &["containerPort", "protocol"],
        &["port", "protocol"],
        &["mountPath"],
        &["uid"],
        &["name"],
    ];
    if items.is_empty() || !items.iter().all(Value::is_object) {
        return None;
    }
    CANDIDATES
        .into_iter()
        .find(|keys| items.iter().all(|item| item.get(keys[0]).is_some()))
}

/// The `k:` key of one item of an associative list (protocol defaults to TCP, as the
/// apiserver defaults it before computing ownership).
fn item_key(item: &Value, keys: &[&str]) -> String {
    let mut fields = Map::new();
    for key in keys {
        let value = match item.get(*key) {
            Some(v) => v.clone(),
            None if *key == "protocol" => json!("TCP"),
            None => continue,
        };
        fields.insert((*key).to_owned(), value);
    }
    format!("k:{}", Value::Object(fields))
}

/// The FieldsV1 trie of every leaf set in the object `value`.
pub fn field_set(value: &Map<String, Value>) -> Map<String, Value> {
    let mut set = Map::new();
    for (key, sub) in value {
        set.insert(format!("f:{key}"), Value::Object(fields_of(sub)));
    }
    set
}

fn fields_of(value: &Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => field_set(map),
        Value::Array(items) => match list_key(items) {
            Some(keys) => items
                .iter()
                .map(|item| {
                    let mut set = Map::new();
                    set.insert(".".to_owned(), json!({}));
                    if let Some(map) = item.as_object() {
                        set.extend(field_set(map));
                    }
                    (item_key(item, keys), Value::Object(set))
                })
                .collect(),
            None => Map::new(),
        },
        _ => Map::new(),
    }
}

/// The fields a manager owns by sending `object`: everything but the type and the
/// identity and system fields of metadata.
pub fn config_fields(object: &Value) -> Map<String, Value> {
    let mut config = object.as_object().cloned().unwrap_or_default();
    config.remove("apiVersion");
    config.remove("kind");
    if let Some(Value::Object(meta)) = config.get_mut("metadata") {
        for system in [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(system);
        }
        if meta.is_empty() {
            config.remove("metadata");
        }
    }
    field_set(&config)
}

/// The part of `value` a FieldsV1 key addresses.
pub fn resolve<'a>(key: &str, value: &'a Value) -> Option<&'a Value> {
    if let Some(field) = key.strip_prefix("f:") {
        return value.get(field);
    }
    if let Some(keys) = key.strip_prefix("k:") {
        let keys: Map<String, Value> = serde_json::from_str(keys).ok()?;
        return value.as_array()?.iter().find(|item| {
            keys.iter().all(|(k, v)| {
                item.get(k) == Some(v) || (k == "protocol" && v == "TCP" && item.get(k).is_none())
            })
        });
    }
    if let Some(v) = key.strip_prefix("v:") {
        let v: Value = serde_json::from_str(v).ok()?;
        return value.as_array()?.iter().find(|item| **item == v);
    }
    if let Some(index) = key.strip_prefix("i:") {
        return value.as_array()?.get(index.parse::<usize>().ok()?);
    }
    None
}

fn is_leaf(node: &Value) -> bool {
    node.as_object().is_none_or(|m| m.keys().all(|k| k == "."))
}

/// Remove from `owner` the fields of `taken` whose value differs between `old` and `new`
/// (ownership moves to whoever changed them). Returns whether anything was removed.
pub fn take_changed(
    owner: &mut Map<String, Value>,
    taken: &Map<String, Value>,
    old: Option<&Value>,
    new: Option<&Value>,
) -> bool {
    let mut removed = false;
    for (key, taken_sub) in taken {
        if key == "." {
            continue;
        }
        let Some(owned_sub) = owner.get_mut(key) else {
            continue;
        };
        let old_part = old.and_then(|o| resolve(key, o));
        let new_part = new.and_then(|n| resolve(key, n));
        if old_part == new_part {
            continue;
        }
        if is_leaf(owned_sub) || is_leaf(taken_sub) {
            owner.remove(key);
            removed = true;
            continue;
        }
        let (Some(owned_map), Some(taken_map)) = (owned_sub.as_object_mut(), taken_sub.as_object())
        else {
            continue;
        };
        if take_changed(owned_map, taken_map, old_part, new_part) {
            removed = true;
            if owned_map.keys().all(|k| k == ".") {
                owner.remove(key);
            }
        }
    }
    removed
}

/// The leaves of `fields` whose value differs between `old` and `new`.
pub fn changed_fields(
    fields: &Map<String, Value>,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Map<String, Value> {
    let mut changed = Map::new();
    for (key, sub) in fields {
        if key == "." {
            continue;
        }
        let old_part = old.and_then(|o| resolve(key, o));
        let new_part = new.and_then(|n| resolve(key, n));
        if old_part == new_part {
            continue;
        }
        if is_leaf(sub) {
            changed.insert(key.clone(), sub.clone());
        } else if let Some(map) = sub.as_object() {
            let inner = changed_fields(map, old_part, new_part);
            if !inner.is_empty() {
                changed.insert(key.clone(), Value::Object(inner));
            }
        }
    }
    changed
}

/// Union of two field sets.
pub fn union(into: &mut Map<String, Value>, other: &Map<String, Value>) {
    for (key, sub) in other {
        match (into.get_mut(key), sub.as_object()) {
            (Some(Value::Object(mine)), Some(theirs)) => union(mine, theirs),
            (None, _) => {
                into.insert(key.clone(), sub.clone());
            }
            _ => {}
        }
    }
}

/// Remove from `object` the fields `previous` owned that `current` no longer sets, unless
/// another manager (`others`) also owns them. Lists are handled whole.
pub fn remove_released(
    object: &mut Map<String, Value>,
    previous: &Map<String, Value>,
    current: &Map<String, Value>,
    others: &[&Map<String, Value>],
) {
    for (key, prev_sub) in previous {
        let Some(field) = key.strip_prefix("f:") else {
            continue;
        };
        let others_sub: Vec<&Map<String, Value>> = others
            .iter()
            .filter_map(|o| o.get(key).and_then(Value::as_object))
            .collect();
        let current_sub = current.get(key).and_then(Value::as_object);
        let descend = prev_sub
            .as_object()
            .is_some_and(|m| m.keys().any(|k| k.starts_with("f:")));
        if current_sub.is_none() && others_sub.is_empty() {
            object.remove(field);
        } else if descend {
            // Partly released, or shared: remove only what nobody sets any more.
            let empty = Map::new();
            if let (Some(Value::Object(inner)), Some(prev_map)) =
                (object.get_mut(field), prev_sub.as_object())
            {
                remove_released(inner, prev_map, current_sub.unwrap_or(&empty), &others_sub);
            }
        }
    }
}

/// Merge the applied configuration into the object: maps recursively, everything else
/// (lists, scalars) replaced.
pub fn deep_merge(into: &mut Value, applied: &Value) {
    match (into, applied) {
        (Value::Object(into), Value::Object(applied)) => {
            for (key, value) in applied {
                match into.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        deep_merge(existing, value)
                    }
                    _ => {
                        into.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (into, applied) => *into = applied.clone(),
    }
}

/// RFC 7386 JSON merge patch (also used for strategic merge patches, which for the kinds
/// patched this way, Leases and Events, are the same).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sets_key_list_items_and_keep_scalar_lists_atomic() {
        let object = json!({"spec": {"replicas": 1, "args": ["-a"], "containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}});
        let set = field_set(object.as_object().unwrap());
        assert_eq!(
            Value::Object(set),
            json!({"f:spec": {"f:replicas": {}, "f:args": {}, "f:containers": {
                "k:{\"name\":\"c\"}": {".": {}, "f:name": {}, "f:ports": {
                    "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}
                }}
            }}})
        );
    }

    #[test]
    fn a_changed_field_moves_ownership_and_an_unchanged_one_is_shared() {
        let old = json!({"spec": {"replicas": 1, "paused": false}});
        let new = json!({"spec": {"replicas": 2, "paused": false}});
        let mut theirs = field_set(old.as_object().unwrap());
        let ours = field_set(new.as_object().unwrap());
        assert!(take_changed(&mut theirs, &ours, Some(&old), Some(&new)));
        assert_eq!(Value::Object(theirs), json!({"f:spec": {"f:paused": {}}}));
        assert_eq!(
            Value::Object(changed_fields(&ours, Some(&old), Some(&new))),
            json!({"f:spec": {"f:replicas": {}}})
        );
    }

    #[test]
    fn released_fields_go_unless_someone_else_owns_them() {
        let mut object = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4});
        let previous = field_set(object.as_object().unwrap());
        let current = field_set(json!({"b": {"c": 2}}).as_object().unwrap());
        let other = field_set(json!({"e": 4}).as_object().unwrap());
        remove_released(
            object.as_object_mut().unwrap(),
            &previous,
            &current,
            &[&other],
        );
        assert_eq!(object, json!({"b": {"c": 2}, "e": 4}));
    }

    #[test]
    fn merge_patch_removes_nulls() {
        let mut target = json!({"spec": {"a": 1, "b": 2}});
        merge_patch(&mut target, &json!({"spec": {"a": null, "c": 3}}));
        assert_eq!(target, json!({"spec": {"b": 2, "c": 3}}));
    }
}
