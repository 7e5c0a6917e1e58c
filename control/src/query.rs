//! weir-control's query socket (`--control-socket`, mode 0600): what
//! weir-control knows that the dataplane does not — the Contiv model as
//! objects (networks, endpoint groups, policies and their rules) and the
//! agent's own state — for `weirctl net list`, `group list`, `rule list`
//! and `control-status`.
//!
//! The protocol is the dataplane's (`weir_dataplane::mgmt`): one JSON
//! [`QueryRequest`] per line, one JSON [`QueryReply`] line back, any
//! number per connection. It only reads: answers come from the latest
//! snapshot of the source's objects ([`Shared`]), never from the push
//! loop, so a query cannot slow a push. A request that does not parse
//! gets an error reply and the connection stays usable; a line over
//! [`MAX_REQUEST`] bytes gets an error reply and the connection is
//! closed. Connections are served on their own threads, at most
//! [`MAX_CONNECTIONS`] at a time.
//!
//! [`call`] is the client side, for either socket: it tells a socket
//! nobody answers on ([`CallError::Unreachable`]) from one that broke
//! off ([`CallError::Failed`]).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use weir_dataplane::api::{Reply, Request};
use weir_dataplane::tables::acl::{proto_name, Verdict};

use crate::metrics::Metrics;
use crate::model::ClusterObjects;
use crate::policy::{contiv_rank, RuleDirection, GROUP_LABEL, NETWORK_LABEL};
use crate::source::Shared;

/// Where weir-control answers queries unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/weir/control.sock";
/// Longest request line accepted; requests are a command and a name.
pub const MAX_REQUEST: usize = 16 << 10;
/// Connections served at once; one more is answered with an error.
pub const MAX_CONNECTIONS: usize = 32;
/// A connection that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(60);
/// How long the status waits for the dataplane's hello.
const DATAPLANE_TIMEOUT: Duration = Duration::from_secs(2);
/// weir has no tenants; Contiv's default tenant is shown for every object.
pub const TENANT: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum QueryRequest {
    /// Contiv networks (weir's `Network` resources).
    Networks {},
    /// Endpoint groups.
    Groups {},
    /// Policies with their rules; `name`: only that one (an error if
    /// there is none).
    Policies {
        #[serde(default)]
        name: Option<String>,
    },
    /// The agent: its source, the objects' version, the dataplane's
    /// control generation, its push counters.
    Status {},
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum QueryReply {
    Networks { version: u64, networks: Vec<NetworkView> },
    Groups { version: u64, groups: Vec<GroupView> },
    Policies { version: u64, policies: Vec<PolicyView> },
    Status(Box<ControlStatus>),
    Error { message: String },
}

/// A pod that belongs to a network or a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    /// `namespace/name`.
    pub name: String,
    pub ip: Option<String>,
    pub node: Option<String>,
}

/// One Contiv network, with the columns of `netctl net ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkView {
    pub tenant: String,
    pub name: String,
    /// Always `data` (Contiv's other type, `infra`, has no meaning here).
    pub nw_type: String,
    /// Always `vxlan`.
    pub encap: String,
    /// The VXLAN network identifier (netctl's "Packet tag").
    pub vni: u32,
    pub subnet: String,
    pub gateway: String,
    /// Pods labelled `io.contiv.network: <name>`.
    pub pods: Vec<PodRef>,
}

/// One endpoint group, with the columns of `netctl group ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub tenant: String,
    pub name: String,
    pub network: String,
    pub policies: Vec<String>,
    /// Pods labelled `io.contiv.net-group: <name>`.
    pub pods: Vec<PodRef>,
}

/// One policy and its rules, in the order weir tries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    pub tenant: String,
    pub name: String,
    /// The groups it is attached to.
    pub groups: Vec<String>,
    pub rules: Vec<RuleView>,
}

/// One rule with the columns of `netctl policy rule-ls`: the peer (group,
/// network or address) is the source of an `in` rule and the
/// destination of an `out` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    pub id: u32,
    pub direction: RuleDirection,
    /// Higher first, as in Contiv.
    pub priority: u32,
    pub group: Option<String>,
    pub network: Option<String>,
    /// An address or a prefix.
    pub ip: Option<String>,
    /// `tcp`, `udp`, `icmp`, `sctp` or a number; none: any.
    pub protocol: Option<String>,
    /// Destination port; 0: any.
    pub port: u16,
    pub action: Verdict,
    /// The id of the compiled rule in the dataplane (`weirctl rules`
    /// shows its hits).
    pub acl_id: String,
}

/// `status`: the agent as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlStatus {
    /// Where the objects come from.
    pub source: String,
    /// Every kind listed once (tables are pushed only then).
    pub ready: bool,
    /// Bumped on every change of the objects.
    pub objects_version: u64,
    /// How many objects of each kind.
    pub objects: BTreeMap<String, usize>,
    /// Why the Contiv model is refused, if it is (nothing is pushed then).
    pub contiv_error: Option<String>,
    /// `--node`, else the dataplane's node name.
    pub node: Option<String>,
    pub dataplane: DataplaneStatus,
    /// weir-control's push counters since it started.
    pub pushes: Option<PushCounts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneStatus {
    pub socket: String,
    /// It answered a hello just now.
    pub reachable: bool,
    pub node: Option<String>,
    /// Changes at every start of the dataplane.
    pub instance: Option<u64>,
    /// The control generation its tables were built from: the last push
    /// it applied (none: not synced by any weir-control yet).
    pub control_generation: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushCounts {
    pub resyncs: u64,
    pub updates: u64,
    pub changes: u64,
    pub errors: u64,
}

/// What the status tells besides the objects.
#[derive(Clone)]
pub struct Context {
    pub source: String,
    /// `--node`, if given.
    pub node: Option<String>,
    /// The dataplane's management socket (asked for a hello by `status`).
    pub dataplane: PathBuf,
    pub metrics: Option<Arc<Metrics>>,
}

/// How weir-control's arguments name its source, for the status.
pub fn source_name(kube_url: Option<&str>, kube: bool, cluster_file: Option<&Path>) -> String {
    match (kube_url, kube, cluster_file) {
        (Some(url), _, _) => format!("kubernetes API at {url}"),
        (None, true, _) => "kubernetes API".to_string(),
        (None, false, Some(f)) => format!("cluster file {}", f.display()),
        (None, false, None) => "embedded demo cluster".to_string(),
    }
}

/// The running server; dropping it stops accepting and removes the socket.
pub struct QueryServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl QueryServer {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for QueryServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accepting thread so it sees `stop`.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` (mode 0600; its directory created) and answers queries on
/// a thread of its own. Refuses to replace a socket a live process still
/// answers on; a stale one is removed.
pub fn serve(path: &Path, shared: Arc<Shared>, ctx: Context) -> Result<QueryServer, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("query socket: cannot create {}: {e}", dir.display()))?;
    }
    if path.symlink_metadata().is_ok() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!("query socket {} is in use by another process", path.display()));
        }
        std::fs::remove_file(path).map_err(|e| format!("query socket: cannot remove stale {}: {e}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("query socket: cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("query socket: cannot chmod {}: {e}", path.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let live = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("weir-query".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::Acquire) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                if live.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    live.fetch_sub(1, Ordering::AcqRel);
                    let busy = QueryReply::Error { message: format!("busy: {MAX_CONNECTIONS} connections open") };
                    let _ = write_reply(&mut conn, &busy);
                    continue;
                }
                let (shared, ctx, done) = (shared.clone(), ctx.clone(), live.clone());
                let spawned = std::thread::Builder::new().name("weir-query-conn".into()).spawn(move || {
                    serve_conn(conn, &shared, &ctx);
                    done.fetch_sub(1, Ordering::AcqRel);
                });
                if spawned.is_err() {
                    live.fetch_sub(1, Ordering::AcqRel); // the connection was dropped with the closure
                }
            }
        })
        .map_err(|e| format!("query socket: cannot start its thread: {e}"))?;
    Ok(QueryServer { path: path.to_path_buf(), stop })
}

fn write_reply(conn: &mut impl Write, reply: &QueryReply) -> std::io::Result<()> {
    let text = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    writeln!(conn, "{text}")?;
    conn.flush()
}

fn serve_conn(conn: UnixStream, shared: &Shared, ctx: &Context) {
    let _ = conn.set_read_timeout(Some(IDLE));
    let Ok(write_half) = conn.try_clone() else { return };
    let mut out = std::io::BufWriter::new(write_half);
    let mut input = BufReader::new(conn);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut input).take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() > MAX_REQUEST {
            let message = format!("request refused: longer than {MAX_REQUEST} bytes");
            let _ = write_reply(&mut out, &QueryReply::Error { message });
            return; // the rest of the line cannot be told from the next request
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reply = match serde_json::from_slice::<QueryRequest>(&line) {
            Ok(req) => answer(&req, shared, ctx),
            Err(e) => QueryReply::Error {
                message: format!(
                    "bad request: {e} (want one JSON object per line: {{\"cmd\": \"networks\" | \"groups\" | \"policies\" | \"status\"}})"
                ),
            },
        };
        if write_reply(&mut out, &reply).is_err() {
            return;
        }
    }
}

/// The answer to one request, from the objects as they are now.
pub fn answer(req: &QueryRequest, shared: &Shared, ctx: &Context) -> QueryReply {
    match req {
        QueryRequest::Status {} => QueryReply::Status(Box::new(status(shared, ctx))),
        QueryRequest::Networks {} => {
            with_objects(shared, |version, o| QueryReply::Networks { version, networks: networks(o) })
        }
        QueryRequest::Groups {} => with_objects(shared, |version, o| QueryReply::Groups { version, groups: groups(o) }),
        QueryRequest::Policies { name } => with_objects(shared, |version, o| {
            let mut policies = policies(o);
            if let Some(name) = name {
                policies.retain(|p| &p.name == name);
                if policies.is_empty() {
                    return QueryReply::Error { message: format!("policy {name:?}: there is none") };
                }
            }
            QueryReply::Policies { version, policies }
        }),
    }
}

/// `f` of the objects and their version, or an error while the source is
/// not ready.
fn with_objects(shared: &Shared, f: impl FnOnce(u64, &ClusterObjects) -> QueryReply) -> QueryReply {
    match shared.snapshot() {
        Some((version, objs)) => f(version, &objs),
        None => QueryReply::Error {
            message: "no objects yet: the source has not listed every kind (see `weirctl control-status`)".into(),
        },
    }
}

fn name_of(m: &kube::api::ObjectMeta) -> String {
    m.name.clone().unwrap_or_default()
}

/// The pods whose label `label` is `value`, by namespace and name.
fn pods_labelled(objs: &ClusterObjects, label: &str, value: &str) -> Vec<PodRef> {
    let mut v: Vec<PodRef> = objs
        .pods
        .iter()
        .filter(|p| p.metadata.labels.as_ref().and_then(|l| l.get(label)).is_some_and(|v| v == value))
        .map(|p| PodRef {
            name: crate::model::ns_name(&p.metadata),
            ip: p.status.as_ref().and_then(|s| s.pod_ip.clone()),
            node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The networks, by name.
pub fn networks(objs: &ClusterObjects) -> Vec<NetworkView> {
    let mut v: Vec<NetworkView> = objs
        .networks
        .iter()
        .map(|n| {
            let name = name_of(&n.metadata);
            NetworkView {
                tenant: TENANT.into(),
                pods: pods_labelled(objs, NETWORK_LABEL, &name),
                name,
                nw_type: "data".into(),
                encap: "vxlan".into(),
                vni: n.spec.vni,
                subnet: n.spec.subnet.clone(),
                gateway: n.spec.gateway.clone(),
            }
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The endpoint groups, by name.
pub fn groups(objs: &ClusterObjects) -> Vec<GroupView> {
    let mut v: Vec<GroupView> = objs
        .endpoint_groups
        .iter()
        .map(|g| {
            let name = name_of(&g.metadata);
            GroupView {
                tenant: TENANT.into(),
                pods: pods_labelled(objs, GROUP_LABEL, &name),
                name,
                network: g.spec.network.clone(),
                policies: g.spec.policies.clone(),
            }
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The policies, by name; each one's rules in the order weir tries them
/// (higher priority first, on a tie deny before allow, then as written).
pub fn policies(objs: &ClusterObjects) -> Vec<PolicyView> {
    let mut v: Vec<PolicyView> = objs
        .policies
        .iter()
        .map(|p| {
            let name = name_of(&p.metadata);
            let mut groups: Vec<String> = objs
                .endpoint_groups
                .iter()
                .filter(|g| g.spec.policies.contains(&name))
                .map(|g| name_of(&g.metadata))
                .collect();
            groups.sort();
            let mut rules: Vec<RuleView> = p
                .spec
                .rules
                .iter()
                .map(|r| {
                    let (group, network, ip) = match r.direction {
                        RuleDirection::In => (&r.from_group, &r.from_network, &r.from_ip),
                        RuleDirection::Out => (&r.to_group, &r.to_network, &r.to_ip),
                    };
                    RuleView {
                        id: r.id,
                        direction: r.direction,
                        priority: r.priority,
                        group: group.clone(),
                        network: network.clone(),
                        ip: ip.map(|c| if c.0.len() == 32 { c.0.addr().to_string() } else { c.0.to_string() }),
                        protocol: r.protocol.map(|p| proto_name(p.number())),
                        port: r.port.unwrap_or(0),
                        action: r.action,
                        acl_id: format!("contiv:{name}/{}", r.id),
                    }
                })
                .collect();
            rules.sort_by_key(|r| (contiv_rank(r.priority), r.action == Verdict::Allow));
            PolicyView { tenant: TENANT.into(), name, groups, rules }
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn status(shared: &Shared, ctx: &Context) -> ControlStatus {
    let snapshot = shared.snapshot();
    let mut objects = BTreeMap::new();
    let mut contiv_error = None;
    if let Some((_, o)) = &snapshot {
        for (kind, n) in [
            ("services", o.services.len()),
            ("endpoint_slices", o.endpoint_slices.len()),
            ("pods", o.pods.len()),
            ("namespaces", o.namespaces.len()),
            ("nodes", o.nodes.len()),
            ("network_policies", o.network_policies.len()),
            ("networks", o.networks.len()),
            ("endpoint_groups", o.endpoint_groups.len()),
            ("policies", o.policies.len()),
        ] {
            objects.insert(kind.to_string(), n);
        }
        contiv_error =
            crate::crd::contiv_model(&o.networks, &o.endpoint_groups, &o.policies).and_then(|m| m.validate()).err();
    }
    let mut dp = DataplaneStatus {
        socket: ctx.dataplane.display().to_string(),
        reachable: false,
        node: None,
        instance: None,
        control_generation: None,
        error: None,
    };
    match call::<_, Reply>(&ctx.dataplane, &Request::Hello, DATAPLANE_TIMEOUT) {
        Ok(Reply::Hello { node, instance, control_generation, .. }) => {
            dp.reachable = true;
            dp.node = Some(node);
            dp.instance = Some(instance);
            dp.control_generation = control_generation;
        }
        Ok(Reply::Error { message }) => dp.error = Some(message),
        Ok(other) => dp.error = Some(format!("unexpected answer to hello: {other:?}")),
        Err(e) => dp.error = Some(e.to_string()),
    }
    let pushes = ctx.metrics.as_ref().map(|m| PushCounts {
        resyncs: m.resyncs.load(Ordering::Relaxed),
        updates: m.updates.load(Ordering::Relaxed),
        changes: m.changes.load(Ordering::Relaxed),
        errors: m.errors.load(Ordering::Relaxed),
    });
    ControlStatus {
        source: ctx.source.clone(),
        ready: snapshot.is_some(),
        objects_version: snapshot.as_ref().map_or(shared.version(), |(v, _)| *v),
        objects,
        contiv_error,
        node: ctx.node.clone().or_else(|| dp.node.clone()),
        dataplane: dp,
        pushes,
    }
}

/// Why a [`call`] got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Nobody answers on the socket (missing, refused, not permitted).
    Unreachable(String),
    /// Connected, but the exchange broke off or the answer did not parse.
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(m) | CallError::Failed(m) => f.write_str(m),
        }
    }
}

/// Sends one JSON line to the Unix socket `path` and reads one JSON line
/// back, each way within `timeout`. Works for the dataplane's management
/// socket and for this query socket.
pub fn call<Q: Serialize, R: DeserializeOwned>(path: &Path, req: &Q, timeout: Duration) -> Result<R, CallError> {
    let conn = UnixStream::connect(path)
        .map_err(|e| CallError::Unreachable(format!("cannot connect to {}: {e}", path.display())))?;
    let failed = |what: &str, e: &dyn std::fmt::Display| CallError::Failed(format!("{what} {}: {e}", path.display()));
    conn.set_read_timeout(Some(timeout)).map_err(|e| failed("set a timeout on", &e))?;
    conn.set_write_timeout(Some(timeout)).map_err(|e| failed("set a timeout on", &e))?;
    let text = serde_json::to_string(req).map_err(|e| failed("encode a request for", &e))?;
    (&conn).write_all(format!("{text}\n").as_bytes()).map_err(|e| failed("write to", &e))?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).map_err(|e| failed("read from", &e))?;
    if line.is_empty() {
        return Err(CallError::Failed(format!("{} closed the connection without an answer", path.display())));
    }
    serde_json::from_str(&line)
        .map_err(|e| CallError::Failed(format!("bad answer from {}: {e}: {line:?}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::DEMO_CLUSTER;

    fn demo() -> Arc<Shared> {
        let shared = Shared::new();
        shared.set(ClusterObjects::from_yaml(DEMO_CLUSTER).unwrap());
        shared
    }

    fn ctx(dataplane: &Path) -> Context {
        Context {
            source: "embedded demo cluster".into(),
            node: Some("node1".into()),
            dataplane: dataplane.to_path_buf(),
            metrics: Some(Metrics::new()),
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-query-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_demo_model_as_netctl_sees_it() {
        let (_, objs) = demo().snapshot().unwrap();
        let n = networks(&objs);
        assert_eq!(n.len(), 1);
        assert_eq!(
            (n[0].name.as_str(), n[0].vni, n[0].subnet.as_str(), n[0].gateway.as_str()),
            ("poc-net", 21, "21.1.1.0/24", "21.1.1.1")
        );
        let pods: Vec<&str> = n[0].pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(pods, ["default/noping-1", "default/poc-1"]);
        let g = groups(&objs);
        let names: Vec<(&str, &[String])> = g.iter().map(|g| (g.name.as_str(), g.policies.as_slice())).collect();
        assert_eq!(names, [("noping-epg", &["icmpPol".to_string()][..]), ("poc-epg", &[][..])]);
        assert_eq!(
            g[0].pods,
            [PodRef { name: "default/noping-1".into(), ip: Some("21.1.1.3".into()), node: Some("node2".into()) }]
        );
        let p = policies(&objs);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].groups, ["noping-epg"]);
        let r = &p[0].rules[0];
        assert_eq!(
            (r.id, r.direction, r.priority, r.protocol.as_deref(), r.port, r.action),
            (1, RuleDirection::In, 1, Some("icmp"), 0, Verdict::Deny)
        );
        assert_eq!(r.acl_id, "contiv:icmpPol/1");
    }

    #[test]
    fn rules_are_listed_in_the_order_weir_tries_them() {
        let text = format!(
            "{DEMO_CLUSTER}---\napiVersion: weir.dev/v1alpha1\nkind: Policy\nmetadata: {{name: web}}\nspec:\n  rules:\n  \
             - {{id: 1, direction: in, priority: 1, action: deny}}\n  \
             - {{id: 2, direction: in, priority: 10, protocol: tcp, port: 80, fromIp: 10.1.0.0/16, action: allow}}\n  \
             - {{id: 3, direction: out, priority: 10, toGroup: poc-epg, action: allow}}\n  \
             - {{id: 4, direction: out, priority: 10, toNetwork: poc-net, action: deny}}\n  \
             - {{id: 5, direction: in, priority: 1, fromIp: 10.1.0.9, action: allow}}\n"
        );
        let objs = ClusterObjects::from_yaml(&text).unwrap();
        let p = policies(&objs);
        let web = p.iter().find(|p| p.name == "web").unwrap();
        let order: Vec<u32> = web.rules.iter().map(|r| r.id).collect();
        assert_eq!(order, [4, 2, 3, 1, 5]);
        let by_id = |id: u32| web.rules.iter().find(|r| r.id == id).unwrap();
        assert_eq!(
            (by_id(2).ip.as_deref(), by_id(2).port, by_id(2).protocol.as_deref()),
            (Some("10.1.0.0/16"), 80, Some("tcp"))
        );
        assert_eq!(by_id(3).group.as_deref(), Some("poc-epg"));
        assert_eq!(by_id(4).network.as_deref(), Some("poc-net"));
        assert_eq!(by_id(5).ip.as_deref(), Some("10.1.0.9"));
        assert!(web.groups.is_empty());
    }

    #[test]
    fn answers_over_the_socket_and_refuses_what_is_wrong() {
        let dir = tmp("serve");
        let path = dir.join("sub/control.sock");
        let server = serve(&path, demo(), ctx(&dir.join("no-dataplane.sock"))).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let t = Duration::from_secs(5);

        let r: QueryReply = call(&path, &QueryRequest::Networks {}, t).unwrap();
        let QueryReply::Networks { version, networks } = r else { panic!("{r:?}") };
        assert_eq!((version, networks[0].name.as_str()), (1, "poc-net"));
        let r: QueryReply = call(&path, &QueryRequest::Policies { name: Some("icmpPol".into()) }, t).unwrap();
        assert!(matches!(&r, QueryReply::Policies { policies, .. } if policies.len() == 1), "{r:?}");
        let r: QueryReply = call(&path, &QueryRequest::Policies { name: Some("nosuch".into()) }, t).unwrap();
        assert_eq!(r, QueryReply::Error { message: "policy \"nosuch\": there is none".into() });

        // The status works without a dataplane, and says so.
        let r: QueryReply = call(&path, &QueryRequest::Status {}, t).unwrap();
        let QueryReply::Status(s) = r else { panic!("{r:?}") };
        assert!(s.ready && s.objects["pods"] == 6 && s.contiv_error.is_none(), "{s:?}");
        assert!(
            !s.dataplane.reachable && s.dataplane.error.as_deref().unwrap_or("").contains("cannot connect"),
            "{s:?}"
        );
        assert_eq!(s.node.as_deref(), Some("node1"));
        assert_eq!(s.pushes, Some(PushCounts { resyncs: 0, updates: 0, changes: 0, errors: 0 }));

        // Raw lines: garbage and an unknown command get errors and the
        // connection goes on; a line over the limit is refused and closed.
        let conn = UnixStream::connect(&path).unwrap();
        conn.set_read_timeout(Some(t)).unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut ask = |line: &[u8]| {
            (&conn).write_all(line).unwrap();
            let mut l = String::new();
            reader.read_line(&mut l).unwrap();
            l
        };
        assert!(ask(b"not json\n").contains("bad request"));
        assert!(ask(b"{\"cmd\":\"reboot\"}\n").contains("bad request"));
        assert!(ask(b"{\"cmd\":\"groups\"}\n").contains("noping-epg"));
        let mut long = vec![b' '; MAX_REQUEST + 10];
        long.push(b'\n');
        assert!(ask(&long).contains("longer than"));
        // Closed: the next request gets no answer (EOF, or a reset for the
        // bytes of the long line the server never read).
        let _ = (&conn).write_all(b"{\"cmd\":\"groups\"}\n");
        let mut l = String::new();
        let _ = reader.read_line(&mut l);
        assert_eq!(l, "", "answered after an oversize line");

        // A second server on a live socket is refused; a stale one is replaced.
        let e = serve(&path, demo(), ctx(&dir)).err().unwrap();
        assert!(e.contains("in use"), "{e}");
        drop(server);
        assert!(!path.exists(), "the socket goes with the server");
        let again = serve(&path, demo(), ctx(&dir)).unwrap();
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn not_ready_answers_with_an_error_but_status_works() {
        let shared = Shared::new();
        let c = ctx(Path::new("/nonexistent/dp.sock"));
        let r = answer(&QueryRequest::Groups {}, &shared, &c);
        assert!(matches!(&r, QueryReply::Error { message } if message.contains("not listed")), "{r:?}");
        let QueryReply::Status(s) = answer(&QueryRequest::Status {}, &shared, &c) else { panic!() };
        assert!(!s.ready && s.objects.is_empty());
    }

    #[test]
    fn an_inconsistent_contiv_model_is_reported() {
        let shared = Shared::new();
        let bad = DEMO_CLUSTER
            .replace("spec: {network: poc-net, policies: [icmpPol]}", "spec: {network: poc-net, policies: [gone]}");
        assert_ne!(bad, DEMO_CLUSTER);
        shared.set(ClusterObjects::from_yaml(&bad).unwrap());
        let QueryReply::Status(s) = answer(&QueryRequest::Status {}, &shared, &ctx(Path::new("/nonexistent"))) else {
            panic!()
        };
        assert!(s.contiv_error.as_deref().unwrap_or("").contains("gone"), "{s:?}");
    }

    #[test]
    fn call_tells_unreachable_from_failed() {
        let dir = tmp("call");
        let e = call::<_, QueryReply>(&dir.join("none.sock"), &QueryRequest::Status {}, Duration::from_secs(1))
            .unwrap_err();
        assert!(matches!(e, CallError::Unreachable(_)), "{e:?}");
        // A socket that closes without answering.
        let path = dir.join("mute.sock");
        let l = UnixListener::bind(&path).unwrap();
        let h = std::thread::spawn(move || drop(l.accept()));
        let e = call::<_, QueryReply>(&path, &QueryRequest::Status {}, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, CallError::Failed(_)), "{e:?}");
        h.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let r: QueryRequest = serde_json::from_str(r#"{"cmd":"policies","name":"icmpPol"}"#).unwrap();
        assert_eq!(r, QueryRequest::Policies { name: Some("icmpPol".into()) });
        let r: QueryRequest = serde_json::from_str(r#"{"cmd":"policies"}"#).unwrap();
        assert_eq!(r, QueryRequest::Policies { name: None });
        assert!(serde_json::from_str::<QueryRequest>(r#"{"cmd":"networks","x":1}"#).is_err());
        assert!(serde_json::from_str::<QueryRequest>(r#"{"cmd":"policies","nmae":"icmpPol"}"#).is_err());
        assert_eq!(serde_json::to_string(&QueryRequest::Status {}).unwrap(), r#"{"cmd":"status"}"#);
        let (_, objs) = demo().snapshot().unwrap();
        let reply = QueryReply::Groups { version: 3, groups: groups(&objs) };
        let text = serde_json::to_string(&reply).unwrap();
        assert!(
            text.starts_with(r#"{"reply":"groups","version":3,"groups":[{"tenant":"default","name":"noping-epg""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<QueryReply>(&text).unwrap(), reply);
    }
}
