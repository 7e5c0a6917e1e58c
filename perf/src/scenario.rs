//! Packet scenarios for the pipeline benchmarks: a node's tables and a
//! template frame each, built with weir's own types. The first scenarios
//! share one node: pod-a 10.1.0.2 on port 0, pod-b 10.1.0.3 on port 1, the
//! uplink on port 2 (node IP 192.168.50.1), node2's pods 10.2.0.0/24 behind
//! the VTEP 192.168.50.2. The ACL and full-path scenarios run the perf
//! harness's own scenarios ([`crate::traffic`]): its frames, and tables
//! built from the node config the harness gives weir-dataplane for them
//! ([`weir_dut::tables_for`]), ACL rules ([`crate::policy`]) included.

use std::net::Ipv4Addr;
use std::time::Instant;

use weir_dataplane::config::{NodeConfig, ServiceConfig};
use weir_dataplane::flow::FlowTable;
use weir_dataplane::pipeline::nat::Nat;
use weir_dataplane::pipeline::NoEvents;
use weir_dataplane::pipeline::{self, Action, DropReason, PacketBuf, TestBuf};
use weir_dataplane::tables::acl::Direction;
use weir_dataplane::tables::service::ServiceTable;
use weir_dataplane::tables::{Hop, Overlay, PortEntry, Tables};
use weir_dataplane::wire::{checksum, ethernet, ipv4, udp, vxlan, MacAddr};

use crate::harness::weir_dut;
use crate::traffic::{self, Kind};

pub const GW_MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 0x01]);
pub const UPLINK_MAC: MacAddr = MacAddr([0x02, 0, 0, 0xaa, 0, 0x01]);
const A_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const B_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x03]);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// pod → pod on this node: checks, route, TTL, MAC rewrite.
    Forward,
    /// pod → pod on another node: forward + VXLAN encapsulation.
    Encap,
    /// VXLAN from another node → local pod: decapsulation + forward.
    Decap,
    /// Only the per-packet copy of the template the harness does: the
    /// baseline subtracted from the others.
    Copy,
    /// pod → ClusterIP, an established flow (flow-table hit, DNAT, forward),
    /// over this many distinct flows.
    Established(u32),
    /// pod → ClusterIP, every packet a new flow (service lookup, Maglev,
    /// two flow-table inserts, DNAT, forward).
    NewFlow,
    /// pod-a → pod-b over `flows` established flows with `rules` ACL rules
    /// on the node (pod-a's egress and pod-b's ingress lists among them):
    /// each flow's verdict was decided by its first packet, a packet finds
    /// its flow and passes.
    Acl { rules: u32, flows: u32 },
    /// pod-a → pod-b with `rules` ACL rules, every packet a new flow:
    /// classified against both lists to their last rule, both directions
    /// tracked.
    AclNew(u32),
    /// The frames of `Acl`, pod-b's allowing rule removed: every packet is
    /// classified to the end of pod-b's list and denied (a denied flow
    /// leaves no state, so nothing is cached).
    AclDeny(u32),
    /// The full path: VXLAN from a pod on node2 to the NodePort on this
    /// node's IP; decapsulation, flow hit (the ACL verdict and both
    /// rewrites in it), DNAT to one of the 64 backends on node3, SNAT of
    /// the client to the node IP and its SNAT port, encapsulation for
    /// node3; `rules` rules as each backend sees them, over `flows`
    /// established flows.
    Full { rules: u32, flows: u32 },
    /// The full path, every packet a new flow (decap, service lookup,
    /// Maglev, the backend's ingress list to its last rule, an SNAT port
    /// claimed with the reply entry, the original entry, DNAT + SNAT,
    /// encap).
    FullNew(u32),
}

impl Scenario {
    /// Every scenario, in the order weir-bench-pipeline prints them, the
    /// ACL ones with `rules` rules.
    pub fn all(rules: u32) -> Vec<Scenario> {
        vec![
            Scenario::Copy,
            Scenario::Forward,
            Scenario::Encap,
            Scenario::Decap,
            Scenario::Established(10_000),
            Scenario::Established(1_000_000),
            Scenario::NewFlow,
            Scenario::Acl { rules, flows: 10_000 },
            Scenario::AclNew(rules),
            Scenario::AclDeny(rules),
            Scenario::Full { rules, flows: 10_000 },
            Scenario::Full { rules, flows: 1_000_000 },
            Scenario::FullNew(rules),
        ]
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Forward => "forward",
            Scenario::Encap => "forward+encap",
            Scenario::Decap => "decap+forward",
            Scenario::Copy => "copy (baseline)",
            Scenario::Established(10_000) => "clusterip est 10k",
            Scenario::Established(1_000_000) => "clusterip est 1M",
            Scenario::Established(_) => "clusterip est",
            Scenario::NewFlow => "clusterip new flow",
            Scenario::Acl { flows: 10_000, .. } => "acl est 10k",
            Scenario::Acl { flows: 1_000_000, .. } => "acl est 1M",
            Scenario::Acl { .. } => "acl est",
            Scenario::AclNew(_) => "acl new flow",
            Scenario::AclDeny(_) => "acl deny",
            Scenario::Full { flows: 10_000, .. } => "full est 10k",
            Scenario::Full { flows: 1_000_000, .. } => "full est 1M",
            Scenario::Full { .. } => "full est",
            Scenario::FullNew(_) => "full new flow",
        }
    }

    /// Command-line names: forward, encap, decap, copy, est10k, est1m, new,
    /// and with their counts acl-est:RULES:FLOWS, acl-new:RULES,
    /// acl-deny:RULES, full-est:RULES:FLOWS, full-new:RULES.
    pub fn parse(s: &str) -> Option<Scenario> {
        let mut parts = s.split(':');
        let name = parts.next()?;
        let counts: Vec<u32> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
        let sc = match (name, counts.as_slice()) {
            ("forward", []) => Scenario::Forward,
            ("encap", []) => Scenario::Encap,
            ("decap", []) => Scenario::Decap,
            ("copy", []) => Scenario::Copy,
            ("est10k", []) => Scenario::Established(10_000),
            ("est1m", []) => Scenario::Established(1_000_000),
            ("new", []) => Scenario::NewFlow,
            ("acl-est", [rules, flows]) => Scenario::Acl { rules: *rules, flows: *flows },
            ("acl-new", [rules]) => Scenario::AclNew(*rules),
            ("acl-deny", [rules]) => Scenario::AclDeny(*rules),
            ("full-est", [rules, flows]) => Scenario::Full { rules: *rules, flows: *flows },
            ("full-new", [rules]) => Scenario::FullNew(*rules),
            _ => return None,
        };
        // Counts the scenario cannot have (0 rules, too many flows) are refused.
        if sc.harness_scenario().is_some_and(|h| h.is_err()) {
            return None;
        }
        Some(sc)
    }

    pub fn cli_name(self) -> String {
        match self {
            Scenario::Forward => "forward".into(),
            Scenario::Encap => "encap".into(),
            Scenario::Decap => "decap".into(),
            Scenario::Copy => "copy".into(),
            Scenario::Established(1_000_000) => "est1m".into(),
            Scenario::Established(_) => "est10k".into(),
            Scenario::NewFlow => "new".into(),
            Scenario::Acl { rules, flows } => format!("acl-est:{rules}:{flows}"),
            Scenario::AclNew(rules) => format!("acl-new:{rules}"),
            Scenario::AclDeny(rules) => format!("acl-deny:{rules}"),
            Scenario::Full { rules, flows } => format!("full-est:{rules}:{flows}"),
            Scenario::FullNew(rules) => format!("full-new:{rules}"),
        }
    }

    /// The perf harness's scenario this one runs (64-byte frames, VXLAN
    /// raised to 114), for the ACL and full-path scenarios.
    pub fn harness_scenario(self) -> Option<Result<traffic::Scenario, String>> {
        let (kind, flows, rules) = match self {
            Scenario::Acl { rules, flows } => (Kind::Acl, Some(flows), rules),
            Scenario::AclNew(rules) => (Kind::AclNew, None, rules),
            Scenario::AclDeny(rules) => (Kind::Acl, Some(1), rules),
            Scenario::Full { rules, flows } => (Kind::Full, Some(flows), rules),
            Scenario::FullNew(rules) => (Kind::FullNew, None, rules),
            _ => return None,
        };
        Some(traffic::Scenario::new(kind, flows, traffic::MIN_FRAME_SIZE, rules))
    }

    /// The action every packet of an ACL or full-path scenario must get.
    fn harness_action(self, h: &traffic::Scenario) -> Action {
        match self {
            Scenario::AclDeny(_) => Action::Drop(DropReason::PolicyDeniedIngress),
            // Out of the uplink (port 0 of the harness's node), again in VXLAN.
            _ if h.kind.returns_by_uplink() => Action::Forward(0),
            _ => Action::Forward(1),
        }
    }

    /// (in port, template frame, the action it must get), for the scenarios
    /// of the node of [`node_tables`]; the others' come from [`traffic`].
    pub fn input(self) -> (u16, Vec<u8>, Action) {
        let a = Ipv4Addr::new(10, 1, 0, 2);
        match self {
            Scenario::Forward | Scenario::Copy => {
                (0, udp_frame(A_MAC, GW_MAC, a, Ipv4Addr::new(10, 1, 0, 3)), Action::Forward(1))
            }
            // The ClusterIP's only backend is pod-b (port 1).
            Scenario::Established(_) | Scenario::NewFlow => (0, udp_frame(A_MAC, GW_MAC, a, VIP), Action::Forward(1)),
            Scenario::Encap => (0, udp_frame(A_MAC, GW_MAC, a, Ipv4Addr::new(10, 2, 0, 2)), Action::Forward(2)),
            Scenario::Decap => {
                let inner = udp_frame(MacAddr([0x02, 0xfe, 0, 0, 0, 0x02]), GW_MAC, Ipv4Addr::new(10, 2, 0, 2), a);
                (2, vxlan_frame(&inner), Action::Forward(0))
            }
            Scenario::Acl { .. }
            | Scenario::AclNew(_)
            | Scenario::AclDeny(_)
            | Scenario::Full { .. }
            | Scenario::FullNew(_) => match self.harness_scenario() {
                Some(Ok(h)) => (0, h.template(None).frame().to_vec(), self.harness_action(&h)),
                // Bad counts: no frame gets through.
                _ => (0, Vec::new(), Action::Drop(DropReason::RuntFrame)),
            },
        }
    }
}

/// A 64-byte-payload UDP frame.
pub fn udp_frame(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let payload = [0x5au8; 18]; // 14 + 20 + 8 + 18 = 60: a minimum frame
    let mut f = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + payload.len()];
    ethernet::Repr { src: src_mac, dst: dst_mac, ethertype: ethernet::ethertype::IPV4 }
        .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
    let ip_bytes = &mut f[ethernet::HEADER_LEN..];
    ipv4::Repr {
        src,
        dst,
        protocol: ipv4::protocol::UDP,
        ttl: 64,
        payload_len: udp::HEADER_LEN + payload.len(),
        dscp_ecn: 0,
        ident: 1,
        dont_frag: true,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut ip_bytes[..]));
    let mut u = udp::Packet::new_unchecked(&mut ip_bytes[ipv4::HEADER_LEN..]);
    u.set_src_port(40000);
    u.set_dst_port(8080);
    u.set_len((udp::HEADER_LEN + payload.len()) as u16);
    u.payload_mut().copy_from_slice(&payload);
    u.fill_checksum(src, dst);
    f
}

/// `inner` in VXLAN (VNI 1) from node2 (192.168.50.2) to this node.
pub fn vxlan_frame(inner: &[u8]) -> Vec<u8> {
    let udp_len = udp::HEADER_LEN + vxlan::HEADER_LEN + inner.len();
    let mut f = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp_len];
    ethernet::Repr { src: MacAddr([0x02, 0, 0, 0xaa, 0, 0x02]), dst: UPLINK_MAC, ethertype: ethernet::ethertype::IPV4 }
        .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
    let ip_bytes = &mut f[ethernet::HEADER_LEN..];
    ipv4::Repr {
        src: Ipv4Addr::new(192, 168, 50, 2),
        dst: Ipv4Addr::new(192, 168, 50, 1),
        protocol: ipv4::protocol::UDP,
        ttl: 64,
        payload_len: udp_len,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: true,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut ip_bytes[..]));
    let mut u = udp::Packet::new_unchecked(&mut ip_bytes[ipv4::HEADER_LEN..]);
    u.set_src_port(51000);
    u.set_dst_port(vxlan::DEFAULT_PORT);
    u.set_len(udp_len as u16);
    u.set_checksum(0);
    let vx = u.payload_mut();
    vxlan::Repr { vni: 1 }.emit(&mut vxlan::Packet::new_unchecked(&mut vx[..vxlan::HEADER_LEN]));
    vx[vxlan::HEADER_LEN..].copy_from_slice(inner);
    f
}

/// The tables a scenario runs against: the node below, or for the ACL and
/// full-path scenarios the harness's node for them (the uplink's MAC and
/// the VTEPs' as in the templates), pod-b's allowing rule removed for
/// `AclDeny`.
pub fn tables(s: Scenario) -> Result<Tables, String> {
    let Some(h) = s.harness_scenario() else { return Ok(node_tables()) };
    let h = h?;
    let acl = match s {
        Scenario::AclDeny(_) => match h.rule_set() {
            Some(rules) => Some(rules?.without_allow(Direction::Ingress).acl_config()),
            None => None,
        },
        _ => None,
    };
    weir_dut::tables_for(&h, acl, traffic::layout::UPLINK_MAC, traffic::layout::PEER_MAC)
}

/// The node the first scenarios run on.
pub fn node_tables() -> Tables {
    let cfg = NodeConfig::from_toml(
        r#"
        [node]
        name = "bench"
        pod_cidr = "10.1.0.0/24"
        [gateway]
        ip = "10.1.0.1"
        mac = "02:fe:00:00:00:01"
        "#,
    )
    .expect("bench config");
    let mut t = Tables::new(&cfg, 1);
    t.add_port(0, PortEntry::pod("pod-a", Ipv4Addr::new(10, 1, 0, 2), A_MAC, 0), 1);
    t.add_port(1, PortEntry::pod("pod-b", Ipv4Addr::new(10, 1, 0, 3), B_MAC, 0), 1);
    t.add_port(2, PortEntry { uplink: true, ..PortEntry::plain("uplink") }, 1);
    t.overlay = Some(Overlay {
        node_ip: Ipv4Addr::new(192, 168, 50, 1),
        uplink: 2,
        uplink_mac: UPLINK_MAC,
        mtu: 1500,
        vxlan_port: vxlan::DEFAULT_PORT,
        underlay: "192.168.50.0/24".parse().expect("cidr"),
        gateway: None,
        host: None,
        announced: Vec::new(),
    });
    t.add_remote_route(
        0,
        "10.2.0.0/24".parse().expect("cidr"),
        Hop::Remote { vtep: Ipv4Addr::new(192, 168, 50, 2), vtep_mac: MacAddr([0x02, 0xfe, 0, 0, 0, 0x02]), net: 0 },
    );
    t.neighbours.insert(Ipv4Addr::new(192, 168, 50, 2), MacAddr([0x02, 0, 0, 0xaa, 0, 0x02]));
    let mut with = cfg.clone();
    with.services = toml::from_str::<Services>(
        r#"
        [[services]]
        name = "bench/svc"
        cluster_ips = ["10.96.0.10"]
        ports = [{ port = 8080, protocol = "udp" }, { port = 8081, protocol = "udp" },
                 { port = 8082, protocol = "udp" }, { port = 8083, protocol = "udp" },
                 { port = 8084, protocol = "udp" }, { port = 8085, protocol = "udp" },
                 { port = 8086, protocol = "udp" }, { port = 8087, protocol = "udp" },
                 { port = 8088, protocol = "udp" }, { port = 8089, protocol = "udp" },
                 { port = 8090, protocol = "udp" }, { port = 8091, protocol = "udp" },
                 { port = 8092, protocol = "udp" }, { port = 8093, protocol = "udp" },
                 { port = 8094, protocol = "udp" }, { port = 8095, protocol = "udp" }]
        backends = [{ ip = "10.1.0.3" }]
        "#,
    )
    .expect("bench services")
    .services;
    t.services = ServiceTable::build(&with).expect("bench service table");
    t
}

#[derive(serde::Deserialize)]
struct Services {
    services: Vec<ServiceConfig>,
}

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// Makes the frame flow number `i`: source port `i % 65536` and Service
/// port `8080 + (i / 65536) % 16` (16 ports × 65536 source ports), UDP
/// checksum kept valid. The source address stays pod-a's: weir drops
/// frames whose source is not the pod's.
fn set_flow(frame: &mut [u8], i: u32) {
    let l4 = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    let word = |f: &[u8], at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
    let (old_sport, old_dport) = (word(frame, l4), word(frame, l4 + 2));
    let (sport, dport) = (i as u16, SVC_PORT + ((i >> 16) & 0xf) as u16);
    let mut sum = word(frame, l4 + 6);
    sum = checksum::update16(checksum::update16(sum, old_sport, sport), old_dport, dport);
    frame[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    frame[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
    frame[l4 + 6..l4 + 8].copy_from_slice(&sum.to_be_bytes());
}

/// The Service's first port; it has 16 (one per 65536 flows).
const SVC_PORT: u16 = 8080;

/// Runs `n` packets of a scenario through the pipeline (each a fresh copy of
/// the template in a reused buffer, as an rx ring hands out a new packet).
/// The ClusterIP scenarios first establish their flows (established) or
/// give every packet a flow of its own (new flow: `n` ≤ `max_packets`).
/// Returns how many got the expected action.
pub fn run(t: &Tables, s: Scenario, n: u64) -> u64 {
    run_timed(t, s, n).0
}

/// [`run`], and the seconds the `n` packets took (set-up left out: the
/// flow table, the flows an established scenario sets up first).
#[inline(never)]
pub fn run_timed(t: &Tables, s: Scenario, n: u64) -> (u64, f64) {
    if let Some(h) = s.harness_scenario() {
        return match h {
            Ok(h) => run_harness(t, s, &h, n),
            Err(_) => (0, 0.0),
        };
    }
    let (port, mut template, want) = s.input();
    // Two entries per flow and a quarter of the slots used: at the
    // dataplane's half, about one insert in 10^6 finds its two windows full
    // (a counted drop there), which would spoil the exact count here.
    let flows = FlowTable::new(8 * flows_for(s, n) as usize);
    let nat = Nat::single(&flows, 1);
    let cycle = match s {
        Scenario::Established(f) => {
            for i in 0..f {
                set_flow(&mut template, i);
                let mut b = TestBuf::new(&template);
                pipeline::process_full(t, Some(&nat), port, &mut b, &mut NoEvents);
            }
            f
        }
        _ => u32::MAX,
    };
    let mut buf = TestBuf::new(&template);
    let mut ok = 0;
    let mut i = 0u32;
    let t0 = Instant::now();
    for _ in 0..n {
        if matches!(s, Scenario::Established(_) | Scenario::NewFlow) {
            set_flow(&mut template, i);
            i = if i + 1 >= cycle { 0 } else { i + 1 };
        }
        buf.reset(&template);
        let got = match s {
            Scenario::Copy => {
                ok += u64::from(std::hint::black_box(&buf).len() == template.len());
                continue;
            }
            // As a worker runs it: with NAT (a Service exists on this node).
            _ => pipeline::process_full(t, Some(&nat), port, std::hint::black_box(&mut buf), &mut NoEvents),
        };
        ok += u64::from(got == want);
    }
    (ok, t0.elapsed().as_secs_f64())
}

/// [`run`] for the harness's scenarios: each packet a fresh copy of the
/// template turned into its flow (as weir-pktgen writes them), entering by
/// the harness's first port (pod-a, or the uplink). Established scenarios
/// first send each of their flows once; new-flow ones give every packet a
/// flow of its own (`n` ≤ [`max_packets`]).
fn run_harness(t: &Tables, s: Scenario, h: &traffic::Scenario, n: u64) -> (u64, f64) {
    let tpl = h.template(None);
    let want = s.harness_action(h);
    let flows = FlowTable::new(8 * flows_for(s, n) as usize);
    let nat = Nat::single(&flows, 1);
    let mut buf = TestBuf::new(tpl.frame());
    let cycle = if h.kind.needs_priming() {
        for i in 0..h.flows {
            buf.reset(tpl.frame());
            tpl.set_flow(buf.data_mut(), i);
            pipeline::process_full(t, Some(&nat), 0, &mut buf, &mut NoEvents);
        }
        h.flows
    } else if h.kind.new_flows() {
        u32::MAX
    } else {
        1
    };
    let mut ok = 0;
    let mut i = 0u32;
    let t0 = Instant::now();
    for _ in 0..n {
        buf.reset(tpl.frame());
        tpl.set_flow(buf.data_mut(), i);
        i = if i + 1 >= cycle { 0 } else { i + 1 };
        let got = pipeline::process_full(t, Some(&nat), 0, std::hint::black_box(&mut buf), &mut NoEvents);
        ok += u64::from(got == want);
    }
    (ok, t0.elapsed().as_secs_f64())
}

/// Flows the table must hold for `n` packets of a scenario.
pub fn flows_for(s: Scenario, n: u64) -> u64 {
    match s {
        Scenario::Established(f) | Scenario::Acl { flows: f, .. } | Scenario::Full { flows: f, .. } => u64::from(f),
        Scenario::NewFlow | Scenario::AclNew(_) | Scenario::FullNew(_) => n.min(1 << 20),
        _ => 1024,
    }
}

/// The most packets a run of a scenario may have (new flows: one per packet,
/// 16 clients × 65536 ports).
pub fn max_packets(s: Scenario) -> u64 {
    match s {
        Scenario::NewFlow | Scenario::AclNew(_) | Scenario::FullNew(_) => 1 << 20,
        _ => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario's frames get the action the benchmark expects of them
    /// (what weir-bench-pipeline checks before it prints a figure): the
    /// ACL and full-path ones forwarded (full: out of the uplink again),
    /// the deny one dropped as denied by pod-b's ingress list.
    #[test]
    fn every_scenario_takes_its_path() {
        // The 1M-flow ones take minutes in a debug build: 100k instead.
        let big =
            |s: &Scenario| matches!(s, Scenario::Established(1_000_000) | Scenario::Full { flows: 1_000_000, .. });
        for s in Scenario::all(1000).into_iter().filter(|s| !big(s)).chain([
            Scenario::Established(100_000),
            Scenario::Full { rules: 1000, flows: 100_000 },
            Scenario::Acl { rules: 1, flows: 30_000 },
            // The most rules (12288 on the path: pod-a's egress list, then
            // pod-b's ingress list). The full path's are checked by
            // `policy` (its list copied to 64 backends is 0.8M rules,
            // minutes of config text in a debug build).
            Scenario::Acl { rules: 16_384, flows: 2000 },
        ]) {
            let t = tables(s).unwrap();
            let n = 20_000u64.max(flows_for(s, 0).min(1 << 20));
            assert_eq!(run(&t, s, n), n, "{}", s.name());
        }
    }

    /// run counts only the expected action: the same frames against tables
    /// that do something else with them count nothing.
    #[test]
    fn a_wrong_path_counts_nothing() {
        let acl = Scenario::Acl { rules: 1000, flows: 1000 };
        assert_eq!(run(&tables(Scenario::AclDeny(1000)).unwrap(), acl, 5000), 0, "denied, not forwarded");
        assert_eq!(run(&tables(acl).unwrap(), Scenario::AclDeny(1000), 5000), 0, "forwarded, not denied");
        // The full path's frames on a node without node3 and the NodePort.
        assert_eq!(run(&node_tables(), Scenario::FullNew(10), 5000), 0);
    }

    #[test]
    fn names_round_trip() {
        for s in Scenario::all(250) {
            assert_eq!(Scenario::parse(&s.cli_name()), Some(s), "{}", s.cli_name());
        }
        for bad in
            ["", "acl-est", "acl-est:10", "acl-new:0", "acl-new:x", "full-est:1:0", "forward:1", "acl-deny:99999"]
        {
            assert_eq!(Scenario::parse(bad), None, "{bad}");
        }
        assert!(tables(Scenario::AclNew(0)).is_err());
        assert_eq!(run(&node_tables(), Scenario::AclNew(0), 10), 0);
    }
}
