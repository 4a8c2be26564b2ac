//! Drift detection from metadata alone: has someone else changed a field we apply?
//!
//! Server-side apply records, in `managedFields`, which manager set which field. A person
//! or tool that edits a child (kubectl edit/patch/replace) shows up as an `Update` entry
//! owning the fields it changed; our next forced apply takes them back, which removes them
//! from that entry. So "an Update entry of another manager owns a field we apply" means
//! drift, and it stops meaning drift once repaired: no apply loop. Entries for the status
//! subresource (the controllers) and fields we do not set are ignored; `/scale` entries
//! (kubectl scale) are drift where we set the replicas.
//! This needs only metadata watches, so the controller caches no pod templates.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::Value;

/// An `Update` by a manager other than `ours` of the object itself or of its `/scale`
/// subresource: someone edited the object, or scaled it (`kubectl scale`, an HPA). A scale
/// entry is drift only where we set `spec.replicas`: an autoscaled Deployment's desired
/// object leaves replicas out, so the HPA's entries never overlap it. `/status` entries are
/// the controllers' and never drift.
pub fn is_foreign_update(entry: &ManagedFieldsEntry, ours: &str) -> bool {
    entry.manager.as_deref() != Some(ours)
        && entry.operation.as_deref() == Some("Update")
        && matches!(
            entry.subresource.as_deref().unwrap_or_default(),
            "" | "scale"
        )
}

/// A digest of the fields `ours` owns through its apply (0 when it owns none). Recorded
/// from each apply's answer and compared with what the watch shows later: a field deleted
/// by hand disappears from every manager's entry, so no foreign `Update` entry shows the
/// edit, but our own entry changes.
pub fn own_fields_digest(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ours: &str,
) -> u64 {
    use std::hash::{Hash, Hasher};
    meta.managed_fields
        .iter()
        .flatten()
        .find(|e| {
            e.manager.as_deref() == Some(ours)
                && e.operation.as_deref() == Some("Apply")
                && e.subresource.as_deref().unwrap_or_default().is_empty()
        })
        .and_then(|e| e.fields_v1.as_ref())
        .map_or(0, |fields| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            fields.0.to_string().hash(&mut hasher);
            hasher.finish().max(1)
        })
}

/// A digest of other managers' edits (their entries' managers, operations, subresources and
/// field sets; not their times), 0 when there are none. Recorded from each apply's answer:
/// an edit that survives our forced apply (a field another manager set to our very value
/// stays shared) must not make us apply again at every resync.
pub fn foreign_digest<'a>(
    entries: impl IntoIterator<Item = &'a ManagedFieldsEntry>,
    ours: &str,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut any = false;
    for entry in entries {
        if !is_foreign_update(entry, ours) {
            continue;
        }
        any = true;
        entry.manager.hash(&mut hasher);
        entry.operation.hash(&mut hasher);
        entry.subresource.hash(&mut hasher);
        entry
            .fields_v1
            .as_ref()
            .map(|f| f.0.to_string())
            .hash(&mut hasher);
    }
    if any { hasher.finish().max(1) } else { 0 }
}

/// Keep only the managedFields entries drift detection reads (other managers' edits). Our
/// own entries hold a field set per object: most of a cache's memory with thousands of
/// children, and never read.
pub fn keep_foreign_updates(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ours: &str,
) {
    if let Some(fields) = meta.managed_fields.as_mut() {
        fields.retain(|entry| is_foreign_update(entry, ours));
        if fields.is_empty() {
            meta.managed_fields = None;
        }
    }
}

/// Whether any manager other than `ours` has taken a field that `desired` sets.
pub fn is_drifted(managed_fields: &[ManagedFieldsEntry], ours: &str, desired: &Value) -> bool {
    managed_fields.iter().any(|entry| {
        is_foreign_update(entry, ours)
            && entry
                .fields_v1
                .as_ref()
                .is_some_and(|f| overlaps(&f.0, desired))
    })
}

/// Whether the field set `fields` (FieldsV1 trie) owns any leaf that `desired` also sets.
fn overlaps(fields: &Value, desired: &Value) -> bool {
    let Some(fields) = fields.as_object() else {
        return false;
    };
    fields.iter().any(|(key, sub)| {
        let Some(target) = resolve(key, desired) else {
            return false;
        };
        match sub.as_object() {
            // A leaf: they own a field whose value we set.
            Some(children) if children.is_empty() => true,
            Some(_) => overlaps(sub, target),
            None => false,
        }
    })
}

/// The part of `desired` a FieldsV1 key points at, if we set it.
fn resolve<'a>(key: &str, desired: &'a Value) -> Option<&'a Value> {
    if let Some(field) = key.strip_prefix("f:") {
        return desired.get(field);
    }
    if let Some(keys) = key.strip_prefix("k:") {
        // A list item identified by its key fields, e.g. k:{"name":"api"}.
        let keys: serde_json::Map<String, Value> = serde_json::from_str(keys).ok()?;
        return desired
            .as_array()?
            .iter()
            .find(|item| keys.iter().all(|(k, v)| item.get(k) == Some(v)));
    }
    if let Some(value) = key.strip_prefix("v:") {
        let value: Value = serde_json::from_str(value).ok()?;
        return desired.as_array()?.iter().find(|item| **item == value);
    }
    if let Some(index) = key.strip_prefix("i:") {
        return desired.as_array()?.get(index.parse::<usize>().ok()?);
    }
    // "." marks ownership of the node itself (shared by everyone who sets it): not a value.
    None
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    use serde_json::json;

    use super::*;

    fn entry(
        manager: &str,
        operation: &str,
        subresource: Option<&str>,
        fields: Value,
    ) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            subresource: subresource.map(Into::into),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    fn desired() -> Value {
        json!({
            "metadata": {"labels": {"app": "api"}},
            "spec": {
                "replicas": 2,
                "template": {"spec": {"containers": [{"name": "api", "image": "api:1"}]}},
                "ports": [80]
            }
        })
    }

    #[test]
    fn kubectl_edit_of_an_applied_field_is_drift() {
        let edit = entry(
            "kubectl-edit",
            "Update",
            None,
            json!({"f:spec": {"f:replicas": {}}}),
        );
        assert!(is_drifted(&[edit], "us", &desired()));
    }

    #[test]
    fn edit_inside_a_keyed_list_item_is_drift() {
        let edit = entry(
            "kubectl-patch",
            "Update",
            None,
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"api\"}": {".": {}, "f:image": {}}}}}}}),
        );
        assert!(is_drifted(&[edit], "us", &desired()));
    }

    #[test]
    fn fields_we_do_not_set_are_not_drift() {
        let restart = entry(
            "kubectl-rollout",
            "Update",
            None,
            json!({"f:spec": {"f:template": {"f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/restartedAt": {}}}}}}),
        );
        let other_container = entry(
            "injector",
            "Update",
            None,
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"sidecar\"}": {"f:image": {}}}}}}}),
        );
        assert!(!is_drifted(&[restart, other_container], "us", &desired()));
    }

    #[test]
    fn our_own_entries_status_and_other_appliers_are_not_drift() {
        let fields = json!({"f:spec": {"f:replicas": {}}});
        let ours = entry("us", "Apply", None, fields.clone());
        let status = entry(
            "kube-controller-manager",
            "Update",
            Some("status"),
            fields.clone(),
        );
        let co_applier = entry("argocd", "Apply", None, fields);
        assert!(!is_drifted(&[ours, status, co_applier], "us", &desired()));
    }

    #[test]
    fn kubectl_scale_of_replicas_we_set_is_drift_but_not_where_an_hpa_owns_them() {
        let scale = entry(
            "kubectl",
            "Update",
            Some("scale"),
            json!({"f:spec": {"f:replicas": {}}}),
        );
        assert!(is_drifted(std::slice::from_ref(&scale), "us", &desired()));
        let mut autoscaled = desired();
        autoscaled["spec"]
            .as_object_mut()
            .unwrap()
            .remove("replicas");
        assert!(!is_drifted(&[scale], "us", &autoscaled));
    }

    #[test]
    fn caches_keep_only_what_drift_detection_reads() {
        let fields = json!({"f:spec": {"f:replicas": {}}});
        let mut meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            managed_fields: Some(vec![
                entry("us", "Apply", None, fields.clone()),
                entry(
                    "kube-controller-manager",
                    "Update",
                    Some("status"),
                    fields.clone(),
                ),
                entry("kubectl-edit", "Update", None, fields.clone()),
            ]),
            ..Default::default()
        };
        keep_foreign_updates(&mut meta, "us");
        let kept: Vec<_> = meta
            .managed_fields
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.manager.clone().unwrap())
            .collect();
        assert_eq!(kept, ["kubectl-edit"]);
        assert!(
            is_drifted(meta.managed_fields.as_ref().unwrap(), "us", &desired()),
            "drift is still seen"
        );
        let mut ours_only = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            managed_fields: Some(vec![entry("us", "Apply", None, fields)]),
            ..Default::default()
        };
        keep_foreign_updates(&mut ours_only, "us");
        assert_eq!(ours_only.managed_fields, None);
    }

    #[test]
    fn set_items_and_indexes_resolve() {
        let by_value = entry(
            "x",
            "Update",
            None,
            json!({"f:spec": {"f:ports": {"v:80": {}}}}),
        );
        let missing_value = entry(
            "x",
            "Update",
            None,
            json!({"f:spec": {"f:ports": {"v:81": {}}}}),
        );
        let by_index = entry(
            "x",
            "Update",
            None,
            json!({"f:spec": {"f:ports": {"i:0": {}}}}),
        );
        assert!(is_drifted(&[by_value], "us", &desired()));
        assert!(!is_drifted(&[missing_value], "us", &desired()));
        assert!(is_drifted(&[by_index], "us", &desired()));
    }
}
