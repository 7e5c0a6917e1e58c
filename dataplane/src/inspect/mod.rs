//! Looking at what the packet path does, without disturbing it: `weirctl
//! explain`, `weirctl trace` and `weirctl capture`.
//!
//! - **explain** ([`explain()`]): builds the described packet and runs the
//!   real pipeline on it with a recording tracer ([`crate::pipeline::trace`])
//!   against the live tables and flow table, as a dry run: no flow is
//!   inserted or refreshed, no policy hit counted, no SNAT port claimed,
//!   nothing sent ([`crate::pipeline::nat::Nat::dry_run`]).
//! - **trace**: the management thread arms the workers' [`Tap`] with a
//!   [`Filter`] and a count; a worker that sees the armed flag (one atomic
//!   load per loop) runs each packet of the burst that matches through the
//!   recording instantiation of the same pipeline and pushes its steps to a
//!   bounded lock-free queue; the management thread drains it, renders the
//!   steps with the tables and hands them to weirctl ([`Sessions`]).
//! - **capture**: the same flag; matching packets of one port are copied
//!   (rx before the pipeline, tx just before the tx burst, up to a snap
//!   length) into preallocated buffers that go through a bounded queue;
//!   weirctl receives them and writes a classic pcap file ([`pcap`]).
//!   A full queue loses the copy, never the packet, and is counted.
//!
//! - **flow logs** ([`flowlog`]): the same flag word arms per-flow records
//!   (start, end with packets and bytes, policy denies) that weir-control
//!   drains and writes as JSON lines; the management thread sweeps for
//!   flows that ended by timeout.
//!
//! Unarmed, a worker pays one relaxed atomic load per loop and one branch
//! per burst; with the `trace` feature off ([`INSPECT`] false) not even that
//! (weirctl trace and capture, and flow logs, are then refused). The figures are in
//! docs/inspect.md (`cargo bench -p weir-dataplane --bench trace`).
//!
//! Everything here is plain Rust and is tested without DPDK.

pub mod explain;
pub mod filter;
pub mod flowlog;
pub mod packet;
pub mod pcap;
pub mod session;
pub mod tap;

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

pub use explain::explain;
pub use filter::{Filter, FilterSpec};
pub use flowlog::{Drops as FlowLogDrops, FlowLogs};
pub use session::{Clock, Sessions};
pub use tap::{rx_burst, Burst, Tap};

/// Whether workers check the tap at all (the `trace` feature, on by default).
pub const INSPECT: bool = cfg!(feature = "trace");

/// A packet for `explain`: where it comes in and its headers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PacketSpec {
    /// The port it arrives on, by name.
    pub in_port: String,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// tcp, udp, sctp, icmp (an echo request) or an IP protocol number.
    #[serde(default = "default_proto")]
    pub proto: String,
    /// Source port (TCP/UDP/SCTP; the echo identifier for ICMP). Default 40000.
    #[serde(default)]
    pub sport: Option<u16>,
    /// Destination port. Default 80.
    #[serde(default)]
    pub dport: Option<u16>,
    /// TCP flags, comma-separated: syn, ack, fin, rst, psh. Default syn.
    #[serde(default)]
    pub tcp_flags: Option<String>,
    #[serde(default)]
    pub ttl: Option<u8>,
    /// The IPv4 total length (at least the headers'). Default: headers only.
    #[serde(default)]
    pub ip_len: Option<u16>,
    /// On the uplink: the packet comes VXLAN-encapsulated from this VTEP.
    #[serde(default)]
    pub vxlan: Option<VxlanSpec>,
}

fn default_proto() -> String {
    "tcp".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VxlanSpec {
    /// The remote VTEP (outer source).
    pub vtep: Ipv4Addr,
    /// Default: the VNI of the node's default network.
    #[serde(default)]
    pub vni: Option<u32>,
}

/// One stage's account of a packet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    /// input, ipv4, decap, flow, service, backend, acl, nat, route, encap,
    /// underlay, note.
    pub stage: String,
    pub text: String,
    /// The same as fields (addresses, names, the rule id, ...).
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// What became of a packet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActionReport {
    /// forward, reply, drop, consumed or resolve.
    pub action: String,
    /// The port it leaves by (forward, reply, resolve).
    #[serde(default)]
    pub port: Option<String>,
    /// The drop reason, reply or consumed kind (their counter names).
    #[serde(default)]
    pub reason: Option<String>,
    pub text: String,
}

/// The answer to `explain`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Explanation {
    /// The packet that was built, one line.
    pub packet: String,
    pub in_port: String,
    /// The tables it was explained against.
    pub generation: u64,
    pub steps: Vec<StepReport>,
    pub action: ActionReport,
    /// The packet as it would leave (forward, reply, resolve).
    #[serde(default)]
    pub output: Option<String>,
    /// Flow entries a worker would create (or rewrite) for this packet.
    #[serde(default)]
    pub flows_created: Vec<String>,
    /// Flow entries a worker would remove.
    #[serde(default)]
    pub flows_removed: Vec<String>,
}

/// One traced packet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TracedPacket {
    pub worker: u16,
    pub port: String,
    /// Wall-clock time it was seen, ns since the Unix epoch.
    pub time_ns: u64,
    /// The tables it ran under.
    pub generation: u64,
    /// The packet as it arrived, one line.
    pub packet: String,
    pub steps: Vec<StepReport>,
    pub action: ActionReport,
    /// Steps that did not fit the record.
    #[serde(default)]
    pub steps_lost: u32,
}

/// One captured packet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapturedPacket {
    /// ns since the Unix epoch.
    pub time_ns: u64,
    pub port: String,
    /// rx or tx.
    pub dir: String,
    /// Its length on the wire.
    pub orig_len: u32,
    /// The first snap-length bytes, hex.
    pub data: String,
}

/// One flow-log record as the management socket gives it (`flow_log_poll`):
/// names resolved, times on the wall clock. weir-control adds the pods and
/// writes it as a JSON line (docs/flowlog.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowLogRecord {
    /// start, end or denied.
    pub event: String,
    /// ns since the Unix epoch: when the flow started (start), when its end
    /// was seen (end), when the packet was denied (denied).
    pub time_ns: u64,
    /// The IP protocol number.
    pub proto: u8,
    /// The flow's original direction as its first packet arrived (ICMP
    /// echo: the identifier as `sport`, `dport` 0).
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    /// The client as the backend sees it, when translated (SNAT to the node
    /// IP, or the gateway for hairpin).
    #[serde(default)]
    pub nat_src: Option<SocketAddrV4>,
    /// The destination after DNAT: the Service's backend.
    #[serde(default)]
    pub nat_dst: Option<SocketAddrV4>,
    /// The Service port (`namespace/name:port`).
    #[serde(default)]
    pub service: Option<String>,
    /// The port the first packet came in by (start, denied).
    #[serde(default)]
    pub in_port: Option<String>,
    /// allowed or denied.
    pub verdict: String,
    /// denied: the rule id that denied, or `default` (the pod's default for
    /// that direction).
    #[serde(default)]
    pub rule: Option<String>,
    /// denied: ingress or egress, the side whose policy denied.
    #[serde(default)]
    pub direction: Option<String>,
    /// end: [original direction, reply direction].
    #[serde(default)]
    pub packets: Option<[u64; 2]>,
    /// end: IPv4 bytes (headers included), [original, reply].
    #[serde(default)]
    pub bytes: Option<[u64; 2]>,
    /// end: when the flow started, ns since the Unix epoch.
    #[serde(default)]
    pub start_ns: Option<u64>,
    /// end: from its first packet to its last.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// end: timeout, fin, rst, backend_gone or policy_revoked.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Which packets of a port `capture` takes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CaptureDir {
    Rx,
    Tx,
    #[default]
    Both,
}

#[cfg(test)]
mod tests;
