//! The node config: a TOML file, every key documented in `config/node.example.toml`.
//!
//! `NodeConfig::from_toml` parses and validates; a config that is refused names
//! the offending key and value and nothing is started. Unknown keys are refused
//! too, so a typo never silently falls back to a default.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tables::cidr::Ipv4Cidr;
use crate::wire::MacAddr;

/// Why a config was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    Parse(String),
    /// A value that parses but cannot work.
    Invalid { key: String, value: String, reason: String },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), value: value.to_string(), reason: reason.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Parse(m) => write!(f, "{m}"),
            ConfigError::Invalid { key, value, reason } => write!(f, "{key} = {value}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// serde for MAC addresses as `02:00:00:00:00:01` strings.
pub mod mac_serde {
    use super::MacAddr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(m)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|e| serde::de::Error::custom(format!("{s:?} is not a MAC address: {e}")))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub gateway: GatewaySection,
    #[serde(default)]
    pub dpdk: DpdkSection,
    #[serde(default)]
    pub management: ManagementSection,
    #[serde(default)]
    pub overlay: OverlaySection,
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub networks: Vec<NetworkConfig>,
    #[serde(default)]
    pub remote_nodes: Vec<RemoteNodeConfig>,
    #[serde(default)]
    pub remote_routes: Vec<RemoteRouteConfig>,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    #[serde(default)]
    pub nat: NatSection,
    /// Pods' ACLs, compiled by weir-control from NetworkPolicies and the
    /// Contiv model (see docs/policy.md); static here for tests and demos.
    #[serde(default)]
    pub acl: crate::tables::acl::AclConfig,
    /// More addresses of this node NodePorts are served on, besides
    /// node.node_ip (e.g. its ExternalIP); packets for them must be routed
    /// to the uplink.
    #[serde(default)]
    pub node_port_ips: Vec<Ipv4Addr>,
    /// Addresses this node answers ARP for on the uplink besides its node
    /// IP: the LoadBalancer IPs weir-control elected it to announce (see
    /// docs/loadbalancer.md). Newly listed ones get gratuitous ARPs.
    #[serde(default)]
    pub announce_ips: Vec<Ipv4Addr>,
}

/// Source NAT of Service traffic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NatSection {
    /// The node-IP source ports given to external clients of
    /// `externalTrafficPolicy: Cluster` Services (one port per connection
    /// per backend). Keep the range out of the node kernel's ephemeral
    /// ports (`net.ipv4.ip_local_port_range`, 32768-60999 by default).
    pub snat_port_min: u16,
    pub snat_port_max: u16,
}

impl Default for NatSection {
    fn default() -> Self {
        NatSection { snat_port_min: 61000, snat_port_max: 65535 }
    }
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrafficPolicy {
    /// Every usable endpoint of the cluster.
    #[default]
    Cluster,
    /// Only this node's endpoints; with none, the packet is dropped.
    Local,
}

/// L4 protocols of Service ports.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum L4Proto {
    Tcp,
    Udp,
    Sctp,
}

impl L4Proto {
    pub fn number(self) -> u8 {
        match self {
            L4Proto::Tcp => 6,
            L4Proto::Udp => 17,
            L4Proto::Sctp => 132,
        }
    }
}

/// A Service as the dataplane sees it (what weir-control will compute from
/// Services and EndpointSlices; static in the node config for now).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// `namespace/name`.
    pub name: String,
    /// The ClusterIPs. Empty for a headless Service: nothing is translated.
    #[serde(default)]
    pub cluster_ips: Vec<Ipv4Addr>,
    /// `spec.externalIPs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// For NodePort, externalIPs and LoadBalancer traffic from outside the
    /// cluster. Local: this node's endpoints only, client address kept.
    /// Cluster: every endpoint, client translated to the node IP.
    #[serde(default)]
    pub external_traffic_policy: TrafficPolicy,
    /// For ClusterIP traffic from pods and the node. Local: this node's
    /// endpoints only.
    #[serde(default)]
    pub internal_traffic_policy: TrafficPolicy,
    /// Clients allowed to reach the LoadBalancer IPs (empty: everyone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_source_ranges: Vec<Ipv4Cidr>,
    pub ports: Vec<ServicePortConfig>,
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// `sessionAffinity: ClientIP`: new flows of a client go to the backend
    /// its last flow went to, for this many seconds after its last packet
    /// (Kubernetes' default `timeoutSeconds` is 10800). Absent: no affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_timeout_seconds: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServicePortConfig {
    pub port: u16,
    pub protocol: L4Proto,
    /// The backends' port (default: `port`).
    #[serde(default)]
    pub target_port: Option<u16>,
    /// NodePort: served on the node IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub ip: Ipv4Addr,
    /// Relative share of new flows (Maglev weight); 0 takes none.
    #[serde(default = "one_u32")]
    pub weight: u32,
    /// On this node (for the Local traffic policies). Default: inside this
    /// node's pod CIDR or the node IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<bool>,
    /// EndpointSlice conditions (KEP-1669). New flows go to ready
    /// endpoints; when there are none, to serving and terminating ones.
    /// Flows already on an endpoint stay while it is listed at all.
    #[serde(default = "yes")]
    pub ready: bool,
    /// Default: `ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<bool>,
    #[serde(default)]
    pub terminating: bool,
}

fn yes() -> bool {
    true
}

impl BackendConfig {
    pub fn new(ip: Ipv4Addr) -> Self {
        BackendConfig { ip, weight: 1, local: None, ready: true, serving: None, terminating: false }
    }

    pub fn serving(&self) -> bool {
        self.serving.unwrap_or(self.ready)
    }
}

fn one_u32() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OverlaySection {
    /// UDP destination port of VXLAN.
    pub vxlan_port: u16,
    /// VNI of the node's default pod network.
    pub vni: u32,
}

impl Default for OverlaySection {
    fn default() -> Self {
        OverlaySection { vxlan_port: crate::wire::vxlan::DEFAULT_PORT, vni: 1 }
    }
}

/// A pod network besides the default one (Contiv's networks): its own
/// subnet, gateway and VNI, cluster-wide.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub name: String,
    pub subnet: Ipv4Cidr,
    pub gateway: Ipv4Addr,
    pub vni: u32,
}

/// Another node of the cluster: its pod CIDR is reached over VXLAN.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemoteNodeConfig {
    pub name: String,
    /// Its underlay address (its VTEP).
    pub node_ip: Ipv4Addr,
    /// Its slice of the default pod network.
    pub pod_cidr: Ipv4Cidr,
    /// The MAC its VTEP expects as the inner destination (weir: its gateway
    /// MAC; a Linux VXLAN device: that device's MAC).
    #[serde(with = "mac_serde")]
    pub vtep_mac: MacAddr,
}

/// A prefix of a network that lives on another node (e.g. a pod of a named
/// network scheduled there).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemoteRouteConfig {
    /// Network name; "default" for the default pod network.
    pub network: String,
    pub prefix: Ipv4Cidr,
    /// Name of the remote node (in remote_nodes).
    pub node: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Node name, as Kubernetes knows it.
    pub name: String,
    /// The node's underlay IP (VXLAN source, NodePort address). Needed with an uplink.
    #[serde(default)]
    pub node_ip: Option<Ipv4Addr>,
    /// The underlay subnet the uplink is on: VTEPs inside it are resolved by ARP
    /// directly. Needed with an uplink.
    #[serde(default)]
    pub underlay_cidr: Option<Ipv4Cidr>,
    /// Next hop for VTEPs outside underlay_cidr (optional).
    #[serde(default)]
    pub underlay_gateway: Option<Ipv4Addr>,
    /// The node's pod CIDR: pod IPs and the gateway live here.
    pub pod_cidr: Ipv4Cidr,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// The pods' default gateway; weir answers ARP and ping for it.
    pub ip: Ipv4Addr,
    /// The MAC weir answers with and sends from on pod ports.
    #[serde(with = "mac_serde")]
    pub mac: MacAddr,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ForwardMode {
    /// The full pipeline: ARP, IPv4 checks, routing.
    #[default]
    L3,
    /// Benchmark mode: every packet from port 2k goes out of port 2k+1 and back,
    /// untouched (testpmd's io forwarding).
    Io,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DpdkSection {
    /// The EAL main lcore: runs management, never packets.
    pub main_core: usize,
    /// One pinned worker per core listed. Best without main_core; a small
    /// machine may list it too, and the management thread then shares it.
    pub worker_cores: Vec<usize>,
    /// Memory for DPDK, MiB.
    pub memory_mb: u32,
    /// false runs on 4 KiB pages (`--no-huge`): slower, for machines without hugepages.
    pub hugepages: bool,
    /// EAL `--file-prefix`; default `weir-<node name>`. Every DPDK process on a machine needs its own.
    pub file_prefix: Option<String>,
    /// Mbufs in the pool.
    pub mbufs: u32,
    /// Per-lcore mempool cache.
    pub mbuf_cache: u32,
    /// Packets per rx burst (1..=64).
    pub burst: usize,
    /// Rx and tx ring sizes per queue.
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    /// true: workers never sleep (benchmarks). false: idle backoff.
    pub busy_poll: bool,
    /// Empty polls in a row before a worker starts to sleep.
    pub idle_polls_before_sleep: u32,
    /// Longest idle sleep, microseconds; sleeps double from 1 us up to this.
    pub idle_sleep_max_us: u64,
    pub forward_mode: ForwardMode,
    /// Extra EAL arguments, appended as given (e.g. `--log-level=pmd.net.af_packet:debug`).
    pub eal_args: Vec<String>,
    /// Flows the Service NAT table holds (two entries each; a full table is
    /// a counted drop).
    pub max_flows: u32,
    /// Where the flow table lives, so that flows outlive a restart of the
    /// dataplane: `auto` (a file `flows-<node name>` next to the management
    /// socket when that directory is on a memory file system such as
    /// tmpfs, else this process's memory), `off` (this process's memory),
    /// or an absolute path.
    pub flow_state: String,
}

impl Default for DpdkSection {
    fn default() -> Self {
        DpdkSection {
            main_core: 0,
            worker_cores: vec![1],
            memory_mb: 512,
            hugepages: true,
            file_prefix: None,
            mbufs: 16383,
            mbuf_cache: 256,
            burst: 32,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            busy_poll: false,
            idle_polls_before_sleep: 256,
            idle_sleep_max_us: 500,
            forward_mode: ForwardMode::L3,
            eal_args: Vec::new(),
            max_flows: 65536,
            flow_state: "auto".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ManagementSection {
    /// Unix socket for weirctl and weir-control; created with mode 0600.
    pub socket: PathBuf,
}

impl Default for ManagementSection {
    fn default() -> Self {
        ManagementSection { socket: PathBuf::from("/run/weir/dataplane.sock") }
    }
}

/// Kinds of DPDK port weir can drive.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PortKind {
    /// A PCI device bound to vfio-pci: SR-IOV VF, PF, virtio-net in a VM. Needs `pci`.
    Pci,
    /// A Linux interface through an AF_PACKET socket (veth to a pod namespace). Needs `iface`.
    AfPacket,
    /// A TAP interface created by DPDK. Needs `iface`.
    Tap,
    /// vhost-user: a DPDK pod or VM connects with virtio. Needs `path`.
    VhostUser,
    /// virtio-user: weir is the guest side of a vhost-user socket. Needs `path`.
    VirtioUser,
    /// memif shared-memory interface. Needs `path`.
    Memif,
    /// An in-memory ring that loops what is sent back to the sender (tests).
    Ring,
    /// Discards everything sent, receives endless zero frames (benchmarks).
    Null,
}

impl PortKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            PortKind::Pci => "pci",
            PortKind::AfPacket => "af_packet",
            PortKind::Tap => "tap",
            PortKind::VhostUser => "vhost_user",
            PortKind::VirtioUser => "virtio_user",
            PortKind::Memif => "memif",
            PortKind::Ring => "ring",
            PortKind::Null => "null",
        }
    }
}

impl fmt::Display for PortKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Unique name, `[a-z0-9-]`, up to 24 characters.
    pub name: String,
    pub kind: PortKind,
    /// Linux interface (af_packet, tap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    /// Socket path (vhost_user, virtio_user, memif).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// vhost_user: weir listens (default true) or connects; virtio_user: server mode
    /// (default false); memif: weir is the server (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<bool>,
    /// PCI address `0000:03:00.0` (pci).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<String>,
    /// Extra driver arguments, `key=value,key=value`, appended to the devargs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devargs: Option<String>,
    /// Rx queues (1..=16); RSS spreads flows over them where the driver can.
    #[serde(default = "one")]
    pub rx_queues: u16,
    /// The pod behind this port, if it is a pod port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodAttachment>,
    /// This port is the node's uplink to the underlay (at most one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uplink: bool,
    /// This port leads to the node's own kernel (at most one; a TAP, or a
    /// veth): traffic for the node IP that is not VXLAN goes there, and the
    /// node reaches pods and the underlay through it. The kernel side carries
    /// node.node_ip.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host: bool,
}

fn one() -> u16 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PodAttachment {
    pub ip: Ipv4Addr,
    #[serde(with = "mac_serde")]
    pub mac: MacAddr,
    /// The pod's network; the default pod network when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The network whose pods this route serves (default: the default pod
    /// network). A route in one network to a port of another is how two
    /// networks are allowed to talk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    pub prefix: Ipv4Cidr,
    /// Name of the port the route leaves by.
    pub port: String,
    /// Destination MAC on that port.
    #[serde(with = "mac_serde")]
    pub next_hop_mac: MacAddr,
}

pub const MAX_BURST: usize = 64;
pub const MAX_WORKERS: usize = 64;
pub const MAX_RX_QUEUES: u16 = 16;

impl NodeConfig {
    /// Parses and validates a config file's text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Parse(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text)
    }

    pub fn file_prefix(&self) -> String {
        self.dpdk.file_prefix.clone().unwrap_or_else(|| format!("weir-{}", self.node.name))
    }

    /// The EAL arguments this config gives, `program` first.
    pub fn eal_args(&self, program: &str) -> Vec<String> {
        let cfg = self;
        let d = &cfg.dpdk;
        let mut a = vec![program.to_string(), "-l".into(), d.main_core.to_string()];
        // One hugepage file per memory segment list, not per page: a virtio-user
        // port shares all of it over vhost-user, which allows only a few regions.
        a.push("--single-file-segments".into());
        a.push(format!("--file-prefix={}", cfg.file_prefix()));
        if d.hugepages {
            // No hugepage files and no runtime directory: nothing is left behind
            // however the process exits, and two nodes on one machine cannot
            // collide. (No DPDK secondary processes either; weir has none.)
            a.push("--in-memory".into());
            a.push("-m".into());
        } else {
            a.push("--no-huge".into());
            a.push("-m".into());
        }
        a.push(d.memory_mb.to_string());
        // PCI devices are probed by EAL at init (allowlisted with their driver
        // arguments); everything else is hot-plugged afterwards.
        let workers = d.worker_cores.len() as u16;
        let pci: Vec<String> =
            cfg.ports.iter().filter(|p| p.kind == PortKind::Pci).map(|p| p.devargs(workers)).collect();
        if pci.is_empty() {
            a.push("--no-pci".into());
        } else {
            for dev in pci {
                a.push("-a".into());
                a.push(dev);
            }
        }
        a.extend(d.eal_args.iter().cloned());
        a
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = &self.node;
        if n.name.is_empty()
            || n.name.len() > 63
            || !n.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError::invalid(
                "node.name",
                format!("{:?}", n.name),
                "want 1-63 characters of [A-Za-z0-9-_.]",
            ));
        }
        if !n.pod_cidr.contains(self.gateway.ip) {
            return Err(ConfigError::invalid(
                "gateway.ip",
                self.gateway.ip,
                format!("not inside node.pod_cidr {}", n.pod_cidr),
            ));
        }
        if !self.gateway.mac.is_unicast() {
            return Err(ConfigError::invalid("gateway.mac", self.gateway.mac, "must be a unicast MAC"));
        }
        self.validate_dpdk()?;
        let mut names = HashSet::new();
        let mut pod_ips = HashSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            validate_port(p, &format!("ports[{i}]"))?;
            if !names.insert(p.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("ports[{i}].name"),
                    format!("{:?}", p.name),
                    "another port has this name",
                ));
            }
            if p.uplink && p.pod.is_some() {
                return Err(ConfigError::invalid(
                    format!("ports[{i}].uplink"),
                    "true",
                    "a port is an uplink or a pod port, not both",
                ));
            }
            if let Some(pod) = &p.pod {
                let (subnet, gw, key) = match pod.network.as_deref() {
                    None | Some("default") => (n.pod_cidr, self.gateway.ip, "node.pod_cidr".to_string()),
                    Some(name) => match self.networks.iter().find(|x| x.name == name) {
                        Some(x) => (x.subnet, x.gateway, format!("network {name:?} subnet")),
                        None => {
                            return Err(ConfigError::invalid(
                                format!("ports[{i}].pod.network"),
                                format!("{name:?}"),
                                "no network has this name",
                            ))
                        }
                    },
                };
                if !subnet.contains(pod.ip) {
                    return Err(ConfigError::invalid(
                        format!("ports[{i}].pod.ip"),
                        pod.ip,
                        format!("not inside {key} {subnet}"),
                    ));
                }
                if pod.ip == gw || pod.ip == subnet.addr() {
                    return Err(ConfigError::invalid(
                        format!("ports[{i}].pod.ip"),
                        pod.ip,
                        "is the gateway or the network address",
                    ));
                }
                if !pod_ips.insert(pod.ip) {
                    return Err(ConfigError::invalid(format!("ports[{i}].pod.ip"), pod.ip, "another pod has this IP"));
                }
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if !names.contains(r.port.as_str()) {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].port"),
                    format!("{:?}", r.port),
                    "no port has this name",
                ));
            }
            if let Some(net) = r.network.as_deref() {
                if net != "default" && !self.networks.iter().any(|n| n.name == net) {
                    return Err(ConfigError::invalid(
                        format!("routes[{i}].network"),
                        format!("{net:?}"),
                        "no network has this name",
                    ));
                }
            }
            if !r.next_hop_mac.is_unicast() {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].next_hop_mac"),
                    r.next_hop_mac,
                    "must be a unicast MAC",
                ));
            }
        }
        self.validate_overlay()?;
        self.validate_services()?;
        let d = &self.dpdk;
        // rx queues and one tx queue per worker (the management thread's
        // frames go out through worker 0's)
        let queues: u32 = self.ports.iter().map(|p| u32::from(p.rx_queues) + d.worker_cores.len() as u32).sum();
        let need = queues * u32::from(d.rx_descriptors.max(d.tx_descriptors))
            + (d.worker_cores.len() as u32 + 1) * (d.mbuf_cache + d.burst as u32 * 2);
        if d.mbufs < need {
            return Err(ConfigError::invalid(
                "dpdk.mbufs",
                d.mbufs,
                format!("the ports' rings and caches need at least {need}"),
            ));
        }
        if self.dpdk.forward_mode == ForwardMode::Io && !self.ports.len().is_multiple_of(2) {
            return Err(ConfigError::invalid(
                "dpdk.forward_mode",
                "\"io\"",
                format!("io mode pairs ports, and there are {} ports", self.ports.len()),
            ));
        }
        Ok(())
    }

    fn validate_services(&self) -> Result<(), ConfigError> {
        if self.nat.snat_port_min == 0 || self.nat.snat_port_min > self.nat.snat_port_max {
            return Err(ConfigError::invalid(
                "nat.snat_port_min",
                self.nat.snat_port_min,
                format!("want 1..=snat_port_max ({})", self.nat.snat_port_max),
            ));
        }
        let fs = self.dpdk.flow_state.as_str();
        if !(fs == "auto" || fs == "off" || Path::new(fs).is_absolute()) {
            return Err(ConfigError::invalid("dpdk.flow_state", fs, "want auto, off or an absolute path"));
        }
        if !(1024..=(1 << 24)).contains(&self.dpdk.max_flows) {
            return Err(ConfigError::invalid("dpdk.max_flows", self.dpdk.max_flows, "want 1024..=16777216"));
        }
        for (i, ip) in self.node_port_ips.iter().enumerate() {
            if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || self.node.pod_cidr.contains(*ip) {
                return Err(ConfigError::invalid(
                    format!("node_port_ips[{i}]"),
                    ip,
                    "must be a unicast address of the node, outside node.pod_cidr",
                ));
            }
        }
        for (i, ip) in self.announce_ips.iter().enumerate() {
            if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback() {
                return Err(ConfigError::invalid(format!("announce_ips[{i}]"), ip, "must be a unicast address"));
            }
            if Some(*ip) == self.node.node_ip || self.node.pod_cidr.contains(*ip) {
                return Err(ConfigError::invalid(
                    format!("announce_ips[{i}]"),
                    ip,
                    "must not be the node IP or inside node.pod_cidr",
                ));
            }
        }
        let mut frontends = HashSet::new();
        let mut names = HashSet::new();
        for (i, svc) in self.services.iter().enumerate() {
            if svc.name.is_empty() || !names.insert(svc.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("services[{i}].name"),
                    format!("{:?}", svc.name),
                    "empty or used twice",
                ));
            }
            if svc.ports.is_empty() {
                return Err(ConfigError::invalid(
                    format!("services[{i}].ports"),
                    "[]",
                    "a Service needs at least one port",
                ));
            }
            if svc.backends.len() > crate::tables::service::MAX_BACKENDS {
                return Err(ConfigError::invalid(
                    format!("services[{i}].backends"),
                    svc.backends.len(),
                    format!("at most {} backends", crate::tables::service::MAX_BACKENDS),
                ));
            }
            let addrs = [("cluster_ips", &svc.cluster_ips), ("external_ips", &svc.external_ips)];
            for (key, list) in addrs.into_iter().chain([("load_balancer_ips", &svc.load_balancer_ips)]) {
                if let Some(a) = list.iter().find(|a| a.is_unspecified() || a.is_multicast() || a.is_broadcast()) {
                    return Err(ConfigError::invalid(format!("services[{i}].{key}"), a, "not a unicast address"));
                }
            }
            for (j, p) in svc.ports.iter().enumerate() {
                if p.port == 0 || p.target_port == Some(0) {
                    return Err(ConfigError::invalid(format!("services[{i}].ports[{j}]"), p.port, "ports are 1-65535"));
                }
                if p.node_port == Some(0) {
                    return Err(ConfigError::invalid(
                        format!("services[{i}].ports[{j}].node_port"),
                        0,
                        "ports are 1-65535",
                    ));
                }
                let addrs = svc.cluster_ips.iter().chain(&svc.external_ips).chain(&svc.load_balancer_ips);
                // NodePorts live on the node IP: 0.0.0.0 stands for it here.
                let node = p.node_port.map(|np| (Ipv4Addr::UNSPECIFIED, np));
                for (ip, port) in addrs.map(|a| (*a, p.port)).chain(node) {
                    if !frontends.insert((ip, port, p.protocol)) {
                        return Err(ConfigError::invalid(
                            format!("services[{i}].ports[{j}]"),
                            format!("{ip}:{port}/{:?}", p.protocol),
                            "another Service port has this address, port and protocol",
                        ));
                    }
                }
            }
            if let Some(t) = svc.affinity_timeout_seconds {
                if t == 0 || t > 86400 {
                    return Err(ConfigError::invalid(
                        format!("services[{i}].affinity_timeout_seconds"),
                        t,
                        "want 1..=86400 (Kubernetes' range)",
                    ));
                }
            }
            let mut seen = HashSet::new();
            for (j, b) in svc.backends.iter().enumerate() {
                if !seen.insert(b.ip) || b.ip.is_unspecified() || b.ip.is_multicast() || b.ip.is_broadcast() {
                    return Err(ConfigError::invalid(
                        format!("services[{i}].backends[{j}].ip"),
                        b.ip,
                        "listed twice, or not a unicast address",
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_overlay(&self) -> Result<(), ConfigError> {
        let n = &self.node;
        let uplinks: Vec<usize> = self.ports.iter().enumerate().filter(|(_, p)| p.uplink).map(|(i, _)| i).collect();
        let hosts: Vec<usize> = self.ports.iter().enumerate().filter(|(_, p)| p.host).map(|(i, _)| i).collect();
        if hosts.len() > 1 {
            return Err(ConfigError::invalid(
                format!("ports[{}].host", hosts[1]),
                "true",
                format!("ports[{}] is the host port already", hosts[0]),
            ));
        }
        if let Some(i) = hosts.first() {
            let p = &self.ports[*i];
            if p.uplink || p.pod.is_some() {
                return Err(ConfigError::invalid(
                    format!("ports[{i}].host"),
                    "true",
                    "a host port is not also an uplink or a pod port",
                ));
            }
            if uplinks.is_empty() {
                return Err(ConfigError::invalid(
                    format!("ports[{i}].host"),
                    "true",
                    "the host path needs an uplink port",
                ));
            }
        }
        if uplinks.len() > 1 {
            return Err(ConfigError::invalid(
                format!("ports[{}].uplink", uplinks[1]),
                "true",
                format!("ports[{}] is the uplink already", uplinks[0]),
            ));
        }
        if let Some(i) = uplinks.first() {
            let Some(ip) = n.node_ip else {
                return Err(ConfigError::invalid(
                    "node.node_ip",
                    "(missing)",
                    format!("ports[{i}] is an uplink, which needs the node's underlay IP"),
                ));
            };
            let Some(under) = n.underlay_cidr else {
                return Err(ConfigError::invalid(
                    "node.underlay_cidr",
                    "(missing)",
                    format!("ports[{i}] is an uplink, which needs the underlay subnet"),
                ));
            };
            if !under.contains(ip) {
                return Err(ConfigError::invalid("node.node_ip", ip, format!("not inside node.underlay_cidr {under}")));
            }
            if let Some(gw) = n.underlay_gateway {
                if !under.contains(gw) || gw == ip {
                    return Err(ConfigError::invalid(
                        "node.underlay_gateway",
                        gw,
                        format!("not another address inside node.underlay_cidr {under}"),
                    ));
                }
            }
        }
        if self.overlay.vxlan_port == 0 {
            return Err(ConfigError::invalid("overlay.vxlan_port", 0, "want a UDP port, 1-65535"));
        }
        let mut vnis = HashSet::new();
        let mut check_vni = |key: String, vni: u32| {
            if vni == 0 || vni > crate::wire::vxlan::MAX_VNI {
                return Err(ConfigError::invalid(key, vni, "want 1..=16777215"));
            }
            if !vnis.insert(vni) {
                return Err(ConfigError::invalid(key, vni, "another network has this VNI"));
            }
            Ok(())
        };
        check_vni("overlay.vni".into(), self.overlay.vni)?;
        let mut names = HashSet::new();
        for (i, net) in self.networks.iter().enumerate() {
            if net.name.is_empty() || net.name == "default" || !names.insert(net.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("networks[{i}].name"),
                    format!("{:?}", net.name),
                    "empty, \"default\", or used twice",
                ));
            }
            check_vni(format!("networks[{i}].vni"), net.vni)?;
            if !net.subnet.contains(net.gateway) || net.gateway == net.subnet.addr() {
                return Err(ConfigError::invalid(
                    format!("networks[{i}].gateway"),
                    net.gateway,
                    format!("not a host address of its subnet {}", net.subnet),
                ));
            }
        }
        let mut nodes = HashSet::new();
        for (i, r) in self.remote_nodes.iter().enumerate() {
            if !nodes.insert(r.name.as_str()) || r.name == n.name {
                return Err(ConfigError::invalid(
                    format!("remote_nodes[{i}].name"),
                    format!("{:?}", r.name),
                    "used twice, or this node's own name",
                ));
            }
            if Some(r.node_ip) == n.node_ip {
                return Err(ConfigError::invalid(
                    format!("remote_nodes[{i}].node_ip"),
                    r.node_ip,
                    "is this node's own node_ip",
                ));
            }
            if uplinks.is_empty() {
                return Err(ConfigError::invalid(
                    format!("remote_nodes[{i}].name"),
                    &r.name,
                    "remote nodes are reached over the uplink, and no port is one",
                ));
            }
            let reachable = n.underlay_cidr.is_some_and(|u| u.contains(r.node_ip)) || n.underlay_gateway.is_some();
            if !reachable {
                return Err(ConfigError::invalid(
                    format!("remote_nodes[{i}].node_ip"),
                    r.node_ip,
                    "outside node.underlay_cidr and no node.underlay_gateway",
                ));
            }
            let overlaps = |a: Ipv4Cidr, b: Ipv4Cidr| a.contains(b.addr()) || b.contains(a.addr());
            if overlaps(r.pod_cidr, n.pod_cidr) {
                return Err(ConfigError::invalid(
                    format!("remote_nodes[{i}].pod_cidr"),
                    r.pod_cidr,
                    format!("overlaps this node's pod_cidr {}", n.pod_cidr),
                ));
            }
            if !r.vtep_mac.is_unicast() {
                return Err(ConfigError::invalid(
                    format!("remote_nodes[{i}].vtep_mac"),
                    r.vtep_mac,
                    "must be a unicast MAC",
                ));
            }
        }
        for (i, r) in self.remote_routes.iter().enumerate() {
            if r.network != "default" && !names.contains(r.network.as_str()) {
                return Err(ConfigError::invalid(
                    format!("remote_routes[{i}].network"),
                    format!("{:?}", r.network),
                    "no network has this name",
                ));
            }
            if !nodes.contains(r.node.as_str()) {
                return Err(ConfigError::invalid(
                    format!("remote_routes[{i}].node"),
                    format!("{:?}", r.node),
                    "not in remote_nodes",
                ));
            }
        }
        Ok(())
    }

    fn validate_dpdk(&self) -> Result<(), ConfigError> {
        let d = &self.dpdk;
        if d.worker_cores.is_empty() || d.worker_cores.len() > MAX_WORKERS {
            return Err(ConfigError::invalid(
                "dpdk.worker_cores",
                format!("{:?}", d.worker_cores),
                format!("want 1..={MAX_WORKERS} cores"),
            ));
        }
        let mut seen = HashSet::new();
        for c in &d.worker_cores {
            if !seen.insert(c) {
                return Err(ConfigError::invalid(
                    "dpdk.worker_cores",
                    format!("{:?}", d.worker_cores),
                    format!("core {c} is listed twice"),
                ));
            }
        }
        if d.memory_mb < 64 {
            return Err(ConfigError::invalid("dpdk.memory_mb", d.memory_mb, "at least 64 MiB"));
        }
        if d.burst == 0 || d.burst > MAX_BURST {
            return Err(ConfigError::invalid("dpdk.burst", d.burst, format!("want 1..={MAX_BURST}")));
        }
        for (key, v) in [("dpdk.rx_descriptors", d.rx_descriptors), ("dpdk.tx_descriptors", d.tx_descriptors)] {
            if !(64..=8192).contains(&v) || !v.is_power_of_two() {
                return Err(ConfigError::invalid(key, v, "want a power of two in 64..=8192"));
            }
        }
        if d.mbuf_cache > 512 {
            return Err(ConfigError::invalid(
                "dpdk.mbuf_cache",
                d.mbuf_cache,
                "at most 512 (RTE_MEMPOOL_CACHE_MAX_SIZE)",
            ));
        }
        if let Some(fp) = &d.file_prefix {
            if fp.is_empty() || fp.contains('/') {
                return Err(ConfigError::invalid(
                    "dpdk.file_prefix",
                    format!("{fp:?}"),
                    "want a non-empty name without '/'",
                ));
            }
        }
        Ok(())
    }
}

/// Checks one port's fields for its kind. `key` is where it sits (`ports[2]`).
pub fn validate_port(p: &PortConfig, key: &str) -> Result<(), ConfigError> {
    if p.name.is_empty()
        || p.name.len() > 24
        || !p.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(ConfigError::invalid(
            format!("{key}.name"),
            format!("{:?}", p.name),
            "want 1-24 characters of [a-z0-9-]",
        ));
    }
    if p.kind == PortKind::Tap && p.name.len() > 14 {
        // DPDK's net_tap names its device net_tap_<name>; from 15
        // characters of name on, its tx queue setup fails (EPERM).
        return Err(ConfigError::invalid(
            format!("{key}.name"),
            format!("{:?}", p.name),
            "a tap port's name is at most 14 characters (DPDK's net_tap fails with longer ones)",
        ));
    }
    if p.rx_queues == 0 || p.rx_queues > MAX_RX_QUEUES {
        return Err(ConfigError::invalid(format!("{key}.rx_queues"), p.rx_queues, format!("want 1..={MAX_RX_QUEUES}")));
    }
    let (needs, allowed): (&[&str], &[&str]) = match p.kind {
        PortKind::Pci => (&["pci"], &["pci", "devargs"]),
        PortKind::AfPacket | PortKind::Tap => (&["iface"], &["iface", "devargs"]),
        PortKind::VhostUser | PortKind::VirtioUser | PortKind::Memif => (&["path"], &["path", "server", "devargs"]),
        PortKind::Ring | PortKind::Null => (&[], &["devargs"]),
    };
    let present = [
        ("iface", p.iface.is_some()),
        ("path", p.path.is_some()),
        ("server", p.server.is_some()),
        ("pci", p.pci.is_some()),
        ("devargs", p.devargs.is_some()),
    ];
    // A key the user wrote that does not belong is the likelier mistake: name it first.
    if let Some((field, _)) = present.iter().find(|(f, is)| *is && !allowed.contains(f)) {
        return Err(ConfigError::invalid(format!("{key}.{field}"), "(set)", format!("not used by kind {}", p.kind)));
    }
    if let Some((field, _)) = present.iter().find(|(f, is)| !*is && needs.contains(f)) {
        return Err(ConfigError::invalid(format!("{key}.{field}"), "(missing)", format!("kind {} needs it", p.kind)));
    }
    let plain = |field: &str, v: &str| -> Result<(), ConfigError> {
        if v.is_empty() || v.contains(',') || v.contains('=') || v.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::invalid(
                format!("{key}.{field}"),
                format!("{v:?}"),
                "empty, or holds ',', '=' or spaces",
            ));
        }
        Ok(())
    };
    if let Some(i) = &p.iface {
        plain("iface", i)?;
        if i.len() > 15 {
            return Err(ConfigError::invalid(
                format!("{key}.iface"),
                format!("{i:?}"),
                "Linux interface names have at most 15 characters",
            ));
        }
    }
    if let Some(v) = &p.path {
        plain("path", v)?;
    }
    if let Some(v) = &p.pci {
        plain("pci", v)?;
    }
    if let Some(d) = &p.devargs {
        if d.is_empty() || d.split(',').any(|kv| !kv.contains('=')) || d.chars().any(|c| c.is_whitespace()) {
            return Err(ConfigError::invalid(
                format!("{key}.devargs"),
                format!("{d:?}"),
                "want key=value[,key=value...]",
            ));
        }
    }
    if let Some(pod) = &p.pod {
        if !pod.mac.is_unicast() {
            return Err(ConfigError::invalid(format!("{key}.pod.mac"), pod.mac, "must be a unicast MAC"));
        }
    }
    Ok(())
}

impl PortConfig {
    /// The EAL devargs string that creates this port, e.g.
    /// `net_af_packet_pod-a,iface=wa-a,qpairs=2`. `tx_queues`: one per worker plus the management thread's.
    pub fn devargs(&self, tx_queues: u16) -> String {
        let q = self.rx_queues.max(tx_queues);
        let id = self.name.replace('-', "_");
        let mut s = match self.kind {
            PortKind::Pci => self.pci.clone().unwrap_or_default(),
            // A deeper kernel ring than the driver's default (512 frames), so a
            // burst from a fast kernel sender is not dropped before a worker
            // that was idling polls again. `devargs` may override it.
            PortKind::AfPacket => {
                let ring = if self.devargs.as_deref().is_some_and(|d| d.contains("framecnt=")) {
                    String::new()
                } else {
                    ",framecnt=4096".into()
                };
                format!("net_af_packet_{id},iface={},qpairs={q}{ring}", self.iface.as_deref().unwrap_or_default())
            }
            PortKind::Tap => format!("net_tap_{id},iface={}", self.iface.as_deref().unwrap_or_default()),
            PortKind::VhostUser => format!(
                "net_vhost_{id},iface={},queues={q},client={}",
                self.path.as_deref().unwrap_or_default(),
                u8::from(!self.server.unwrap_or(true))
            ),
            PortKind::VirtioUser => format!(
                "net_virtio_user_{id},path={},queues={q},server={}",
                self.path.as_deref().unwrap_or_default(),
                u8::from(self.server.unwrap_or(false))
            ),
            PortKind::Memif => format!(
                "net_memif_{id},socket={},role={}",
                self.path.as_deref().unwrap_or_default(),
                if self.server.unwrap_or(true) { "server" } else { "client" }
            ),
            PortKind::Ring => format!("net_ring_{id}"),
            PortKind::Null => format!("net_null_{id}"),
        };
        if let Some(extra) = &self.devargs {
            s.push(',');
            s.push_str(extra);
        }
        s
    }

    /// The ethdev name DPDK gives the port (devargs up to the first comma).
    pub fn dev_name(&self, tx_queues: u16) -> String {
        let d = self.devargs(tx_queues);
        d.split(',').next().unwrap_or_default().to_string()
    }
}

/// Puts the object's name next to a list index in a config error
/// (`services[3].ports[0] = ...` → `services[3] (default/web).ports[0] = ...`),
/// so a refused `Update` names what it refused.
pub fn name_object(msg: &str, cfg: &NodeConfig) -> String {
    let lists: [(&str, Vec<&str>); 4] = [
        ("services[", cfg.services.iter().map(|s| s.name.as_str()).collect()),
        ("networks[", cfg.networks.iter().map(|n| n.name.as_str()).collect()),
        ("remote_nodes[", cfg.remote_nodes.iter().map(|n| n.name.as_str()).collect()),
        ("ports[", cfg.ports.iter().map(|p| p.name.as_str()).collect()),
    ];
    for (prefix, names) in lists {
        let Some(rest) = msg.strip_prefix(prefix) else { continue };
        let Some(end) = rest.find(']') else { continue };
        let Some(name) = rest[..end].parse::<usize>().ok().and_then(|i| names.get(i)) else { continue };
        return format!("{prefix}{}] ({name}){}", &rest[..end], &rest[end + 1..]);
    }
    msg.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
name = "node1"
pod_cidr = "10.1.0.0/24"

[gateway]
ip = "10.1.0.1"
mac = "02:fe:00:00:00:01"

[dpdk]
worker_cores = [1]

[[ports]]
name = "pod-a"
kind = "af_packet"
iface = "wa-a"
pod = { ip = "10.1.0.2", mac = "02:00:00:00:00:02" }

[[ports]]
name = "pod-b"
kind = "af_packet"
iface = "wa-b"
rx_queues = 2
pod = { ip = "10.1.0.3", mac = "02:00:00:00:00:03" }
"#;

    #[test]
    fn good_config_parses() {
        let c = NodeConfig::from_toml(GOOD).unwrap();
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.file_prefix(), "weir-node1");
        assert_eq!(c.ports[1].devargs(1), "net_af_packet_pod_b,iface=wa-b,qpairs=2,framecnt=4096");
        assert_eq!(c.ports[1].dev_name(1), "net_af_packet_pod_b");
    }

    #[test]
    fn eal_args_follow_the_config() {
        let c = NodeConfig::from_toml(GOOD).unwrap();
        let a = c.eal_args("w").join(" ");
        assert_eq!(a, "w -l 0 --single-file-segments --file-prefix=weir-node1 --in-memory -m 512 --no-pci");
        let pci = GOOD.replace(
            "kind = \"af_packet\"\niface = \"wa-a\"",
            "kind = \"pci\"\npci = \"0000:03:00.0\"\ndevargs = \"a=1\"",
        );
        let c = NodeConfig::from_toml(&pci).unwrap();
        assert!(c.eal_args("w").join(" ").ends_with("-a 0000:03:00.0,a=1"), "{:?}", c.eal_args("w"));
        let nohuge = GOOD.replace("[dpdk]", "[dpdk]\nhugepages = false");
        assert!(NodeConfig::from_toml(&nohuge).unwrap().eal_args("w").contains(&"--no-huge".to_string()));
    }

    #[test]
    fn example_config_is_valid() {
        let c = NodeConfig::from_toml(include_str!("../../config/node.example.toml")).unwrap();
        // The example spells out every default; keep them in step.
        assert_eq!(c.dpdk, DpdkSection::default());
        assert_eq!(c.management, ManagementSection::default());
        assert_eq!(c.overlay, OverlaySection::default());
        assert_eq!(c.nat, NatSection::default());
        // And its commented Service parses.
        let svc: String = include_str!("../../config/node.example.toml")
            .split("# [[services]]")
            .nth(1)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                // key = value lines and their indented continuations, not prose
                let key = l.split(" = ").next().unwrap_or("");
                l.starts_with(' ') || (l.contains(" = ") && key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = NodeConfig::from_toml(&format!("{GOOD}\n[[services]]\n{svc}")).unwrap();
        assert_eq!(c.services[0].ports[0].node_port, Some(30080));
        assert!(c.services[0].backends[2].serving());
    }

    fn refused(text: &str) -> String {
        NodeConfig::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_configs_name_the_key() {
        let e = refused(&GOOD.replace("ip = \"10.1.0.1\"", "ip = \"10.9.0.1\""));
        assert!(e.starts_with("gateway.ip = 10.9.0.1"), "{e}");
        for bad in ["relative/flows", ""] {
            let e = refused(&GOOD.replace("worker_cores = [1]", &format!("worker_cores = [1]\nflow_state = {bad:?}")));
            assert!(e.starts_with("dpdk.flow_state"), "{e}");
        }
        let e = refused(&GOOD.replace("worker_cores = [1]", "worker_cores = [1, 1]"));
        assert!(e.starts_with("dpdk.worker_cores = [1, 1]") && e.contains("twice"), "{e}");
        let e = refused(&GOOD.replace("worker_cores = [1]", "worker_cores = []"));
        assert!(e.starts_with("dpdk.worker_cores = []"), "{e}");
        let e = refused(&GOOD.replace("iface = \"wa-b\"", "path = \"/tmp/x\""));
        assert!(e.starts_with("ports[1].path"), "{e}");
        let e = refused(&GOOD.replace("rx_queues = 2", "rx_queues = 99"));
        assert!(e.starts_with("ports[1].rx_queues = 99"), "{e}");
        let e = refused(&GOOD.replace("10.1.0.3\"", "10.1.0.2\""));
        assert!(e.starts_with("ports[1].pod.ip = 10.1.0.2") && e.contains("another pod"), "{e}");
        let e = refused(&GOOD.replace("name = \"pod-b\"", "name = \"pod-a\""));
        assert!(e.starts_with("ports[1].name"), "{e}");
        let e = refused(&GOOD.replace("[dpdk]", "[dpdk]\nburst = 0"));
        assert!(e.starts_with("dpdk.burst = 0"), "{e}");
        let e = refused(&GOOD.replace("[dpdk]", "[dpdk]\nmbufs = 100"));
        assert!(e.starts_with("dpdk.mbufs = 100"), "{e}");
        let tap = "[[ports]]\nname = \"fifteen-chars-x\"\nkind = \"tap\"\niface = \"t0\"\n";
        let e = refused(&format!("{GOOD}\n{tap}"));
        assert!(e.contains(".name = \"fifteen-chars-x\"") && e.contains("14 characters"), "{e}");
        let e = refused(&GOOD.replace("iface = \"wa-a\"", "iface = \"wa-a,qpairs=9\""));
        assert!(e.starts_with("ports[0].iface"), "{e}");
    }

    #[test]
    fn errors_name_the_object() {
        let c = NodeConfig::from_toml(&format!(
            "{GOOD}\n[[services]]\nname = \"default/web\"\nports = [{{ port = 80, protocol = \"tcp\" }}]\n"
        ))
        .unwrap();
        assert_eq!(
            name_object("services[0].ports[0] = 0: ports are 1-65535", &c),
            "services[0] (default/web).ports[0] = 0: ports are 1-65535"
        );
        assert_eq!(name_object("services[7].name = x", &c), "services[7].name = x", "no such index");
        assert_eq!(name_object("gateway.ip = 1.2.3.4: bad", &c), "gateway.ip = 1.2.3.4: bad");
    }

    #[test]
    fn services_are_validated() {
        let svc = |body: &str| format!("{GOOD}\n[[services]]\nname = \"default/s\"\n{body}");
        let ok = "cluster_ips = [\"10.96.0.1\"]\nports = [{ port = 80, protocol = \"tcp\", node_port = 30080 }]";
        NodeConfig::from_toml(&svc(ok)).unwrap();
        // Headless: no address at all is fine.
        NodeConfig::from_toml(&svc("ports = [{ port = 80, protocol = \"tcp\" }]")).unwrap();
        let e = refused(&svc(&ok.replace("30080", "0")));
        assert!(e.starts_with("services[0].ports[0].node_port = 0"), "{e}");
        let e = refused(&svc(&format!("{ok}\nexternal_ips = [\"224.0.0.1\"]")));
        assert!(e.starts_with("services[0].external_ips = 224.0.0.1"), "{e}");
        let e = refused(&svc(&format!("{ok}\nload_balancer_ips = [\"10.96.0.1\"]")));
        assert!(e.starts_with("services[0].ports[0] = 10.96.0.1:80/Tcp") && e.contains("another"), "{e}");
        let two = format!("{}\n[[services]]\nname = \"default/t\"\n{}", svc(ok), ok.replace("10.96.0.1", "10.96.0.2"));
        let e = refused(&two);
        assert!(e.starts_with("services[1].ports[0] = 0.0.0.0:30080/Tcp"), "{e}");
        let e = refused(&svc(&format!("{ok}\nexternal_traffic_policy = \"nearby\"")));
        assert!(e.contains("nearby"), "{e}");
        let e = refused(&format!("{}\n[nat]\nsnat_port_min = 65000\nsnat_port_max = 64000", svc(ok)));
        assert!(e.starts_with("nat.snat_port_min = 65000"), "{e}");
    }

    #[test]
    fn parse_errors_name_the_key() {
        let e = refused(&GOOD.replace("[dpdk]", "[dpdk]\nbusy_pol = true"));
        assert!(e.contains("busy_pol"), "{e}");
        let e = refused(&GOOD.replace("02:fe:00:00:00:01", "02:fe:00:00:01"));
        assert!(e.contains("02:fe:00:00:01") && e.contains("mac"), "{e}");
        let e = refused(&GOOD.replace("\"10.1.0.0/24\"", "\"10.1.0.0/33\""));
        assert!(e.contains("pod_cidr"), "{e}");
        let e = refused(&GOOD.replace("kind = \"af_packet\"", "kind = \"afpacket\""));
        assert!(e.contains("afpacket"), "{e}");
    }
}
