//! weir-control's CNI server: answers weir-cni on a Unix socket, owns the
//! node's attachments (IPAM state on disk, [`crate::ipam`]) and sets them
//! up: an address from the node's pod CIDR (or a Contiv network's subnet),
//! a pod port on weir-dataplane (a TAP moved into the pod for kernel pods,
//! a vhost-user socket for DPDK pods) and the pod's side.
//!
//! Promises:
//! - an attachment is recorded on disk before its port exists and
//!   forgotten only after its port is gone or the dataplane is gone, so a
//!   crash at any point leaves a record that DEL or GC cleans up;
//! - DEL is idempotent and best effort: an unknown attachment, a missing
//!   port, a missing namespace or an unreachable dataplane still release
//!   the address; ports named `cni-…` that no attachment owns are removed
//!   from the dataplane by the reconcile loop (so nothing leaks even when
//!   the dataplane was away during a DEL);
//! - when the dataplane's `instance` changes (it restarted), every port of
//!   a recorded attachment is added again and, for kernel pods whose
//!   namespace still exists, the new TAP is moved in and configured again;
//!   vhost-user sockets are made again at the same path;
//! - one request at a time: requests and the reconcile loop share one lock.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_dataplane::api::{Reply, Request, Stats, PROTOCOL_VERSION};
use weir_dataplane::config::{PodAttachment, PortConfig, PortKind};
use weir_dataplane::mgmt;
use weir_dataplane::tables::cidr::Ipv4Cidr;

use super::podside::{self, PodIface};
use super::proto::{AttachInfo, AttachParams, CniReply, CniRequest, PodPort, MAX_LINE};
use super::spec::{self, code, CniError, NetConf, ValidAttachment, VhostMode};
use crate::ipam::{self, Record, Store};
use crate::model::{ClusterObjects, NETWORK_LABEL};
use crate::source::Shared;

/// Dataplane ports of CNI attachments are named `cni-` and 10 hex digits
/// (14 characters: DPDK's net_tap fails to set up queues of a device whose
/// name, `net_tap_` and the port name, is longer than 22); the prefix is
/// weir-control's (the reconcile loop removes such ports that no
/// attachment owns).
pub const PORT_PREFIX: &str = "cni-";
/// The pod annotation that asks for a vhost-user port (`vhost-user`) or a
/// kernel interface (`tap`, the default).
pub const PORT_ANNOTATION: &str = "weir.dev/port";
/// The pod annotation naming a weir Network (Contiv network).
pub const NETWORK_ANNOTATION: &str = "weir.dev/network";
/// The pod annotation choosing the vhost-user mode (`server`: weir listens; `client`).
pub const VHOST_MODE_ANNOTATION: &str = "weir.dev/vhost-mode";
/// The pods' MTU when the dataplane has no overlay to derive it from.
pub const DEFAULT_MTU: u16 = 1450;

/// One attachment (container ID + interface name) as weir-control keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    /// The CNI network (the configuration's `name`).
    pub cni_network: String,
    /// weir's network: "default" or a Contiv network.
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    pub mtu: u16,
    pub kind: PodPort,
    /// The dataplane port.
    pub port: String,
    /// Kernel pods: the TAP's name in weir's namespace, before it moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// vhost-user: the socket path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// vhost-user: weir listens on the socket (else the pod does).
    #[serde(default)]
    pub vhost_server: bool,
    /// vhost-user: the device-info file written for the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_info: Option<String>,
    /// `namespace/name` of the pod, when the runtime said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The port and the pod's side are set up (false while ADD runs).
    pub ready: bool,
}

impl Record for Attachment {
    fn network(&self) -> &str {
        &self.network
    }
    fn ip(&self) -> Ipv4Addr {
        self.ip
    }
}

impl Attachment {
    fn iface(&self) -> Option<PodIface<'_>> {
        Some(PodIface {
            netns: self.netns.as_deref()?,
            ifname: &self.ifname,
            mac: &self.mac,
            ip: self.ip,
            prefix_len: self.prefix_len,
            gateway: self.gateway,
            mtu: self.mtu,
        })
    }

    fn port_config(&self) -> PortConfig {
        let vhost = self.kind == PodPort::VhostUser;
        PortConfig {
            name: self.port.clone(),
            kind: if vhost { PortKind::VhostUser } else { PortKind::Tap },
            iface: self.tap.clone(),
            path: self.socket.clone(),
            server: vhost.then_some(self.vhost_server),
            pci: None,
            devargs: None,
            rx_queues: 1,
            pod: Some(PodAttachment {
                ip: self.ip,
                mac: self.mac.parse().unwrap_or_default(),
                network: (self.network != "default").then(|| self.network.clone()),
            }),
            uplink: false,
            host: false,
        }
    }

    fn info(&self, port_mac: Option<String>) -> AttachInfo {
        AttachInfo {
            kind: self.kind,
            port: self.port.clone(),
            port_mac,
            ifname: self.ifname.clone(),
            mac: self.mac.clone(),
            netns: self.netns.clone(),
            ip: self.ip,
            prefix_len: self.prefix_len,
            gateway: self.gateway,
            mtu: self.mtu,
            socket_path: self.socket.clone(),
            device_info: self.device_info.clone(),
        }
    }
}

/// What the server needs to run.
pub struct ServerConfig {
    /// Its own socket (weir-cni connects here).
    pub socket: PathBuf,
    /// The IPAM state directory.
    pub ipam_dir: PathBuf,
    /// weir-dataplane's management socket.
    pub dataplane: PathBuf,
    /// The node's name; default: the dataplane's.
    pub node: Option<String>,
    /// The cluster's objects (pods' annotations, the Node's pod CIDR,
    /// Contiv networks), when weir-control has a source.
    pub objects: Option<Arc<Shared>>,
    /// How often the dataplane is checked for a restart and orphan ports.
    pub interval: Duration,
}

/// Why a dataplane call failed.
enum DpError {
    /// No answer: the dataplane is down or restarting.
    Unreachable(String),
    /// It answered with an error.
    Refused(String),
}

impl DpError {
    fn cni(self, what: &str) -> CniError {
        match self {
            DpError::Unreachable(e) => {
                CniError::new(code::TRY_AGAIN_LATER, format!("{what}: weir-dataplane does not answer")).details(e)
            }
            DpError::Refused(e) => {
                CniError::new(code::DATAPLANE_FAILED, format!("{what}: weir-dataplane refused: {e}"))
            }
        }
    }
}

/// The server's state; one lock around it.
pub struct Core {
    dataplane: PathBuf,
    node: Option<String>,
    objects: Option<Arc<Shared>>,
    store: Store<Attachment>,
    /// The dataplane start every recorded port was last put on.
    instance: Option<u64>,
    pod_mtu: Option<u16>,
    last_note: String,
}

/// A running server.
#[derive(Clone)]
pub struct Server {
    core: Arc<Mutex<Core>>,
}

impl Server {
    /// Opens the IPAM state, binds the socket (mode 0600; a stale socket is
    /// replaced, a live one refused) and starts the accept and reconcile
    /// threads.
    pub fn start(cfg: ServerConfig) -> Result<Server, String> {
        let store = Store::open(&cfg.ipam_dir)?;
        let core = Core {
            dataplane: cfg.dataplane.clone(),
            node: cfg.node.clone(),
            objects: cfg.objects.clone(),
            store,
            instance: None,
            pod_mtu: None,
            last_note: String::new(),
        };
        let server = Server { core: Arc::new(Mutex::new(core)) };
        let listener = bind(&cfg.socket)?;
        let s = server.clone();
        std::thread::Builder::new()
            .name("weir-cni-accept".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let s = s.clone();
                    let _ = std::thread::Builder::new().name("weir-cni-conn".into()).spawn(move || s.serve(conn));
                }
            })
            .map_err(|e| format!("cannot start the CNI server: {e}"))?;
        let s = server.clone();
        let interval = cfg.interval.max(Duration::from_millis(10));
        std::thread::Builder::new()
            .name("weir-cni-reconcile".into())
            .spawn(move || loop {
                s.reconcile();
                std::thread::sleep(interval);
            })
            .map_err(|e| format!("cannot start the CNI reconcile loop: {e}"))?;
        Ok(server)
    }

    fn serve(&self, conn: UnixStream) {
        let Ok(mut out) = conn.try_clone() else { return };
        let mut line = String::new();
        if BufReader::new(conn).take(MAX_LINE as u64).read_line(&mut line).is_err() || line.trim().is_empty() {
            return;
        }
        let reply = match serde_json::from_str::<CniRequest>(&line) {
            Err(e) => CniReply::Error { error: CniError::new(code::DECODING_FAILURE, format!("bad request: {e}")) },
            Ok(req) => self.handle(req),
        };
        if let Ok(text) = serde_json::to_string(&reply) {
            let _ = writeln!(out, "{text}");
        }
    }

    /// Answers one request.
    pub fn handle(&self, req: CniRequest) -> CniReply {
        let Ok(mut core) = self.core.lock() else {
            return CniReply::Error {
                error: CniError::new(code::TRY_AGAIN_LATER, "weir-control's CNI state is poisoned"),
            };
        };
        let r = match req {
            CniRequest::Add(p) => core.add(&p).map(|info| CniReply::Attached { info }),
            CniRequest::Check(p) => core.check(&p).map(|info| CniReply::Attached { info }),
            CniRequest::Del(p) => core.del(&p).map(|_| CniReply::Done),
            CniRequest::Status { conf } => core.status(&conf).map(|_| CniReply::Done),
            CniRequest::Gc { conf, valid } => core.gc(&conf, &valid).map(|_| CniReply::Done),
        };
        r.unwrap_or_else(|error| CniReply::Error { error })
    }

    /// One round of the reconcile loop (see the module doc).
    pub fn reconcile(&self) {
        if let Ok(mut core) = self.core.lock() {
            core.reconcile();
        }
    }

    /// The attachments recorded now (tests, metrics).
    pub fn attachments(&self) -> Vec<Attachment> {
        self.core.lock().map(|c| c.store.all().map(|(_, a)| a.clone()).collect()).unwrap_or_default()
    }
}

fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!("{} is in use by another process", path.display()));
        }
        std::fs::remove_file(path).map_err(|e| format!("cannot remove stale {}: {e}", path.display()))?;
    }
    let l = UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    Ok(l)
}

/// FNV-1a, 64 bits: stable names from attachment keys.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The MAC of a pod with address `ip`: `0a:58` and the address (locally
/// administered, unicast, the convention of several Kubernetes networks).
pub fn pod_mac(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("0a:58:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// The first host address of a subnet (the gateway by convention).
fn first_host(s: Ipv4Cidr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(s.addr()) + 1)
}

/// What the cluster says about the pod being attached.
#[derive(Default)]
struct PodFacts {
    name: Option<String>,
    annotations: BTreeMap<String, String>,
    network_label: Option<String>,
    /// Addresses of other pods the cluster knows (never handed out).
    reserved: HashSet<Ipv4Addr>,
}

impl Core {
    fn dp(&self, req: &Request) -> Result<Reply, DpError> {
        match mgmt::call(&self.dataplane, req) {
            Ok(Reply::Error { message }) => Err(DpError::Refused(message)),
            Ok(r) => Ok(r),
            Err(e) => Err(DpError::Unreachable(e)),
        }
    }

    fn hello(&mut self) -> Result<(String, u64), DpError> {
        match self.dp(&Request::Handshake { version: PROTOCOL_VERSION, client: "weir-control-cni".into() })? {
            Reply::Hello { node, instance, .. } => Ok((node, instance)),
            other => Err(DpError::Refused(format!("unexpected answer to the handshake: {other:?}"))),
        }
    }

    fn stats(&mut self) -> Result<Stats, DpError> {
        match self.dp(&Request::Stats)? {
            Reply::Stats(s) => {
                self.pod_mtu = s.overlay.as_ref().map(|o| o.pod_mtu);
                Ok(s)
            }
            other => Err(DpError::Refused(format!("unexpected answer to stats: {other:?}"))),
        }
    }

    fn remove_port(&self, name: &str) -> Result<(), DpError> {
        match self.dp(&Request::RemovePort { name: name.to_string() }) {
            Err(DpError::Refused(m)) if m.starts_with("no port named") => Ok(()),
            r => r.map(|_| ()),
        }
    }

    fn note(&mut self, msg: String) {
        if msg != self.last_note {
            eprintln!("weir-control: cni: {msg}");
            self.last_note = msg;
        }
    }

    fn objects(&self) -> Option<ClusterObjects> {
        self.objects.as_ref().and_then(|s| s.snapshot()).map(|(_, o)| o)
    }

    fn pod_facts(&self, args: &BTreeMap<String, String>) -> PodFacts {
        let mut f = PodFacts::default();
        let (ns, name) = (args.get("K8S_POD_NAMESPACE"), args.get("K8S_POD_NAME"));
        f.name = match (ns, name) {
            (Some(ns), Some(n)) => Some(format!("{ns}/{n}")),
            (None, Some(n)) => Some(n.clone()),
            _ => None,
        };
        let Some(objs) = self.objects() else { return f };
        for p in &objs.pods {
            let m = &p.metadata;
            let same = m.name.as_ref() == name && (ns.is_none() || m.namespace.as_ref() == ns);
            if same && name.is_some() {
                f.annotations = m.annotations.clone().unwrap_or_default();
                f.network_label = m.labels.as_ref().and_then(|l| l.get(NETWORK_LABEL)).cloned();
                continue;
            }
            if let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok()) {
                f.reserved.insert(ip);
            }
        }
        f
    }

    /// The node's name: configured, or the dataplane's.
    fn node_name(&mut self) -> Result<String, CniError> {
        if let Some(n) = &self.node {
            return Ok(n.clone());
        }
        let (n, _) = self.hello().map_err(|e| e.cni("node name"))?;
        Ok(n)
    }

    /// Subnet and gateway of weir network `network`.
    fn subnet(&mut self, network: &str, conf: &NetConf) -> Result<(Ipv4Cidr, Ipv4Addr), CniError> {
        let invalid = |m: String| CniError::new(code::INVALID_NETWORK_CONFIG, m);
        if network == "default" {
            if let Some(s) = conf.ipam.as_ref().and_then(|i| i.subnet) {
                let gw = conf.ipam.as_ref().and_then(|i| i.gateway).unwrap_or_else(|| first_host(s));
                if !s.contains(gw) {
                    return Err(invalid(format!("ipam.gateway = {gw}: not inside ipam.subnet {s}")));
                }
                return Ok((s, gw));
            }
            let node = self.node_name()?;
            let objs = self.objects();
            if self.objects.as_ref().is_some_and(|s| !s.ready()) {
                return Err(CniError::new(code::TRY_AGAIN_LATER, "weir-control has not listed the cluster yet"));
            }
            let n =
                objs.as_ref().and_then(|o| o.nodes.iter().find(|n| n.metadata.name.as_deref() == Some(node.as_str())));
            let spec = n.and_then(|n| n.spec.as_ref());
            let cidr = spec.and_then(|s| s.pod_cidr.clone()).or_else(|| {
                spec.and_then(|s| s.pod_cidrs.as_ref()).and_then(|c| c.iter().find(|c| !c.contains(':')).cloned())
            });
            let cidr = cidr.ok_or_else(|| {
                invalid(format!(
                    "no pod CIDR for node {node}: no Node object {node} with spec.podCIDR, and no ipam.subnet in the network configuration"
                ))
            })?;
            let s: Ipv4Cidr = cidr.parse().map_err(|e| invalid(format!("Node {node} spec.podCIDR = {cidr:?}: {e}")))?;
            return Ok((s, first_host(s)));
        }
        let objs = self.objects().unwrap_or_default();
        let n = objs
            .networks
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(network))
            .ok_or_else(|| invalid(format!("network {network:?}: no weir Network has this name")))?;
        let s: Ipv4Cidr =
            n.spec.subnet.parse().map_err(|e| invalid(format!("Network {network} subnet {:?}: {e}", n.spec.subnet)))?;
        let gw: Ipv4Addr = n
            .spec
            .gateway
            .parse()
            .map_err(|_| invalid(format!("Network {network} gateway {:?} does not parse", n.spec.gateway)))?;
        Ok((s, gw))
    }

    /// A port name no other attachment has.
    fn port_hash(&self, key: &str) -> u64 {
        for salt in 0u32.. {
            let h = fnv(&format!("{key}#{salt}")) & 0xff_ffff_ffff;
            let name = format!("{PORT_PREFIX}{h:010x}");
            if !self.store.all().any(|(k, a)| a.port == name && k != key) {
                return h;
            }
        }
        unreachable!("2^32 salts all taken")
    }

    fn add(&mut self, p: &AttachParams) -> Result<AttachInfo, CniError> {
        let key = ipam::key(&p.container_id, &p.ifname);
        if self.store.get(&key).is_some() {
            // The runtime must not ADD twice without a DEL; if it did (a retry
            // after a lost answer), start afresh.
            self.teardown(&key)?;
        }
        let netns = p.netns.clone().ok_or_else(|| CniError::new(code::INVALID_ENVIRONMENT, "CNI_NETNS: not set"))?;
        let facts = self.pod_facts(&p.args);
        let invalid = |m: String| CniError::new(code::INVALID_NETWORK_CONFIG, m);
        let port_kind = p
            .args
            .get("WEIR_PORT")
            .map(|v| (v.clone(), "CNI_ARGS WEIR_PORT"))
            .or_else(|| facts.annotations.get(PORT_ANNOTATION).map(|v| (v.clone(), PORT_ANNOTATION)));
        let vhost = match port_kind {
            None => p.conf.vhost_user,
            Some((v, _)) if v == "vhost-user" => true,
            Some((v, _)) if v == "tap" => p.conf.vhost_user,
            Some((v, from)) => return Err(invalid(format!("{from} = {v:?}: want \"vhost-user\" or \"tap\""))),
        };
        let mode = match p.args.get("WEIR_VHOST_MODE").or_else(|| facts.annotations.get(VHOST_MODE_ANNOTATION)) {
            Some(m) if m == "server" => VhostMode::Server,
            Some(m) if m == "client" => VhostMode::Client,
            Some(m) => return Err(invalid(format!("vhost-user mode {m:?}: want \"server\" or \"client\""))),
            None => p.conf.vhost_user_mode.unwrap_or_default(),
        };
        if !vhost && !podside::netns_exists(&netns) {
            return Err(CniError::new(code::INVALID_ENVIRONMENT, format!("CNI_NETNS: {netns} does not exist")));
        }
        let network = p
            .conf
            .network
            .clone()
            .or_else(|| p.args.get("WEIR_NETWORK").cloned())
            .or_else(|| facts.annotations.get(NETWORK_ANNOTATION).cloned())
            .or_else(|| facts.network_label.clone())
            .unwrap_or_else(|| "default".into());
        let (subnet, gateway) = self.subnet(&network, &p.conf)?;
        let ip = self
            .store
            .pick(&network, subnet, gateway, &facts.reserved)
            .map_err(|e| CniError::new(code::IPAM_EXHAUSTED, e))?;
        if self.pod_mtu.is_none() {
            let _ = self.stats();
        }
        let mtu = p.conf.mtu.or(self.pod_mtu).unwrap_or(DEFAULT_MTU);
        let h = self.port_hash(&key);
        let port = format!("{PORT_PREFIX}{h:010x}");
        let (tap, socket, device_info) = if vhost {
            let dir = p.conf.socket_dir.clone().unwrap_or_else(|| PathBuf::from(spec::DEFAULT_SOCKET_DIR));
            let sock = dir.join(format!("{port}.sock")).to_string_lossy().into_owned();
            let di = p.conf.runtime_config.device_info_file.clone().unwrap_or_else(|| {
                let dir =
                    p.conf.device_info_dir.clone().unwrap_or_else(|| PathBuf::from(spec::DEFAULT_DEVICE_INFO_DIR));
                dir.join(format!("{}-{}-{}-device.json", p.conf.name, p.container_id, p.ifname))
                    .to_string_lossy()
                    .into_owned()
            });
            (None, Some(sock), Some(di))
        } else {
            (Some(format!("wc{h:010x}")), None, None)
        };
        let mut rec = Attachment {
            container_id: p.container_id.clone(),
            ifname: p.ifname.clone(),
            cni_network: p.conf.name.clone(),
            network,
            ip,
            prefix_len: subnet.len(),
            gateway,
            mac: pod_mac(ip),
            mtu,
            kind: if vhost { PodPort::VhostUser } else { PodPort::Tap },
            port,
            tap,
            netns: Some(netns),
            socket,
            vhost_server: mode == VhostMode::Server,
            device_info,
            pod: facts.name,
            ready: false,
        };
        self.store.insert(&key, rec.clone()).map_err(|e| CniError::new(code::IO_FAILURE, e))?;
        if let Err(e) = self.setup(&rec) {
            let _ = self.teardown(&key);
            return Err(e);
        }
        rec.ready = true;
        if let Err(e) = self.store.insert(&key, rec.clone()) {
            let _ = self.teardown(&key);
            return Err(CniError::new(code::IO_FAILURE, e));
        }
        let port_mac = self.stats().ok().and_then(|s| s.port(&rec.port).map(|p| p.mac.clone()));
        eprintln!(
            "weir-control: cni: ADD {key}: {} {}/{} on port {} ({})",
            rec.pod.as_deref().unwrap_or("-"),
            rec.ip,
            rec.prefix_len,
            rec.port,
            if vhost { rec.socket.as_deref().unwrap_or("") } else { "tap" }
        );
        Ok(rec.info(port_mac))
    }

    /// Adds the attachment's port and sets up the pod's side; on an error
    /// nothing of it is left on the dataplane.
    fn setup(&self, rec: &Attachment) -> Result<(), CniError> {
        let pod_err = |m: String| CniError::new(code::POD_SETUP_FAILED, m);
        if let Some(sock) = &rec.socket {
            if let Some(dir) = Path::new(sock).parent() {
                std::fs::create_dir_all(dir).map_err(|e| pod_err(format!("cannot create {}: {e}", dir.display())))?;
            }
            if rec.vhost_server {
                // A socket left by a dataplane that died is in the way of a new one.
                podside::remove_file(sock).map_err(pod_err)?;
            }
        }
        self.dp(&Request::AddPort { port: rec.port_config() }).map_err(|e| e.cni(&format!("port {}", rec.port)))?;
        let side = match (rec.kind, rec.tap.as_deref(), rec.iface()) {
            (PodPort::Tap, Some(tap), Some(iface)) => podside::move_tap(tap, &iface),
            (PodPort::Tap, _, _) => Err("a kernel pod needs a TAP name and a namespace".to_string()),
            (PodPort::VhostUser, _, _) => match (&rec.device_info, &rec.socket) {
                (Some(di), Some(sock)) => {
                    podside::write_file(Path::new(di), &podside::vhost_device_info(sock, rec.vhost_server))
                }
                _ => Ok(()),
            },
        };
        if let Err(e) = side {
            let _ = self.remove_port(&rec.port);
            return Err(pod_err(e));
        }
        Ok(())
    }

    /// Removes an attachment: its port (the TAP goes with it), its files,
    /// its record. Best effort but for the record itself.
    fn teardown(&mut self, key: &str) -> Result<(), CniError> {
        let Some(rec) = self.store.get(key).cloned() else { return Ok(()) };
        match self.remove_port(&rec.port) {
            Ok(()) => {}
            // Gone with the dataplane, or removed by the reconcile loop later.
            Err(DpError::Unreachable(e)) => self.note(format!(
                "DEL {key}: weir-dataplane does not answer ({e}); its port {} is removed when it does",
                rec.port
            )),
            Err(DpError::Refused(e)) => self.note(format!("DEL {key}: removing port {}: {e}", rec.port)),
        }
        for f in [&rec.device_info, &rec.socket].into_iter().flatten() {
            if let Err(e) = podside::remove_file(f) {
                self.note(format!("DEL {key}: {e}"));
            }
        }
        self.store.remove(key).map_err(|e| CniError::new(code::IO_FAILURE, e))?;
        eprintln!("weir-control: cni: DEL {key}: released {} (port {})", rec.ip, rec.port);
        Ok(())
    }

    fn del(&mut self, p: &AttachParams) -> Result<(), CniError> {
        self.teardown(&ipam::key(&p.container_id, &p.ifname))
    }

    fn check(&mut self, p: &AttachParams) -> Result<AttachInfo, CniError> {
        let key = ipam::key(&p.container_id, &p.ifname);
        let fail = |m: String| CniError::new(code::CHECK_FAILED, m);
        let rec = self.store.get(&key).cloned().ok_or_else(|| {
            CniError::new(
                code::UNKNOWN_CONTAINER,
                format!("no attachment for container {} interface {}", p.container_id, p.ifname),
            )
        })?;
        if !rec.ready {
            return Err(fail(format!("{key}: the ADD did not finish")));
        }
        if p.netns.is_some() && p.netns != rec.netns {
            return Err(fail(format!("{key} is in {:?}, CNI_NETNS says {:?}", rec.netns, p.netns)));
        }
        let stats = self.stats().map_err(|e| match e {
            DpError::Unreachable(m) | DpError::Refused(m) => fail(format!("weir-dataplane: {m}")),
        })?;
        let port = stats.port(&rec.port).ok_or_else(|| fail(format!("weir-dataplane has no port {}", rec.port)))?;
        match rec.kind {
            PodPort::Tap => {
                let iface = rec.iface().ok_or_else(|| fail(format!("{key}: no namespace recorded")))?;
                podside::check(&iface).map_err(fail)?;
            }
            PodPort::VhostUser => {
                if let Some(s) = rec.socket.as_deref().filter(|_| rec.vhost_server) {
                    if !Path::new(s).exists() {
                        return Err(fail(format!("the vhost-user socket {s} is gone")));
                    }
                }
                if let Some(d) = rec.device_info.as_deref() {
                    if !Path::new(d).exists() {
                        return Err(fail(format!("the device-info file {d} is gone")));
                    }
                }
            }
        }
        Ok(rec.info(Some(port.mac.clone())))
    }

    fn status(&mut self, conf: &NetConf) -> Result<(), CniError> {
        let na = |m: String| CniError::new(code::NOT_AVAILABLE, m);
        self.hello().map_err(|e| match e {
            DpError::Unreachable(m) => na(format!("weir-dataplane does not answer: {m}")),
            DpError::Refused(m) => na(format!("weir-dataplane refuses weir-control: {m}")),
        })?;
        let network = conf.network.clone().unwrap_or_else(|| "default".into());
        let (subnet, gw) = self.subnet(&network, conf).map_err(|e| na(e.msg))?;
        if self.store.free(&network, subnet, gw) == 0 {
            return Err(na(format!("network {network}: no free address in {subnet}")));
        }
        Ok(())
    }

    fn gc(&mut self, conf: &NetConf, valid: &[ValidAttachment]) -> Result<(), CniError> {
        let valid: HashSet<String> = valid.iter().map(|v| ipam::key(&v.container_id, &v.ifname)).collect();
        let stale: Vec<String> = self
            .store
            .all()
            .filter(|(k, a)| a.cni_network == conf.name && !valid.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &stale {
            self.teardown(k)?;
        }
        if !stale.is_empty() {
            eprintln!("weir-control: cni: GC of {}: released {} attachment(s)", conf.name, stale.len());
        }
        self.sweep();
        Ok(())
    }

    /// Removes `cni-` ports no attachment owns.
    fn sweep(&mut self) {
        let Ok(stats) = self.stats() else { return };
        let owned: HashSet<&str> = self.store.all().map(|(_, a)| a.port.as_str()).collect();
        let orphans: Vec<String> = stats
            .ports
            .iter()
            .filter(|p| p.name.starts_with(PORT_PREFIX) && !owned.contains(p.name.as_str()))
            .map(|p| p.name.clone())
            .collect();
        for o in orphans {
            match self.remove_port(&o) {
                Ok(()) => eprintln!("weir-control: cni: removed port {o}, which no attachment owns"),
                Err(DpError::Unreachable(e) | DpError::Refused(e)) => {
                    self.note(format!("removing orphan port {o}: {e}"))
                }
            }
        }
    }

    fn reconcile(&mut self) {
        let Ok((_, instance)) = self.hello() else { return };
        if self.instance != Some(instance) {
            let Ok(stats) = self.stats() else { return };
            let present: HashSet<String> = stats.ports.iter().map(|p| p.name.clone()).collect();
            let mut done = true;
            let recs: Vec<Attachment> = self.store.all().map(|(_, a)| a.clone()).filter(|a| a.ready).collect();
            for rec in recs {
                if present.contains(&rec.port) {
                    continue;
                }
                if rec.kind == PodPort::Tap && !rec.netns.as_deref().is_some_and(podside::netns_exists) {
                    continue; // the pod is gone: nothing to attach; DEL or GC cleans up
                }
                match self.setup(&rec) {
                    Ok(()) => eprintln!(
                        "weir-control: cni: port {} of {}/{} added again",
                        rec.port, rec.container_id, rec.ifname
                    ),
                    Err(e) => {
                        done = false;
                        self.note(format!("port {} of {}/{}: {e}", rec.port, rec.container_id, rec.ifname));
                    }
                }
            }
            if done {
                self.instance = Some(instance);
            }
        }
        self.sweep();
    }
}
