//! The objects, their resource versions and the change log that watches replay.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::fields;
use crate::resources::ResourceType;

/// An API error, answered as a `Status` object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// What a change did, as watch events name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub resource: usize,
    pub kind: ChangeKind,
    pub object: Arc<Value>,
}

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
}

impl Subresource {
    fn name(self) -> Option<&'static str> {
        match self {
            Subresource::Main => None,
            Subresource::Status => Some("status"),
        }
    }
}

/// Equality-based label selector terms: `k=v`, `k==v`, `k!=v`, `k`, `!k`.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    terms: Vec<(String, Term)>,
    /// metadata.name / metadata.namespace equality (field selectors).
    name: Option<String>,
    namespace: Option<String>,
}

#[derive(Clone, Debug)]
enum Term {
    Equals(String),
    NotEquals(String),
    Exists,
    NotExists,
}

impl Selector {
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, ApiError> {
        let mut selector = Selector::default();
        for term in labels.unwrap_or_default().split(',').map(str::trim) {
            if term.is_empty() {
                continue;
            }
            if term.contains('(') || term.contains(' ') {
                return Err(ApiError::bad_request(format!(
                    "label selector {term:?}: only equality terms are supported by the fake"
                )));
            }
            let parsed = if let Some((k, v)) = term.split_once("!=") {
                (k, Term::NotEquals(v.to_owned()))
            } else if let Some((k, v)) = term.split_once("==") {
                (k, Term::Equals(v.to_owned()))
            } else if let Some((k, v)) = term.split_once('=') {
                (k, Term::Equals(v.to_owned()))
            } else if let Some(k) = term.strip_prefix('!') {
                (k, Term::NotExists)
            } else {
                (term, Term::Exists)
            };
            selector.terms.push((parsed.0.to_owned(), parsed.1));
        }
        for term in fields.unwrap_or_default().split(',').map(str::trim) {
            if term.is_empty() {
                continue;
            }
            let (key, value) = term
                .split_once("==")
                .or_else(|| term.split_once('='))
                .ok_or_else(|| ApiError::bad_request(format!("field selector {term:?}")))?;
            match key {
                "metadata.name" => selector.name = Some(value.to_owned()),
                "metadata.namespace" => selector.namespace = Some(value.to_owned()),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "field selector {key:?} is not supported by the fake"
                    )));
                }
            }
        }
        Ok(selector)
    }

    pub fn matches(&self, object: &Value) -> bool {
        let meta = &object["metadata"];
        if let Some(name) = &self.name
            && meta["name"].as_str() != Some(name)
        {
            return false;
        }
        if let Some(namespace) = &self.namespace
            && meta["namespace"].as_str() != Some(namespace)
        {
            return false;
        }
        let labels = &meta["labels"];
        self.terms.iter().all(|(key, term)| {
            let value = labels.get(key).and_then(Value::as_str);
            match term {
                Term::Equals(v) => value == Some(v.as_str()),
                Term::NotEquals(v) => value != Some(v.as_str()),
                Term::Exists => value.is_some(),
                Term::NotExists => value.is_none(),
            }
        })
    }
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Created,
    Changed,
    /// Nothing changed: no new resourceVersion, no watch event (a wasted request).
    Unchanged,
}

/// One page of a list.
pub struct ListPage {
    pub resource_version: u64,
    pub items: Vec<Arc<Value>>,
    pub continue_token: Option<String>,
}

/// A subscriber to changes (a watch, the kubelet simulation).
struct Sink {
    resources: Vec<usize>,
    tx: mpsc::UnboundedSender<Arc<Change>>,
}

type ObjectKey = (String, String);

/// The changes a new watch replays, and the receiver of those that follow.
pub type WatchStart = (Vec<Arc<Change>>, mpsc::UnboundedReceiver<Arc<Change>>);

/// The in-memory database.
pub struct Store {
    pub resources: Vec<ResourceType>,
    objects: Vec<BTreeMap<ObjectKey, Arc<Value>>>,
    rv: u64,
    next_uid: u64,
    log: VecDeque<Arc<Change>>,
    log_capacity: usize,
    /// Highest resource version dropped from the log: watches from before it get 410 Gone.
    compacted: u64,
    sinks: Vec<Sink>,
}

fn now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .expect("in range")
        .to_string()
}

fn meta(object: &Value) -> &Value {
    &object["metadata"]
}

fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"].as_object_mut().expect("an object")
}

/// One managedFields entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    subresource: Option<String>,
    api_version: String,
    time: String,
    fields: Map<String, Value>,
}

impl Entry {
    fn parse(value: &Value) -> Option<Entry> {
        Some(Entry {
            manager: value["manager"].as_str()?.to_owned(),
            operation: value["operation"].as_str()?.to_owned(),
            subresource: value["subresource"].as_str().map(str::to_owned),
            api_version: value["apiVersion"].as_str().unwrap_or_default().to_owned(),
            time: value["time"].as_str().unwrap_or_default().to_owned(),
            fields: value["fieldsV1"].as_object().cloned().unwrap_or_default(),
        })
    }

    fn to_value(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields,
        });
        if let Some(sub) = &self.subresource {
            entry["subresource"] = json!(sub);
        }
        entry
    }

    fn is(&self, manager: &str, operation: &str, sub: Subresource) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == sub.name()
    }
}

fn entries_of(object: &Value) -> Vec<Entry> {
    meta(object)["managedFields"]
        .as_array()
        .map(|a| a.iter().filter_map(Entry::parse).collect())
        .unwrap_or_default()
}

fn set_entries(object: &mut Value, entries: &[Entry]) {
    let entries: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_value)
        .collect();
    let meta = meta_mut(object);
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".to_owned(), Value::Array(entries));
    }
}

/// The object without what changes on every write anyway (resourceVersion, the times of
/// managedFields), to tell a no-op write.
fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    let meta = meta_mut(&mut object);
    meta.remove("resourceVersion");
    if let Some(Value::Array(entries)) = meta.get_mut("managedFields") {
        for entry in entries {
            if let Some(e) = entry.as_object_mut() {
                e.remove("time");
            }
        }
    }
    object
}

/// What metadata.generation tracks: everything but metadata and status.
fn spec_part(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    object
}

/// Keep only status (and the identity) of a write to /status.
fn status_only(object: &Value) -> Value {
    let mut out = json!({
        "apiVersion": object["apiVersion"],
        "kind": object["kind"],
        "metadata": {"name": meta(object)["name"], "namespace": meta(object)["namespace"]},
    });
    if let Some(status) = object.get("status") {
        out["status"] = status.clone();
    }
    out
}

/// Metadata the server owns: whatever a client sends there is ignored.
const SYSTEM_METADATA: [&str; 7] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "managedFields",
    "selfLink",
];

impl Store {
    pub fn new(resources: Vec<ResourceType>, log_capacity: usize) -> Self {
        let objects = resources.iter().map(|_| BTreeMap::new()).collect();
        Store {
            resources,
            objects,
            rv: 1,
            next_uid: 1,
            log: VecDeque::new(),
            log_capacity,
            compacted: 0,
            sinks: Vec::new(),
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.resources
            .iter()
            .position(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub fn find_plural(&self, plural: &str) -> Option<usize> {
        self.resources.iter().position(|r| r.plural == plural)
    }

    pub fn len(&self, resource: usize) -> usize {
        self.objects[resource].len()
    }

    pub fn get(&self, resource: usize, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        self.objects[resource]
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(self.resources[resource].plural, name))
    }

    /// Objects in `ns` (all namespaces when None) matching `selector`, in (namespace, name)
    /// order, `limit` at a time. The continue token carries the first page's resource
    /// version, so every page reports the version the watch must start from.
    pub fn list(
        &self,
        resource: usize,
        ns: Option<&str>,
        selector: &Selector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let (resource_version, after) = match continue_token {
            Some(token) => {
                let parsed: Value = serde_json::from_str(token)
                    .map_err(|_| ApiError::bad_request("invalid continue token"))?;
                let rv = parsed[0].as_u64().unwrap_or(self.rv);
                let key = (
                    parsed[1].as_str().unwrap_or_default().to_owned(),
                    parsed[2].as_str().unwrap_or_default().to_owned(),
                );
                (rv, Some(key))
            }
            None => (self.rv, None),
        };
        let range = match &after {
            Some(key) => self.objects[resource].range::<ObjectKey, _>((
                std::ops::Bound::Excluded(key),
                std::ops::Bound::Unbounded,
            )),
            None => self.objects[resource].range::<ObjectKey, _>(..),
        };
        let mut items: Vec<Arc<Value>> = Vec::new();
        let mut continue_token = None;
        for ((object_ns, _), object) in range {
            if ns.is_some_and(|ns| ns != object_ns) || !selector.matches(object) {
                continue;
            }
            if limit.is_some_and(|limit| limit > 0 && items.len() >= limit) {
                // Resume after the last item returned.
                let last = meta(items.last().expect("limit > 0"));
                continue_token =
                    Some(json!([resource_version, last["namespace"], last["name"]]).to_string());
                break;
            }
            items.push(object.clone());
        }
        Ok(ListPage {
            resource_version,
            items,
            continue_token,
        })
    }

    /// Subscribe to the changes of `resources`.
    pub fn subscribe(&mut self, resources: Vec<usize>) -> mpsc::UnboundedReceiver<Arc<Change>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.sinks.push(Sink { resources, tx });
        rx
    }

    /// Start a watch: the changes after `from` (or, with None, the current objects as
    /// ADDED), then everything that follows. 410 Gone when the log no longer reaches back
    /// to `from`.
    pub fn watch(&mut self, resource: usize, from: Option<u64>) -> Result<WatchStart, ApiError> {
        let backlog = match from {
            None => self.objects[resource]
                .values()
                .map(|object| {
                    Arc::new(Change {
                        rv: object_rv(object),
                        resource,
                        kind: ChangeKind::Added,
                        object: object.clone(),
                    })
                })
                .collect(),
            Some(from) if from < self.compacted => {
                return Err(ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {from} ({})", self.compacted + 1),
                ));
            }
            Some(from) => self
                .log
                .iter()
                .filter(|c| c.rv > from && c.resource == resource)
                .cloned()
                .collect(),
        };
        Ok((backlog, self.subscribe(vec![resource])))
    }

    fn commit(&mut self, resource: usize, kind: ChangeKind, mut object: Value) -> Arc<Value> {
        self.rv += 1;
        meta_mut(&mut object).insert("resourceVersion".to_owned(), json!(self.rv.to_string()));
        let key = (
            meta(&object)["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            meta(&object)["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        let object = Arc::new(object);
        match kind {
            ChangeKind::Deleted => {
                self.objects[resource].remove(&key);
            }
            _ => {
                self.objects[resource].insert(key, object.clone());
            }
        }
        let change = Arc::new(Change {
            rv: self.rv,
            resource,
            kind,
            object: object.clone(),
        });
        self.log.push_back(change.clone());
        while self.log.len() > self.log_capacity {
            if let Some(dropped) = self.log.pop_front() {
                self.compacted = dropped.rv;
            }
        }
        self.sinks.retain(|sink| {
            !sink.resources.contains(&resource) || sink.tx.send(change.clone()).is_ok()
        });
        object
    }

    /// Commit `object` as the new state of an object that was `old` (None: new), unless
    /// nothing changed.
    fn finish(
        &mut self,
        resource: usize,
        old: Option<Arc<Value>>,
        mut object: Value,
    ) -> (Arc<Value>, Written) {
        let tracks_generation = self.resources[resource].generation;
        match old {
            Some(old) => {
                if comparable(&old) == comparable(&object) {
                    return (old, Written::Unchanged);
                }
                if tracks_generation {
                    let generation = meta(&old)["generation"].as_i64().unwrap_or(1);
                    let bumped = if spec_part(&old) != spec_part(&object) {
                        generation + 1
                    } else {
                        generation
                    };
                    meta_mut(&mut object).insert("generation".to_owned(), json!(bumped));
                }
                (
                    self.commit(resource, ChangeKind::Modified, object),
                    Written::Changed,
                )
            }
            None => {
                let uid = self.next_uid;
                self.next_uid += 1;
                let meta = meta_mut(&mut object);
                meta.insert(
                    "uid".to_owned(),
                    json!(format!("00000000-0000-4000-8000-{uid:012x}")),
                );
                meta.insert("creationTimestamp".to_owned(), json!(now()));
                if tracks_generation {
                    meta.insert("generation".to_owned(), json!(1));
                }
                (
                    self.commit(resource, ChangeKind::Added, object),
                    Written::Created,
                )
            }
        }
    }

    /// Check the type and identity of a body; drop what the server owns.
    fn sanitize(
        &self,
        resource: usize,
        ns: &str,
        name: Option<&str>,
        body: &mut Value,
    ) -> Result<(), ApiError> {
        let rt = &self.resources[resource];
        if !body.is_object() {
            return Err(ApiError::bad_request("the body is not an object"));
        }
        let api_version = rt.api_version();
        for (field, want) in [("apiVersion", api_version.as_str()), ("kind", rt.kind)] {
            match body.get(field).and_then(Value::as_str) {
                Some(have) if have != want => {
                    return Err(ApiError::bad_request(format!(
                        "{field} {have:?} does not match the path ({want})"
                    )));
                }
                _ => body[field] = json!(want),
            }
        }
        let meta = meta_mut(body);
        if let (Some(name), Some(body_name)) = (name, meta.get("name").and_then(Value::as_str))
            && name != body_name
        {
            return Err(ApiError::bad_request(format!(
                "the name in the body ({body_name}) does not match the path ({name})"
            )));
        }
        if let Some(body_ns) = meta.get("namespace").and_then(Value::as_str)
            && body_ns != ns
        {
            return Err(ApiError::bad_request(format!(
                "the namespace in the body ({body_ns}) does not match the path ({ns})"
            )));
        }
        if let Some(name) = name {
            meta.insert("name".to_owned(), json!(name));
        }
        meta.insert("namespace".to_owned(), json!(ns));
        for field in SYSTEM_METADATA {
            meta.remove(field);
        }
        Ok(())
    }

    /// POST: create, 409 AlreadyExists when the name is taken.
    pub fn create(
        &mut self,
        resource: usize,
        ns: &str,
        mut body: Value,
        manager: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.sanitize(resource, ns, None, &mut body)?;
        let rt = self.resources[resource].clone();
        let meta = meta_mut(&mut body);
        let name = match (
            meta.get("name").and_then(Value::as_str),
            meta.get("generateName").and_then(Value::as_str),
        ) {
            (Some(name), _) => name.to_owned(),
            (None, Some(prefix)) => format!("{prefix}{:05x}", self.next_uid & 0xfffff),
            (None, None) => return Err(ApiError::bad_request("metadata.name is required")),
        };
        meta.insert("name".to_owned(), json!(name));
        if self.objects[resource].contains_key(&(ns.to_owned(), name.clone())) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", rt.plural),
            ));
        }
        if rt.status_subresource
            && let Some(map) = body.as_object_mut()
        {
            map.remove("status");
        }
        let entry = Entry {
            manager: manager.to_owned(),
            operation: "Update".to_owned(),
            subresource: None,
            api_version: rt.api_version(),
            time: now(),
            fields: fields::config_fields(&body),
        };
        set_entries(&mut body, &[entry]);
        Ok(self.finish(resource, None, body).0)
    }

    /// PATCH application/apply-patch+yaml: server-side apply.
    #[allow(clippy::too_many_arguments)] // the verb's own parameters, as on the wire
    pub fn apply(
        &mut self,
        resource: usize,
        ns: &str,
        name: &str,
        mut body: Value,
        manager: &str,
        force: bool,
        sub: Subresource,
    ) -> Result<(Arc<Value>, Written), ApiError> {
        self.sanitize(resource, ns, Some(name), &mut body)?;
        let rt = self.resources[resource].clone();
        let applied = match sub {
            Subresource::Status => status_only(&body),
            Subresource::Main => {
                if rt.status_subresource
                    && let Some(map) = body.as_object_mut()
                {
                    map.remove("status");
                }
                body
            }
        };
        let applied_fields = fields::config_fields(&applied);
        let old = self.objects[resource]
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned();
        if old.is_none() && sub == Subresource::Status {
            return Err(ApiError::not_found(rt.plural, name));
        }
        let mut object = match &old {
            Some(old) => (**old).clone(),
            None => json!({
                "apiVersion": rt.api_version(),
                "kind": rt.kind,
                "metadata": {"name": name, "namespace": ns},
            }),
        };
        let mut entries = entries_of(&object);
        let ours = entries.iter().position(|e| e.is(manager, "Apply", sub));
        let previous = ours.map(|i| entries[i].fields.clone()).unwrap_or_default();
        {
            let others: Vec<&Map<String, Value>> = entries
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != ours)
                .map(|(_, e)| &e.fields)
                .collect();
            if let Some(map) = object.as_object_mut() {
                fields::remove_released(map, &previous, &applied_fields, &others);
            }
        }
        fields::deep_merge(&mut object, &applied);
        // Fields whose value the apply changed move to us; without force, taking one from
        // another manager is a conflict.
        let mut conflicts = Vec::new();
        for (i, entry) in entries.iter_mut().enumerate() {
            if Some(i) == ours {
                continue;
            }
            let mut remaining = entry.fields.clone();
            if fields::take_changed(
                &mut remaining,
                &applied_fields,
                old.as_deref(),
                Some(&object),
            ) {
                if !force && entry.manager != manager {
                    conflicts.push(entry.manager.clone());
                }
                entry.fields = remaining;
            }
        }
        if !conflicts.is_empty() {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Apply failed with {} conflict(s): conflict with {}",
                    conflicts.len(),
                    conflicts
                        .iter()
                        .map(|m| format!("{m:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let entry = Entry {
            manager: manager.to_owned(),
            operation: "Apply".to_owned(),
            subresource: sub.name().map(str::to_owned),
            api_version: rt.api_version(),
            time: now(),
            fields: applied_fields,
        };
        match ours {
            Some(i) => entries[i] = entry,
            None => entries.push(entry),
        }
        set_entries(&mut object, &entries);
        Ok(self.finish(resource, old, object))
    }

    /// The end of a non-apply write (merge patch, update): `object` is the requested new
    /// state; ownership of changed fields moves to `manager`'s Update entry.
    fn update_with(
        &mut self,
        resource: usize,
        old: Arc<Value>,
        mut object: Value,
        manager: &str,
        sub: Subresource,
    ) -> Result<(Arc<Value>, Written), ApiError> {
        let rt = self.resources[resource].clone();
        // Identity and system metadata are the server's.
        {
            let old_meta = meta(&old).clone();
            let meta = meta_mut(&mut object);
            for field in SYSTEM_METADATA.iter().chain(&["name", "namespace"]) {
                match old_meta.get(*field) {
                    Some(v) => meta.insert((*field).to_owned(), v.clone()),
                    None => meta.remove(*field),
                };
            }
        }
        match sub {
            Subresource::Status => {
                let status = object.get("status").cloned();
                object = (*old).clone();
                match status {
                    Some(status) => object["status"] = status,
                    None => {
                        if let Some(map) = object.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
            Subresource::Main if rt.status_subresource => match old.get("status") {
                Some(status) => object["status"] = status.clone(),
                None => {
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                }
            },
            Subresource::Main => {}
        }
        let changed =
            fields::changed_fields(&fields::config_fields(&object), Some(&old), Some(&object));
        let mut entries = entries_of(&old);
        for entry in entries.iter_mut() {
            if !entry.is(manager, "Update", sub) {
                fields::take_changed(&mut entry.fields, &changed, Some(&old), Some(&object));
            }
        }
        if !changed.is_empty() {
            match entries.iter_mut().find(|e| e.is(manager, "Update", sub)) {
                Some(entry) => {
                    fields::union(&mut entry.fields, &changed);
                    entry.time = now();
                }
                None => entries.push(Entry {
                    manager: manager.to_owned(),
                    operation: "Update".to_owned(),
                    subresource: sub.name().map(str::to_owned),
                    api_version: rt.api_version(),
                    time: now(),
                    fields: changed,
                }),
            }
        }
        set_entries(&mut object, &entries);
        Ok(self.finish(resource, Some(old), object))
    }

    fn check_precondition(old: &Value, body: &Value) -> Result<(), ApiError> {
        match meta(body)["resourceVersion"].as_str() {
            Some(rv) if Some(rv) != meta(old)["resourceVersion"].as_str() => Err(ApiError::new(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            )),
            _ => Ok(()),
        }
    }

    /// PATCH application/merge-patch+json (and strategic-merge-patch+json).
    pub fn merge_patch(
        &mut self,
        resource: usize,
        ns: &str,
        name: &str,
        patch: &Value,
        manager: &str,
        sub: Subresource,
    ) -> Result<(Arc<Value>, Written), ApiError> {
        let old = self.get(resource, ns, name)?;
        Self::check_precondition(&old, patch)?;
        let mut object = (*old).clone();
        fields::merge_patch(&mut object, patch);
        self.update_with(resource, old, object, manager, sub)
    }

    /// PUT: replace (with the resourceVersion precondition).
    pub fn update(
        &mut self,
        resource: usize,
        ns: &str,
        name: &str,
        mut body: Value,
        manager: &str,
        sub: Subresource,
    ) -> Result<(Arc<Value>, Written), ApiError> {
        let old = self.get(resource, ns, name)?;
        Self::check_precondition(&old, &body)?;
        self.sanitize(resource, ns, Some(name), &mut body)?;
        self.update_with(resource, old, body, manager, sub)
    }

    /// DELETE (no finalizers: gone at once). Dependents are the caller's to collect.
    pub fn delete(
        &mut self,
        resource: usize,
        ns: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let old = self.get(resource, ns, name)?;
        let mut object = (*old).clone();
        meta_mut(&mut object).insert("deletionTimestamp".to_owned(), json!(now()));
        Ok(self.commit(resource, ChangeKind::Deleted, object))
    }

    /// Objects with an ownerReference to `uid`.
    pub fn dependents_of(&self, uid: &str) -> Vec<(usize, String, String)> {
        let mut out = Vec::new();
        for (resource, objects) in self.objects.iter().enumerate() {
            for ((ns, name), object) in objects {
                let owned = meta(object)["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)));
                if owned {
                    out.push((resource, ns.clone(), name.clone()));
                }
            }
        }
        out
    }
}

/// The resourceVersion of a stored object.
pub fn object_rv(object: &Value) -> u64 {
    meta(object)["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}
