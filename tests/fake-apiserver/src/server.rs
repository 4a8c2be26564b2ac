//! The HTTP surface: routing, verbs, metadata-only answers, watch streams, counting,
//! latency and fault injection.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::resources::{self, ResourceType};
use crate::store::{ApiError, Change, Selector, Subresource, Written};
use crate::{RequestRecord, Shared, Verb};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// What a path names.
enum Route {
    /// A discovery document.
    Discovery(Value),
    Resource {
        resource: usize,
        namespace: Option<String>,
        name: Option<String>,
        sub: Subresource,
    },
}

fn json_response(code: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(error: &ApiError) -> Response {
    json_response(error.code, &error.to_status())
}

fn route(shared: &Shared, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let not_found = || ApiError::new(404, "NotFound", format!("the server could not find {path}"));
    let (group, version, rest) = match segments.as_slice() {
        // The version the operator checks at start-up (src/cluster_version.rs).
        ["version"] => {
            return Ok(Route::Discovery(serde_json::json!({
                "major": "1", "minor": "37", "gitVersion": "v1.37.2-fake",
                "platform": "linux/amd64"
            })));
        }
        ["api"] => return Ok(Route::Discovery(resources::core_versions(&shared.address))),
        ["apis"] => return Ok(Route::Discovery(resources::group_list(&shared.resources))),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found()),
    };
    if rest.is_empty() {
        return resources::resource_list(&shared.resources, group, version)
            .map(Route::Discovery)
            .ok_or_else(not_found);
    }
    let (namespace, plural, name, sub) = match rest {
        [plural] => (None, *plural, None, None),
        ["namespaces", ns, plural] => (Some(*ns), *plural, None, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
        _ => return Err(not_found()),
    };
    let resource = shared
        .resources
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
        .ok_or_else(not_found)?;
    let sub = match sub {
        None => Subresource::Main,
        Some("status") if shared.resources[resource].status_subresource => Subresource::Status,
        Some(_) => return Err(not_found()),
    };
    Ok(Route::Resource {
        resource,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        sub,
    })
}

fn verb_of(
    method: &Method,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    has_name: bool,
) -> Option<Verb> {
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    Some(match (method.as_str(), has_name) {
        ("GET", false) if watch => Verb::Watch,
        ("GET", false) => Verb::List,
        ("GET", true) => Verb::Get,
        ("POST", false) => Verb::Create,
        ("PATCH", true) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if content_type.starts_with("application/apply-patch") {
                Verb::Apply
            } else {
                Verb::Patch
            }
        }
        ("PUT", true) => Verb::Update,
        ("DELETE", true) => Verb::Delete,
        _ => return None,
    })
}

/// Metadata-only answers (`Accept: application/json;as=PartialObjectMetadata[List];...`).
fn partial(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object["metadata"],
    })
}

fn object_response(code: u16, object: &Value, meta_only: bool) -> Response {
    if meta_only {
        json_response(code, &partial(object))
    } else {
        json_response(code, object)
    }
}

/// The field manager of a request: the fieldManager parameter, else (as the apiserver
/// does) the client's user agent up to its first '/'.
fn manager(query: &HashMap<String, String>, headers: &HeaderMap) -> String {
    if let Some(m) = query.get("fieldManager") {
        return m.clone();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|m| !m.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}

fn parse_body(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        // Apply patches may be YAML; JSON is YAML too, so this only runs for real YAML.
        Err(_) if content_type.contains("yaml") => serde_yaml::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("the body is not YAML: {e}"))),
        Err(e) => Err(ApiError::bad_request(format!("the body is not JSON: {e}"))),
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let arrived = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if path == "/__stats" {
        return json_response(200, &stats(&shared));
    }
    let route = match route(&shared, &path) {
        Ok(route) => route,
        Err(e) => return error_response(&e),
    };
    let (resource, namespace, name, sub) = match route {
        Route::Discovery(document) => {
            record(
                &shared,
                RequestRecord {
                    verb: Verb::Get,
                    resource: "discovery".to_owned(),
                    namespace: None,
                    name: None,
                    code: 200,
                    unchanged: false,
                    at: arrived - shared.started,
                    took: arrived.elapsed(),
                },
            );
            return json_response(200, &document);
        }
        Route::Resource {
            resource,
            namespace,
            name,
            sub,
        } => (resource, namespace, name, sub),
    };
    let rt = shared.resources[resource].clone();
    let Some(verb) = verb_of(&parts.method, &parts.headers, &query, name.is_some()) else {
        return error_response(&ApiError::new(
            405,
            "MethodNotAllowed",
            "not supported by the fake",
        ));
    };
    let label = match sub {
        Subresource::Main => rt.plural.to_owned(),
        Subresource::Status => format!("{}/status", rt.plural),
    };
    shared
        .arrivals
        .lock()
        .expect("not poisoned")
        .push(crate::Arrival {
            verb,
            resource: label.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
            at: arrived - shared.started,
        });
    let delay: Duration = shared
        .latency
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|l| {
            l.verb.is_none_or(|v| v == verb) && l.resource.as_ref().is_none_or(|r| *r == label)
        })
        .map(|l| l.delay)
        .sum();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let bytes = match verb {
        Verb::List | Verb::Watch => Default::default(),
        _ => match axum::body::to_bytes(body, 64 << 20).await {
            Ok(bytes) => bytes,
            Err(e) => return error_response(&ApiError::bad_request(e.to_string())),
        },
    };
    // A create names its object in the body.
    let name = match verb {
        Verb::Create => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|b| b["metadata"]["name"].as_str().map(str::to_owned)),
        _ => name,
    };
    let fault = take_fault(&shared, verb, &label, name.as_deref());
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let meta_only = accept.contains("as=PartialObjectMetadata");
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let manager = manager(&query, &parts.headers);

    if let Some(fault) = &fault
        && !fault.commit
    {
        let error = fault_error(fault, &rt, name.as_deref());
        record(
            &shared,
            RequestRecord {
                verb,
                resource: label,
                namespace,
                name,
                code: error.code,
                unchanged: false,
                at: arrived - shared.started,
                took: arrived.elapsed(),
            },
        );
        return error_response(&error);
    }

    let mut unchanged = false;
    let response = match verb {
        Verb::Watch => watch(&shared, resource, namespace.clone(), &query, meta_only),
        Verb::List => list(
            &shared,
            resource,
            namespace.as_deref(),
            &query,
            meta_only,
            &rt,
        ),
        _ => {
            let ns = namespace.clone().unwrap_or_default();
            let path_name = match verb {
                Verb::Create => String::new(),
                _ => name.clone().unwrap_or_default(),
            };
            let result = write_or_get(
                &shared,
                verb,
                resource,
                &ns,
                &path_name,
                sub,
                &bytes,
                &content_type,
                &query,
                &manager,
            );
            match result {
                Ok((code, object, written)) => {
                    if verb == Verb::Delete {
                        collect_garbage_later(shared.clone(), &object);
                    }
                    unchanged = written == Some(Written::Unchanged);
                    object_response(code, &object, meta_only)
                }
                Err(e) => error_response(&e),
            }
        }
    };
    let (code, response) = match &fault {
        // The request was performed; the client is told it failed.
        Some(fault) => {
            let error = fault_error(fault, &rt, name.as_deref());
            (error.code, error_response(&error))
        }
        None => (response.status().as_u16(), response),
    };
    record(
        &shared,
        RequestRecord {
            verb,
            resource: label,
            namespace,
            name,
            code,
            unchanged,
            at: arrived - shared.started,
            took: arrived.elapsed(),
        },
    );
    response
}

#[allow(clippy::too_many_arguments)] // one request's parts
fn write_or_get(
    shared: &Shared,
    verb: Verb,
    resource: usize,
    ns: &str,
    name: &str,
    sub: Subresource,
    bytes: &[u8],
    content_type: &str,
    query: &HashMap<String, String>,
    manager: &str,
) -> Result<(u16, Arc<Value>, Option<Written>), ApiError> {
    let body = || parse_body(bytes, content_type);
    let status = |(object, written): (Arc<Value>, Written)| {
        let code = if written == Written::Created {
            201
        } else {
            200
        };
        (code, object, Some(written))
    };
    let mut store = shared.store();
    match verb {
        Verb::Get => store.get(resource, ns, name).map(|o| (200, o, None)),
        Verb::Create => store
            .create(resource, ns, body()?, manager)
            .map(|o| (201, o, Some(Written::Created))),
        Verb::Apply => {
            if !query.contains_key("fieldManager") {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io is invalid: fieldManager: Required value",
                ));
            }
            let force = query.get("force").is_some_and(|f| f == "true");
            store
                .apply(resource, ns, name, body()?, manager, force, sub)
                .map(status)
        }
        Verb::Patch => {
            if content_type.starts_with("application/json-patch") {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "JSON patches are not supported by the fake",
                ));
            }
            store
                .merge_patch(resource, ns, name, &body()?, manager, sub)
                .map(status)
        }
        Verb::Update => store
            .update(resource, ns, name, body()?, manager, sub)
            .map(status),
        Verb::Delete => store
            .delete(resource, ns, name)
            .map(|o| (200, o, Some(Written::Changed))),
        Verb::List | Verb::Watch => unreachable!("served as streams"),
    }
}

fn take_fault(
    shared: &Shared,
    verb: Verb,
    label: &str,
    name: Option<&str>,
) -> Option<crate::Fault> {
    let mut faults = shared.faults.lock().expect("not poisoned");
    let index = faults.iter().position(|f| {
        f.verb == verb
            && f.resource == label
            && f.times > 0
            && f.name.as_deref().is_none_or(|n| Some(n) == name)
    })?;
    let fault = faults[index].clone();
    faults[index].times -= 1;
    if faults[index].times == 0 {
        faults.remove(index);
    }
    Some(fault)
}

fn fault_error(fault: &crate::Fault, rt: &ResourceType, name: Option<&str>) -> ApiError {
    let name = name.unwrap_or("<collection>");
    match fault.code {
        409 if fault.verb == Verb::Create => ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.plural),
        ),
        409 => ApiError::new(409, "Conflict", "injected conflict"),
        404 => ApiError::not_found(rt.plural, name),
        429 => ApiError::new(429, "TooManyRequests", "injected throttling"),
        500 => ApiError::new(500, "InternalError", "injected internal error"),
        503 => ApiError::new(503, "ServiceUnavailable", "injected unavailability"),
        code => ApiError::new(code, "Injected", format!("injected error {code}")),
    }
}

fn record(shared: &Shared, request: RequestRecord) {
    *shared
        .counts
        .lock()
        .expect("not poisoned")
        .entry((request.verb, request.resource.clone()))
        .or_insert(0) += 1;
    shared.log.lock().expect("not poisoned").push(request);
}

fn stats(shared: &Shared) -> Value {
    let counts = crate::Counts(shared.counts.lock().expect("not poisoned").clone());
    let store = shared.store();
    let objects: serde_json::Map<String, Value> = shared
        .resources
        .iter()
        .enumerate()
        .map(|(i, r)| (r.plural.to_owned(), json!(store.len(i))))
        .collect();
    json!({
        "requests": counts.to_json(),
        "writes": counts.writes(),
        "reads": counts.reads(),
        "watches": *shared.watches.lock().expect("not poisoned"),
        "objects": objects,
        "resourceVersion": store.resource_version().to_string(),
    })
}

fn list(
    shared: &Shared,
    resource: usize,
    namespace: Option<&str>,
    query: &HashMap<String, String>,
    meta_only: bool,
    rt: &ResourceType,
) -> Response {
    let selector = match Selector::parse(
        query.get("labelSelector").map(String::as_str),
        query.get("fieldSelector").map(String::as_str),
    ) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let limit = query.get("limit").and_then(|l| l.parse().ok());
    let page = match shared.store().list(
        resource,
        namespace,
        &selector,
        limit,
        query.get("continue").map(String::as_str),
    ) {
        Ok(page) => page,
        Err(e) => return error_response(&e),
    };
    // Serialized item by item: the items are shared with the store, never copied.
    let (api_version, kind) = if meta_only {
        (
            "meta.k8s.io/v1".to_owned(),
            "PartialObjectMetadataList".to_owned(),
        )
    } else {
        (rt.api_version(), format!("{}List", rt.kind))
    };
    let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(token) = &page.continue_token {
        metadata["continue"] = json!(token);
    }
    let mut out = format!(
        "{{\"apiVersion\":{},\"kind\":{},\"metadata\":{},\"items\":[",
        json!(api_version),
        json!(kind),
        metadata
    );
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if meta_only {
            out.push_str(&partial(item).to_string());
        } else {
            out.push_str(&item.to_string());
        }
    }
    out.push_str("]}");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response()
}

/// Counts an open watch for /__stats while it lives.
struct WatchGuard {
    shared: Arc<Shared>,
    label: String,
}

impl WatchGuard {
    fn new(shared: Arc<Shared>, label: &str) -> Self {
        *shared
            .watches
            .lock()
            .expect("not poisoned")
            .entry(label.to_owned())
            .or_insert(0) += 1;
        Self {
            shared,
            label: label.to_owned(),
        }
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut watches = self.shared.watches.lock().expect("not poisoned");
        if let Some(n) = watches.get_mut(&self.label) {
            *n -= 1;
            if *n == 0 {
                watches.remove(&self.label);
            }
        }
    }
}

struct WatchStream {
    shared: Arc<Shared>,
    lines: VecDeque<String>,
    changes: mpsc::UnboundedReceiver<Arc<Change>>,
    namespace: Option<String>,
    selector: Selector,
    meta_only: bool,
    /// apiVersion and kind of bookmarks.
    bookmark_type: (String, String),
    bookmark_every: Option<Duration>,
    next_bookmark: Instant,
    deadline: Instant,
    done: bool,
    _guard: WatchGuard,
}

impl WatchStream {
    fn push(&mut self, change: &Change) {
        let object = &change.object;
        if self
            .namespace
            .as_deref()
            .is_some_and(|ns| object["metadata"]["namespace"].as_str() != Some(ns))
            || !self.selector.matches(object)
        {
            return;
        }
        let object = if self.meta_only {
            partial(object).to_string()
        } else {
            object.to_string()
        };
        self.lines.push_back(format!(
            "{{\"type\":\"{}\",\"object\":{object}}}\n",
            change.kind.as_str()
        ));
    }

    fn push_bookmark(&mut self, rv: u64, initial_events_end: bool) {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let event = json!({
            "type": "BOOKMARK",
            "object": {"apiVersion": self.bookmark_type.0, "kind": self.bookmark_type.1, "metadata": metadata},
        });
        self.lines.push_back(format!("{event}\n"));
    }

    /// Emit every change already committed, then a bookmark at the store's version.
    fn bookmark(&mut self) {
        let rv = self.shared.store().resource_version();
        // Every change up to `rv` was sent to us under the store lock: drain them first,
        // so the bookmark never jumps ahead of an event.
        while let Ok(change) = self.changes.try_recv() {
            self.push(&change);
        }
        self.push_bookmark(rv, false);
    }
}

fn watch(
    shared: &Arc<Shared>,
    resource: usize,
    namespace: Option<String>,
    query: &HashMap<String, String>,
    meta_only: bool,
) -> Response {
    let rt = &shared.resources[resource];
    let selector = match Selector::parse(
        query.get("labelSelector").map(String::as_str),
        query.get("fieldSelector").map(String::as_str),
    ) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let initial_events = query.get("sendInitialEvents").is_some_and(|b| b == "true");
    let from = match query.get("resourceVersion").map(String::as_str) {
        _ if initial_events => None,
        None | Some("") | Some("0") => None,
        Some(rv) => match rv.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => {
                return error_response(&ApiError::bad_request(format!(
                    "invalid resourceVersion {rv:?}"
                )));
            }
        },
    };
    // The apiserver's default is 30-60 minutes; tests and benchmarks cap it.
    let mut timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    if let Some(cap) = shared.config.max_watch_timeout {
        timeout = timeout.min(cap);
    }
    let label = rt.plural;
    let bookmark_type = if meta_only {
        (
            "meta.k8s.io/v1".to_owned(),
            "PartialObjectMetadata".to_owned(),
        )
    } else {
        (rt.api_version(), rt.kind.to_owned())
    };
    let opened = shared.store().watch(resource, from);
    let now = Instant::now();
    let every = shared.config.bookmark_interval;
    let (backlog, changes) = match opened {
        Ok(opened) => opened,
        Err(gone) => {
            // As the apiserver: 200, then one ERROR event.
            let line = format!("{}\n", json!({"type": "ERROR", "object": gone.to_status()}));
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                line,
            )
                .into_response();
        }
    };
    let mut stream = WatchStream {
        shared: shared.clone(),
        lines: VecDeque::new(),
        changes,
        namespace,
        selector,
        meta_only,
        bookmark_type,
        bookmark_every: bookmarks.then_some(every),
        next_bookmark: now + every,
        deadline: now + timeout,
        done: false,
        _guard: WatchGuard::new(shared.clone(), label),
    };
    for change in &backlog {
        stream.push(change);
    }
    if initial_events && bookmarks {
        let rv = backlog.iter().map(|c| c.rv).max().unwrap_or(0);
        let rv = rv.max(from.unwrap_or(0));
        stream.push_bookmark(rv, true);
    }
    let body = futures::stream::unfold(stream, |mut s| async move {
        loop {
            if let Some(line) = s.lines.pop_front() {
                return Some((Ok::<_, Infallible>(line), s));
            }
            if s.done {
                return None;
            }
            let wake = match s.bookmark_every {
                Some(_) => s.next_bookmark.min(s.deadline),
                None => s.deadline,
            };
            tokio::select! {
                change = s.changes.recv() => match change {
                    Some(change) => s.push(&change),
                    None => s.done = true,
                },
                _ = tokio::time::sleep_until(wake) => {
                    if let Some(every) = s.bookmark_every {
                        s.bookmark();
                        s.next_bookmark = Instant::now() + every;
                    }
                    if Instant::now() >= s.deadline {
                        s.done = true;
                    }
                }
            }
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// Background deletion of the dependents of `deleted` (ownerReferences to its uid), and of
/// theirs, as the garbage collector does with propagationPolicy=Background.
pub(crate) fn collect_garbage_later(shared: Arc<Shared>, deleted: &Value) {
    let Some(uid) = deleted["metadata"]["uid"].as_str().map(str::to_owned) else {
        return;
    };
    tokio::spawn(async move {
        let mut pending = vec![uid];
        while let Some(uid) = pending.pop() {
            let mut store = shared.store();
            for (resource, ns, name) in store.dependents_of(&uid) {
                if let Ok(gone) = store.delete(resource, &ns, &name)
                    && let Some(uid) = gone["metadata"]["uid"].as_str()
                {
                    pending.push(uid.to_owned());
                }
            }
        }
    });
}
