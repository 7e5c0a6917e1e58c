//! Packet scenarios for the pipeline benchmarks: a node's tables and a
//! template frame each, built with weir's own types. The same node is used by
//! every scenario: pod-a 10.1.0.2 on port 0, pod-b 10.1.0.3 on port 1, the
//! uplink on port 2 (node IP 192.168.50.1), node2's pods 10.2.0.0/24 behind
//! the VTEP 192.168.50.2.

use std::net::Ipv4Addr;

use weir_dataplane::config::{NodeConfig, ServiceConfig};
use weir_dataplane::flow::FlowTable;
use weir_dataplane::pipeline::nat::Nat;
use weir_dataplane::pipeline::NoEvents;
use weir_dataplane::pipeline::{self, Action, PacketBuf, TestBuf};
use weir_dataplane::tables::service::ServiceTable;
use weir_dataplane::tables::{Hop, Overlay, PortEntry, Tables};
use weir_dataplane::wire::{checksum, ethernet, ipv4, udp, vxlan, MacAddr};

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
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Forward,
        Scenario::Encap,
        Scenario::Decap,
        Scenario::Copy,
        Scenario::Established(10_000),
        Scenario::Established(1_000_000),
        Scenario::NewFlow,
    ];

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
        }
    }

    /// Command-line names: forward, encap, decap, copy.
    pub fn parse(s: &str) -> Option<Scenario> {
        match s {
            "forward" => Some(Scenario::Forward),
            "encap" => Some(Scenario::Encap),
            "decap" => Some(Scenario::Decap),
            "copy" => Some(Scenario::Copy),
            "est10k" => Some(Scenario::Established(10_000)),
            "est1m" => Some(Scenario::Established(1_000_000)),
            "new" => Some(Scenario::NewFlow),
            _ => None,
        }
    }

    pub fn cli_name(self) -> &'static str {
        match self {
            Scenario::Forward => "forward",
            Scenario::Encap => "encap",
            Scenario::Decap => "decap",
            Scenario::Copy => "copy",
            Scenario::Established(1_000_000) => "est1m",
            Scenario::Established(_) => "est10k",
            Scenario::NewFlow => "new",
        }
    }

    /// (in port, template frame, the action it must get)
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

/// The node every scenario runs on.
pub fn tables() -> Tables {
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
#[inline(never)]
pub fn run(t: &Tables, s: Scenario, n: u64) -> u64 {
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
    ok
}

/// Flows the table must hold for `n` packets of a scenario.
pub fn flows_for(s: Scenario, n: u64) -> u64 {
    match s {
        Scenario::Established(f) => u64::from(f),
        Scenario::NewFlow => n.min(1 << 20),
        _ => 1024,
    }
}

/// The most packets a run of a scenario may have (new flows: one per packet,
/// 16 clients × 65536 ports).
pub fn max_packets(s: Scenario) -> u64 {
    match s {
        Scenario::NewFlow => 1 << 20,
        _ => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario's frames get the action the benchmark expects of them
    /// (what weir-bench-pipeline checks before it prints a figure).
    #[test]
    fn every_scenario_takes_its_path() {
        let t = tables();
        for s in [
            Scenario::Copy,
            Scenario::Forward,
            Scenario::Encap,
            Scenario::Decap,
            Scenario::Established(10_000),
            Scenario::Established(100_000),
            Scenario::NewFlow,
        ] {
            let n = 20_000u64.max(u64::from(match s {
                Scenario::Established(f) => f,
                _ => 0,
            }));
            assert_eq!(run(&t, s, n), n, "{}", s.name());
        }
    }
}
