//! The fake's state and HTTP handlers.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use crate::selector::{FieldSelector, LabelSelector};

/// The API server's limit on a ConfigMap's data (keys plus values).
const MAX_CONFIGMAP_BYTES: usize = 1024 * 1024;

/// How long a watch lasts when the client does not say (the API server picks 30–60 min).
const DEFAULT_WATCH_SECONDS: u64 = 1800;

/// The media type kubectl sends built-in objects in.
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// One change of a ConfigMap, as a watch sends it.
#[derive(Debug)]
struct ChangeEvent {
    resource_version: u64,
    event_type: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
struct Objects {
    resource_version: u64,
    next_uid: u64,
    configmaps: BTreeMap<(String, String), Value>,
    pods: BTreeMap<(String, String), Value>,
    /// The ConfigMap changes after `compacted`, oldest first.
    log: Vec<Arc<ChangeEvent>>,
    /// The resourceVersion up to which changes were dropped from the log.
    compacted: u64,
}

impl Objects {
    fn next_resource_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn next_uid(&mut self) -> String {
        self.next_uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_uid)
    }
}

/// State shared between the handlers and the test's handle.
#[derive(Debug)]
pub(crate) struct Shared {
    objects: Mutex<Objects>,
    changes: broadcast::Sender<Arc<ChangeEvent>>,
    watch_breaker: watch::Sender<u64>,
    unresponsive: AtomicBool,
    requests: AtomicU64,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            objects: Mutex::new(Objects::default()),
            changes: broadcast::channel(1024).0,
            watch_breaker: watch::channel(0).0,
            unresponsive: AtomicBool::new(false),
            requests: AtomicU64::new(0),
        }
    }

    fn objects(&self) -> MutexGuard<'_, Objects> {
        // Every mutation completes under the lock before anything can panic.
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_pod(&self, namespace: &str, pod: Pod) -> Pod {
        let mut value = serde_json::to_value(&pod).unwrap_or(Value::Null);
        let mut objects = self.objects();
        let name = str_at(&value, &["metadata", "name"]).to_owned();
        let key = (namespace.to_owned(), name);
        let uid = match objects.pods.get(&key) {
            Some(old) if str_at(&value, &["metadata", "uid"]).is_empty() => {
                str_at(old, &["metadata", "uid"]).to_owned()
            }
            _ if str_at(&value, &["metadata", "uid"]).is_empty() => objects.next_uid(),
            _ => str_at(&value, &["metadata", "uid"]).to_owned(),
        };
        let rv = objects.next_resource_version();
        set_meta(&mut value, "Pod", namespace, &uid, rv);
        objects.pods.insert(key, value.clone());
        serde_json::from_value(value).unwrap_or(pod)
    }

    pub(crate) fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        let mut objects = self.objects();
        let existed = objects
            .pods
            .remove(&(namespace.to_owned(), name.to_owned()))
            .is_some();
        if existed {
            objects.next_resource_version();
        }
        existed
    }

    pub(crate) fn configmap(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        let objects = self.objects();
        let value = objects
            .configmaps
            .get(&(namespace.to_owned(), name.to_owned()))?;
        serde_json::from_value(value.clone()).ok()
    }

    pub(crate) fn configmaps(&self, namespace: &str) -> Vec<ConfigMap> {
        self.objects()
            .configmaps
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .filter_map(|(_, v)| serde_json::from_value(v.clone()).ok())
            .collect()
    }

    pub(crate) fn resource_version(&self) -> u64 {
        self.objects().resource_version
    }

    pub(crate) fn compact(&self) {
        let mut objects = self.objects();
        objects.log.clear();
        objects.compacted = objects.resource_version;
    }

    pub(crate) fn set_unresponsive(&self, unresponsive: bool) {
        self.unresponsive.store(unresponsive, Ordering::SeqCst);
    }

    pub(crate) fn break_watches(&self) {
        self.watch_breaker
            .send_modify(|generation| *generation += 1);
    }

    pub(crate) fn request_count(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Records a ConfigMap change and tells the open watches.
    fn record(&self, objects: &mut Objects, event_type: &'static str, object: Value, rv: u64) {
        let event = Arc::new(ChangeEvent {
            resource_version: rv,
            event_type,
            object,
        });
        objects.log.push(event.clone());
        // No receiver means no open watch; the log keeps the event for later ones.
        let _ = self.changes.send(event);
    }
}

/// The string at a JSON path, or "".
fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    let mut v = value;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return "",
        }
    }
    v.as_str().unwrap_or("")
}

/// Sets what the server owns in an object's metadata.
fn set_meta(value: &mut Value, kind: &str, namespace: &str, uid: &str, rv: u64) {
    if !value.is_object() {
        *value = json!({});
    }
    value["apiVersion"] = json!("v1");
    value["kind"] = json!(kind);
    if !value["metadata"].is_object() {
        value["metadata"] = json!({});
    }
    let meta = &mut value["metadata"];
    meta["namespace"] = json!(namespace);
    meta["uid"] = json!(uid);
    meta["resourceVersion"] = json!(rv.to_string());
}

fn labels_of(value: &Value) -> BTreeMap<String, String> {
    value["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// A `Status` failure body like the API server's.
fn status(code: StatusCode, reason: &str, message: String, name: &str, kind: &str) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if !name.is_empty() || !kind.is_empty() {
        body["details"] = json!({"name": name, "kind": kind});
    }
    json_response(code, &body)
}

fn not_found(kind: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{kind} \"{name}\" not found"),
        name,
        kind,
    )
}

fn bad_request(message: String) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, "", "")
}

fn invalid(name: &str, causes: &[String]) -> Response {
    status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("ConfigMap \"{name}\" is invalid: {}", causes.join(", ")),
        name,
        "ConfigMap",
    )
}

/// RFC 1123 subdomain, as object names must be.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_configmap_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// The API server's ConfigMap validation (name, keys, base64, total size).
fn validate_configmap(value: &Value) -> Vec<String> {
    let mut causes = Vec::new();
    let name = str_at(value, &["metadata", "name"]);
    if !is_dns_subdomain(name) {
        causes.push(format!(
            "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ));
    }
    let mut total = 0usize;
    let mut keys = Vec::new();
    if let Some(data) = value.get("data").filter(|d| !d.is_null()) {
        match data.as_object() {
            Some(data) => {
                for (k, v) in data {
                    keys.push(k.clone());
                    match v.as_str() {
                        Some(s) => total += k.len() + s.len(),
                        None => causes.push(format!("data[{k}]: Invalid value: not a string")),
                    }
                }
            }
            None => causes.push("data: Invalid value: not an object".to_owned()),
        }
    }
    if let Some(data) = value.get("binaryData").filter(|d| !d.is_null()) {
        match data.as_object() {
            Some(data) => {
                for (k, v) in data {
                    if keys.contains(k) {
                        causes.push(format!(
                            "data[{k}]: Invalid value: \"{k}\": duplicate of key present in binaryData"
                        ));
                    }
                    keys.push(k.clone());
                    let decoded = v
                        .as_str()
                        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
                    match decoded {
                        Some(bytes) => total += k.len() + bytes.len(),
                        None => causes.push(format!("binaryData[{k}]: Invalid value: not base64")),
                    }
                }
            }
            None => causes.push("binaryData: Invalid value: not an object".to_owned()),
        }
    }
    for k in &keys {
        if !is_configmap_key(k) {
            causes.push(format!(
                "data[{k}]: Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
            ));
        }
    }
    if total > MAX_CONFIGMAP_BYTES {
        causes.push(format!(
            "[]: Too long: must have at most {MAX_CONFIGMAP_BYTES} bytes"
        ));
    }
    causes
}

type Params = Query<HashMap<String, String>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api", get(api_versions))
        .route("/apis", get(api_groups))
        .route("/api/v1", get(api_resources))
        .route(
            "/api/v1/namespaces/{ns}/configmaps",
            get(list_configmaps).post(create_configmap),
        )
        .route(
            "/api/v1/namespaces/{ns}/configmaps/{name}",
            get(get_configmap)
                .put(replace_configmap)
                .delete(delete_configmap),
        )
        .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
        .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// Counts requests, and holds them forever while the server plays unresponsive.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    tracing::debug!(method = %request.method(), uri = %request.uri(), "fake kube API request");
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.is_empty()
        && !content_type.starts_with("application/json")
        && !content_type.starts_with(PROTOBUF)
    {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/vnd.kubernetes.protobuf (got {content_type})"
            ),
            "",
            "",
        );
    }
    if shared.unresponsive.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    next.run(request).await
}

async fn fallback(request: Request) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "the server could not find the requested resource ({} {})",
            request.method(),
            request.uri().path()
        ),
        "",
        "",
    )
}

async fn api_versions() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        }),
    )
}

async fn api_groups() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
    )
}

async fn api_resources() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                {
                    "name": "configmaps", "singularName": "configmap", "namespaced": true,
                    "kind": "ConfigMap", "shortNames": ["cm"],
                    "verbs": ["create", "delete", "get", "list", "update", "watch"],
                },
                {
                    "name": "pods", "singularName": "pod", "namespaced": true,
                    "kind": "Pod", "shortNames": ["po"], "verbs": ["get", "list"],
                },
            ],
        }),
    )
}

fn selectors(
    params: &HashMap<String, String>,
) -> Result<(LabelSelector, FieldSelector), Box<Response>> {
    let labels = LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| Box::new(bad_request(format!("unable to parse requirement: {e}"))))?;
    let fields = FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| Box::new(bad_request(format!("invalid field selector: {e}"))))?;
    Ok((labels, fields))
}

fn matches(value: &Value, labels: &LabelSelector, fields: &FieldSelector) -> bool {
    labels.matches(&labels_of(value))
        && fields.matches(
            str_at(value, &["metadata", "name"]),
            str_at(value, &["metadata", "namespace"]),
        )
}

fn list_response(kind: &str, rv: u64, items: Vec<Value>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": kind,
            "apiVersion": "v1",
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }),
    )
}

async fn list_configmaps(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    Query(params): Params,
) -> Response {
    let (labels, fields) = match selectors(&params) {
        Ok(s) => s,
        Err(response) => return *response,
    };
    if params.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return watch_configmaps(&shared, ns, &params, labels, fields);
    }
    let objects = shared.objects();
    let items = objects
        .configmaps
        .iter()
        .filter(|((n, _), v)| *n == ns && matches(v, &labels, &fields))
        .map(|(_, v)| v.clone())
        .collect();
    list_response("ConfigMapList", objects.resource_version, items)
}

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event_type, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch_configmaps(
    shared: &Arc<Shared>,
    ns: String,
    params: &HashMap<String, String>,
    labels: LabelSelector,
    fields: FieldSelector,
) -> Response {
    let from = params.get("resourceVersion").map_or("", String::as_str);
    let from: Option<u64> = match from {
        "" | "0" => None,
        rv => match rv.parse() {
            Ok(rv) => Some(rv),
            Err(_) => return bad_request(format!("invalid resourceVersion {rv:?}")),
        },
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(DEFAULT_WATCH_SECONDS);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true" || b == "1");
    let selected = move |v: &Value| {
        str_at(v, &["metadata", "namespace"]) == ns && matches(v, &labels, &fields)
    };

    // Subscribe under the lock, so no change falls between the catch-up and the live feed.
    let (mut changes, initial, mut last_rv) = {
        let objects = shared.objects();
        if let Some(rv) = from.filter(|rv| *rv < objects.compacted) {
            // Like etcd after compaction: the watch opens, then fails with 410 Expired.
            let expired = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {rv} ({})", objects.compacted),
                "reason": "Expired", "code": 410,
            });
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                event_line("ERROR", &expired),
            )
                .into_response();
        }
        let changes = shared.changes.subscribe();
        let initial: Vec<Bytes> = match from {
            None => objects
                .configmaps
                .values()
                .filter(|v| selected(v))
                .map(|v| event_line("ADDED", v))
                .collect(),
            Some(rv) => objects
                .log
                .iter()
                .filter(|e| e.resource_version > rv && selected(&e.object))
                .map(|e| event_line(e.event_type, &e.object))
                .collect(),
        };
        (changes, initial, objects.resource_version)
    };
    if let Some(rv) = from {
        last_rv = last_rv.max(rv);
    }
    let mut breaker = shared.watch_breaker.subscribe();
    breaker.mark_unchanged();

    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        for line in initial {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        if bookmarks {
            let bookmark = json!({"kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"resourceVersion": last_rv.to_string()}});
            if tx
                .send(Ok(event_line("BOOKMARK", &bookmark)))
                .await
                .is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = breaker.changed() => break,
                _ = tx.closed() => break,
                change = changes.recv() => match change {
                    Ok(change) => {
                        if change.resource_version > last_rv && selected(&change.object) {
                            let line = event_line(change.event_type, &change.object);
                            if tx.send(Ok(line)).await.is_err() {
                                break;
                            }
                        }
                    }
                    // A watcher that fell behind is ended; the client re-lists, as with a
                    // real server.
                    Err(_) => break,
                },
            }
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn get_configmap(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match shared.objects().configmaps.get(&(ns, name.clone())) {
        Some(value) => json_response(StatusCode::OK, value),
        None => not_found("configmaps", &name),
    }
}

/// Parses a ConfigMap body and checks what create and replace both check.
fn parse_configmap(headers: &HeaderMap, body: &Bytes, ns: &str) -> Result<Value, Box<Response>> {
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(PROTOBUF));
    let value: Value = if protobuf {
        crate::proto::decode_configmap(body).map_err(|e| {
            Box::new(bad_request(format!(
                "the protobuf request body does not decode: {e}"
            )))
        })?
    } else {
        serde_json::from_slice(body).map_err(|e| {
            Box::new(bad_request(format!(
                "the request body is not a JSON object: {e}"
            )))
        })?
    };
    if !value.is_object() {
        return Err(Box::new(bad_request(
            "the request body is not a JSON object".to_owned(),
        )));
    }
    let kind = str_at(&value, &["kind"]);
    if !kind.is_empty() && kind != "ConfigMap" {
        return Err(Box::new(bad_request(format!(
            "the kind of the object ({kind}) does not match ConfigMap"
        ))));
    }
    let body_ns = str_at(&value, &["metadata", "namespace"]);
    if !body_ns.is_empty() && body_ns != ns {
        return Err(Box::new(bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .to_owned(),
        )));
    }
    Ok(value)
}

async fn create_configmap(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut value = match parse_configmap(&headers, &body, &ns) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let name = str_at(&value, &["metadata", "name"]).to_owned();
    if name.is_empty() {
        return invalid(
            &name,
            &["metadata.name: Required value: name or generateName is required".to_owned()],
        );
    }
    let causes = validate_configmap(&value);
    if !causes.is_empty() {
        return invalid(&name, &causes);
    }
    let mut objects = shared.objects();
    let key = (ns.clone(), name.clone());
    if objects.configmaps.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("configmaps \"{name}\" already exists"),
            &name,
            "configmaps",
        );
    }
    let uid = objects.next_uid();
    let rv = objects.next_resource_version();
    set_meta(&mut value, "ConfigMap", &ns, &uid, rv);
    objects.configmaps.insert(key, value.clone());
    shared.record(&mut objects, "ADDED", value.clone(), rv);
    json_response(StatusCode::CREATED, &value)
}

/// The parts of a ConfigMap an update can change (to detect no-op updates).
fn content_of(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("uid");
        meta.remove("namespace");
        meta.remove("managedFields");
        meta.remove("creationTimestamp");
    }
    if let Some(obj) = v.as_object_mut() {
        obj.remove("kind");
        obj.remove("apiVersion");
        obj.retain(|_, field| !field.is_null());
    }
    v
}

async fn replace_configmap(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut value = match parse_configmap(&headers, &body, &ns) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let body_name = str_at(&value, &["metadata", "name"]).to_owned();
    if body_name != name {
        return bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        ));
    }
    let causes = validate_configmap(&value);
    if !causes.is_empty() {
        return invalid(&name, &causes);
    }
    let mut objects = shared.objects();
    let key = (ns.clone(), name.clone());
    let Some(stored) = objects.configmaps.get(&key) else {
        return not_found("configmaps", &name);
    };
    let given_rv = str_at(&value, &["metadata", "resourceVersion"]);
    let stored_rv = str_at(stored, &["metadata", "resourceVersion"]);
    // An update without a resourceVersion is unconditional (ConfigMaps allow that).
    if !given_rv.is_empty() && given_rv != stored_rv {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on configmaps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            &name,
            "configmaps",
        );
    }
    if content_of(&value) == content_of(stored) {
        // No change: the API server answers with the stored object and no new version.
        return json_response(StatusCode::OK, stored);
    }
    let uid = str_at(stored, &["metadata", "uid"]).to_owned();
    let rv = objects.next_resource_version();
    set_meta(&mut value, "ConfigMap", &ns, &uid, rv);
    objects.configmaps.insert(key, value.clone());
    shared.record(&mut objects, "MODIFIED", value.clone(), rv);
    json_response(StatusCode::OK, &value)
}

async fn delete_configmap(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let mut objects = shared.objects();
    let Some(mut value) = objects.configmaps.remove(&(ns, name.clone())) else {
        return not_found("configmaps", &name);
    };
    let rv = objects.next_resource_version();
    value["metadata"]["resourceVersion"] = json!(rv.to_string());
    shared.record(&mut objects, "DELETED", value.clone(), rv);
    json_response(StatusCode::OK, &value)
}

async fn list_pods(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    Query(params): Params,
) -> Response {
    let (labels, fields) = match selectors(&params) {
        Ok(s) => s,
        Err(response) => return *response,
    };
    if params.contains_key("watch") {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the fake API server does not watch pods".to_owned(),
            "",
            "pods",
        );
    }
    let objects = shared.objects();
    let items = objects
        .pods
        .iter()
        .filter(|((n, _), v)| *n == ns && matches(v, &labels, &fields))
        .map(|(_, v)| v.clone())
        .collect();
    list_response("PodList", objects.resource_version, items)
}

async fn get_pod(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match shared.objects().pods.get(&(ns, name.clone())) {
        Some(value) => json_response(StatusCode::OK, value),
        None => not_found("pods", &name),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_and_keys() {
        assert!(is_dns_subdomain("contrast-store-manifests-0a1b"));
        assert!(is_dns_subdomain("a.b"));
        assert!(!is_dns_subdomain("Upper"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain("a-"));
        assert!(!is_dns_subdomain(""));
        assert!(!is_dns_subdomain(&"a".repeat(254)));
        assert!(is_configmap_key("latest"));
        assert!(is_configmap_key("a_b.c-D"));
        assert!(!is_configmap_key("a/b"));
        assert!(!is_configmap_key(""));
    }

    #[test]
    fn configmap_validation() {
        let ok =
            json!({"metadata": {"name": "x"}, "binaryData": {"k": "AAEC"}, "data": {"d": "v"}});
        assert!(validate_configmap(&ok).is_empty());
        let dup =
            json!({"metadata": {"name": "x"}, "binaryData": {"k": "AA=="}, "data": {"k": "v"}});
        assert!(validate_configmap(&dup)[0].contains("duplicate"));
        let b64 = json!({"metadata": {"name": "x"}, "binaryData": {"k": "not base64!"}});
        assert!(validate_configmap(&b64)[0].contains("base64"));
        let big = "A".repeat(4 * (MAX_CONFIGMAP_BYTES / 3 + 1));
        let too_big = json!({"metadata": {"name": "x"}, "binaryData": {"k": big}});
        assert!(validate_configmap(&too_big)[0].contains("Too long"));
        let name = json!({"metadata": {"name": "X"}});
        assert!(validate_configmap(&name)[0].contains("RFC 1123"));
    }
}
