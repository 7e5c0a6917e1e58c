//! A fake Kubernetes API server for tests: plain HTTP/1.1 on 127.0.0.1,
//! serving LIST and WATCH of exactly the kinds weir-control reads
//! (Services, EndpointSlices, Pods, Namespaces, Nodes, NetworkPolicies and
//! weir's Network, EndpointGroup, Policy), so the real kube client and
//! `kube::runtime::watcher` can be driven end to end.
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
//! Not served: other verbs and kinds (404 / 405), paging (`limit` is
//! ignored: one page), field selectors, streaming lists.
//!
//! The test side is synchronous: [`FakeApi::apply`], [`FakeApi::delete`],
//! [`FakeApi::compact`] (drop the history: the next resume gets 410),
//! [`FakeApi::kill_watches`] (end every open watch), [`FakeApi::fail`]
//! (answer 403 for one kind), and counters of what clients asked for.
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
}

const KINDS: [KindInfo; 9] = [
    KindInfo { kind: "Service", api_version: "v1", plural: "services", namespaced: true },
    KindInfo { kind: "EndpointSlice", api_version: "discovery.k8s.io/v1", plural: "endpointslices", namespaced: true },
    KindInfo { kind: "Pod", api_version: "v1", plural: "pods", namespaced: true },
    KindInfo { kind: "Namespace", api_version: "v1", plural: "namespaces", namespaced: false },
    KindInfo { kind: "Node", api_version: "v1", plural: "nodes", namespaced: false },
    KindInfo {
        kind: "NetworkPolicy",
        api_version: "networking.k8s.io/v1",
        plural: "networkpolicies",
        namespaced: true,
    },
    KindInfo { kind: "Network", api_version: "weir.dev/v1alpha1", plural: "networks", namespaced: false },
    KindInfo { kind: "EndpointGroup", api_version: "weir.dev/v1alpha1", plural: "endpointgroups", namespaced: false },
    KindInfo { kind: "Policy", api_version: "weir.dev/v1alpha1", plural: "policies", namespaced: false },
];

/// The kinds served, by `kind` name.
pub const KIND_NAMES: [&str; 9] =
    ["Service", "EndpointSlice", "Pod", "Namespace", "Node", "NetworkPolicy", "Network", "EndpointGroup", "Policy"];

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
    pub lists: [u64; 9],
    pub watches: [u64; 9],
    /// Watches answered 410 Gone.
    pub gone: u64,
    /// BOOKMARK events sent.
    pub bookmarks: u64,
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
}

impl State {
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
            st.rv += 1;
            let rv = st.rv;
            let key = (kind, ns, name);
            let old = st.objects.get(&key).cloned();
            let meta = obj["metadata"].as_object_mut().ok_or("metadata is not a map")?;
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            let uid = old.as_ref().and_then(|o| o.pointer("/metadata/uid")).cloned();
            meta.entry("uid").or_insert_with(|| uid.unwrap_or_else(|| json!(format!("uid-{rv}"))));
            st.objects.insert(key, obj.clone());
            st.publish(Change { rv, kind, old, new: obj, deleted: false });
        }
        Ok(st.rv)
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

    /// While `on`, LIST and WATCH of `kind` answer 403 Forbidden (a
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
    let meta = obj.get_mut("metadata").and_then(Value::as_object_mut).ok_or_else(|| format!("{kind}: no metadata"))?;
    let name = meta.get("name").and_then(Value::as_str).filter(|n| !n.is_empty());
    let name = name.ok_or_else(|| format!("{kind}: no metadata.name"))?.to_string();
    let ns = if info.namespaced {
        let ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("default").to_string();
        meta.insert("namespace".into(), json!(ns));
        ns
    } else {
        meta.remove("namespace");
        String::new()
    };
    Ok((k, ns, name, obj))
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
}

async fn read_request(rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Request> {
    let mut head = String::new();
    let mut limited = rd.take(64 * 1024);
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
    let first = head.lines().next()?;
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
    Some(Request { method, path: percent_decode(path), query })
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

/// The kind (and namespace, for `/namespaces/NS/...` paths) of a
/// collection path.
fn route(path: &str) -> Option<(usize, Option<String>)> {
    for (i, k) in KINDS.iter().enumerate() {
        let Some(rest) = path.strip_prefix(&k.path_prefix()) else { continue };
        if rest.strip_prefix('/') == Some(k.plural) {
            return Some((i, None));
        }
        if k.namespaced {
            if let Some((ns, plural)) = rest.strip_prefix("/namespaces/").and_then(|r| r.split_once('/')) {
                if plural == k.plural && !ns.is_empty() {
                    return Some((i, Some(ns.to_string())));
                }
            }
        }
    }
    None
}

async fn respond(wr: &mut OwnedWriteHalf, code: u16, body: &Value) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        403 => "Forbidden",
        405 => "Method Not Allowed",
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
    if req.method != "GET" {
        return respond(wr, 405, &status(405, "MethodNotAllowed", &format!("{} is not served", req.method))).await;
    }
    let Some((k, namespace)) = route(&req.path) else {
        return respond(wr, 404, &status(404, "NotFound", &format!("{} is not served", req.path))).await;
    };
    let info = &KINDS[k];
    if lock().failing.contains(&k) {
        let message = format!("{} is forbidden: the fake API refuses it", info.plural);
        return respond(wr, 403, &status(403, "Forbidden", &message)).await;
    }
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
}
