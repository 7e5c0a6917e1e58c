//! The tables a worker reads: one immutable [`Tables`] value per generation.
//!
//! The management thread builds a whole new `Tables` and publishes it through
//! [`crate::snapshot::Snapshot`]; workers never see a table being changed.

pub mod cidr;
pub mod lpm;

use std::net::Ipv4Addr;

use crate::config::{ForwardMode, NodeConfig};
use crate::wire::MacAddr;
use cidr::Ipv4Cidr;
use lpm::RouteTable;

/// DPDK's port id space (RTE_MAX_ETHPORTS in Debian's build).
pub const MAX_PORTS: usize = 32;

pub type PortId = u16;

/// Where a route sends packets: out of `port`, to `next_hop_mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTarget {
    pub port: PortId,
    pub next_hop_mac: MacAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEntry {
    pub name: String,
    /// The pod behind the port, if any.
    pub pod: Option<(Ipv4Addr, MacAddr)>,
}

/// (port, rx queue) pairs a worker polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxQueue {
    pub port: PortId,
    pub queue: u16,
}

#[derive(Debug, Clone)]
pub struct Tables {
    /// Bumped on every publication; reported back to the control side.
    pub generation: u64,
    pub mode: ForwardMode,
    pub gateway_ip: Ipv4Addr,
    pub gateway_mac: MacAddr,
    pub pod_cidr: Ipv4Cidr,
    pub routes: RouteTable<RouteTarget>,
    /// Indexed by DPDK port id; `None` where no port is (or no longer is).
    pub ports: Vec<Option<PortEntry>>,
    /// In io mode: the port each port forwards to.
    pub io_peer: Vec<Option<PortId>>,
    /// Per worker: the rx queues it polls.
    pub rx_plan: Vec<Vec<RxQueue>>,
}

impl Tables {
    /// Empty tables for a node: gateway known, no ports and no routes yet.
    pub fn new(cfg: &NodeConfig, workers: usize) -> Self {
        Tables {
            generation: 0,
            mode: cfg.dpdk.forward_mode,
            gateway_ip: cfg.gateway.ip,
            gateway_mac: cfg.gateway.mac,
            pod_cidr: cfg.node.pod_cidr,
            routes: RouteTable::new(),
            ports: vec![None; MAX_PORTS],
            io_peer: vec![None; MAX_PORTS],
            rx_plan: vec![Vec::new(); workers],
        }
    }

    /// Adds a port: its pod route (if it has a pod) and its rx queues, spread
    /// over the workers with the fewest queues.
    pub fn add_port(&mut self, id: PortId, entry: PortEntry, rx_queues: u16) {
        if let Some((ip, mac)) = entry.pod {
            self.routes.insert(
                Ipv4Cidr::host(ip),
                RouteTarget {
                    port: id,
                    next_hop_mac: mac,
                },
            );
        }
        for q in 0..rx_queues {
            let w = (0..self.rx_plan.len())
                .min_by_key(|w| self.rx_plan[*w].len())
                .unwrap_or(0);
            if let Some(plan) = self.rx_plan.get_mut(w) {
                plan.push(RxQueue { port: id, queue: q });
            }
        }
        if let Some(slot) = self.ports.get_mut(usize::from(id)) {
            *slot = Some(entry);
        }
    }

    /// Removes a port and every route and rx queue that points at it.
    pub fn remove_port(&mut self, id: PortId) {
        if let Some(slot) = self.ports.get_mut(usize::from(id)) {
            *slot = None;
        }
        let gone: Vec<Ipv4Cidr> = self
            .routes
            .iter()
            .filter(|(_, t)| t.port == id)
            .map(|(p, _)| p)
            .collect();
        for p in gone {
            self.routes.remove(p);
        }
        for plan in &mut self.rx_plan {
            plan.retain(|q| q.port != id);
        }
        for peer in &mut self.io_peer {
            if *peer == Some(id) {
                *peer = None;
            }
        }
        if let Some(p) = self.io_peer.get_mut(usize::from(id)) {
            *p = None;
        }
    }

    pub fn port(&self, id: PortId) -> Option<&PortEntry> {
        self.ports.get(usize::from(id)).and_then(|p| p.as_ref())
    }

    pub fn port_by_name(&self, name: &str) -> Option<PortId> {
        self.ports
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.name == name))
            .map(|i| i as PortId)
    }
}
