//! The management protocol of weir-dataplane: one JSON object per line over
//! its Unix socket, a request from the client, a reply from the dataplane.
//! weirctl and weir-control speak it; the types build without DPDK.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::PortConfig;

/// Bumped on any incompatible change; a client checks it with `Hello`.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Hello,
    Stats,
    AddPort {
        port: PortConfig,
    },
    /// Replaces the node's Services (all of them) and publishes them.
    SetServices {
        services: Vec<crate::config::ServiceConfig>,
    },
    RemovePort {
        name: String,
    },
    Shutdown,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Hello {
        version: u32,
        node: String,
        dpdk: String,
    },
    Stats(Stats),
    /// The change is applied and every worker runs `generation` or later.
    Applied {
        generation: u64,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub node: String,
    /// Generation of the published tables.
    pub generation: u64,
    pub workers: Vec<WorkerStats>,
    pub ports: Vec<PortStats>,
    /// Drops by reason name, summed over workers; every reason is listed.
    pub drops: BTreeMap<String, u64>,
    /// Packets weir answered itself, by kind.
    pub replies: BTreeMap<String, u64>,
    /// Packets weir used up itself (ARP replies it asked for), by kind.
    #[serde(default)]
    pub consumed: BTreeMap<String, u64>,
    /// Underlay neighbours of the uplink.
    #[serde(default)]
    pub neighbours: Vec<NeighbourStats>,
    /// The overlay, when the node has an uplink.
    #[serde(default)]
    pub overlay: Option<OverlayStats>,
    pub mbufs_free: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OverlayStats {
    pub node_ip: std::net::Ipv4Addr,
    pub uplink: String,
    /// IP MTU of the underlay.
    pub mtu: u16,
    /// The MTU pods of this node should use: the underlay's less VXLAN's 50
    /// bytes (what the CNI plugin configures on pod interfaces).
    pub pod_mtu: u16,
    pub vxlan_port: u16,
    pub host_port: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NeighbourStats {
    pub ip: std::net::Ipv4Addr,
    pub mac: Option<String>,
    pub state: crate::neighbour::State,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerStats {
    pub id: usize,
    pub core: usize,
    pub generation: u64,
    pub polls: u64,
    pub busy_polls: u64,
    pub idle_sleeps: u64,
    pub rx_queues: Vec<(u16, u16)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PortStats {
    pub name: String,
    pub id: u16,
    pub kind: String,
    pub driver: String,
    pub mac: String,
    pub link_up: bool,
    pub rss: bool,
    pub rx_queues: u16,
    /// Counted by weir's workers.
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Counted by the driver.
    pub nic_rx_packets: u64,
    pub nic_tx_packets: u64,
    pub nic_rx_missed: u64,
    pub nic_rx_errors: u64,
    pub nic_tx_errors: u64,
    pub nic_rx_nombuf: u64,
}

impl Stats {
    pub fn drop_count(&self, reason: &str) -> u64 {
        self.drops.get(reason).copied().unwrap_or(0)
    }

    pub fn port(&self, name: &str) -> Option<&PortStats> {
        self.ports.iter().find(|p| p.name == name)
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let r: Request = serde_json::from_str(r#"{"cmd":"remove_port","name":"pod-a"}"#).unwrap();
        assert_eq!(r, Request::RemovePort { name: "pod-a".into() });
        let r: Request = serde_json::from_str(r#"{"cmd":"add_port","port":{"name":"p","kind":"ring"}}"#).unwrap();
        assert!(matches!(r, Request::AddPort { .. }));
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
        let s = serde_json::to_string(&Reply::Applied { generation: 3 }).unwrap();
        assert_eq!(s, r#"{"reply":"applied","generation":3}"#);
    }
}
