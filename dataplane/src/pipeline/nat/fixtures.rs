//! Service NAT byte fixtures: for every translation, an exact input frame,
//! the port it arrives on, the expected [`Action`] and the exact output frame.
//!
//! The frames (the `GENERATED` block at the end) come from `gen_fixtures.py`
//! next to this file, an implementation independent of weir's: it builds
//! each frame from scratch and computes every checksum in full (IPv4 header,
//! TCP/UDP with their pseudo-headers, ICMP, SCTP's CRC32c bit by bit), where
//! weir updates them incrementally. Regenerate with
//! `python3 dataplane/src/pipeline/nat/gen_fixtures.py` and paste its output
//! over the block.
//!
//! Backend picks and SNAT ports are made deterministic: every Service used
//! has one usable backend (for the Local policy: one local one), and the SNAT
//! range is the single port 61000.
//!
//! The node: pods 10.1.0.0/24 behind the gateway 10.1.0.1; pod A 10.1.0.2 on
//! port 0, B 10.1.0.3 on port 1, C 10.1.0.4 on port 2; the uplink on port 3
//! (node IP 192.168.50.1); the client 192.168.50.9 is a known neighbour.

use std::net::Ipv4Addr;

use super::*;
use crate::config::NodeConfig;
use crate::pipeline::testkit::{self, assert_bytes};
use crate::pipeline::{process_full, NoEvents, ReplyKind, TestBuf};
use crate::tables::service::ServiceTable;
use crate::tables::PortEntry;
use crate::wire::MacAddr;

const A: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(10, 1, 0, 2), MacAddr([2, 0, 0, 0, 0, 2]));
const B: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(10, 1, 0, 3), MacAddr([2, 0, 0, 0, 0, 3]));
const C: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(10, 1, 0, 4), MacAddr([2, 0, 0, 0, 0, 4]));
const CLIENT: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(192, 168, 50, 9), MacAddr([2, 0, 0, 0xcc, 0, 9]));
const UPLINK: u16 = 3;

/// The node's config; `moving` lists the backends of 10.96.0.30 (case 9).
fn config(moving: &str) -> NodeConfig {
    NodeConfig::from_toml(&format!(
        r#"
        [node]
        name = "n1"
        pod_cidr = "10.1.0.0/24"
        node_ip = "192.168.50.1"
        underlay_cidr = "192.168.50.0/24"
        [gateway]
        ip = "10.1.0.1"
        mac = "02:fe:00:00:00:01"
        [nat]
        snat_port_min = 61000
        snat_port_max = 61000
        [[services]]
        name = "default/web"
        cluster_ips = ["10.96.0.10"]
        ports = [{{ port = 80, protocol = "tcp", target_port = 8080 }},
                 {{ port = 53, protocol = "udp", target_port = 5353 }}]
        backends = [{{ ip = "10.1.0.3" }}]
        [[services]]
        name = "default/a-only"
        cluster_ips = ["10.96.0.12"]
        ports = [{{ port = 80, protocol = "tcp", target_port = 8080 }}]
        backends = [{{ ip = "10.1.0.2" }}]
        [[services]]
        name = "default/diameter"
        cluster_ips = ["10.96.0.50"]
        ports = [{{ port = 3868, protocol = "sctp", target_port = 3869 }}]
        backends = [{{ ip = "10.1.0.3" }}]
        [[services]]
        name = "default/node-port"
        cluster_ips = ["10.96.0.23"]
        ports = [{{ port = 80, protocol = "tcp", target_port = 8080, node_port = 30080 }}]
        backends = [{{ ip = "10.1.0.3" }}]
        [[services]]
        name = "default/node-port-local"
        cluster_ips = ["10.96.0.20"]
        external_traffic_policy = "local"
        ports = [{{ port = 80, protocol = "tcp", target_port = 8080, node_port = 30081 }}]
        backends = [{{ ip = "10.1.0.3" }}, {{ ip = "10.2.0.5" }}]
        [[services]]
        name = "default/nobody"
        cluster_ips = ["10.96.0.22"]
        ports = [{{ port = 80, protocol = "tcp", node_port = 30083 }}]
        [[services]]
        name = "default/moving"
        cluster_ips = ["10.96.0.30"]
        ports = [{{ port = 80, protocol = "tcp", target_port = 8080 }}]
        backends = [{moving}]
        "#
    ))
    .unwrap()
}

fn tables(moving: &str) -> Tables {
    let cfg = config(moving);
    let mut t = Tables::new(&cfg, 1);
    t.add_port(0, PortEntry::pod("a", A.0, A.1, 0), 1);
    t.add_port(1, PortEntry::pod("b", B.0, B.1, 0), 1);
    t.add_port(2, PortEntry::pod("c", C.0, C.1, 0), 1);
    t.add_port(UPLINK, PortEntry { uplink: true, ..PortEntry::plain("uplink") }, 1);
    t.overlay = Some(testkit::overlay(UPLINK));
    t.neighbours.insert(CLIENT.0, CLIENT.1);
    t.services = ServiceTable::build(&cfg).unwrap();
    t
}

/// One frame through the pipeline: where it arrives, what weir must do,
/// and the bytes it must leave with (hex; whitespace ignored).
#[derive(Debug, Clone, Copy)]
struct Fx {
    name: &'static str,
    port: u16,
    input: &'static str,
    action: Action,
    output: &'static str,
}

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length");
    digits.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).expect("hex digit")).collect()
}

/// Runs the fixtures in order through `flows` (each direction finds the
/// flow the one before created) and compares every output byte for byte.
fn chain(t: &Tables, flows: &FlowTable, fixtures: &[Fx]) {
    for fx in fixtures {
        let nat = Nat::single(flows, 1000);
        let mut b = TestBuf::new(&hex(fx.input));
        let a = process_full(t, Some(&nat), fx.port, &mut b, &mut NoEvents);
        assert_eq!(a, fx.action, "{}: action", fx.name);
        assert_bytes(fx.name, &b.to_vec(), &hex(fx.output));
    }
}

/// Case 1: ClusterIP TCP: A's SYN to 10.96.0.10:80 goes to B:8080 as a router
/// hop; B's SYN-ACK comes back from 10.96.0.10:80. And the checksum edges:
/// TCP and IPv4 checksums that compute to 0x0000 after DNAT, or were 0x0000.
#[test]
fn cluster_ip_tcp_both_directions() {
    let fixtures = [C1_SYN, C1_SYN_ACK, C1_SUMS_BECOME_ZERO, C1_SUMS_WERE_ZERO];
    chain(&tables(r#"{ ip = "10.1.0.3" }"#), &FlowTable::new(1024), &fixtures);
}

/// Case 2: ClusterIP UDP 53 → 5353 with a checksum, without one (0 stays 0),
/// and one whose translated checksum computes to 0 (sent as 0xffff).
#[test]
fn cluster_ip_udp_with_and_without_checksum() {
    let fixtures = [C2_UDP, C2_UDP_REPLY, C2_UDP_NO_SUM, C2_UDP_NO_SUM_REPLY, C2_UDP_SUM_FFFF];
    chain(&tables(r#"{ ip = "10.1.0.3" }"#), &FlowTable::new(1024), &fixtures);
}

/// Case 3: SCTP INIT to a ClusterIP with another target port, and the INIT-ACK:
/// CRC32c recomputed both ways.
#[test]
fn sctp_init_and_init_ack() {
    chain(&tables(r#"{ ip = "10.1.0.3" }"#), &FlowTable::new(1024), &[C3_INIT, C3_INIT_ACK]);
}

/// Case 4: Hairpin: A through a Service whose only backend is A.
#[test]
fn hairpin_both_directions() {
    chain(&tables(r#"{ ip = "10.1.0.3" }"#), &FlowTable::new(1024), &[C4_HAIRPIN_SYN, C4_HAIRPIN_SYN_ACK]);
}

/// Case 5: NodePort from the uplink, externalTrafficPolicy Cluster: SNAT to the
/// node IP and port 61000, and the answer out of the uplink.
#[test]
fn node_port_cluster_policy_both_directions() {
    chain(&tables(r#"{ ip = "10.1.0.3" }"#), &FlowTable::new(1024), &[C5_NODE_PORT_SYN, C5_NODE_PORT_SYN_ACK]);
}

/// Case 6: NodePort, externalTrafficPolicy Local: the client's address is kept.
#[test]
fn node_port_local_policy_both_directions() {
    chain(&tables(r#"{ ip = "10.1.0.3" }"#), &FlowTable::new(1024), &[C6_LOCAL_SYN, C6_LOCAL_SYN_ACK]);
}

/// Case 7: No endpoint: ICMP port unreachable, to a pod and to the outside.
#[test]
fn no_endpoint_port_unreachable() {
    chain(&tables(r#"{ ip = "10.1.0.3" }"#), &FlowTable::new(1024), &[C7_REJECT_POD, C7_REJECT_UPLINK]);
}

/// Case 8: B's ICMP port unreachable about case 2's datagrams, translated back
/// for A (full quote, and 8-byte quotes with and without a UDP checksum).
#[test]
fn icmp_error_about_udp_translated_back() {
    let fixtures = [C2_UDP, C2_UDP_NO_SUM, C8_ICMP_FULL_QUOTE, C8_ICMP_SHORT_QUOTE_NO_SUM, C8_ICMP_SHORT_QUOTE];
    chain(&tables(r#"{ ip = "10.1.0.3" }"#), &FlowTable::new(1024), &fixtures);
}

/// Case 9: Tables published with a new generation that drops the flows' backend:
/// the client's next segment is answered with a reset (RFC 793), for a SYN
/// (RST+ACK) and for a segment with ACK and data (RST, seq = its ACK).
#[test]
fn removed_backend_resets_tcp() {
    let flows = FlowTable::new(1024);
    let t = tables(r#"{ ip = "10.1.0.3" }"#);
    chain(&t, &flows, &[C9_SYN, C9_SYN_2]);
    let mut t2 = tables(r#"{ ip = "10.1.0.4" }"#);
    t2.generation = t.generation + 1;
    chain(&t2, &flows, &[C9_SYN_RESET, C9_DATA_RESET]);
}

// BEGIN GENERATED by gen_fixtures.py: do not edit by hand.
// Regenerate with `python3 dataplane/src/pipeline/nat/gen_fixtures.py`.

/// A 10.1.0.2:40000 -> ClusterIP 10.96.0.10:80 SYN; DNAT to B 10.1.0.3:8080.
const C1_SYN: Fx = Fx {
    name: "C1_SYN",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        4500003c1c46400040060a0a0a0100020a60000a \
        9c4000501122334400000000a002faf0756a0000020405b40402080a0001e2400000000001030307",
    action: Action::Forward(1),
    output: "\
        02000000000302fe000000010800 \
        4500003c1c4640003f060b700a0100020a010003 \
        9c401f901122334400000000a002faf056900000020405b40402080a0001e2400000000001030307",
};

/// B 10.1.0.3:8080 -> A:40000 SYN-ACK; source back to 10.96.0.10:80.
const C1_SYN_ACK: Fx = Fx {
    name: "C1_SYN_ACK",
    port: 1,
    input: "\
        02fe000000010200000000030800 \
        4500003c00004000400626b60a0100030a010002 \
        1f909c405566778811223345a012fe88b75d0000020405b40402080a00abcdef0001e24001030307",
    action: Action::Forward(0),
    output: "\
        02000000000202fe000000010800 \
        4500003c000040003f0627500a60000a0a010002 \
        00509c405566778811223345a012fe88d6370000020405b40402080a00abcdef0001e24001030307",
};

/// A:40001 -> 10.96.0.10:80 SYN whose TCP and IPv4 checksums compute to 0x0000 after DNAT.
const C1_SUMS_BECOME_ZERO: Fx = Fx {
    name: "C1_SUMS_BECOME_ZERO",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        4500002827ca40004006fe990a0100020a60000a \
        9c4100507e575db300000000500204001eda0000",
    action: Action::Forward(1),
    output: "\
        02000000000302fe000000010800 \
        4500002827ca40003f0600000a0100020a010003 \
        9c411f907e575db3000000005002040000000000",
};

/// A:40002 -> 10.96.0.10:80 SYN whose TCP and IPv4 checksums are 0x0000; DNAT to B:8080.
const C1_SUMS_WERE_ZERO: Fx = Fx {
    name: "C1_SUMS_WERE_ZERO",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        4500002826644000400600000a0100020a60000a \
        9c4200507e587c8b000000005002040000000000",
    action: Action::Forward(1),
    output: "\
        02000000000302fe000000010800 \
        45000028266440003f0601660a0100020a010003 \
        9c421f907e587c8b0000000050020400e1250000",
};

/// A:5300 -> 10.96.0.10:53 UDP with a checksum; DNAT to B:5353.
const C2_UDP: Fx = Fx {
    name: "C2_UDP",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        4500003901014000401125470a0100020a60000a \
        14b4003500251d8c \
        123401000001000000000000037765620764656661756c740000010001",
    action: Action::Forward(1),
    output: "\
        02000000000302fe000000010800 \
        45000039010140003f1126ad0a0100020a010003 \
        14b414e90025093e \
        123401000001000000000000037765620764656661756c740000010001",
};

/// B:5353 -> A:5300 UDP with a checksum; source back to 10.96.0.10:53.
const C2_UDP_REPLY: Fx = Fx {
    name: "C2_UDP_REPLY",
    port: 1,
    input: "\
        02fe000000010200000000030800 \
        4500002c02024000401124b90a0100030a010002 \
        14e914b400182460 \
        1234818000010001000000000a010003",
    action: Action::Forward(0),
    output: "\
        02000000000202fe000000010800 \
        4500002c020240003f1125530a60000a0a010002 \
        003514b4001838ae \
        1234818000010001000000000a010003",
};

/// A:5301 -> 10.96.0.10:53 UDP, checksum 0: DNAT to B:5353, checksum still 0.
const C2_UDP_NO_SUM: Fx = Fx {
    name: "C2_UDP_NO_SUM",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        4500003901034000401125450a0100020a60000a \
        14b5003500250000 \
        123401000001000000000000037765620764656661756c740000010001",
    action: Action::Forward(1),
    output: "\
        02000000000302fe000000010800 \
        45000039010340003f1126ab0a0100020a010003 \
        14b514e900250000 \
        123401000001000000000000037765620764656661756c740000010001",
};

/// B:5353 -> A:5301 UDP, checksum 0: from 10.96.0.10:53, checksum still 0.
const C2_UDP_NO_SUM_REPLY: Fx = Fx {
    name: "C2_UDP_NO_SUM_REPLY",
    port: 1,
    input: "\
        02fe000000010200000000030800 \
        4500002c02044000401124b70a0100030a010002 \
        14e914b500180000 \
        1234818000010001000000000a010003",
    action: Action::Forward(0),
    output: "\
        02000000000202fe000000010800 \
        4500002c020440003f1125510a60000a0a010002 \
        003514b500180000 \
        1234818000010001000000000a010003",
};

/// A:5302 -> 10.96.0.10:53 UDP whose checksum computes to 0 after DNAT: sent as 0xffff (RFC 768).
const C2_UDP_SUM_FFFF: Fx = Fx {
    name: "C2_UDP_SUM_FFFF",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        4500002601054000401125560a0100020a60000a \
        14b600350012144e \
        7a65726f2d73756d326f",
    action: Action::Forward(1),
    output: "\
        02000000000302fe000000010800 \
        45000026010540003f1126bc0a0100020a010003 \
        14b614e90012ffff \
        7a65726f2d73756d326f",
};

/// A:5000 -> 10.96.0.50:3868 SCTP INIT; DNAT to B:3869, CRC32c recomputed.
const C3_INIT: Fx = Fx {
    name: "C3_INIT",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        4500003c03014000408422a90a0100020a600032 \
        13880f1c000000004cff9cdc \
        0100001a112233440001a000000affff01020304000c000600050000",
    action: Action::Forward(1),
    output: "\
        02000000000302fe000000010800 \
        4500003c030140003f8424370a0100020a010003 \
        13880f1d00000000ee8ef923 \
        0100001a112233440001a000000affff01020304000c000600050000",
};

/// B:3869 -> A:5000 SCTP INIT-ACK; from 10.96.0.50:3868, CRC32c recomputed.
const C3_INIT_ACK: Fx = Fx {
    name: "C3_INIT_ACK",
    port: 1,
    input: "\
        02fe000000010200000000030800 \
        45000048030240004084232a0a0100030a010002 \
        0f1d138811223344055146c9 \
        02000028556677880001a000000a000a0a0b0c0d000700144041424344454647 \
        48494a4b4c4d4e4f",
    action: Action::Forward(0),
    output: "\
        02000000000202fe000000010800 \
        45000048030240003f84239c0a6000320a010002 \
        0f1c138811223344836b6ef0 \
        02000028556677880001a000000a000a0a0b0c0d000700144041424344454647 \
        48494a4b4c4d4e4f",
};

/// A:41000 -> 10.96.0.12:80 SYN, A the only backend: 10.1.0.1:41000 -> A:8080.
const C4_HAIRPIN_SYN: Fx = Fx {
    name: "C4_HAIRPIN_SYN",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        4500003c040140004006224d0a0100020a60000c \
        a02800500a00000100000000a002faf0abe50000020405b40402080a0001e2400000000001030307",
    action: Action::Forward(0),
    output: "\
        02000000000202fe000000010800 \
        4500003c040140003f0623b70a0100010a010002 \
        a0281f900a00000100000000a002faf08d0f0000020405b40402080a0001e2400000000001030307",
};

/// A:8080 -> 10.1.0.1:41000 SYN-ACK: 10.96.0.12:80 -> A:41000.
const C4_HAIRPIN_SYN_ACK: Fx = Fx {
    name: "C4_HAIRPIN_SYN_ACK",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        4500003c00004000400626b80a0100020a010001 \
        1f90a0280b0000010a000002a012faf0b3620000020405b40402080a00abcdef0001e24001030307",
    action: Action::Forward(0),
    output: "\
        02000000000202fe000000010800 \
        4500003c000040003f06274e0a60000c0a010002 \
        0050a0280b0000010a000002a012faf0d2380000020405b40402080a00abcdef0001e24001030307",
};

/// client 192.168.50.9:50000 -> 192.168.50.1:30080 SYN on the uplink: 192.168.50.1:61000 -> B:8080.
const C5_NODE_PORT_SYN: Fx = Fx {
    name: "C5_NODE_PORT_SYN",
    port: 3,
    input: "\
        020000aa0001020000cc00090800 \
        4500003c0501400040065060c0a83209c0a83201 \
        c35075800c00000100000000a002faf040a00000020405b40402080a0001e2400000000001030307",
    action: Action::Forward(1),
    output: "\
        02000000000302fe000000010800 \
        4500003c050140003f063a0ec0a832010a010003 \
        ee481f900c00000100000000a002faf054460000020405b40402080a0001e2400000000001030307",
};

/// B:8080 -> 192.168.50.1:61000 SYN-ACK: 192.168.50.1:30080 -> client:50000 out of the uplink.
const C5_NODE_PORT_SYN_ACK: Fx = Fx {
    name: "C5_NODE_PORT_SYN_ACK",
    port: 1,
    input: "\
        02fe000000010200000000030800 \
        4500003c0000400040063e0f0a010003c0a83201 \
        1f90ee480d0000010c000002a012faf078990000020405b40402080a00abcdef0001e24001030307",
    action: Action::Forward(3),
    output: "\
        020000cc0009020000aa00010800 \
        4500003c000040003f065661c0a83201c0a83209 \
        7580c3500d0000010c000002a012faf064f30000020405b40402080a00abcdef0001e24001030307",
};

/// client:50001 -> 192.168.50.1:30081 SYN (Local policy): client:50001 -> B:8080.
const C6_LOCAL_SYN: Fx = Fx {
    name: "C6_LOCAL_SYN",
    port: 3,
    input: "\
        020000aa0001020000cc00090800 \
        4500003c0601400040064f60c0a83209c0a83201 \
        c35175810e00000100000000a002faf03e9e0000020405b40402080a0001e2400000000001030307",
    action: Action::Forward(1),
    output: "\
        02000000000302fe000000010800 \
        4500003c060140003f063906c0a832090a010003 \
        c3511f900e00000100000000a002faf07d350000020405b40402080a0001e2400000000001030307",
};

/// B:8080 -> client:50001 SYN-ACK: 192.168.50.1:30081 -> client:50001 out of the uplink.
const C6_LOCAL_SYN_ACK: Fx = Fx {
    name: "C6_LOCAL_SYN_ACK",
    port: 1,
    input: "\
        02fe000000010200000000030800 \
        4500003c0000400040063e070a010003c0a83209 \
        1f90c3510f0000010e000002a012faf09f880000020405b40402080a00abcdef0001e24001030307",
    action: Action::Forward(3),
    output: "\
        020000cc0009020000aa00010800 \
        4500003c000040003f065661c0a83201c0a83209 \
        7581c3510f0000010e000002a012faf060f10000020405b40402080a00abcdef0001e24001030307",
};

/// A:40500 -> 10.96.0.22:80 SYN, no endpoint: port unreachable from the gateway 10.1.0.1.
const C7_REJECT_POD: Fx = Fx {
    name: "C7_REJECT_POD",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        4500003c0701400040061f430a0100020a600016 \
        9e3400501000000100000000a002faf0a7cf0000020405b40402080a0001e2400000000001030307",
    action: Action::Reply(ReplyKind::IcmpPortUnreachable),
    output: "\
        02000000000202fe000000010800 \
        45c0003800000000400166010a0100010a010002 \
        03034e7700000000 \
        4500003c0701400040061f430a0100020a600016 \
        9e34005010000001",
};

/// client:50002 -> 192.168.50.1:30083 SYN, no endpoint: port unreachable from the node IP, uplink MAC.
const C7_REJECT_UPLINK: Fx = Fx {
    name: "C7_REJECT_UPLINK",
    port: 3,
    input: "\
        020000aa0001020000cc00090800 \
        4500003c0702400040064e5fc0a83209c0a83201 \
        c35275831000000200000000a002faf03c9a0000020405b40402080a0001e2400000000001030307",
    action: Action::Reply(ReplyKind::IcmpPortUnreachable),
    output: "\
        020000cc0009020000aa00010800 \
        45c0003800000000400194aac0a83201c0a83209 \
        0303b42400000000 \
        4500003c0702400040064e5fc0a83209c0a83201 \
        c352758310000002",
};

/// B -> A port unreachable quoting all of C2_UDP as B got it: from 10.96.0.10, quote A:5300 -> 10.96.0.10:53.
const C8_ICMP_FULL_QUOTE: Fx = Fx {
    name: "C8_ICMP_FULL_QUOTE",
    port: 1,
    input: "\
        02fe000000010200000000030800 \
        45c000550801000040015de10a0100030a010002 \
        0303113a00000000 \
        45000039010140003f1126ad0a0100020a010003 \
        14b414e90025093e123401000001000000000000037765620764656661756c74 \
        0000010001",
    action: Action::Forward(0),
    output: "\
        02000000000202fe000000010800 \
        45c00055080100003f015e7b0a60000a0a010002 \
        030311a000000000 \
        45000039010140003f1126470a0100020a60000a \
        14b4003500251d8c123401000001000000000000037765620764656661756c74 \
        0000010001",
};

/// B -> A port unreachable quoting 28 bytes of C2_UDP_NO_SUM: quoted UDP checksum stays 0.
const C8_ICMP_SHORT_QUOTE_NO_SUM: Fx = Fx {
    name: "C8_ICMP_SHORT_QUOTE_NO_SUM",
    port: 1,
    input: "\
        02fe000000010200000000030800 \
        45c000380802000040015dfd0a0100030a010002 \
        0303d33900000000 \
        45000039010340003f1126ab0a0100020a010003 \
        14b514e900250000",
    action: Action::Forward(0),
    output: "\
        02000000000202fe000000010800 \
        45c00038080200003f015e970a60000a0a010002 \
        0303e7ed00000000 \
        45000039010340003f1126450a0100020a60000a \
        14b5003500250000",
};

/// B -> A port unreachable quoting 28 bytes of C2_UDP: quoted UDP checksum the one A sent.
const C8_ICMP_SHORT_QUOTE: Fx = Fx {
    name: "C8_ICMP_SHORT_QUOTE",
    port: 1,
    input: "\
        02fe000000010200000000030800 \
        45c000380803000040015dfc0a0100030a010002 \
        0303c9fc00000000 \
        45000039010140003f1126ad0a0100020a010003 \
        14b414e90025093e",
    action: Action::Forward(0),
    output: "\
        02000000000202fe000000010800 \
        45c00038080300003f015e960a60000a0a010002 \
        0303ca6200000000 \
        45000039010140003f1126470a0100020a60000a \
        14b4003500251d8c",
};

/// A:42000 -> 10.96.0.30:80 SYN; DNAT to B:8080 (first tables).
const C9_SYN: Fx = Fx {
    name: "C9_SYN",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        4500003c0901400040061d3b0a0100020a60001e \
        a41000502000000100000000a002faf091eb0000020405b40402080a0001e2400000000001030307",
    action: Action::Forward(1),
    output: "\
        02000000000302fe000000010800 \
        4500003c090140003f061eb50a0100020a010003 \
        a4101f902000000100000000a002faf073250000020405b40402080a0001e2400000000001030307",
};

/// A:42001 -> 10.96.0.30:80 SYN; DNAT to B:8080 (first tables).
const C9_SYN_2: Fx = Fx {
    name: "C9_SYN_2",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        4500003c0902400040061d3a0a0100020a60001e \
        a41100502100000100000000a002faf090ea0000020405b40402080a0001e2400000000001030307",
    action: Action::Forward(1),
    output: "\
        02000000000302fe000000010800 \
        4500003c090240003f061eb40a0100020a010003 \
        a4111f902100000100000000a002faf072240000020405b40402080a0001e2400000000001030307",
};

/// A:42000's retransmitted SYN after B is removed: RST+ACK, ack = seq + 1, from 10.96.0.30:80.
const C9_SYN_RESET: Fx = Fx {
    name: "C9_SYN_RESET",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        4500003c0901400040061d3b0a0100020a60001e \
        a41000502000000100000000a002faf091eb0000020405b40402080a0001e2400000000001030307",
    action: Action::Reply(ReplyKind::TcpReset),
    output: "\
        02000000000202fe000000010800 \
        450000280901400040061d4f0a60001e0a010002 \
        0050a410000000002000000250140000d6ed0000",
};

/// A:42001's data segment (ACK) after B is removed: RST, seq = its ack, no ACK, options and data dropped.
const C9_DATA_RESET: Fx = Fx {
    name: "C9_DATA_RESET",
    port: 0,
    input: "\
        02fe000000010200000000020800 \
        450000540903400040061d210a0100020a60001e \
        a41100502100000231000002801801f67ced00000101080a0001e2410012d687 \
        474554202f20485454502f312e310d0a486f73743a206d6f76696e670d0a0d0a",
    action: Action::Reply(ReplyKind::TcpReset),
    output: "\
        02000000000202fe000000010800 \
        450000280903400040061d4d0a60001e0a010002 \
        0050a411310000020000000050040000c5fc0000",
};
// END GENERATED
