//! The management protocol of weir-dataplane: one JSON object per line over
//! its Unix socket, a request from the client, a reply from the dataplane.
//! weirctl and weir-control speak it; the types build without DPDK.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::PortConfig;

/// Bumped on any incompatible change; a client states its version with
/// `Handshake` and is refused on a mismatch.
pub const PROTOCOL_VERSION: u32 = 2;

/// What weir-control computes for one node from the cluster: everything
/// of the node's tables that is not local (ports) or static (the node
/// config's own sections). `Resync` replaces all of it; `Update` changes
/// parts of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterTables {
    #[serde(default)]
    pub services: Vec<crate::config::ServiceConfig>,
    #[serde(default)]
    pub networks: Vec<crate::config::NetworkConfig>,
    #[serde(default)]
    pub remote_nodes: Vec<crate::config::RemoteNodeConfig>,
    #[serde(default)]
    pub remote_routes: Vec<crate::config::RemoteRouteConfig>,
    #[serde(default)]
    pub acl: crate::tables::acl::AclConfig,
    /// This node's addresses NodePorts are served on besides its node IP.
    #[serde(default)]
    pub node_port_ips: Vec<std::net::Ipv4Addr>,
    /// The LoadBalancer IPs this node answers ARP for on the uplink.
    #[serde(default)]
    pub announce_ips: Vec<std::net::Ipv4Addr>,
}

/// One change of an `Update`; objects are named by their `name` (pods' ACLs
/// by their address).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// Adds the Service, or replaces the one with its name.
    UpsertService { service: crate::config::ServiceConfig },
    DeleteService { name: String },
    UpsertNetwork { network: crate::config::NetworkConfig },
    DeleteNetwork { name: String },
    UpsertNode { node: crate::config::RemoteNodeConfig },
    DeleteNode { name: String },
    /// Replaces every remote route.
    SetRemoteRoutes { routes: Vec<crate::config::RemoteRouteConfig> },
    /// Replaces the addresses NodePorts are served on besides the node IP.
    SetNodePortIps { ips: Vec<std::net::Ipv4Addr> },
    /// Replaces the LoadBalancer IPs this node announces (ARP).
    SetAnnounceIps { ips: Vec<std::net::Ipv4Addr> },
    /// Adds a pod's ACLs, or replaces those of its address.
    UpsertPodAcl { pod: crate::tables::acl::PodAclConfig },
    DeletePodAcl { ip: std::net::Ipv4Addr },
}

impl ClusterTables {
    /// These tables with `changes` applied, in order. A delete of something
    /// that is not there is an error naming it.
    pub fn with(mut self, changes: &[Change]) -> Result<ClusterTables, String> {
        fn upsert<T>(list: &mut Vec<T>, item: T, same: impl Fn(&T) -> bool) {
            match list.iter().position(same) {
                Some(i) => list[i] = item,
                None => list.push(item),
            }
        }
        fn delete<T>(list: &mut Vec<T>, what: &str, name: &str, same: impl Fn(&T) -> bool) -> Result<(), String> {
            let i = list.iter().position(same).ok_or_else(|| format!("delete {what} {name}: there is none"))?;
            list.remove(i);
            Ok(())
        }
        let t = &mut self;
        for c in changes {
            match c {
                Change::UpsertService { service } => {
                    let name = service.name.clone();
                    upsert(&mut t.services, service.clone(), |s| s.name == name)
                }
                Change::DeleteService { name } => delete(&mut t.services, "service", name, |s| &s.name == name)?,
                Change::UpsertNetwork { network } => {
                    let name = network.name.clone();
                    upsert(&mut t.networks, network.clone(), |n| n.name == name)
                }
                Change::DeleteNetwork { name } => delete(&mut t.networks, "network", name, |n| &n.name == name)?,
                Change::UpsertNode { node } => {
                    let name = node.name.clone();
                    upsert(&mut t.remote_nodes, node.clone(), |n| n.name == name)
                }
                Change::DeleteNode { name } => delete(&mut t.remote_nodes, "node", name, |n| &n.name == name)?,
                Change::SetRemoteRoutes { routes } => t.remote_routes = routes.clone(),
                Change::SetNodePortIps { ips } => t.node_port_ips = ips.clone(),
                Change::SetAnnounceIps { ips } => t.announce_ips = ips.clone(),
                Change::UpsertPodAcl { pod } => {
                    let ip = pod.ip;
                    upsert(&mut t.acl.pods, pod.clone(), |p| p.ip == ip)
                }
                Change::DeletePodAcl { ip } => {
                    delete(&mut t.acl.pods, "pod ACL", &ip.to_string(), |p| p.ip == *ip)?
                }
            }
        }
        Ok(self)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Hello,
    /// Hello from a client that states its protocol version: refused unless
    /// it is this dataplane's.
    Handshake {
        version: u32,
        client: String,
    },
    Stats,
    /// Replaces the node's cluster tables whole (weir-control on connect).
    /// `generation` is the control's; the reply echoes it once applied.
    Resync {
        generation: u64,
        tables: ClusterTables,
    },
    /// Applies `changes` to the cluster tables, all or nothing.
    Update {
        generation: u64,
        changes: Vec<Change>,
    },
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
    /// A table as text: `services` (frontends, backends with their Maglev
    /// slot counts), `rules` (ACL rules with hits), `flows` (live flow
    /// entries, pre- and post-NAT).
    Show {
        what: String,
    },
    Shutdown,
    /// The path a described packet would take (`weirctl explain`): the
    /// workers' pipeline run on it as a dry run against the live tables.
    /// Answered `explained`.
    Explain {
        packet: crate::inspect::PacketSpec,
    },
    /// Arms tracing of the next `count` packets `filter` matches, for at
    /// most `timeout_ms`. Answered `inspect_started`; the session is polled
    /// with `inspect_poll` on the same connection, and ends when that
    /// connection closes.
    TraceStart {
        #[serde(default)]
        filter: crate::inspect::FilterSpec,
        count: u32,
        timeout_ms: u64,
    },
    /// Arms capture of `port`'s packets (`dir`) that `filter` matches: at
    /// most `count` packets, for at most `duration_ms`, `snaplen` bytes of
    /// each. Answered and polled like `trace_start`.
    CaptureStart {
        port: String,
        #[serde(default)]
        dir: crate::inspect::CaptureDir,
        #[serde(default)]
        filter: crate::inspect::FilterSpec,
        #[serde(default)]
        count: Option<u64>,
        #[serde(default)]
        duration_ms: Option<u64>,
        #[serde(default)]
        snaplen: Option<u32>,
    },
    /// What a trace or capture session recorded since the last poll.
    InspectPoll {
        session: u64,
    },
    /// Ends a trace or capture session now; answered like a last poll.
    InspectStop {
        session: u64,
    },
    /// Arms the flow log: a record when a tracked flow starts, when it ends
    /// and when policy denies its first packet, at most `rate_per_s` per
    /// second (bursts of `burst`, default `rate_per_s`). Answered
    /// `flow_log_started`; polled with `flow_log_poll` on the same
    /// connection, and ended when that connection closes (docs/flowlog.md).
    FlowLogStart {
        rate_per_s: u32,
        #[serde(default)]
        burst: Option<u32>,
    },
    /// The records of a flow log since the last poll.
    FlowLogPoll {
        session: u64,
    },
    /// Ends a flow log now; answered like a last poll.
    FlowLogStop {
        session: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Hello {
        version: u32,
        node: String,
        dpdk: String,
        /// Different for every start of the dataplane: a client that sees it
        /// change knows the dataplane restarted and resyncs.
        #[serde(default)]
        instance: u64,
        /// The control generation the tables run, if a control has synced.
        #[serde(default)]
        control_generation: Option<u64>,
    },
    Stats(Stats),
    /// The change is applied and every worker runs `generation` or later.
    Applied {
        generation: u64,
    },
    /// A `Resync` or `Update` is applied: every worker runs tables
    /// `tables_generation` or later, built from control `generation`.
    Synced {
        generation: u64,
        tables_generation: u64,
    },
    /// The answer to `Show`.
    Text {
        text: String,
    },
    Error {
        message: String,
    },
    /// The answer to `Explain`.
    Explained(crate::inspect::Explanation),
    /// A trace or capture session is armed.
    InspectStarted {
        session: u64,
    },
    /// Packets a trace recorded since the last poll; `done` (why it ended)
    /// in its last answer.
    Traced {
        session: u64,
        packets: Vec<crate::inspect::TracedPacket>,
        done: Option<String>,
    },
    /// Packets a capture took since the last poll, and how many matching
    /// packets it could not take so far (its queue was full).
    Captured {
        session: u64,
        packets: Vec<crate::inspect::CapturedPacket>,
        lost: u64,
        done: Option<String>,
    },
    /// A flow log is armed.
    FlowLogStarted {
        session: u64,
    },
    /// The records of a flow log since the last poll; `drops`: records lost
    /// so far (totals since the start), `metered`: flows being counted now;
    /// `done` (why it ended) in its last answer.
    FlowLogged {
        session: u64,
        records: Vec<crate::inspect::FlowLogRecord>,
        drops: crate::inspect::FlowLogDrops,
        metered: u64,
        done: Option<String>,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub node: String,
    /// Generation of the published tables.
    pub generation: u64,
    /// The control generation they were built from (none: no control yet).
    #[serde(default)]
    pub control_generation: Option<u64>,
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
    /// LoadBalancer IPs answered for on the uplink (ARP).
    #[serde(default)]
    pub announced: Vec<std::net::Ipv4Addr>,
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
        let r: Request = serde_json::from_str(r#"{"cmd":"handshake","version":2,"client":"weirctl"}"#).unwrap();
        assert_eq!(r, Request::Handshake { version: 2, client: "weirctl".into() });
        let r: Request = serde_json::from_str(
            r#"{"cmd":"update","generation":5,"changes":[{"op":"delete_service","name":"default/web"}]}"#,
        )
        .unwrap();
        assert_eq!(r, Request::Update { generation: 5, changes: vec![Change::DeleteService { name: "default/web".into() }] });
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"update","generation":5,"changes":[{"op":"reboot"}]}"#).is_err());
    }

    fn service(name: &str, vip: &str) -> crate::config::ServiceConfig {
        #[derive(Deserialize)]
        struct S {
            services: Vec<crate::config::ServiceConfig>,
        }
        let text = format!("[[services]]\nname = \"{name}\"\ncluster_ips = [\"{vip}\"]\nports = [{{ port = 80, protocol = \"tcp\" }}]\n");
        toml::from_str::<S>(&text).unwrap().services.remove(0)
    }

    #[test]
    fn changes_apply_in_order_and_deletes_name_what_is_missing() {
        let t = ClusterTables { services: vec![service("a", "10.96.0.1"), service("b", "10.96.0.2")], ..Default::default() };
        let t2 = t
            .clone()
            .with(&[
                Change::UpsertService { service: service("a", "10.96.0.9") },
                Change::DeleteService { name: "b".into() },
                Change::UpsertService { service: service("c", "10.96.0.3") },
            ])
            .unwrap();
        let names: Vec<(&str, String)> =
            t2.services.iter().map(|s| (s.name.as_str(), s.cluster_ips[0].to_string())).collect();
        assert_eq!(names, vec![("a", "10.96.0.9".to_string()), ("c", "10.96.0.3".to_string())]);
        let e = t.clone().with(&[Change::DeleteService { name: "zz".into() }]).unwrap_err();
        assert_eq!(e, "delete service zz: there is none");
        assert_eq!(t.services.len(), 2, "the original is untouched");
    }
}
