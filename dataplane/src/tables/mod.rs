//! The tables a worker reads: one immutable [`Tables`] value per generation.
//!
//! The management thread builds a whole new `Tables` and publishes it through
//! [`crate::snapshot::Snapshot`]; workers never see a table being changed.
//!
//! Routing is per network: every pod port belongs to a [`Network`] (the
//! node's default pod network, or a named one with its own subnet, gateway
//! and VNI) and its packets are looked up in that network's routes only, so
//! networks do not reach each other unless a route says so.

pub mod acl;
pub mod cidr;
pub mod lpm;
pub mod maglev;
pub mod service;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::Ipv4Addr;

use crate::config::{ForwardMode, NodeConfig};
use crate::wire::MacAddr;
use cidr::Ipv4Cidr;
use lpm::RouteTable;

/// A fast hasher for the small fixed-size keys of the tables (addresses,
/// VNIs): a multiply-rotate per word, as rustc's FxHash does. SipHash, the
/// default, costs a hundred instructions or more per lookup, and the keys
/// here come from the cluster's own configuration, not from packets an
/// attacker can pick to collide.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // Final mix so the low bits (the bucket index) depend on every input bit.
        let h = self.0 ^ (self.0 >> 29);
        h.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 32)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Addresses hash as 4 bytes: one word, no loop.
        if let Ok(w) = <[u8; 4]>::try_from(bytes) {
            return self.write_u32(u32::from_le_bytes(w));
        }
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(SEED);
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
pub type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// DPDK's port id space (RTE_MAX_ETHPORTS in Debian's build).
pub const MAX_PORTS: usize = 32;

pub type PortId = u16;
/// Index into [`Tables::networks`]; 0 is the node's default pod network.
pub type NetId = u16;

pub const DEFAULT_NETWORK: NetId = 0;

/// Where a route sends packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// Out of a local port, to this MAC (a pod, or a static next hop).
    Local { port: PortId, mac: MacAddr },
    /// Over VXLAN to another node's VTEP: the inner frame goes to `vtep_mac`
    /// in network `net` (its VNI), the outer packet to `vtep`.
    Remote { vtep: Ipv4Addr, vtep_mac: MacAddr, net: NetId },
    /// To the node's own kernel, through the host port (the kernel's MAC is
    /// the resolved neighbour entry of the node IP).
    Host,
}

/// Kept for callers that speak of local routes only.
pub type RouteTarget = Hop;

#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    pub vni: u32,
    pub subnet: Ipv4Cidr,
    pub gateway_ip: Ipv4Addr,
    pub routes: RouteTable<Hop>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodInfo {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub net: NetId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEntry {
    pub name: String,
    /// The pod behind the port, if any.
    pub pod: Option<PodInfo>,
    /// The node's uplink to the underlay.
    pub uplink: bool,
    /// The port to the node's own kernel.
    pub host: bool,
}

impl PortEntry {
    pub fn plain(name: &str) -> Self {
        PortEntry { name: name.to_string(), pod: None, uplink: false, host: false }
    }

    pub fn pod(name: &str, ip: Ipv4Addr, mac: MacAddr, net: NetId) -> Self {
        PortEntry { name: name.to_string(), pod: Some(PodInfo { ip, mac, net }), uplink: false, host: false }
    }
}

/// (port, rx queue) pairs a worker polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxQueue {
    pub port: PortId,
    pub queue: u16,
}

/// The node's side of the VXLAN overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The node's underlay address: VXLAN source, ARP answered on the uplink.
    pub node_ip: Ipv4Addr,
    pub uplink: PortId,
    /// The uplink port's own MAC: outer source, ARP answers.
    pub uplink_mac: MacAddr,
    /// IP MTU of the underlay; inner packets may be 50 bytes less.
    pub mtu: u16,
    pub vxlan_port: u16,
    /// VTEPs inside it are resolved directly; others through `gateway`.
    pub underlay: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
    /// The port to the node's kernel, if there is one (the host path).
    pub host: Option<PortId>,
    /// LoadBalancer IPs this node answers ARP for on the uplink, sorted
    /// (a handful: the VIPs it was elected to announce).
    pub announced: Vec<Ipv4Addr>,
}

impl Overlay {
    /// The next hop on the underlay for `dst`: itself when on-link, else the
    /// underlay gateway.
    #[inline]
    pub fn announces(&self, ip: Ipv4Addr) -> bool {
        self.announced.binary_search(&ip).is_ok()
    }

    #[inline]
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.underlay.contains(dst) {
            Some(dst)
        } else {
            self.gateway
        }
    }
}

/// Outer Ethernet + IPv4 + UDP + VXLAN.
pub const VXLAN_OVERHEAD: usize = 14 + 20 + 8 + 8;

#[derive(Debug, Clone)]
pub struct Tables {
    /// Bumped on every publication; reported back to the control side.
    pub generation: u64,
    pub mode: ForwardMode,
    /// The MAC weir uses as every pod network's gateway and as its VTEP MAC.
    pub gateway_mac: MacAddr,
    pub networks: Vec<Network>,
    /// VNI → network.
    pub vni_index: FastMap<u32, NetId>,
    pub overlay: Option<Overlay>,
    /// Underlay neighbours (IP → MAC), resolved by ARP on the uplink.
    pub neighbours: FastMap<Ipv4Addr, MacAddr>,
    /// The VTEPs of the other nodes: VXLAN is accepted from these only.
    pub vteps: FastSet<Ipv4Addr>,
    /// Service frontends and their backends.
    pub services: service::ServiceTable,
    /// Other nodes' IPs → their VTEP: pods reach other nodes (and the
    /// answers of translated flows come back) through the tunnel.
    pub node_hops: FastMap<Ipv4Addr, Hop>,
    /// Pods' ACLs (NetworkPolicy and the Contiv model, compiled).
    pub acl: std::sync::Arc<acl::AclTable>,
    /// Indexed by DPDK port id; `None` where no port is (or no longer is).
    pub ports: Vec<Option<PortEntry>>,
    /// In io mode: the port each port forwards to.
    pub io_peer: Vec<Option<PortId>>,
    /// Per worker: the rx queues it polls.
    pub rx_plan: Vec<Vec<RxQueue>>,
}

impl Tables {
    /// Tables for a node: its networks, no ports and no routes yet.
    pub fn new(cfg: &NodeConfig, workers: usize) -> Self {
        let mut networks = vec![Network {
            name: "default".into(),
            vni: cfg.overlay.vni,
            subnet: cfg.node.pod_cidr,
            gateway_ip: cfg.gateway.ip,
            routes: RouteTable::new(),
        }];
        for n in &cfg.networks {
            networks.push(Network {
                name: n.name.clone(),
                vni: n.vni,
                subnet: n.subnet,
                gateway_ip: n.gateway,
                routes: RouteTable::new(),
            });
        }
        let vni_index = networks.iter().enumerate().map(|(i, n)| (n.vni, i as NetId)).collect();
        Tables {
            generation: 0,
            mode: cfg.dpdk.forward_mode,
            gateway_mac: cfg.gateway.mac,
            networks,
            vni_index,
            overlay: None,
            neighbours: FastMap::default(),
            vteps: FastSet::default(),
            services: service::ServiceTable::default(),
            node_hops: FastMap::default(),
            acl: std::sync::Arc::default(),
            ports: vec![None; MAX_PORTS],
            io_peer: vec![None; MAX_PORTS],
            rx_plan: vec![Vec::new(); workers],
        }
    }

    /// Adds a port: its pod route (if it has a pod) and its rx queues, spread
    /// over the workers with the fewest queues.
    pub fn add_port(&mut self, id: PortId, entry: PortEntry, rx_queues: u16) {
        if let Some(pod) = entry.pod {
            if let Some(net) = self.networks.get_mut(usize::from(pod.net)) {
                net.routes.insert(Ipv4Cidr::host(pod.ip), Hop::Local { port: id, mac: pod.mac });
            }
        }
        for q in 0..rx_queues {
            let w = (0..self.rx_plan.len()).min_by_key(|w| self.rx_plan[*w].len()).unwrap_or(0);
            if let Some(plan) = self.rx_plan.get_mut(w) {
                plan.push(RxQueue { port: id, queue: q });
            }
        }
        if let Some(slot) = self.ports.get_mut(usize::from(id)) {
            *slot = Some(entry);
        }
    }

    /// Routes `prefix` of network `net` to another node, and accepts VXLAN
    /// from that node's VTEP.
    pub fn add_remote_route(&mut self, net: NetId, prefix: Ipv4Cidr, hop: Hop) {
        if let Hop::Remote { vtep, .. } = hop {
            self.vteps.insert(vtep);
        }
        if let Some(n) = self.networks.get_mut(usize::from(net)) {
            n.routes.insert(prefix, hop);
        }
    }

    /// Removes a port and every route and rx queue that points at it.
    pub fn remove_port(&mut self, id: PortId) {
        if let Some(slot) = self.ports.get_mut(usize::from(id)) {
            *slot = None;
        }
        for net in &mut self.networks {
            let gone: Vec<Ipv4Cidr> = net
                .routes
                .iter()
                .filter(|(_, h)| matches!(h, Hop::Local { port, .. } if *port == id))
                .map(|(p, _)| p)
                .collect();
            for p in gone {
                net.routes.remove(p);
            }
        }
        for plan in &mut self.rx_plan {
            plan.retain(|q| q.port != id);
        }
        for peer in &mut self.io_peer {
            if *peer == Some(id) {
                *peer = None;
            }
        }
        if let Some(o) = &self.overlay {
            if o.uplink == id {
                self.overlay = None;
            }
        }
    }

    pub fn port(&self, id: PortId) -> Option<&PortEntry> {
        self.ports.get(usize::from(id)).and_then(|p| p.as_ref())
    }

    pub fn port_by_name(&self, name: &str) -> Option<PortId> {
        self.ports.iter().position(|p| p.as_ref().is_some_and(|p| p.name == name)).map(|i| i as PortId)
    }

    pub fn network(&self, id: NetId) -> Option<&Network> {
        self.networks.get(usize::from(id))
    }

    pub fn network_by_name(&self, name: &str) -> Option<NetId> {
        self.networks.iter().position(|n| n.name == name).map(|i| i as NetId)
    }

    /// The network a port's packets are routed in (pods: their network;
    /// other ports: the default network).
    #[inline]
    pub fn port_network(&self, id: PortId) -> NetId {
        self.port(id).and_then(|p| p.pod).map_or(DEFAULT_NETWORK, |p| p.net)
    }
}
