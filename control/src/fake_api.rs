//! A fake Kubernetes API server for tests: plain HTTP/1.1 on 127.0.0.1,
//! serving LIST and WATCH of exactly the kinds weir-control reads
//! (Services, EndpointSlices, Pods, Namespaces, Nodes, NetworkPolicies,
//! Leases and weir's Network, EndpointGroup, Policy, LoadBalancerPool), and
//! the writes weir-control makes (Leases, Service status), so the real kube
//! client and `kube::runtime::watcher` can be driven end to end.
//!
//! What it promises, as the API server does:
//! - one resourceVersion counter for every kind, bumped by every change;
//!   a LIST answers `metadata.resourceVersion` = the current one;
//! - a WATCH from resourceVersion `N` replays every retained change after
//!   `N` and then streams live ones as chunked JSON lines
//!   (`{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":...}`); a
//!   watch without one (or `0`) starts with an ADDED per current object;
//! - a WATCH from a resourceVersion older than the retained history gets
//!   one ERROR event carrying a `Status` with code 410 (Gone), so the client
//!   relists;
//! - with `allowWatchBookmarks=true`, BOOKMARK events every
//!   [`FakeOptions::bookmark_interval`], ordered after every change they
//!   cover;
//! - `labelSelector` with `key`, `!key`, `key=value`, `key==value` and
//!   `key!=value` requirements; under a selector, a change that moves an
//!   object in or out of the selection is an ADDED or DELETED;
//!   `timeoutSeconds` ends a watch.
//!
//! - GET of one object (`.../NAME`, and `.../NAME/status`): 404 NotFound
//!   when absent;
//! - POST (create) on a collection: 201, or 409 AlreadyExists;
//! - PUT (replace) of `.../NAME` or `.../NAME/status`: a
//!   `metadata.resourceVersion` in the body must be the current one (409
//!   Conflict otherwise; none: unconditional);
//! - PATCH with `application/merge-patch+json` (RFC 7386) of `.../NAME` or
//!   `.../NAME/status` (a `metadata.resourceVersion` in the patch is a
//!   precondition too);
//! - for kinds with a status subresource (Service, Pod, Node, Namespace),
//!   writes to the object keep its status and writes to `/status` change
//!   only the status, as the API server does;
//! - every write sets `metadata.resourceVersion` (and `uid`,
//!   `creationTimestamp` on creation), is announced to watches (ADDED or
//!   MODIFIED) and is recorded with the client's User-Agent
//!   ([`FakeApi::writes`]).
//!
//! Not served: other verbs and kinds (404 / 405), DELETE over HTTP, other
//! patch types (415), `generateName`, paging (`limit` is ignored: one
//! page), field selectors, streaming lists.
//!
//! The test side is synchronous: [`FakeApi::apply`] (a document without
//! `status` keeps the stored object's status, as `kubectl apply` leaves the
//! status to controllers), [`FakeApi::get`], [`FakeApi::delete`],
//! [`FakeApi::compact`] (drop the history: the next resume gets 410),
//! [`FakeApi::kill_watches`] (end every open watch), [`FakeApi::fail`]
//! (answer 403 for one kind, every verb), and counters of what clients
//! asked for.
//! Compiled for this crate's tests and behind the `fake-api` feature.

#![deny(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// One kind the fake serves.
struct KindInfo {
    kind: &'static str,
    /// `v1`, or `group/version`.
    api_version: &'static str,
    plural: &'static str,
    namespaced: bool,
    /// Whether the kind has a `/status` subresource (writes to the object
    /// keep the status; writes to `/status` change nothing else).
    status: bool,
}

/// How many kinds are served.
pub const KIND_COUNT: usize = 11;

const KINDS: [KindInfo; KIND_COUNT] = [
    KindInfo { kind: "Service", api_version: "v1", plural: "services", namespaced: true, status: true },
    KindInfo {
        kind: "EndpointSlice",
        api_version: "discovery.k8s.io/v1",
        plural: "endpointslices",
        namespaced: true,
        status: false,
    },
    KindInfo { kind: "Pod", api_version: "v1", plural: "pods", namespaced: true, status: true },
    KindInfo { kind: "Namespace", api_version: "v1", plural: "namespaces", namespaced: false, status: true },
    KindInfo { kind: "Node", api_version: "v1", plural: "nodes", namespaced: false, status: true },
    KindInfo {
        kind: "NetworkPolicy",
        api_version: "networking.k8s.io/v1",
        plural: "networkpolicies",
        namespaced: true,
        status: false,
    },
    KindInfo {
        kind: "Network",
        api_version: "weir.dev/v1alpha1",
        plural: "networks",
        namespaced: false,
        status: false,
    },
    KindInfo {
        kind: "EndpointGroup",
        api_version: "weir.dev/v1alpha1",
        plural: "endpointgroups",
        namespaced: false,
        status: false,
    },
    KindInfo { kind: "Policy", api_version: "weir.dev/v1alpha1", plural: "policies", namespaced: false, status: false },
    KindInfo {
        kind: "LoadBalancerPool",
        api_version: "weir.dev/v1alpha1",
        plural: "loadbalancerpools",
        namespaced: false,
        status: false,
    },
    KindInfo {
        kind: "Lease",
        api_version: "coordination.k8s.io/v1",
        plural: "leases",
        namespaced: true,
        status: false,
    },
];

/// The kinds served, by `kind` name (the index of [`Counters`]' arrays).
pub const KIND_NAMES: [&str; KIND_COUNT] = [
    "Service",
    "EndpointSlice",
    "Pod",
    "Namespace",
    "Node",
    "NetworkPolicy",
    "Network",
    "EndpointGroup",
    "Policy",
    "LoadBalancerPool",
    "Lease",
];

impl KindInfo {
    fn path_prefix(&self) -> String {
        if self.api_version == "v1" {
            "/api/v1".to_string()
        } else {
            format!("/apis/{}", self.api_version)
        }
    }
}

/// The index in [`KINDS`] of a kind named by `kind` (`Service`) or plural
/// (`services`), any case.
fn kind_index(name: &str) -> Option<usize> {
    KINDS.iter().position(|k| k.kind.eq_ignore_ascii_case(name) || k.plural.eq_ignore_ascii_case(name))
}

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// How often open watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions { bookmark_interval: Duration::from_millis(200) }
    }
}

/// One change, as retained for watches to replay.
struct Change {
    rv: u64,
    kind: usize,
    /// The object before (None: created).
    old: Option<Value>,
    /// The object after; for a delete, the last state with the deletion's
    /// resourceVersion.
    new: Value,
    deleted: bool,
}

/// One label requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
}

type Selector = Vec<Requirement>;

fn parse_selector(text: &str) -> Result<Selector, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("unable to parse requirement {part:?}");
        let req = if let Some(key) = part.strip_prefix('!') {
            Requirement::NotExists(key.trim().to_string())
        } else if let Some((k, v)) = part.split_once("!=") {
            Requirement::NotEquals(k.trim().to_string(), v.trim().to_string())
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Requirement::Equals(k.trim().to_string(), v.trim().to_string())
        } else if part.contains(' ') || part.contains('(') {
            return Err(bad()); // set-based forms (`in`, `notin`) are not served
        } else {
            Requirement::Exists(part.to_string())
        };
        let key = match &req {
            Requirement::Exists(k)
            | Requirement::NotExists(k)
            | Requirement::Equals(k, _)
            | Requirement::NotEquals(k, _) => k,
        };
        if key.is_empty() {
            return Err(bad());
        }
        out.push(req);
    }
    Ok(out)
}

fn selects(sel: &Selector, obj: &Value) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    sel.iter().all(|r| match r {
        Requirement::Exists(k) => label(k).is_some(),
        Requirement::NotExists(k) => label(k).is_none(),
        Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
        Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
    })
}

fn namespace_of(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("")
}

/// One open watch.
struct Watch {
    kind: usize,
    namespace: Option<String>,
    selector: Selector,
    bookmarks: bool,
    tx: mpsc::UnboundedSender<String>,
}

impl Watch {
    fn wants(&self, obj: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace_of(obj)) && selects(&self.selector, obj)
    }

    /// The event this watch sees for `c`, if any (a change that moves an
    /// object in or out of its selection is an ADDED or DELETED).
    fn event(&self, c: &Change) -> Option<String> {
        if c.kind != self.kind {
            return None;
        }
        let before = c.old.as_ref().is_some_and(|o| self.wants(o));
        let after = self.wants(&c.new);
        let ty = match (c.deleted, before, after) {
            (true, true, _) => "DELETED",
            (true, false, _) => return None,
            (false, false, true) => "ADDED",
            (false, true, true) => "MODIFIED",
            (false, true, false) => "DELETED",
            (false, false, false) => return None,
        };
        Some(event_line(ty, &c.new))
    }
}

fn event_line(ty: &str, obj: &Value) -> String {
    json!({ "type": ty, "object": obj }).to_string() + "\n"
}

/// `plural.group`, as the API server names a resource in its messages.
fn resource_name(info: &KindInfo) -> String {
    match info.api_version.split_once('/') {
        Some((group, _)) => format!("{}.{group}", info.plural),
        None => info.plural.to_string(),
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// What clients asked for, per kind (index as in [`KIND_NAMES`]).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub lists: [u64; KIND_COUNT],
    pub watches: [u64; KIND_COUNT],
    /// Watches answered 410 Gone.
    pub gone: u64,
    /// BOOKMARK events sent.
    pub bookmarks: u64,
}

/// One write a client made over HTTP (whatever its answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    /// `POST`, `PUT` or `PATCH`.
    pub verb: String,
    pub path: String,
    /// The client's `User-Agent` header (empty if none).
    pub user_agent: String,
    /// The HTTP status answered.
    pub code: u16,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// Watches from a resourceVersion below this get 410 Gone.
    oldest: u64,
    objects: BTreeMap<(usize, String, String), Value>,
    history: Vec<Change>,
    watches: Vec<Watch>,
    failing: BTreeSet<usize>,
    counters: Counters,
    writes: Vec<WriteRecord>,
}

impl State {
    /// Stores `obj` (already checked: kind, namespace and name are `key`)
    /// as a new version: the next resourceVersion, the uid and
    /// creationTimestamp of the object it replaces (new ones when it is
    /// new), announced to watches. Returns the object as stored.
    fn store(&mut self, key: (usize, String, String), mut obj: Value) -> Value {
        self.rv += 1;
        let rv = self.rv;
        let old = self.objects.get(&key).cloned();
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let meta = &mut obj["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        for (field, fresh) in [("uid", json!(format!("uid-{rv}"))), ("creationTimestamp", json!(now_rfc3339()))] {
            let kept = old.as_ref().and_then(|o| o.pointer(&format!("/metadata/{field}"))).cloned();
            if meta.get(field).is_none_or(Value::is_null) || kept.is_some() {
                meta[field] = kept.unwrap_or(fresh);
            }
        }
        let kind = key.0;
        self.objects.insert(key, obj.clone());
        self.publish(Change { rv, kind, old, new: obj.clone(), deleted: false });
        obj
    }

    fn publish(&mut self, c: Change) {
        for w in &self.watches {
            if let Some(line) = w.event(&c) {
                let _ = w.tx.send(line);
            }
        }
        self.watches.retain(|w| !w.tx.is_closed());
        self.history.push(c);
    }

    fn bookmarks(&mut self) {
        self.watches.retain(|w| !w.tx.is_closed());
        for w in self.watches.iter().filter(|w| w.bookmarks) {
            let k = &KINDS[w.kind];
            let obj = json!({
                "kind": k.kind,
                "apiVersion": k.api_version,
                "metadata": { "resourceVersion": self.rv.to_string() },
            });
            if w.tx.send(event_line("BOOKMARK", &obj)).is_ok() {
                self.counters.bookmarks += 1;
            }
        }
    }
}

/// A running fake API server; stopped when dropped.
pub struct FakeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApi {
    /// Starts a server on a free port of 127.0.0.1 with default options.
    pub fn start() -> FakeApi {
        FakeApi::start_with(FakeOptions::default())
    }

    /// Starts a server on a free port of 127.0.0.1, on its own thread.
    /// Panics if the port or the thread cannot be had (test support).
    pub fn start_with(opts: FakeOptions) -> FakeApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("fake API: bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("fake API: nonblocking listener");
        let addr = listener.local_addr().expect("fake API: local address");
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, stopped) = oneshot::channel();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("fake-kube-api".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("fake API: runtime");
                rt.block_on(serve(listener, st, opts, stopped));
            })
            .expect("fake API: thread");
        FakeApi { addr, state, stop: Some(stop), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates or replaces objects: YAML or JSON documents (or `List`s) of
    /// the served kinds. Each object gets the next resourceVersion and is
    /// announced as ADDED or MODIFIED. Returns the last resourceVersion.
    /// Nothing is applied if any document is wrong.
    pub fn apply(&self, text: &str) -> Result<u64, String> {
        let mut objs = Vec::new();
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let v = Value::deserialize(doc).map_err(|e| format!("document {}: {e}", i + 1))?;
            flatten(v, &mut objs).map_err(|e| format!("document {}: {e}", i + 1))?;
        }
        let mut checked = Vec::new();
        for obj in objs {
            checked.push(check(obj)?);
        }
        let mut st = self.lock();
        for (kind, ns, name, mut obj) in checked {
            let key = (kind, ns, name);
            // The status belongs to controllers: a document without one
            // leaves the stored status in place.
            if KINDS[kind].status && obj.get("status").is_none() {
                if let Some(old) = st.objects.get(&key).and_then(|o| o.get("status")) {
                    obj["status"] = old.clone();
                }
            }
            st.store(key, obj);
        }
        Ok(st.rv)
    }

    /// The stored object (`kind` as `Service` or `services`; `namespace`
    /// empty for cluster-scoped kinds), if there is one.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let k = kind_index(kind)?;
        let ns = if KINDS[k].namespaced { namespace } else { "" };
        self.lock().objects.get(&(k, ns.to_string(), name.to_string())).cloned()
    }

    /// Every write clients made over HTTP so far, in order.
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.lock().writes.clone()
    }

    /// Deletes an object (`kind` as `Service` or `services`; `namespace`
    /// empty for cluster-scoped kinds), announced as DELETED with a new
    /// resourceVersion. Returns that resourceVersion.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<u64, String> {
        let k = kind_index(kind).ok_or_else(|| format!("kind {kind:?} is not served"))?;
        let ns = if KINDS[k].namespaced { namespace } else { "" };
        let mut st = self.lock();
        let key = (k, ns.to_string(), name.to_string());
        let old = st.objects.remove(&key).ok_or_else(|| format!("{kind} {namespace}/{name} does not exist"))?;
        st.rv += 1;
        let rv = st.rv;
        let mut new = old.clone();
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        st.publish(Change { rv, kind: k, old: Some(old), new, deleted: true });
        Ok(rv)
    }

    /// Drops the retained history (as etcd compaction does): a watch that
    /// resumes from any resourceVersion seen so far gets 410 Gone; a fresh
    /// LIST answers a newer one, from which watches work again.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.rv += 1;
        st.oldest = st.rv;
        st.history.clear();
    }

    /// Ends every open watch (cleanly, as a server-side timeout does).
    pub fn kill_watches(&self) {
        self.lock().watches.clear();
    }

    /// While `on`, every request for `kind` answers 403 Forbidden (a
    /// permission the RBAC rules forgot), and its open watches end. (Not
    /// 503: the kube client retries that one itself for minutes.)
    pub fn fail(&self, kind: &str, on: bool) {
        let Some(k) = kind_index(kind) else { return };
        let mut st = self.lock();
        if on {
            st.failing.insert(k);
            st.watches.retain(|w| w.kind != k);
        } else {
            st.failing.remove(&k);
        }
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// What clients asked for so far.
    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    /// Open watches now.
    pub fn open_watches(&self) -> usize {
        let mut st = self.lock();
        st.watches.retain(|w| !w.tx.is_closed());
        st.watches.len()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Objects of a document (the items of a `List`).
fn flatten(v: Value, out: &mut Vec<Value>) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    if v.get("kind").and_then(Value::as_str) == Some("List") {
        for item in v.get("items").and_then(Value::as_array).cloned().unwrap_or_default() {
            flatten(item, out)?;
        }
        return Ok(());
    }
    out.push(v);
    Ok(())
}

/// An object's kind, namespace and name, and the object as stored.
fn check(mut obj: Value) -> Result<(usize, String, String, Value), String> {
    let kind = obj.get("kind").and_then(Value::as_str).ok_or("an object without kind")?.to_string();
    let k = KINDS.iter().position(|k| k.kind == kind).ok_or_else(|| format!("kind {kind:?} is not served"))?;
    let info = &KINDS[k];
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if api_version != info.api_version {
        return Err(format!("{kind}: apiVersion {api_version:?}, want {:?}", info.api_version));
    }
    let (ns, name) = check_meta(&mut obj, info, "default")?;
    Ok((k, ns, name, obj))
}

/// An object's namespace (`default_ns` when it names none; always empty
/// for cluster-scoped kinds, whose objects then carry none) and name.
fn check_meta(obj: &mut Value, info: &KindInfo, default_ns: &str) -> Result<(String, String), String> {
    let kind = info.kind;
    let meta = obj.get_mut("metadata").and_then(Value::as_object_mut).ok_or_else(|| format!("{kind}: no metadata"))?;
    let name = meta.get("name").and_then(Value::as_str).filter(|n| !n.is_empty());
    let name = name.ok_or_else(|| format!("{kind}: no metadata.name"))?.to_string();
    let ns = if info.namespaced {
        let ns = meta.get("namespace").and_then(Value::as_str).unwrap_or(default_ns).to_string();
        meta.insert("namespace".into(), json!(ns));
        ns
    } else {
        meta.remove("namespace");
        String::new()
    };
    Ok((ns, name))
}

/// Now as the API server writes a `metav1.Time` (whole seconds, UTC).
fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// RFC 7386 JSON merge patch: objects merge key by key, `null` removes a
/// key, anything else (arrays included) replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in fields {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<Mutex<State>>,
    opts: FakeOptions,
    mut stop: oneshot::Receiver<()>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else { return };
    let st = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(opts.bookmark_interval.max(Duration::from_millis(1)));
        loop {
            tick.tick().await;
            st.lock().unwrap_or_else(|p| p.into_inner()).bookmarks();
        }
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(connection(stream, state.clone()));
                }
            }
            _ = &mut stop => return,
        }
    }
}

/// The parts of a request the fake looks at.
struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    /// Header names lower-cased.
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// The largest request body read (a Lease or a patch is far smaller).
const MAX_BODY: usize = 4 << 20;

async fn read_request(rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Request> {
    let mut head = String::new();
    {
        let mut limited = (&mut *rd).take(64 * 1024);
        let mut line = String::new();
        loop {
            line.clear();
            if limited.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            head.push_str(&line);
        }
    }
    let mut lines = head.lines();
    let first = lines.next()?;
    let mut parts = first.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    // Only bodies with a Content-Length (what the kube client sends for
    // its JSON bodies); a larger one than MAX_BODY ends the connection.
    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    if len > MAX_BODY {
        return None;
    }
    let mut body = vec![0; len];
    rd.read_exact(&mut body).await.ok()?;
    Some(Request { method, path: percent_decode(path), query, headers, body })
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
            (b'+', _, _) => out.push(b' '),
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a path names: a kind's collection (all of it, or one
/// namespace's), or one object, or one object's subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    kind: usize,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// The [`Target`] of a path: `PREFIX/PLURAL[/NAME[/SUB]]`, and for
/// namespaced kinds also `PREFIX/namespaces/NS/PLURAL[/NAME[/SUB]]`.
/// (`/api/v1/namespaces/default/pods` is Pods of `default`, not a
/// subresource of the Namespace `default`: namespaced forms are tried
/// first.)
fn target(path: &str) -> Option<Target> {
    // `PLURAL[/NAME[/SUB]]` of kind `k`.
    let object = |k: usize, namespace: Option<String>, rest: &str| -> Option<Target> {
        let mut parts = rest.split('/');
        if parts.next()? != KINDS[k].plural {
            return None;
        }
        let name = parts.next().map(str::to_string);
        let subresource = parts.next().map(str::to_string);
        if parts.next().is_some() || name.as_deref() == Some("") || subresource.as_deref() == Some("") {
            return None;
        }
        Some(Target { kind: k, namespace, name, subresource })
    };
    for (i, k) in KINDS.iter().enumerate().filter(|(_, k)| k.namespaced) {
        let Some(rest) = path.strip_prefix(&k.path_prefix()) else { continue };
        if let Some((ns, rest)) = rest.strip_prefix("/namespaces/").and_then(|r| r.split_once('/')) {
            if let Some(t) = object(i, Some(ns.to_string()), rest).filter(|_| !ns.is_empty()) {
                return Some(t);
            }
        }
    }
    for (i, k) in KINDS.iter().enumerate() {
        let Some(rest) = path.strip_prefix(&k.path_prefix()).and_then(|r| r.strip_prefix('/')) else { continue };
        if let Some(t) = object(i, None, rest) {
            return Some(t);
        }
    }
    None
}

async fn respond(wr: &mut OwnedWriteHalf, code: u16, body: &Value) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        409 => "Conflict",
        415 => "Unsupported Media Type",
        _ => "Internal Server Error",
    };
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    wr.write_all(head.as_bytes()).await?;
    wr.write_all(body.as_bytes()).await?;
    wr.flush().await
}

async fn chunk(wr: &mut OwnedWriteHalf, data: &str) -> std::io::Result<()> {
    wr.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes()).await?;
    wr.flush().await
}

fn write_record(req: &Request, code: u16) -> WriteRecord {
    WriteRecord {
        verb: req.method.clone(),
        path: req.path.clone(),
        user_agent: req.headers.get("user-agent").cloned().unwrap_or_default(),
        code,
    }
}

/// An error answer: HTTP code, Status reason, message.
type Refusal = (u16, &'static str, String);

/// GET of one object, and the writes (POST, PUT, PATCH): the answer's
/// code and body. Runs under the state's lock, so a write's precondition
/// check and its store are one step.
fn write(req: &Request, t: &Target, st: &mut State) -> Result<(u16, Value), Refusal> {
    let info = &KINDS[t.kind];
    let res = resource_name(info);
    let namespaced_path = t.namespace.is_some();
    if info.namespaced != namespaced_path && (req.method == "POST" || t.name.is_some()) {
        let message = format!("{} is not a path of {res} objects", req.path);
        return Err((404, "NotFound", message));
    }
    match t.subresource.as_deref() {
        None => {}
        Some("status") if info.status => {}
        Some(sub) => return Err((404, "NotFound", format!("{res} has no subresource {sub:?}"))),
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let key = |name: &str| (t.kind, ns.clone(), name.to_string());
    let body = || -> Result<Value, Refusal> {
        serde_json::from_slice(&req.body).map_err(|e| (400, "BadRequest", format!("the body is not JSON: {e}")))
    };
    let not_found = |name: &str| (404, "NotFound", format!("{res} {name:?} not found"));
    let conflict = |name: &str| {
        let message = format!(
            "Operation cannot be fulfilled on {res} {name:?}: the object has been modified; please apply your changes to the latest version and try again"
        );
        (409, "Conflict", message)
    };
    // A body's kind, apiVersion, namespace and name must be the target's.
    let checked = |mut obj: Value, name: Option<&str>| -> Result<(String, Value), Refusal> {
        for (field, want) in [("kind", info.kind), ("apiVersion", info.api_version)] {
            match obj.get(field).and_then(Value::as_str) {
                None => obj[field] = json!(want),
                Some(got) if got == want => {}
                Some(got) => return Err((400, "BadRequest", format!("{field} {got:?} in a request for {res}"))),
            }
        }
        let (got_ns, got_name) = check_meta(&mut obj, info, &ns).map_err(|e| (400, "BadRequest", e))?;
        if got_ns != ns || name.is_some_and(|n| n != got_name) {
            let message = format!("the body names {got_ns}/{got_name}, the path {}", req.path);
            return Err((400, "BadRequest", message));
        }
        Ok((got_name, obj))
    };
    // A resourceVersion given in a body is a precondition.
    let precondition = |body: &Value, current: &Value, name: &str| -> Result<(), Refusal> {
        let want = body.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|v| !v.is_empty());
        let have = current.pointer("/metadata/resourceVersion").and_then(Value::as_str);
        match want {
            Some(w) if Some(w) != have => Err(conflict(name)),
            _ => Ok(()),
        }
    };
    match (req.method.as_str(), t.name.as_deref()) {
        ("GET", Some(name)) => st.objects.get(&key(name)).map(|o| (200, o.clone())).ok_or_else(|| not_found(name)),
        ("POST", None) => {
            let (name, obj) = checked(body()?, None)?;
            if st.objects.contains_key(&key(&name)) {
                return Err((409, "AlreadyExists", format!("{res} {name:?} already exists")));
            }
            Ok((201, st.store(key(&name), obj)))
        }
        ("PUT", Some(name)) => {
            let current = st.objects.get(&key(name)).cloned().ok_or_else(|| not_found(name))?;
            let (_, mut obj) = checked(body()?, Some(name))?;
            precondition(&obj, &current, name)?;
            if info.status && t.subresource.is_some() {
                // `/status` changes only the status.
                let mut next = current.clone();
                next["status"] = obj.get("status").cloned().unwrap_or_else(|| json!({}));
                obj = next;
            } else if info.status {
                // The object keeps its status.
                match (current.get("status"), obj.as_object_mut()) {
                    (Some(s), Some(o)) => _ = o.insert("status".into(), s.clone()),
                    (None, Some(o)) => _ = o.remove("status"),
                    (_, None) => {}
                }
            }
            Ok((200, st.store(key(name), obj)))
        }
        ("PATCH", Some(name)) => {
            let ty = req.headers.get("content-type").map(String::as_str).unwrap_or("");
            if ty.split(';').next().map(str::trim) != Some("application/merge-patch+json") {
                let message = format!("patch type {ty:?} is not served (only application/merge-patch+json)");
                return Err((415, "UnsupportedMediaType", message));
            }
            let current = st.objects.get(&key(name)).cloned().ok_or_else(|| not_found(name))?;
            let patch = body()?;
            precondition(&patch, &current, name)?;
            let mut patch = patch;
            if info.status {
                // Only the status through `/status`, all but it otherwise.
                patch = match (t.subresource.is_some(), patch) {
                    (true, p) => json!({ "status": p.get("status").cloned().unwrap_or(json!({})) }),
                    (false, Value::Object(mut m)) => {
                        m.remove("status");
                        Value::Object(m)
                    }
                    (false, p) => p,
                };
            }
            let mut next = current.clone();
            merge_patch(&mut next, &patch);
            let (_, next) = checked(next, Some(name))?;
            Ok((200, st.store(key(name), next)))
        }
        (method, _) => Err((405, "MethodNotAllowed", format!("{method} {} is not served", req.path))),
    }
}

/// One request per connection (`Connection: close`).
async fn connection(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let Some(req) = read_request(&mut rd).await else { return };
    let _ = handle(req, &mut wr, &state).await;
    let _ = wr.shutdown().await;
}

async fn handle(req: Request, wr: &mut OwnedWriteHalf, state: &Mutex<State>) -> std::io::Result<()> {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let Some(target) = target(&req.path) else {
        return respond(wr, 404, &status(404, "NotFound", &format!("{} is not served", req.path))).await;
    };
    let k = target.kind;
    let info = &KINDS[k];
    if lock().failing.contains(&k) {
        let message = format!("{} is forbidden: the fake API refuses it", info.plural);
        let code = 403;
        if req.method != "GET" {
            lock().writes.push(write_record(&req, code));
        }
        return respond(wr, code, &status(code, "Forbidden", &message)).await;
    }
    if req.method != "GET" || target.name.is_some() {
        let (code, body) = {
            let mut st = lock();
            let (code, body) = match write(&req, &target, &mut st) {
                Ok(r) => r,
                Err((code, reason, message)) => (code, status(code, reason, &message)),
            };
            if req.method != "GET" {
                st.writes.push(write_record(&req, code));
            }
            (code, body)
        };
        return respond(wr, code, &body).await;
    }
    let namespace = target.namespace;
    let selector = match parse_selector(req.query.get("labelSelector").map(String::as_str).unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return respond(wr, 400, &status(400, "BadRequest", &e)).await,
    };
    let watching = matches!(req.query.get("watch").map(String::as_str), Some("true" | "1"));
    if !watching {
        let body = {
            let mut st = lock();
            st.counters.lists[k] += 1;
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|((kind, ns, _), obj)| {
                    *kind == k && namespace.as_deref().is_none_or(|want| want == ns) && selects(&selector, obj)
                })
                .map(|(_, obj)| obj.clone())
                .collect();
            json!({
                "kind": format!("{}List", info.kind),
                "apiVersion": info.api_version,
                "metadata": { "resourceVersion": st.rv.to_string() },
                "items": items,
            })
        };
        return respond(wr, 200, &body).await;
    }
    let from = match req.query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return respond(wr, 400, &status(400, "BadRequest", &format!("resourceVersion {v:?}"))).await,
        },
    };
    let timeout = req.query.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).unwrap_or(1800);
    let bookmarks = matches!(req.query.get("allowWatchBookmarks").map(String::as_str), Some("true" | "1"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watch = Watch { kind: k, namespace, selector, bookmarks, tx };
    // The backlog and the registration under one lock: no change is
    // missed or sent twice.
    let backlog: Result<Vec<String>, String> = {
        let mut st = lock();
        st.counters.watches[k] += 1;
        match from {
            Some(n) if n < st.oldest => {
                st.counters.gone += 1;
                Err(format!("too old resource version: {n} ({})", st.oldest))
            }
            Some(n) => {
                let lines = st.history.iter().filter(|c| c.rv > n).filter_map(|c| watch.event(c)).collect();
                st.watches.push(watch);
                Ok(lines)
            }
            None => {
                let lines = st
                    .objects
                    .iter()
                    .filter(|((kind, _, _), obj)| *kind == k && watch.wants(obj))
                    .map(|(_, obj)| event_line("ADDED", obj))
                    .collect();
                st.watches.push(watch);
                Ok(lines)
            }
        }
    };
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    wr.write_all(head.as_bytes()).await?;
    match backlog {
        Err(message) => chunk(wr, &event_line("ERROR", &status(410, "Expired", &message))).await?,
        Ok(lines) => {
            for line in lines {
                chunk(wr, &line).await?;
            }
            let deadline = tokio::time::sleep(Duration::from_secs(timeout));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    line = rx.recv() => match line {
                        Some(line) => chunk(wr, &line).await?,
                        None => break,
                    },
                    _ = &mut deadline => break,
                }
            }
        }
    }
    wr.write_all(b"0\r\n\r\n").await?;
    wr.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_match() {
        let sel = parse_selector("!service.kubernetes.io/service-proxy-name,app=web,tier!=db,env").unwrap();
        assert_eq!(sel.len(), 4);
        let obj = |labels: Value| json!({ "metadata": { "labels": labels } });
        assert!(selects(&sel, &obj(json!({"app": "web", "env": "x"}))));
        assert!(!selects(&sel, &obj(json!({"app": "web", "env": "x", "tier": "db"}))));
        assert!(!selects(
            &sel,
            &obj(json!({"app": "web", "env": "x", "service.kubernetes.io/service-proxy-name": "p"}))
        ));
        assert!(!selects(&sel, &obj(json!({"app": "web"}))));
        assert!(parse_selector("app in (a,b)").is_err());
        assert!(parse_selector("").unwrap().is_empty());
    }

    /// The kind (and namespace, for `/namespaces/NS/...` paths) of a
    /// collection path.
    fn route(path: &str) -> Option<(usize, Option<String>)> {
        target(path).filter(|t| t.name.is_none()).map(|t| (t.kind, t.namespace))
    }

    #[test]
    fn routes_and_decoding() {
        assert_eq!(route("/api/v1/services"), Some((0, None)));
        assert_eq!(route("/api/v1/namespaces"), Some((3, None)));
        assert_eq!(route("/api/v1/namespaces/default/pods"), Some((2, Some("default".into()))));
        assert_eq!(route("/apis/weir.dev/v1alpha1/policies"), Some((8, None)));
        assert_eq!(route("/apis/networking.k8s.io/v1/networkpolicies"), Some((5, None)));
        assert_eq!(route("/api/v1/configmaps"), None);
        assert_eq!(
            percent_decode("%21service.kubernetes.io%2Fservice-proxy-name"),
            "!service.kubernetes.io/service-proxy-name"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        for (i, name) in KIND_NAMES.iter().enumerate() {
            assert_eq!(KINDS[i].kind, *name);
        }
    }

    #[test]
    fn apply_checks_every_document_first() {
        let api = FakeApi::start();
        let err = api.apply("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n");
        assert!(err.unwrap_err().contains("ConfigMap"));
        assert_eq!(api.resource_version(), 0, "nothing applied");
        assert_eq!(api.apply("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n").unwrap(), 1);
        assert!(api.delete("Service", "default", "a").is_ok());
        assert!(api.delete("Service", "default", "a").is_err());
    }

    #[test]
    fn object_paths_route() {
        let t = |kind, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
            kind,
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        };
        let lease = KIND_NAMES.iter().position(|k| *k == "Lease").unwrap();
        let pools = KIND_NAMES.iter().position(|k| *k == "LoadBalancerPool").unwrap();
        assert_eq!(
            target("/apis/coordination.k8s.io/v1/namespaces/weir-system/leases/x"),
            Some(t(lease, Some("weir-system"), Some("x"), None))
        );
        assert_eq!(
            target("/api/v1/namespaces/default/services/web/status"),
            Some(t(0, Some("default"), Some("web"), Some("status")))
        );
        assert_eq!(target("/api/v1/namespaces/default"), Some(t(3, None, Some("default"), None)));
        assert_eq!(target("/apis/weir.dev/v1alpha1/loadbalancerpools"), Some(t(pools, None, None, None)));
        assert_eq!(target("/api/v1/namespaces/default/services/web/status/more"), None);
        assert_eq!(target("/api/v1/namespaces/default/services/"), None);
    }

    #[test]
    fn merge_patch_is_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}}));
        let mut doc = json!({"a": 1});
        merge_patch(&mut doc, &json!(["x"]));
        assert_eq!(doc, json!(["x"]));
    }

    /// The verbs weir-control's LoadBalancer allocator uses, through the
    /// real kube client: GET one, create, replace with a resourceVersion
    /// precondition, merge patches of objects and of `/status`; every
    /// write seen by a watch and recorded.
    #[test]
    fn writes_through_the_kube_client() {
        use futures::StreamExt;
        use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
        use k8s_openapi::api::core::v1::Service;
        use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};

        fn code<T>(r: Result<T, kube::Error>) -> (u16, String) {
            match r {
                Err(kube::Error::Api(s)) => (s.code, s.reason),
                Err(e) => panic!("not an API error: {e}"),
                Ok(_) => panic!("succeeded"),
            }
        }
        let api = FakeApi::start();
        api.apply("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
            let leases: Api<Lease> = Api::namespaced(client.clone(), "weir-system");
            let mut events = leases.watch(&WatchParams::default().timeout(5), "0").await.unwrap().boxed();
            assert!(leases.get_opt("l").await.unwrap().is_none());
            assert_eq!(code(leases.get("l").await), (404, "NotFound".to_string()));

            let lease = Lease {
                metadata: kube::api::ObjectMeta { name: Some("l".into()), ..Default::default() },
                spec: Some(LeaseSpec { holder_identity: Some("a".into()), ..Default::default() }),
            };
            let pp = PostParams::default();
            let created = leases.create(&pp, &lease).await.unwrap();
            assert_eq!(created.metadata.namespace.as_deref(), Some("weir-system"));
            assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
            assert_eq!(code(leases.create(&pp, &lease).await), (409, "AlreadyExists".to_string()));

            let mut next = created.clone();
            next.spec.as_mut().unwrap().holder_identity = Some("b".into());
            let replaced = leases.replace("l", &pp, &next).await.unwrap();
            assert_ne!(replaced.metadata.resource_version, created.metadata.resource_version);
            assert_eq!(replaced.metadata.uid, created.metadata.uid);
            // `next` still carries the first resourceVersion: stale.
            assert_eq!(code(leases.replace("l", &pp, &next).await), (409, "Conflict".to_string()));
            let got = leases.get("l").await.unwrap();
            assert_eq!(got.spec.unwrap().holder_identity.as_deref(), Some("b"));

            let holders: Vec<(String, String)> = events
                .by_ref()
                .take(2)
                .map(|e| match e.unwrap() {
                    WatchEvent::Added(l) => ("ADDED".into(), l.spec.unwrap().holder_identity.unwrap()),
                    WatchEvent::Modified(l) => ("MODIFIED".into(), l.spec.unwrap().holder_identity.unwrap()),
                    other => panic!("{other:?}"),
                })
                .collect()
                .await;
            assert_eq!(holders, [("ADDED".into(), "a".into()), ("MODIFIED".into(), "b".into())]);

            let services: Api<Service> = Api::namespaced(client.clone(), "default");
            let pp = PatchParams::default();
            // Through /status only the status changes.
            let patch = serde_json::json!({
                "spec": {"type": "ClusterIP"},
                "status": {"loadBalancer": {"ingress": [{"ip": "192.168.50.1"}]}},
            });
            let web = services.patch_status("web", &pp, &Patch::Merge(&patch)).await.unwrap();
            assert_eq!(web.spec.as_ref().unwrap().type_.as_deref(), Some("LoadBalancer"));
            assert_eq!(crate::lb::ingress_ips(&web), [std::net::Ipv4Addr::new(192, 168, 50, 1)]);
            // Through the object all but the status.
            let patch = serde_json::json!({"metadata": {"labels": {"x": "y"}}, "status": null});
            let web = services.patch("web", &pp, &Patch::Merge(&patch)).await.unwrap();
            assert_eq!(web.metadata.labels.as_ref().unwrap()["x"], "y");
            assert_eq!(crate::lb::ingress_ips(&web).len(), 1);
            // A stale resourceVersion in a patch is a failed precondition.
            let patch = serde_json::json!({"metadata": {"resourceVersion": "1"}, "spec": {"type": "ClusterIP"}});
            assert_eq!(code(services.patch("web", &pp, &Patch::Merge(&patch)).await), (409, "Conflict".into()));
            let strategic = Patch::Strategic(serde_json::json!({"spec": {}}));
            assert_eq!(code(services.patch("web", &pp, &strategic).await).0, 415);
            assert_eq!(code(services.patch_status("nope", &pp, &Patch::Merge(&patch)).await).0, 404);
        });
        // Kept by `apply` when a document has no status.
        api.apply(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {type: ClusterIP}\n",
        )
        .unwrap();
        let web = api.get("Service", "default", "web").unwrap();
        assert_eq!(web["status"]["loadBalancer"]["ingress"][0]["ip"], "192.168.50.1");
        let writes: Vec<(String, u16)> = api.writes().into_iter().map(|w| (w.verb, w.code)).collect();
        let want: Vec<(String, u16)> = [
            ("POST", 201),
            ("POST", 409),
            ("PUT", 200),
            ("PUT", 409),
            ("PATCH", 200),
            ("PATCH", 200),
            ("PATCH", 409),
            ("PATCH", 415),
            ("PATCH", 404),
        ]
        .iter()
        .map(|(v, c)| (v.to_string(), *c))
        .collect();
        assert_eq!(writes, want);
    }
}
