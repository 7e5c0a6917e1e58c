//! Tests of the VXLAN overlay: decapsulation on the uplink, encapsulation of
//! pod traffic for another node, and ARP on the uplink.
//!
//! Decapsulation is checked against frames the Linux kernel's own VXLAN
//! device sent (captured bytes, below); encapsulation against the kernel's
//! layout of the same packets, mirrored. The other cases are table-driven
//! like `pipeline/tests.rs`: a frame arriving on a port, the [`Action`] it
//! must get, the events it must report and, for `Forward`/`Reply`/`Resolve`,
//! the exact bytes that must leave. Expected outputs are built by hand with
//! this file's own one's-complement sum, not with the wire emitters or
//! checksum helpers the pipeline uses.
//!
//! The node: pod CIDR 10.1.0.0/24, gateway 10.1.0.1 / 02:fe:00:00:00:01 (also
//! its VTEP MAC); pod-a 10.1.0.2 on port 0; the uplink on port 1 (node IP
//! 192.168.50.1, MAC 02:00:00:aa:00:01, underlay 192.168.50.0/24, MTU 1500);
//! network "poc-net" (21.1.1.0/24, gateway 21.1.1.1, VNI 21) with pod-p
//! 21.1.1.2 on port 2. The peer node 192.168.50.2 (underlay MAC
//! 02:00:00:aa:00:02, VTEP MAC 02:fe:00:00:00:02) has 10.2.0.0/24 and the
//! poc-net pod 21.1.1.3.

use crate::pipeline::{testkit, ReplyKind};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use Action::Reply;

use super::*;
use crate::config::NodeConfig;
use crate::pipeline::testkit::*;
use crate::pipeline::{process, process_events, Consumed, TestBuf, LOCAL_TTL};
use crate::tables::{PortEntry, PortId};
use crate::wire::ethernet::ethertype;
use crate::wire::ipv4::protocol;

// ------------------------------------------------------- golden fixtures

// Captured from the Linux kernel's VXLAN device (kernel 6.18, iproute2),
// as root, in two network namespaces created for the purpose and deleted
// afterwards. "a" plays weir's node, "b" the peer node:
//
//   ip netns add ovlt-a; ip netns add ovlt-b
//   ip link add ovlt-va type veth peer name ovlt-vb
//   ip link set ovlt-va netns ovlt-a; ip link set ovlt-vb netns ovlt-b
//   for ns in ovlt-a ovlt-b; do for c in all default; do   # no IPv6 chatter
//     ip netns exec $ns sysctl -w net.ipv6.conf.$c.disable_ipv6=1; done; done
//   ip -n ovlt-a link set ovlt-va address 02:00:00:aa:00:01
//   ip -n ovlt-b link set ovlt-vb address 02:00:00:aa:00:02
//   ip -n ovlt-a addr add 192.168.50.1/24 dev ovlt-va
//   ip -n ovlt-b addr add 192.168.50.2/24 dev ovlt-vb
//   ip -n ovlt-b link add vx0 type vxlan id 1 dstport 4789 \
//       local 192.168.50.2 remote 192.168.50.1 dev ovlt-vb
//   ip -n ovlt-b link set vx0 address 02:fe:00:00:00:02
//   # no checksum offload, so the captured checksums are complete
//   ip netns exec ovlt-b ethtool -K ovlt-vb tx off
//   ip netns exec ovlt-b ethtool -K vx0 tx off
//   ip -n ovlt-a link set lo up; ip -n ovlt-b link set lo up
//   ip -n ovlt-a link set ovlt-va up
//   ip -n ovlt-b link set ovlt-vb up; ip -n ovlt-b link set vx0 up
//   ip -n ovlt-b addr add 10.2.0.1/32 dev vx0
//   ip -n ovlt-b neigh add 10.1.0.1 lladdr 02:fe:00:00:00:01 dev vx0 nud permanent
//   ip -n ovlt-b route add 10.1.0.0/24 via 10.1.0.1 dev vx0 onlink
//   ip -n ovlt-b neigh add 192.168.50.1 lladdr 02:00:00:aa:00:01 dev ovlt-vb nud permanent
//   # VNI 21 (poc-net): a second device on the same socket
//   ip -n ovlt-b link add vx21 type vxlan id 21 dstport 4789 \
//       local 192.168.50.2 remote 192.168.50.1 dev ovlt-vb
//   ip -n ovlt-b link set vx21 address 02:fe:00:00:00:02
//   ip netns exec ovlt-b ethtool -K vx21 tx off; ip -n ovlt-b link set vx21 up
//   ip -n ovlt-b addr add 21.1.1.3/32 dev vx21
//   ip -n ovlt-b neigh add 21.1.1.1 lladdr 02:fe:00:00:00:01 dev vx21 nud permanent
//   ip -n ovlt-b route add 21.1.1.2/32 via 21.1.1.1 dev vx21 onlink
//
// then, while this ran in ovlt-a (`ip netns exec ovlt-a python3 capture.py`):
//
//   import socket
//   s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
//   s.bind(("ovlt-va", 0))
//   while True:
//       f, addr = s.recvfrom(65535)
//       if addr[2] != socket.PACKET_OUTGOING and f[12:14] == b"\x08\x00" \
//               and f[23] == 17 and f[36:38] == (4789).to_bytes(2, "big"):
//           print(f.hex(), flush=True)
//
// these were sent from ovlt-b:
//
//   ip netns exec ovlt-b ping -c 1 -s 56 -p 7765697221 10.1.0.2    # KERNEL_PING
//   ip netns exec ovlt-b python3 -c 'import socket; s = socket.socket(
//       socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.2.0.1", 40000));
//       s.sendto(b"hello pod-a, from the linux vxlan device", ("10.1.0.2", 5000))'
//                                                                   # KERNEL_UDP
//   ip netns exec ovlt-b ping -c 1 -s 24 -p 7765697221 21.1.1.2    # KERNEL_PING_VNI21
//
//   ip netns del ovlt-b; ip netns del ovlt-a
//
// The kernel's conventions, as the bytes show: outer TTL 64, DF clear, IP
// ident counting, UDP source port from a flow hash in the local port range
// (32768-60999), UDP checksum computed (iproute2's default `udpcsum`), VXLAN
// flags 0x08 and zero reserved bytes. weir differs on purpose in DF (set),
// ident (0), source port range (49152-65535) and UDP checksum (0).

/// ICMP echo request 10.2.0.1 -> 10.1.0.2 (84-byte inner packet), VNI 1.
static KERNEL_PING: [u8; 148] = [
    0x02, 0x00, 0x00, 0xaa, 0x00, 0x01, 0x02, 0x00, 0x00, 0xaa, 0x00, 0x02, 0x08, 0x00, 0x45, 0x00, //
    0x00, 0x86, 0xb6, 0xaf, 0x00, 0x00, 0x40, 0x11, 0xde, 0x63, 0xc0, 0xa8, 0x32, 0x02, 0xc0, 0xa8, //
    0x32, 0x01, 0xa4, 0xef, 0x12, 0xb5, 0x00, 0x72, 0x4b, 0x12, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, //
    0x01, 0x00, 0x02, 0xfe, 0x00, 0x00, 0x00, 0x01, 0x02, 0xfe, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, //
    0x45, 0x00, 0x00, 0x54, 0x25, 0xdd, 0x40, 0x00, 0x40, 0x01, 0x00, 0xc7, 0x0a, 0x02, 0x00, 0x01, //
    0x0a, 0x01, 0x00, 0x02, 0x08, 0x00, 0x44, 0x8c, 0x48, 0xae, 0x00, 0x01, 0x29, 0x2b, 0x04, 0x6b, //
    0x00, 0x00, 0x00, 0x00, 0xc7, 0xc6, 0x0e, 0x00, 0x00, 0x00, 0x00, 0x00, 0x65, 0x69, 0x72, 0x21, //
    0x77, 0x65, 0x69, 0x72, 0x21, 0x77, 0x65, 0x69, 0x72, 0x21, 0x77, 0x65, 0x69, 0x72, 0x21, 0x77, //
    0x65, 0x69, 0x72, 0x21, 0x77, 0x65, 0x69, 0x72, 0x21, 0x77, 0x65, 0x69, 0x72, 0x21, 0x77, 0x65, //
    0x69, 0x72, 0x21, 0x77,
];

/// UDP 10.2.0.1:40000 -> 10.1.0.2:5000, 40 bytes of data, VNI 1.
static KERNEL_UDP: [u8; 132] = [
    0x02, 0x00, 0x00, 0xaa, 0x00, 0x01, 0x02, 0x00, 0x00, 0xaa, 0x00, 0x02, 0x08, 0x00, 0x45, 0x00, //
    0x00, 0x76, 0xb7, 0x9d, 0x00, 0x00, 0x40, 0x11, 0xdd, 0x85, 0xc0, 0xa8, 0x32, 0x02, 0xc0, 0xa8, //
    0x32, 0x01, 0xb6, 0x0b, 0x12, 0xb5, 0x00, 0x62, 0x4e, 0x5d, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, //
    0x01, 0x00, 0x02, 0xfe, 0x00, 0x00, 0x00, 0x01, 0x02, 0xfe, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, //
    0x45, 0x00, 0x00, 0x44, 0x39, 0x84, 0x40, 0x00, 0x40, 0x11, 0xed, 0x1f, 0x0a, 0x02, 0x00, 0x01, //
    0x0a, 0x01, 0x00, 0x02, 0x9c, 0x40, 0x13, 0x88, 0x00, 0x30, 0x06, 0x58, 0x68, 0x65, 0x6c, 0x6c, //
    0x6f, 0x20, 0x70, 0x6f, 0x64, 0x2d, 0x61, 0x2c, 0x20, 0x66, 0x72, 0x6f, 0x6d, 0x20, 0x74, 0x68, //
    0x65, 0x20, 0x6c, 0x69, 0x6e, 0x75, 0x78, 0x20, 0x76, 0x78, 0x6c, 0x61, 0x6e, 0x20, 0x64, 0x65, //
    0x76, 0x69, 0x63, 0x65,
];

/// ICMP echo request 21.1.1.3 -> 21.1.1.2 (52-byte inner packet), VNI 21.
static KERNEL_PING_VNI21: [u8; 116] = [
    0x02, 0x00, 0x00, 0xaa, 0x00, 0x01, 0x02, 0x00, 0x00, 0xaa, 0x00, 0x02, 0x08, 0x00, 0x45, 0x00, //
    0x00, 0x66, 0xb8, 0x91, 0x00, 0x00, 0x40, 0x11, 0xdc, 0xa1, 0xc0, 0xa8, 0x32, 0x02, 0xc0, 0xa8, //
    0x32, 0x01, 0xa6, 0xf4, 0x12, 0xb5, 0x00, 0x52, 0x35, 0x4d, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, //
    0x15, 0x00, 0x02, 0xfe, 0x00, 0x00, 0x00, 0x01, 0x02, 0xfe, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, //
    0x45, 0x00, 0x00, 0x34, 0x37, 0xff, 0x40, 0x00, 0x40, 0x01, 0xd6, 0xc3, 0x15, 0x01, 0x01, 0x03, //
    0x15, 0x01, 0x01, 0x02, 0x08, 0x00, 0x65, 0x08, 0x49, 0x74, 0x00, 0x01, 0x3a, 0x2b, 0x04, 0x6b, //
    0x00, 0x00, 0x00, 0x00, 0x48, 0x89, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x65, 0x69, 0x72, 0x21, //
    0x77, 0x65, 0x69, 0x72,
];

/// Where the outer headers of a VXLAN frame end and the inner frame starts.
const INNER: usize = VXLAN_OVERHEAD;

// ------------------------------------------------------------ the node

const POC_GW: Ipv4Addr = Ipv4Addr::new(21, 1, 1, 1);
const P_IP: Ipv4Addr = Ipv4Addr::new(21, 1, 1, 2);
const P_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x12]);

const UPLINK: PortId = 1;
const POD_A_PORT: PortId = 0;
const POD_P_PORT: PortId = 2;
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const UPLINK_MAC: MacAddr = MacAddr([0x02, 0, 0, 0xaa, 0, 0x01]);
const MTU: u16 = 1500;
/// The largest inner IPv4 packet: MTU - 50.
const ROOM: usize = 1450;

/// The peer node: its underlay address and MAC, and its VTEP MAC.
const PEER_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0xaa, 0, 0x02]);
const PEER_VTEP_MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 0x02]);
/// A pod on the peer (10.2.0.0/24 is routed there) and poc-net's pod there.
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const POC_REMOTE: Ipv4Addr = Ipv4Addr::new(21, 1, 1, 3);

/// A third underlay host the tables do not know yet.
const NEW_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 3);
const NEW_MAC: MacAddr = MacAddr([0x02, 0, 0, 0xaa, 0, 0x03]);
/// A node outside the underlay subnet (reached through the underlay gateway).
const FAR_VTEP: Ipv4Addr = Ipv4Addr::new(172, 31, 9, 9);
const FAR_POD: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 5);
const UNDERLAY_GW: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 254);
const UNDERLAY_GW_MAC: MacAddr = MacAddr([0x02, 0, 0, 0xaa, 0, 0xfe]);

const P: (MacAddr, Ipv4Addr) = (P_MAC, P_IP);
/// The remote pod as seen inside the tunnel: its frames come from the peer's VTEP MAC.
const R: (MacAddr, Ipv4Addr) = (PEER_VTEP_MAC, REMOTE_POD);
const PEER: (MacAddr, Ipv4Addr) = (PEER_MAC, PEER_IP);
const NEW: (MacAddr, Ipv4Addr) = (NEW_MAC, NEW_IP);

fn overlay() -> Overlay {
    Overlay { mtu: MTU, ..testkit::overlay(UPLINK) }
}

fn tables() -> Tables {
    let cfg = NodeConfig::from_toml(
        r#"
        [node]
        name = "test-node"
        pod_cidr = "10.1.0.0/24"
        [gateway]
        ip = "10.1.0.1"
        mac = "02:fe:00:00:00:01"
        [[networks]]
        name = "poc-net"
        subnet = "21.1.1.0/24"
        gateway = "21.1.1.1"
        vni = 21
        "#,
    )
    .unwrap();
    let mut t = Tables::new(&cfg, 1);
    t.add_port(POD_A_PORT, PortEntry::pod("pod-a", A_IP, A_MAC, 0), 1);
    t.add_port(UPLINK, PortEntry { uplink: true, ..PortEntry::plain("uplink") }, 1);
    t.add_port(POD_P_PORT, PortEntry::pod("pod-p", P_IP, P_MAC, 1), 1);
    t.overlay = Some(overlay());
    let peer = Hop::Remote { vtep: PEER_IP, vtep_mac: PEER_VTEP_MAC, net: 0 };
    t.add_remote_route(0, "10.2.0.0/24".parse().unwrap(), peer);
    let poc_peer = Hop::Remote { vtep: PEER_IP, vtep_mac: PEER_VTEP_MAC, net: 1 };
    t.add_remote_route(1, "21.1.1.3/32".parse().unwrap(), poc_peer);
    t.neighbours.insert(PEER_IP, PEER_MAC);
    t
}

/// The tables, and 10.3.0.0/24 on a node outside the underlay subnet.
fn tables_with_far_node(gateway: Option<Ipv4Addr>) -> Tables {
    let mut t = tables();
    let far = Hop::Remote { vtep: FAR_VTEP, vtep_mac: PEER_VTEP_MAC, net: 0 };
    t.add_remote_route(0, "10.3.0.0/24".parse().unwrap(), far);
    t.overlay.as_mut().unwrap().gateway = gateway;
    t
}

/// The peer node as weir: node IP 192.168.50.2, pod 10.2.0.1 on port 0, its
/// gateway MAC being the VTEP MAC this node sends to.
const PEER_POD_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x02, 0x01]);

fn peer_tables() -> Tables {
    let cfg = NodeConfig::from_toml(
        r#"
        [node]
        name = "peer-node"
        pod_cidr = "10.2.0.0/24"
        [gateway]
        ip = "10.2.0.254"
        mac = "02:fe:00:00:00:02"
        "#,
    )
    .unwrap();
    let mut t = Tables::new(&cfg, 1);
    t.add_port(0, PortEntry::pod("pod-r", REMOTE_POD, PEER_POD_MAC, 0), 1);
    t.add_port(1, PortEntry { uplink: true, ..PortEntry::plain("uplink") }, 1);
    t.overlay = Some(Overlay { node_ip: PEER_IP, uplink_mac: PEER_MAC, ..overlay() });
    // Back to this node: its VTEP is known to the peer.
    let back = Hop::Remote { vtep: NODE_IP, vtep_mac: GW_MAC, net: 0 };
    t.add_remote_route(0, "10.1.0.0/24".parse().unwrap(), back);
    t
}

// ------------------------------------------------- independent checksums

/// The 16-bit one's-complement sum of `data` (RFC 1071), this file's own.
fn ones_sum(data: &[u8]) -> u16 {
    let mut s: u32 = data.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0))).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// An IPv4 header (at the start of `ip`) whose checksum verifies.
fn ip_sum_ok(ip: &[u8]) -> bool {
    ones_sum(&ip[..usize::from(ip[0] & 0x0f) * 4]) == 0xffff
}

/// Recomputes the header checksum of the IPv4 packet at the start of `ip`.
fn fix_ip_sum(ip: &mut [u8]) {
    let hl = usize::from(ip[0] & 0x0f) * 4;
    ip[10..12].fill(0);
    let c = !ones_sum(&ip[..hl]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The UDP checksum of `seg` (checksum field included) verifies for `src`/`dst`.
fn udp_sum_ok(src: Ipv4Addr, dst: Ipv4Addr, seg: &[u8]) -> bool {
    let mut pseudo = Vec::new();
    pseudo.extend(src.octets());
    pseudo.extend(dst.octets());
    pseudo.extend([0, protocol::UDP]);
    pseudo.extend((seg.len() as u16).to_be_bytes());
    pseudo.extend(seg);
    ones_sum(&pseudo) == 0xffff
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

// ---------------------------------------------------------------- builders

/// (protocol, bytes) of an L4 segment from `src` to `dst`, checksum filled;
/// UDP goes to port 5000.
fn l4_bytes(src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> (u8, Vec<u8>) {
    l4_bytes_to(5000, src, dst, l4)
}

/// A frame from `from` (MAC, IP) to weir's gateway MAC, IPv4 to `dst`, DF set.
fn pkt(from: (MacAddr, Ipv4Addr), dst: Ipv4Addr, ttl: u8, l4: L4) -> Vec<u8> {
    pkt_to(5000, from, dst, ttl, l4)
}

/// A UDP frame from `from` to `dst` whose IPv4 packet is exactly `ip_len`
/// bytes long, DF as given.
fn sized(from: (MacAddr, Ipv4Addr), dst: Ipv4Addr, ip_len: usize, dont_frag: bool) -> Vec<u8> {
    let data: Vec<u8> = (0..ip_len - 28).map(|i| i as u8).collect();
    edit_ip(pkt(from, dst, 64, L4::Udp(&data)), |ip| ip.set_flags_frag(dont_frag, false, 0))
}

/// UDP from the peer node to this node's port `dport`, carrying `payload`,
/// with checksum 0 (RFC 7348 allows it; weir does not verify it anyway).
fn udp_to_node(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut seg = vec![0; udp::HEADER_LEN + payload.len()];
    seg[udp::HEADER_LEN..].copy_from_slice(payload);
    let len = seg.len() as u16;
    let mut u = udp::Packet::new_unchecked(&mut seg[..]);
    u.set_src_port(50000);
    u.set_dst_port(dport);
    u.set_len(len);
    u.set_checksum(0);
    to_node(protocol::UDP, &seg)
}

/// IPv4 from the peer node to the node IP, to the uplink MAC.
fn to_node(protocol: u8, payload: &[u8]) -> Vec<u8> {
    let repr = ipv4::Repr {
        src: PEER_IP,
        dst: NODE_IP,
        protocol,
        ttl: 64,
        payload_len: 0,
        dscp_ecn: 0,
        ident: 7,
        dont_frag: true,
    };
    eth(UPLINK_MAC, PEER_MAC, ethertype::IPV4, &ipv4_with(repr, payload))
}

fn vxlan_header(flags: u8, vni: u32) -> [u8; 8] {
    [flags, 0, 0, 0, (vni >> 16) as u8, (vni >> 8) as u8, vni as u8, 0]
}

/// `inner` in VXLAN from the peer node.
fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    udp_to_node(vxlan::DEFAULT_PORT, &[&vxlan_header(vxlan::FLAG_VNI, vni)[..], inner].concat())
}

fn arp_repr(op: u16, sender: (MacAddr, Ipv4Addr), target: Ipv4Addr) -> arp::Repr {
    arp::Repr { operation: op, sender_mac: sender.0, sender_ip: sender.1, target_mac: MacAddr::ZERO, target_ip: target }
}

/// "`from` is at its MAC", unicast to the uplink MAC (an answer to weir's request).
fn is_at_uplink(from: (MacAddr, Ipv4Addr)) -> Vec<u8> {
    let r = arp::Repr { target_mac: UPLINK_MAC, ..arp_repr(arp::OP_REPLY, from, NODE_IP) };
    arp_frame(UPLINK_MAC, from.0, r)
}

/// The reply weir must send to `to`: "the node IP is at the uplink MAC".
fn node_is_at(to: (MacAddr, Ipv4Addr)) -> Vec<u8> {
    // Built by hand: 14 + 28 bytes.
    let mut f = Vec::new();
    f.extend(to.0 .0);
    f.extend(UPLINK_MAC.0);
    f.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    f.extend(UPLINK_MAC.0);
    f.extend(NODE_IP.octets());
    f.extend(to.0 .0);
    f.extend(to.1.octets());
    f
}

// ------------------------------------------------------- expected outputs

/// `frame` as routed to `next_hop`: MACs rewritten, TTL - 1, header checksum
/// recomputed from scratch, everything else (padding included) as it was.
fn routed(frame: &[u8], next_hop: MacAddr) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[..6].copy_from_slice(&next_hop.0);
    out[6..12].copy_from_slice(&GW_MAC.0);
    out[14 + 8] -= 1;
    fix_ip_sum(&mut out[14..]);
    out
}

/// What weir must send to the underlay for `frame`, a pod's frame as it
/// arrives: 50 bytes of outer headers written by hand (outer Ethernet to
/// `dst_mac`, IPv4 node IP -> `vtep` with TTL 64, DF, ident 0 and the inner
/// DSCP/ECN; UDP to 4789 with checksum 0; VXLAN I flag and `vni`) in front of
/// the routed inner frame without its Ethernet padding. The UDP source port
/// is left 0: it is a hash, and the runner checks its range and copies it.
fn encapsulated(frame: &[u8], dst_mac: MacAddr, vtep: Ipv4Addr, vni: u32) -> Vec<u8> {
    let inner_len = 14 + usize::from(be16(frame, 16));
    let inner = routed(&frame[..inner_len], PEER_VTEP_MAC);
    let udp_len = (8 + 8 + inner.len()) as u16;
    let mut f = Vec::new();
    f.extend(dst_mac.0);
    f.extend(UPLINK_MAC.0);
    f.extend([0x08, 0x00]);
    let mut ip = vec![0x45, frame[15]];
    ip.extend((20 + udp_len).to_be_bytes());
    ip.extend([0, 0, 0x40, 0x00, 64, 17, 0, 0]);
    ip.extend(NODE_IP.octets());
    ip.extend(vtep.octets());
    fix_ip_sum(&mut ip);
    f.extend(ip);
    f.extend([0, 0, 0x12, 0xb5]);
    f.extend(udp_len.to_be_bytes());
    f.extend([0, 0]);
    f.extend(vxlan_header(0x08, vni));
    f.extend(inner);
    f
}

/// The ICMP error weir must send back for `frame` (a pod's frame): from
/// `from` (the network's gateway) to the sender, quoting the IPv4 header and
/// 8 bytes of payload. Built by hand.
fn icmp_error_for(frame: &[u8], from: Ipv4Addr, ty: u8, code: u8, rest: u32) -> Vec<u8> {
    let ip = &frame[14..];
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let quote = &ip[..(hl + 8).min(usize::from(be16(ip, 2)))];
    let mut msg = vec![ty, code, 0, 0];
    msg.extend(rest.to_be_bytes());
    msg.extend(quote);
    let c = !ones_sum(&msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let mut out = Vec::new();
    out.extend(&frame[6..12]);
    out.extend(GW_MAC.0);
    out.extend([0x08, 0x00, 0x45, 0xc0]);
    out.extend(((20 + msg.len()) as u16).to_be_bytes());
    out.extend([0, 0, 0, 0, LOCAL_TTL, 1, 0, 0]);
    out.extend(from.octets());
    out.extend(&ip[12..16]);
    fix_ip_sum(&mut out[14..]);
    out.extend(msg);
    out
}

fn frag_needed_for(frame: &[u8], from: Ipv4Addr) -> Vec<u8> {
    icmp_error_for(frame, from, 3, 4, ROOM as u32)
}

// ------------------------------------------------------------ the runner

type Neighbours = Vec<(Ipv4Addr, MacAddr)>;

struct Case {
    name: &'static str,
    port: PortId,
    frame: Vec<u8>,
    want: Action,
    /// The exact frame that must leave, for `Forward`, `Reply` and `Resolve`.
    /// For encapsulated frames the UDP source port (bytes 34..36) is checked
    /// to be in 49152-65535 and then taken from the output.
    out: Option<Vec<u8>>,
    /// The neighbour events it must report, in order.
    events: Neighbours,
}

impl Case {
    fn drop(name: &'static str, port: PortId, frame: Vec<u8>, reason: DropReason) -> Case {
        Case { name, port, frame, want: Drop(reason), out: None, events: vec![] }
    }
    /// A VXLAN frame on the uplink whose inner frame goes to a local pod.
    fn decap(name: &'static str, frame: Vec<u8>, out_port: PortId, pod_mac: MacAddr) -> Case {
        let udp_at = 14 + usize::from(frame[14] & 0x0f) * 4;
        let inner_at = udp_at + 8 + 8;
        let inner_end = udp_at + usize::from(be16(&frame, udp_at + 4));
        let out = routed(&frame[inner_at..inner_end], pod_mac);
        Case { name, port: UPLINK, frame, want: Forward(out_port), out: Some(out), events: vec![] }
    }
    /// A pod frame encapsulated for the peer node (its neighbour entry known).
    fn encap(name: &'static str, port: PortId, frame: Vec<u8>, vni: u32) -> Case {
        let out = encapsulated(&frame, PEER_MAC, PEER_IP, vni);
        Case { name, port, frame, want: Forward(UPLINK), out: Some(out), events: vec![] }
    }
    fn reply(name: &'static str, port: PortId, frame: Vec<u8>, kind: ReplyKind, out: Vec<u8>) -> Case {
        Case { name, port, frame, want: Reply(kind), out: Some(out), events: vec![] }
    }
    fn with_out(name: &'static str, port: PortId, frame: Vec<u8>, want: Action, out: Vec<u8>) -> Case {
        Case { name, port, frame, want, out: Some(out), events: vec![] }
    }
    fn consumed(name: &'static str, frame: Vec<u8>) -> Case {
        let want = Action::Consumed(Consumed::ArpOnUplink);
        Case { name, port: UPLINK, frame, want, out: None, events: vec![] }
    }
    /// The neighbours, as (MAC, IP) like the other tuples here, it must report.
    fn events(self, events: &[(MacAddr, Ipv4Addr)]) -> Case {
        Case { events: events.iter().map(|(mac, ip)| (*ip, *mac)).collect(), ..self }
    }
}

/// An encapsulated frame (pod port -> uplink).
fn is_encap(in_port: PortId, action: Action) -> bool {
    in_port != UPLINK && matches!(action, Forward(UPLINK) | Action::Resolve { .. })
}

/// Checks the UDP source port of an encapsulated frame and copies it into
/// the expected frame (which has 0 there).
fn take_src_port(name: &str, got: &[u8], want: &mut [u8]) -> u16 {
    let sport = be16(got, 34);
    assert!(sport >= 49152, "{name}: UDP source port {sport} outside 49152-65535");
    want[34..36].copy_from_slice(&sport.to_be_bytes());
    sport
}

/// Runs one case: the action, the events and the output bytes must match.
fn run(t: &Tables, c: &Case) -> Action {
    let mut buf = TestBuf::new(&c.frame);
    let mut events = Neighbours::new();
    let got = process_events(t, c.port, &mut buf, &mut events);
    assert_eq!(got, c.want, "{}", c.name);
    assert_eq!(events, c.events, "{}: events", c.name);
    match (&c.out, got) {
        (Some(want), _) => {
            let mut want = want.clone();
            if is_encap(c.port, got) {
                take_src_port(c.name, buf.data(), &mut want);
                check_vxlan(c.name, buf.data());
            }
            assert_bytes(c.name, buf.data(), &want);
            if let Forward(p) = got {
                if p != UPLINK {
                    assert!(ip_sum_ok(&buf.data()[14..]), "{}: IPv4 checksum", c.name);
                }
            }
        }
        (None, Forward(_) | Reply(_) | Action::Resolve { .. }) => panic!("{}: no expected output", c.name),
        (None, _) => {}
    }
    got
}

/// Decodes an encapsulated frame with the wire views and checks it is sound
/// VXLAN from this node: lengths consistent, checksums valid, VNI of a
/// network, an IPv4 inner frame that fits the MTU. Returns (VNI, inner frame).
fn check_vxlan<'a>(name: &str, out: &'a [u8]) -> (u32, &'a [u8]) {
    let e = ethernet::Frame::new_checked(out).unwrap_or_else(|e| panic!("{name}: outer ethernet: {e:?}"));
    assert_eq!((e.src(), e.ethertype()), (UPLINK_MAC, ethertype::IPV4), "{name}: outer ethernet");
    let ip = ipv4::Packet::new_checked(e.payload()).unwrap_or_else(|e| panic!("{name}: outer ipv4: {e:?}"));
    assert!(ip.verify_checksum() && ip_sum_ok(ip.as_bytes()), "{name}: outer IPv4 checksum");
    assert_eq!(usize::from(ip.total_len()), out.len() - 14, "{name}: outer total length");
    assert_eq!(ip.header_len(), 20, "{name}: outer IHL");
    assert_eq!((ip.src_addr(), ip.protocol(), ip.ttl()), (NODE_IP, protocol::UDP, 64), "{name}: outer IPv4");
    assert!(ip.dont_frag() && !ip.more_frags() && ip.frag_offset() == 0, "{name}: outer DF, not a fragment");
    assert!(usize::from(ip.total_len()) <= usize::from(MTU), "{name}: outer packet over the MTU");
    let u = udp::Packet::new_checked(ip.payload()).unwrap_or_else(|e| panic!("{name}: udp: {e:?}"));
    assert_eq!(usize::from(u.len()), ip.payload().len(), "{name}: UDP length");
    assert!(u.src_port() >= SRC_PORT_MIN, "{name}: UDP source port");
    assert_eq!((u.dst_port(), u.checksum()), (vxlan::DEFAULT_PORT, 0), "{name}: UDP port and checksum");
    let vx = vxlan::Packet::new_checked(u.payload()).unwrap_or_else(|e| panic!("{name}: vxlan: {e:?}"));
    assert_eq!(vx.flags(), vxlan::FLAG_VNI, "{name}: VXLAN flags");
    assert_eq!(&u.payload()[1..4], &[0, 0, 0], "{name}: VXLAN reserved");
    assert_eq!(u.payload()[7], 0, "{name}: VXLAN reserved");
    let vni = vxlan::Repr::parse(&vx).unwrap().vni;
    assert!(vni == 1 || vni == 21, "{name}: VNI {vni}");
    let inner = &out[INNER..];
    assert_eq!(inner.len(), vx.payload().len());
    let ie = ethernet::Frame::new_checked(inner).unwrap();
    assert_eq!((ie.src(), ie.ethertype()), (GW_MAC, ethertype::IPV4), "{name}: inner ethernet");
    let iip = ipv4::Packet::new_checked(ie.payload()).unwrap_or_else(|e| panic!("{name}: inner ipv4: {e:?}"));
    assert!(ip_sum_ok(iip.as_bytes()), "{name}: inner IPv4 checksum");
    assert_eq!(usize::from(iip.total_len()), inner.len() - 14, "{name}: inner padding carried");
    assert_eq!(ip.dscp_ecn(), iip.dscp_ecn(), "{name}: DSCP/ECN copied");
    (vni, inner)
}

// ------------------------------------------------ 1. the kernel's frames

/// The fixtures are what the comment says: checksums (the outer UDP one
/// included) verify, and the kernel's conventions are as described.
#[test]
fn kernel_fixtures_are_sound() {
    for (name, f, vni, inner_src, inner_dst) in [
        ("ping", &KERNEL_PING[..], 1, REMOTE_POD, A_IP),
        ("udp", &KERNEL_UDP[..], 1, REMOTE_POD, A_IP),
        ("ping vni 21", &KERNEL_PING_VNI21[..], 21, POC_REMOTE, P_IP),
    ] {
        assert_eq!(&f[..14], &[&UPLINK_MAC.0[..], &PEER_MAC.0, &[0x08, 0]].concat()[..], "{name}");
        let ip = &f[14..34];
        assert!(ip_sum_ok(ip), "{name}: outer IPv4 checksum");
        assert_eq!((ip[0], usize::from(be16(ip, 2))), (0x45, f.len() - 14), "{name}");
        assert_eq!(ip[6] & 0x40, 0, "{name}: the kernel leaves DF clear");
        assert_eq!((ip[8], ip[9]), (64, 17), "{name}: TTL 64, UDP");
        assert_eq!((ip_at(ip, 12), ip_at(ip, 16)), (PEER_IP, NODE_IP), "{name}");
        let seg = &f[34..];
        assert_eq!(usize::from(be16(seg, 4)), seg.len(), "{name}: UDP length");
        assert!((32768..=60999).contains(&be16(seg, 0)), "{name}: kernel source port range");
        assert_eq!(be16(seg, 2), 4789);
        assert_ne!(be16(seg, 6), 0, "{name}: udpcsum");
        assert!(udp_sum_ok(PEER_IP, NODE_IP, seg), "{name}: outer UDP checksum");
        assert_eq!(&f[42..50], &vxlan_header(0x08, vni), "{name}: VXLAN");
        let inner = &f[INNER..];
        assert_eq!(&inner[..14], &[&GW_MAC.0[..], &PEER_VTEP_MAC.0, &[0x08, 0]].concat()[..], "{name}");
        assert!(ip_sum_ok(&inner[14..]), "{name}: inner IPv4 checksum");
        assert_eq!((ip_at(inner, 26), ip_at(inner, 30), inner[22]), (inner_src, inner_dst, 64), "{name}");
        assert_eq!(usize::from(be16(inner, 16)), inner.len() - 14, "{name}: no inner padding");
        let l4 = &inner[34..];
        match inner[23] {
            1 => assert_eq!(ones_sum(l4), 0xffff, "{name}: ICMP checksum"),
            17 => assert!(udp_sum_ok(inner_src, inner_dst, l4), "{name}: inner UDP checksum"),
            p => panic!("{name}: protocol {p}"),
        }
    }
}

/// The kernel's frames decapsulate to the local pod: inner dst MAC the
/// pod's, src the gateway MAC, TTL - 1, checksum valid, nothing else changed.
#[test]
fn decap_kernel_frames() {
    let t = tables();
    for (name, f, port, mac) in [
        ("kernel ping", &KERNEL_PING[..], POD_A_PORT, A_MAC),
        ("kernel udp", &KERNEL_UDP[..], POD_A_PORT, A_MAC),
        ("kernel ping vni 21", &KERNEL_PING_VNI21[..], POD_P_PORT, P_MAC),
    ] {
        let mut buf = TestBuf::new(f);
        assert_eq!(process(&t, UPLINK, &mut buf), Forward(port), "{name}");
        let out = buf.data();
        // Independently: the inner frame with its MACs and TTL patched.
        let inner = &f[INNER..];
        let mut want = inner.to_vec();
        want[..6].copy_from_slice(&mac.0);
        want[6..12].copy_from_slice(&GW_MAC.0);
        want[22] = 63;
        fix_ip_sum(&mut want[14..]);
        assert_bytes(name, out, &want);
        assert!(ip_sum_ok(&out[14..]), "{name}: IPv4 checksum");
        assert_eq!(&out[34..], &inner[34..], "{name}: payload untouched");
        // The same through the table runner's expectation.
        run(&t, &Case::decap(name, f.to_vec(), port, mac));
    }
}

/// The inner packet of a kernel fixture, mirrored: sent by `from` to the
/// kernel's sender, same ident, flags, TTL and L4 bytes (the UDP checksum
/// stays valid: the pseudo header sum does not change when the addresses swap).
fn mirrored(fixture: &[u8], from: (MacAddr, Ipv4Addr)) -> Vec<u8> {
    let ip = ipv4::Packet::new_checked(&fixture[INNER + 14..]).unwrap();
    let repr = ipv4::Repr {
        src: from.1,
        dst: ip.src_addr(),
        protocol: ip.protocol(),
        ttl: ip.ttl(),
        payload_len: 0,
        dscp_ecn: ip.dscp_ecn(),
        ident: ip.ident(),
        dont_frag: ip.dont_frag(),
    };
    eth(GW_MAC, from.0, ethertype::IPV4, &ipv4_with(repr, ip.payload()))
}

/// The kernel's outer frame turned around (what weir must send back in its
/// place), with weir's documented differences: ident 0, DF set, UDP checksum
/// 0; the UDP source port is the runner's to fill.
fn kernel_frame_reversed(fixture: &[u8], inner: &[u8]) -> Vec<u8> {
    let mut f = fixture[..INNER].to_vec();
    f[..6].copy_from_slice(&fixture[6..12]);
    f[6..12].copy_from_slice(&fixture[..6]);
    f[26..30].copy_from_slice(&fixture[30..34]);
    f[30..34].copy_from_slice(&fixture[26..30]);
    f[18..22].copy_from_slice(&[0, 0, 0x40, 0]);
    fix_ip_sum(&mut f[14..]);
    f[34..36].fill(0);
    f[40..42].fill(0);
    f.extend(inner);
    f
}

/// Encapsulation, field by field against the kernel's frames: the same packets
/// sent the other way by weir must look like the kernel's, turned around.
#[test]
fn encap_matches_kernel_layout() {
    let t = tables();
    for (name, fixture, from, port) in [
        ("ping", &KERNEL_PING[..], A, POD_A_PORT),
        ("udp", &KERNEL_UDP[..], A, POD_A_PORT),
        ("ping vni 21", &KERNEL_PING_VNI21[..], P, POD_P_PORT),
    ] {
        let input = mirrored(fixture, from);
        let mut buf = TestBuf::new(&input);
        assert_eq!(process(&t, port, &mut buf), Forward(UPLINK), "{name}");
        let out = buf.data().to_vec();
        assert_eq!(out.len(), input.len() + 50, "{name}: 50 bytes of outer headers");

        // Outer Ethernet: uplink MAC -> the peer's underlay MAC.
        assert_eq!(&out[0..6], &PEER_MAC.0, "{name}: outer dst MAC");
        assert_eq!(&out[6..12], &UPLINK_MAC.0, "{name}: outer src MAC");
        assert_eq!(&out[12..14], &[0x08, 0x00], "{name}: outer ethertype");
        // Outer IPv4, as the kernel's except DF and ident.
        let ip = &out[14..34];
        assert_eq!(ip[0], fixture[14], "{name}: version/IHL");
        assert_eq!(ip[1], input[15], "{name}: DSCP/ECN from the inner packet");
        assert_eq!(usize::from(be16(ip, 2)), out.len() - 14, "{name}: total length");
        assert_eq!(be16(ip, 4), 0, "{name}: ident");
        assert_eq!(be16(ip, 6), 0x4000, "{name}: DF set, no fragment");
        assert_eq!(ip[8], fixture[22], "{name}: TTL as the kernel's (64)");
        assert_eq!(ip[8], 64);
        assert_eq!(ip[9], fixture[23], "{name}: protocol 17");
        assert!(ip_sum_ok(ip), "{name}: outer IPv4 checksum");
        assert_eq!(ip_at(ip, 12), NODE_IP, "{name}: outer src");
        assert_eq!(ip_at(ip, 16), PEER_IP, "{name}: outer dst");
        // UDP.
        let seg = &out[34..];
        assert!(be16(seg, 0) >= 49152, "{name}: source port in 49152-65535");
        assert_eq!(be16(seg, 2), be16(fixture, 36), "{name}: destination port 4789");
        assert_eq!(be16(seg, 4), be16(ip, 2) - 20, "{name}: UDP length = IPv4 length - 20");
        assert_eq!(be16(seg, 4), be16(fixture, 38), "{name}: UDP length as the kernel's");
        assert_eq!(be16(seg, 6), 0, "{name}: UDP checksum 0");
        // VXLAN: byte for byte the kernel's header (flags 0x08, the VNI).
        assert_eq!(&out[42..50], &fixture[42..50], "{name}: VXLAN header");
        // Inner frame: routed to the peer's VTEP MAC.
        let inner = &out[INNER..];
        assert_eq!(&inner[..6], &PEER_VTEP_MAC.0, "{name}: inner dst MAC");
        assert_eq!(&inner[6..12], &GW_MAC.0, "{name}: inner src MAC");
        assert_eq!(inner[22], input[22] - 1, "{name}: inner TTL - 1");
        assert!(ip_sum_ok(&inner[14..]), "{name}: inner IPv4 checksum");
        assert_eq!(&inner[12..22], &input[12..22], "{name}: inner header up to TTL");
        assert_eq!(&inner[23..24], &input[23..24], "{name}: inner protocol");
        assert_eq!(&inner[26..], &input[26..], "{name}: inner addresses and payload");

        // The whole frame: the kernel's, turned around.
        let mut want = kernel_frame_reversed(fixture, &routed(&input, PEER_VTEP_MAC));
        take_src_port(name, &out, &mut want);
        assert_bytes(name, &out, &want);
        // And what the wire views make of it.
        let vni = if port == POD_P_PORT { 21 } else { 1 };
        assert_eq!(check_vxlan(name, &out).0, vni, "{name}: VNI");
    }
}

/// weir to weir: what this node encapsulates, the peer (also weir)
/// decapsulates to its pod.
#[test]
fn encap_then_decap_on_the_peer() {
    let (t, peer) = (tables(), peer_tables());
    for input in [
        mirrored(&KERNEL_PING, A),
        mirrored(&KERNEL_UDP, A),
        pkt(A, REMOTE_POD, 64, L4::Tcp(b"GET / HTTP/1.1\r\n\r\n")),
    ] {
        let mut buf = TestBuf::new(&input);
        assert_eq!(process(&t, POD_A_PORT, &mut buf), Forward(UPLINK));
        assert_eq!(process(&peer, 1, &mut buf), Forward(0));
        let mut want = routed(&routed(&input, PEER_VTEP_MAC), PEER_POD_MAC);
        want[6..12].copy_from_slice(&PEER_VTEP_MAC.0); // the peer's gateway MAC
        assert_bytes("weir to weir", buf.data(), &want);
    }
}

#[test]
fn src_port_is_per_flow_and_spread() {
    let t = tables();
    let sport = |frame: &[u8]| {
        let mut buf = TestBuf::new(frame);
        assert_eq!(process(&t, POD_A_PORT, &mut buf), Forward(UPLINK));
        be16(buf.data(), 34)
    };
    let flow = mirrored(&KERNEL_UDP, A);
    assert_eq!(sport(&flow), sport(&flow), "same flow, same port");
    assert_eq!(sport(&flow), sport(&edit_ip(flow.clone(), |ip| ip.set_ident(99))), "ident is not part of the flow");
    // All fragments of one datagram go the same way.
    let first = edit_ip(flow.clone(), |ip| ip.set_flags_frag(false, true, 0));
    let later = edit_ip(flow.clone(), |ip| ip.set_flags_frag(false, false, 1480));
    assert_eq!(sport(&first), sport(&later), "fragments of a datagram");

    // 4350 flows: UDP source ports 1..=2048 and destination ports 1..=2048
    // between the same two pods, and pings to 254 remote pods.
    let udp_flow = |sp: u16, dp: u16| {
        let mut f = flow.clone();
        let mut u = udp::Packet::new_unchecked(&mut f[34..]);
        u.set_src_port(sp);
        u.set_dst_port(dp);
        u.fill_checksum(A_IP, REMOTE_POD);
        f
    };
    let mut ports = Vec::new();
    for i in 1..=2048u16 {
        ports.push(sport(&udp_flow(i, 5000)));
        ports.push(sport(&udp_flow(40000, i)));
    }
    for i in 1..=254 {
        ports.push(sport(&pkt(A, Ipv4Addr::new(10, 2, 0, i), 64, ping(1, 1, b""))));
    }
    assert!(ports.iter().all(|p| *p >= SRC_PORT_MIN), "all in 49152-65535");
    let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
    // 4350 balls in 16384 bins: about 3820 distinct if the hash is uniform.
    assert!(distinct.len() > 3650, "only {} distinct source ports of {} flows", distinct.len(), ports.len());
    let mut quarters = [0usize; 4];
    for p in &ports {
        quarters[usize::from((p - SRC_PORT_MIN) / 4096)] += 1;
    }
    assert!(quarters.iter().all(|q| (950..1230).contains(q)), "uneven spread over the range: {quarters:?}");
    // The range ends are reached by the mapping itself.
    assert_eq!((src_port(0), src_port(16383), src_port(16384), src_port(u32::MAX)), (49152, 65535, 49152, 65535));
}

// ------------------------------------------------- 2. decapsulation table

fn decap_cases() -> Vec<Case> {
    use DropReason::*;
    let to_a = pkt(R, A_IP, 64, L4::Udp(b"through the tunnel"));
    let good = vxlan(1, &to_a);
    let inner_to = |dst| vxlan(1, &pkt(R, dst, 64, L4::Udp(b"x")));
    let arp_inner = who_has(R, GW_IP);
    let ipv6_inner = eth(GW_MAC, R.0, ethertype::IPV6, &[0x60; 40]);
    let mut bad_inner_sum = to_a.clone();
    bad_inner_sum[24] ^= 0x01;
    vec![
        Case::decap("udp to pod-a", good.clone(), POD_A_PORT, A_MAC),
        Case::decap("tcp to pod-a", vxlan(1, &pkt(R, A_IP, 64, L4::Tcp(b"segment"))), POD_A_PORT, A_MAC),
        Case::decap("ping to pod-a, ttl 2", vxlan(1, &pkt(R, A_IP, 2, ping(1, 2, b"ab"))), POD_A_PORT, A_MAC),
        Case::decap("vni 21 to the poc-net pod", vxlan(21, &pkt(R, P_IP, 64, ping(3, 4, b"poc"))), POD_P_PORT, P_MAC),
        Case::decap("outer ethernet padding stripped", padded(good.clone(), good.len() + 20), POD_A_PORT, A_MAC),
        Case::decap(
            "inner frame padded to 60 (kept)",
            vxlan(1, &padded(pkt(R, A_IP, 9, L4::Udp(b"")), 60)),
            POD_A_PORT,
            A_MAC,
        ),
        Case::decap(
            "outer ip options (IHL 6)",
            {
                let mut f = good.clone();
                f.splice(34..34, [1, 1, 1, 0]);
                edit_ip(f, |ip| {
                    ip.set_version_ihl(4, 24);
                    ip.set_total_len(ip.total_len() + 4);
                })
            },
            POD_A_PORT,
            A_MAC,
        ),
        Case::decap("vxlan flags 0x0c (other bits ignored)", poke(good.clone(), 42, &[0x0c]), POD_A_PORT, A_MAC),
        Case::decap(
            "vxlan reserved bytes set (ignored)",
            poke(poke(good.clone(), 43, &[1, 2, 3]), 49, &[4]),
            POD_A_PORT,
            A_MAC,
        ),
        Case::decap("outer udp checksum set (not verified)", poke(good.clone(), 40, &[0x12, 0x34]), POD_A_PORT, A_MAC),
        Case::decap(
            "outer DF clear, kernel style",
            edit_ip(good.clone(), |ip| ip.set_flags_frag(false, false, 0)),
            0,
            A_MAC,
        ),
        // Outer layers.
        Case::drop("outer dst MAC not the uplink's", UPLINK, poke(good.clone(), 0, &OTHER_MAC.0), NotForUs),
        Case::drop("outer dst MAC broadcast", UPLINK, poke(good.clone(), 0, &[0xff; 6]), NotForUs),
        Case::drop("outer dst MAC the gateway's", UPLINK, poke(good.clone(), 0, &GW_MAC.0), NotForUs),
        Case::drop(
            "outer dst not the node IP",
            UPLINK,
            edit_ip(good.clone(), |ip| ip.set_dst_addr(Ipv4Addr::new(192, 168, 50, 7))),
            NotForUs,
        ),
        Case::drop("bad outer checksum", UPLINK, poke(good.clone(), 24, &[0xde, 0xad]), Ipv4BadChecksum),
        Case::drop(
            "outer source multicast",
            UPLINK,
            edit_ip(good.clone(), |ip| ip.set_src_addr(Ipv4Addr::new(224, 0, 0, 1))),
            Ipv4BadSource,
        ),
        Case::drop("outer truncated", UPLINK, good[..40].to_vec(), Ipv4BadTotalLength),
        Case::drop("udp to port 4790", UPLINK, poke(good.clone(), 36, &4790u16.to_be_bytes()), LocalNotServed),
        Case::drop("udp to port 53", UPLINK, udp_to_node(53, b"dns query"), LocalNotServed),
        Case::drop(
            "tcp to the node IP",
            UPLINK,
            to_node(protocol::TCP, &l4_bytes(PEER_IP, NODE_IP, L4::Tcp(b"")).1),
            LocalNotServed,
        ),
        Case::drop(
            "ping to the node IP",
            UPLINK,
            to_node(protocol::ICMP, &l4_bytes(PEER_IP, NODE_IP, ping(1, 1, b"")).1),
            LocalNotServed,
        ),
        Case::drop(
            "outer first fragment",
            UPLINK,
            edit_ip(good.clone(), |ip| ip.set_flags_frag(false, true, 0)),
            LocalNotServed,
        ),
        Case::drop(
            "outer later fragment",
            UPLINK,
            edit_ip(good.clone(), |ip| ip.set_flags_frag(false, false, 1480)),
            LocalNotServed,
        ),
        Case::drop("udp length past the packet", UPLINK, poke(good.clone(), 38, &[0x0f, 0xff]), L4Malformed),
        // VXLAN header.
        Case::drop("vxlan header 5 bytes", UPLINK, udp_to_node(4789, &[0x08, 0, 0, 0, 0]), VxlanMalformed),
        Case::drop("vxlan header 7 bytes", UPLINK, udp_to_node(4789, &vxlan_header(0x08, 1)[..7]), VxlanMalformed),
        Case::drop("vxlan header missing", UPLINK, udp_to_node(4789, &[]), VxlanMalformed),
        Case::drop("I flag clear", UPLINK, poke(good.clone(), 42, &[0x00]), VxlanBadFlags),
        Case::drop("flags 0xf7 (all but I)", UPLINK, poke(good.clone(), 42, &[0xf7]), VxlanBadFlags),
        Case::drop(
            "from an address that is no VTEP",
            UPLINK,
            edit_ip(vxlan(1, &to_a), |ip| ip.set_src_addr(NEW_IP)),
            VxlanUnknownVtep,
        ),
        Case::drop(
            "from the underlay gateway",
            UPLINK,
            edit_ip(vxlan(1, &to_a), |ip| ip.set_src_addr(UNDERLAY_GW)),
            VxlanUnknownVtep,
        ),
        Case::drop("unknown vni 99", UPLINK, vxlan(99, &to_a), VxlanUnknownVni),
        Case::drop("vni 0", UPLINK, vxlan(0, &to_a), VxlanUnknownVni),
        Case::drop("vni 1 + 2^16 (only the low bits known)", UPLINK, vxlan(0x01_0001, &to_a), VxlanUnknownVni),
        // The inner frame.
        Case::drop("inner frame 13 bytes", UPLINK, vxlan(1, &to_a[..13]), VxlanMalformed),
        Case::drop("inner frame empty", UPLINK, vxlan(1, &[]), VxlanMalformed),
        Case::drop("short inner frame, unknown vni", UPLINK, vxlan(99, &to_a[..13]), VxlanMalformed),
        Case::drop(
            "udp length shorter than the ip payload",
            UPLINK,
            {
                let mut f = vxlan(1, &padded(to_a.clone(), to_a.len() + 4));
                let l = be16(&f, 38) - 4;
                f[38..40].copy_from_slice(&l.to_be_bytes());
                f
            },
            VxlanMalformed,
        ),
        Case::drop("inner frame 14 bytes", UPLINK, vxlan(1, &to_a[..14]), Ipv4Truncated),
        Case::drop("inner arp", UPLINK, vxlan(1, &arp_inner), UnknownEthertype),
        Case::drop("inner ipv6", UPLINK, vxlan(1, &ipv6_inner), UnknownEthertype),
        Case::drop("inner bad checksum", UPLINK, vxlan(1, &bad_inner_sum), Ipv4BadChecksum),
        Case::drop("inner dst routed remote", UPLINK, inner_to(Ipv4Addr::new(10, 2, 0, 9)), OverlayLoop),
        Case::drop(
            "inner dst the poc-net remote pod, vni 21",
            UPLINK,
            vxlan(21, &pkt(R, POC_REMOTE, 64, L4::Udp(b""))),
            OverlayLoop,
        ),
        Case::drop("inner dst unknown", UPLINK, inner_to(UNROUTED), NoRoute),
        Case::drop("inner dst the gateway (not served over the tunnel)", UPLINK, inner_to(GW_IP), NoRoute),
        Case::drop("inner ttl 1", UPLINK, vxlan(1, &pkt(R, A_IP, 1, L4::Udp(b"x"))), TtlExceeded),
        Case::drop("inner ttl 0", UPLINK, vxlan(1, &pkt(R, A_IP, 0, L4::Udp(b"x"))), TtlExceeded),
        Case::drop("inner dst MAC not the gateway's", UPLINK, vxlan(1, &poke(to_a.clone(), 0, &OTHER_MAC.0)), NotForUs),
        Case::drop("inner multicast dst", UPLINK, inner_to(Ipv4Addr::new(239, 1, 1, 1)), Ipv4BadDestination),
        // Networks are isolated.
        Case::drop("vni 1 to the poc-net pod", UPLINK, vxlan(1, &pkt(R, P_IP, 64, L4::Udp(b""))), NoRoute),
        Case::drop("vni 21 to pod-a", UPLINK, vxlan(21, &to_a), NoRoute),
        // Not IPv4 or ARP at all.
        Case::drop(
            "ipv6 on the uplink",
            UPLINK,
            eth(UPLINK_MAC, PEER_MAC, ethertype::IPV6, &[0x60; 40]),
            UnknownEthertype,
        ),
        Case::drop("runt on the uplink", UPLINK, good[..13].to_vec(), RuntFrame),
        Case::drop("a pod's frame on the uplink", UPLINK, to_a.clone(), NotForUs),
    ]
}

#[test]
fn decapsulation() {
    let t = tables();
    for c in decap_cases() {
        run(&t, &c);
    }
}

// ------------------------------------------------- 3. encapsulation table

fn encap_cases() -> Vec<Case> {
    use DropReason::*;
    let udp_r = pkt(A, REMOTE_POD, 64, L4::Udp(b"to the other node"));
    let at_room = sized(A, REMOTE_POD, ROOM, true);
    let over = sized(A, REMOTE_POD, ROOM + 1, true);
    let over_no_df = sized(A, REMOTE_POD, ROOM + 1, false);
    let over_p = sized(P, POC_REMOTE, ROOM + 1, true);
    let big_unreachable = {
        let quote: Vec<u8> = (0..ROOM + 1 - 28).map(|i| i as u8).collect();
        pkt(A, REMOTE_POD, 64, L4::Icmp(icmp::msg::DEST_UNREACHABLE, 3, 0, &quote))
    };
    let ttl1 = pkt(A, REMOTE_POD, 1, L4::Udp(b"traceroute"));
    vec![
        Case::encap("udp to a remote pod", POD_A_PORT, udp_r.clone(), 1),
        Case::encap("tcp to a remote pod", POD_A_PORT, pkt(A, REMOTE_POD, 64, L4::Tcp(b"GET / HTTP/1.1\r\n\r\n")), 1),
        Case::encap("ping to a remote pod", POD_A_PORT, pkt(A, Ipv4Addr::new(10, 2, 0, 77), 64, ping(9, 9, b"abc")), 1),
        Case::encap("ttl 2 (inner ttl 1 on the wire)", POD_A_PORT, pkt(A, REMOTE_POD, 2, L4::Udp(b"x")), 1),
        Case::encap(
            "dscp/ecn copied to the outer header",
            POD_A_PORT,
            edit_ip(udp_r.clone(), |ip| ip.set_dscp_ecn(0xb9)),
            1,
        ),
        Case::encap("ethernet padding not carried", POD_A_PORT, padded(pkt(A, REMOTE_POD, 64, L4::Udp(b"")), 60), 1),
        Case::encap("bytes past total length not carried", POD_A_PORT, padded(udp_r.clone(), 300), 1),
        Case::encap("poc-net pod to its remote pod: vni 21", POD_P_PORT, pkt(P, POC_REMOTE, 64, L4::Udp(b"poc")), 21),
        Case::encap("inner packet of mtu - 50 with DF", POD_A_PORT, at_room.clone(), 1),
        Case::encap("inner packet of mtu - 50 without DF", POD_A_PORT, sized(A, REMOTE_POD, ROOM, false), 1),
        Case::reply(
            "inner packet of mtu - 49 with DF",
            0,
            over.clone(),
            ReplyKind::IcmpFragNeeded,
            frag_needed_for(&over, GW_IP),
        ),
        Case::reply(
            "poc-net pod, too big: frag-needed from poc-net's gateway",
            POD_P_PORT,
            over_p.clone(),
            ReplyKind::IcmpFragNeeded,
            frag_needed_for(&over_p, POC_GW),
        ),
        Case::drop("inner packet of mtu - 49 without DF", 0, over_no_df, TooBigForTunnel),
        Case::drop("too big, DF, but an ICMP error itself", 0, big_unreachable, TooBigForTunnel),
        Case::reply(
            "ttl 1 to a remote pod: time exceeded first",
            0,
            ttl1.clone(),
            ReplyKind::IcmpTimeExceeded,
            icmp_error_for(&ttl1, GW_IP, 11, 0, 0),
        ),
        // Networks are isolated.
        Case::drop(
            "poc-net pod to a default-network remote pod",
            POD_P_PORT,
            pkt(P, REMOTE_POD, 64, L4::Udp(b"")),
            NoRoute,
        ),
        Case::drop("pod-a to the poc-net remote pod", 0, pkt(A, POC_REMOTE, 64, L4::Udp(b"")), NoRoute),
        Case::drop("unrouted", 0, pkt(A, UNROUTED, 64, L4::Udp(b"")), NoRoute),
    ]
}

#[test]
fn encapsulation() {
    let t = tables();
    for c in encap_cases() {
        run(&t, &c);
    }
}

/// The ICMP fragmentation-needed, field by field.
#[test]
fn frag_needed_fields() {
    let t = tables();
    let input = sized(A, REMOTE_POD, ROOM + 1, true);
    let mut buf = TestBuf::new(&input);
    assert_eq!(process(&t, 0, &mut buf), Reply(ReplyKind::IcmpFragNeeded));
    let out = buf.data();
    let quoted = &input[14..14 + 20 + 8];
    assert_eq!(out.len(), 14 + 20 + 8 + quoted.len());
    let e = ethernet::Frame::new_checked(out).unwrap();
    assert_eq!((e.dst(), e.src(), e.ethertype()), (A_MAC, GW_MAC, ethertype::IPV4));
    let ip = ipv4::Packet::new_checked(e.payload()).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr(), ip.protocol(), ip.ttl()), (GW_IP, A_IP, protocol::ICMP, LOCAL_TTL));
    assert!(ip_sum_ok(ip.as_bytes()));
    let m = ip.payload();
    assert_eq!((m[0], m[1]), (3, 4), "destination unreachable, fragmentation needed");
    assert_eq!(&m[4..6], &[0, 0], "unused");
    assert_eq!(be16(m, 6), ROOM as u16, "next-hop MTU (RFC 1191) in bytes 6..8");
    assert_eq!(ones_sum(m), 0xffff, "ICMP checksum");
    assert_eq!(&m[8..], quoted, "the original header (checksum and TTL included) + 8 bytes");
}

#[test]
fn unknown_neighbour_resolves_then_completes() {
    let mut t = tables();
    t.neighbours.clear();
    let input = pkt(A, REMOTE_POD, 64, L4::Udp(b"first packet"));
    let mut want = encapsulated(&input, MacAddr::ZERO, PEER_IP, 1);
    let c = Case {
        name: "no neighbour entry for the VTEP",
        port: 0,
        frame: input.clone(),
        want: Action::Resolve { port: UPLINK, next_hop: PEER_IP },
        out: Some(want.clone()),
        events: vec![],
    };
    run(&t, &c);
    let mut buf = TestBuf::new(&input);
    assert_eq!(process(&t, 0, &mut buf), c.want);
    set_outer_dst(&mut buf, PEER_MAC);
    want[..6].copy_from_slice(&PEER_MAC.0);
    take_src_port("completed", buf.data(), &mut want);
    assert_bytes("completed", buf.data(), &want);
    // Now exactly what a known neighbour gives at once.
    let mut direct = encapsulated(&input, PEER_MAC, PEER_IP, 1);
    direct[34..36].copy_from_slice(&want[34..36]);
    assert_eq!(want, direct);
}

/// Cases that need tables of their own: unresolved neighbours, VTEPs off
/// the underlay subnet, no overlay.
fn variant_cases() -> Vec<(Tables, Case)> {
    use DropReason::*;
    let to_r = pkt(A, REMOTE_POD, 64, L4::Udp(b"first packet"));
    let far = pkt(A, FAR_POD, 64, L4::Udp(b"far away"));
    let mut no_neighbours = tables();
    no_neighbours.neighbours.clear();
    let via_gw = tables_with_far_node(Some(UNDERLAY_GW));
    let mut via_gw_known = via_gw.clone();
    via_gw_known.neighbours.insert(UNDERLAY_GW, UNDERLAY_GW_MAC);
    let mut no_gw_vtep_mac_known = tables_with_far_node(None);
    no_gw_vtep_mac_known.neighbours.insert(FAR_VTEP, OTHER_MAC);
    let mut no_overlay = tables();
    no_overlay.overlay = None;
    let resolve = |next_hop| Action::Resolve { port: UPLINK, next_hop };
    vec![
        (
            no_neighbours.clone(),
            Case::with_out(
                "VTEP's MAC unknown",
                0,
                to_r.clone(),
                resolve(PEER_IP),
                encapsulated(&to_r, MacAddr::ZERO, PEER_IP, 1),
            ),
        ),
        (
            no_neighbours.clone(),
            Case::reply(
                "who has the node IP, neighbour unknown",
                UPLINK,
                who_has(PEER, NODE_IP),
                ReplyKind::ArpReply,
                node_is_at(PEER),
            )
            .events(&[PEER]),
        ),
        (no_neighbours, Case::consumed("reply to the uplink, neighbour unknown", is_at_uplink(PEER)).events(&[PEER])),
        (
            via_gw,
            Case::with_out(
                "VTEP off the underlay, gateway unresolved",
                0,
                far.clone(),
                resolve(UNDERLAY_GW),
                encapsulated(&far, MacAddr::ZERO, FAR_VTEP, 1),
            ),
        ),
        (
            via_gw_known,
            Case::with_out(
                "VTEP off the underlay, via the gateway",
                0,
                far.clone(),
                Forward(UPLINK),
                encapsulated(&far, UNDERLAY_GW_MAC, FAR_VTEP, 1),
            ),
        ),
        (tables_with_far_node(None), Case::drop("VTEP off the underlay, no gateway", 0, far.clone(), NoRoute)),
        (no_gw_vtep_mac_known, Case::drop("VTEP off the underlay, no gateway, its MAC known", 0, far, NoRoute)),
        (no_overlay.clone(), Case::drop("remote route without an overlay", 0, to_r, NoRoute)),
        // Without an overlay the uplink is just a port of the default network.
        (no_overlay, Case::drop("vxlan to a node without an overlay", UPLINK, KERNEL_PING.to_vec(), NotForUs)),
    ]
}

#[test]
fn variants() {
    for (t, c) in variant_cases() {
        run(&t, &c);
    }
}

// --------------------------------------------------------- 4. uplink ARP

fn uplink_arp_cases() -> Vec<Case> {
    use DropReason::*;
    use ReplyKind::ArpReply;
    let req = who_has(PEER, NODE_IP);
    let outsider = (NEW_MAC, Ipv4Addr::new(10, 9, 9, 9));
    let moved = (OTHER_MAC, PEER_IP);
    let elsewhere = Ipv4Addr::new(192, 168, 50, 9);
    let multicast_sender =
        arp::Repr { sender_mac: MacAddr([0x01, 0, 0x5e, 0, 0, 1]), ..arp_repr(arp::OP_REQUEST, NEW, NODE_IP) };
    vec![
        Case::reply("who has the node IP, known neighbour", UPLINK, req.clone(), ArpReply, node_is_at(PEER)),
        Case::reply("who has the node IP, new neighbour", UPLINK, who_has(NEW, NODE_IP), ArpReply, node_is_at(NEW))
            .events(&[NEW]),
        Case::reply(
            "who has the node IP, neighbour moved",
            UPLINK,
            who_has(moved, NODE_IP),
            ArpReply,
            node_is_at(moved),
        )
        .events(&[moved]),
        Case::reply(
            "who has the node IP, unicast",
            UPLINK,
            arp_frame(UPLINK_MAC, PEER_MAC, arp_repr(arp::OP_REQUEST, PEER, NODE_IP)),
            ArpReply,
            node_is_at(PEER),
        ),
        Case::reply(
            "who has the node IP, padded",
            UPLINK,
            padded(req.clone(), 60),
            ArpReply,
            padded(node_is_at(PEER), 60),
        ),
        Case::reply(
            "who has the node IP, from off the underlay (not learned)",
            UPLINK,
            who_has(outsider, NODE_IP),
            ArpReply,
            node_is_at(outsider),
        ),
        Case::reply(
            "probe for the node IP (sender 0.0.0.0): defended",
            UPLINK,
            who_has((NEW_MAC, Ipv4Addr::UNSPECIFIED), NODE_IP),
            ArpReply,
            node_is_at((NEW_MAC, Ipv4Addr::UNSPECIFIED)),
        ),
        // Replies and announcements: used up, and what they say reported.
        Case::consumed("reply to the uplink MAC, known neighbour (refresh)", is_at_uplink(PEER)).events(&[PEER]),
        Case::consumed("reply to the uplink MAC, new neighbour", is_at_uplink(NEW)).events(&[NEW]),
        Case::consumed("reply to the uplink MAC, moved", is_at_uplink(moved)).events(&[moved]),
        Case::consumed("gratuitous request, new neighbour", who_has(NEW, NEW_IP)).events(&[NEW]),
        Case::consumed("gratuitous request, known neighbour", who_has(PEER, PEER_IP)),
        Case::consumed("gratuitous request, moved", who_has(moved, PEER_IP)).events(&[moved]),
        Case::consumed(
            "gratuitous reply, broadcast",
            arp_frame(MacAddr::BROADCAST, NEW_MAC, arp_repr(arp::OP_REPLY, NEW, NEW_IP)),
        )
        .events(&[NEW]),
        Case::consumed("gratuitous, from off the underlay", who_has(outsider, outsider.1)),
        Case::consumed("another host claims the node IP (not learned)", who_has((NEW_MAC, NODE_IP), NODE_IP)),
        // Not for the node.
        Case::drop("who has another IP, new sender", UPLINK, who_has(NEW, elsewhere), ArpNotForUs).events(&[NEW]),
        Case::drop("who has another IP, known sender", UPLINK, who_has(PEER, elsewhere), ArpNotForUs),
        Case::drop("who has another IP, from off the underlay", UPLINK, who_has(outsider, elsewhere), ArpNotForUs),
        Case::drop("who has a pod IP (no proxy on the uplink)", UPLINK, who_has(PEER, A_IP), ArpNotForUs),
        Case::drop("who has the gateway IP on the uplink", UPLINK, who_has(PEER, GW_IP), ArpNotForUs),
        Case::drop(
            "multicast sender MAC",
            UPLINK,
            arp_frame(MacAddr::BROADCAST, NEW_MAC, multicast_sender),
            ArpNotForUs,
        ),
        Case::drop(
            "unicast to another MAC",
            UPLINK,
            arp_frame(OTHER_MAC, NEW_MAC, arp_repr(arp::OP_REQUEST, NEW, NODE_IP)),
            NotForUs,
        ),
        Case::drop("reply to another MAC", UPLINK, poke(is_at_uplink(NEW), 0, &OTHER_MAC.0), NotForUs),
        Case::drop("to the gateway MAC", UPLINK, poke(req.clone(), 0, &GW_MAC.0), NotForUs),
        Case::drop("truncated (27 bytes)", UPLINK, req[..41].to_vec(), ArpMalformed),
        Case::drop("truncated (empty)", UPLINK, req[..14].to_vec(), ArpMalformed),
        Case::drop("htype 6", UPLINK, poke(req.clone(), 15, &[6]), ArpMalformed),
        Case::drop(
            "truncated, from a new sender: nothing learned",
            UPLINK,
            who_has(NEW, NODE_IP)[..40].to_vec(),
            ArpMalformed,
        ),
    ]
}

#[test]
fn uplink_arp() {
    let t = tables();
    for c in uplink_arp_cases() {
        run(&t, &c);
    }
}

/// A LoadBalancer IP the node announces is answered with the uplink MAC
/// like the node IP; one it does not announce is not, and another node's
/// gratuitous ARP for it is used up, not answered.
#[test]
fn announced_load_balancer_ips_are_answered() {
    use DropReason::ArpNotForUs;
    let vip = Ipv4Addr::new(192, 168, 50, 100);
    let other_vip = Ipv4Addr::new(192, 168, 50, 101);
    let mut t = tables();
    if let Some(o) = &mut t.overlay {
        o.announced = vec![vip];
    }
    let vip_is_at = |to: (MacAddr, Ipv4Addr)| {
        let mut f = node_is_at(to);
        f[28..32].copy_from_slice(&vip.octets());
        f
    };
    let cases = vec![
        Case::reply("who has the VIP", UPLINK, who_has(PEER, vip), ReplyKind::ArpReply, vip_is_at(PEER)),
        Case::reply("who has the VIP, new sender", UPLINK, who_has(NEW, vip), ReplyKind::ArpReply, vip_is_at(NEW))
            .events(&[NEW]),
        Case::drop("who has a VIP announced elsewhere", UPLINK, who_has(PEER, other_vip), ArpNotForUs),
        // Reported like any underlay neighbour's announcement.
        Case::consumed("another node's gratuitous ARP for the VIP", who_has((OTHER_MAC, vip), vip))
            .events(&[(OTHER_MAC, vip)]),
    ];
    for c in cases {
        run(&t, &c);
    }
    // Not announced any more: no longer answered.
    if let Some(o) = &mut t.overlay {
        o.announced.clear();
    }
    run(&t, &Case::drop("who has the VIP, not announced", UPLINK, who_has(PEER, vip), ArpNotForUs));
}

/// The brief's case, both ways: a request for the node IP from the peer is
/// answered with the uplink MAC, and reports the peer only when the tables
/// do not already say so.
#[test]
fn arp_request_reports_only_what_is_new() {
    for known in [true, false] {
        let mut t = tables();
        if !known {
            t.neighbours.clear();
        }
        let mut buf = TestBuf::new(&who_has(PEER, NODE_IP));
        let mut events = Neighbours::new();
        assert_eq!(process_events(&t, UPLINK, &mut buf, &mut events), Reply(ReplyKind::ArpReply));
        let e = ethernet::Frame::new_checked(buf.data()).unwrap();
        assert_eq!((e.dst(), e.src(), e.ethertype()), (PEER_MAC, UPLINK_MAC, ethertype::ARP));
        let r = arp::Repr::parse(&arp::Packet::new_checked(e.payload()).unwrap());
        let want = arp::Repr {
            operation: arp::OP_REPLY,
            sender_mac: UPLINK_MAC,
            sender_ip: NODE_IP,
            target_mac: PEER_MAC,
            target_ip: PEER_IP,
        };
        assert_eq!(r, want);
        assert_eq!(events, if known { vec![] } else { vec![(PEER_IP, PEER_MAC)] }, "known: {known}");
    }
}

/// The node's own ARP request, and what happens when it comes back.
#[test]
fn arp_request_from_the_node() {
    let o = overlay();
    let mut want = vec![0xff; 6];
    want.extend(UPLINK_MAC.0);
    want.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    want.extend(UPLINK_MAC.0);
    want.extend(NODE_IP.octets());
    want.extend([0; 6]);
    want.extend(PEER_IP.octets());
    assert_eq!(&arp_request(&o, PEER_IP)[..], &want[..]);
    assert_eq!(ARP_FRAME_LEN, 42);
    // The node's own gratuitous ARP seen again on the uplink: used up, nothing learned.
    let t = tables();
    let mut events = Neighbours::new();
    let mut buf = TestBuf::new(&arp_request(&o, NODE_IP));
    let got = process_events(&t, UPLINK, &mut buf, &mut events);
    assert_eq!((got, events), (Action::Consumed(Consumed::ArpOnUplink), vec![]));
}

// ---------------------------------------------------------- 5. the sweep

/// A frame with a few bytes flipped or replaced, cut or extended; half the
/// time the outer and the inner IPv4 checksums are refreshed so that the
/// mutation gets past them.
fn mutated(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut f = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(6) {
            // Mostly in the 84 bytes of outer and inner headers.
            0..=2 if !f.is_empty() => {
                let span = if rng.below(4) == 0 { f.len() } else { f.len().min(INNER + 34) };
                let at = rng.below(span);
                f[at] ^= 1 << rng.below(8);
            }
            3 if !f.is_empty() => {
                let at = rng.below(f.len());
                f[at] = rng.byte();
            }
            4 => f.truncate(rng.below(f.len() + 1)),
            _ => f.extend((0..rng.below(24)).map(|_| rng.byte())),
        }
    }
    for at in [ethernet::HEADER_LEN, INNER + ethernet::HEADER_LEN] {
        if f.len() > at && rng.below(2) == 0 {
            if let Ok(mut ip) = ipv4::Packet::new_checked(&mut f[at..]) {
                ip.fill_checksum();
            }
        }
    }
    f
}

/// The properties of what `process` gives, whatever went in.
fn check_any(t: &Tables, port: PortId, input: &[u8], got: Action, out: &[u8]) {
    let name = format!("port {port}: {got:?} for {input:02x?}");
    match got {
        Forward(p) if port == UPLINK => {
            let pod = t.port(p).and_then(|e| e.pod).unwrap_or_else(|| panic!("{name}: not a pod port"));
            let e = ethernet::Frame::new_checked(out).unwrap();
            assert_eq!((e.dst(), e.src()), (pod.mac, GW_MAC), "{name}");
            let ip = ipv4::Packet::new_checked(e.payload()).unwrap();
            assert!(ip.verify_checksum() && ip_sum_ok(ip.as_bytes()), "{name}: IPv4 checksum");
            assert_eq!(ip.dst_addr(), pod.ip, "{name}: destination");
            // Only a VNI of the pod's own network reaches it.
            let vni_at = ethernet::HEADER_LEN + usize::from(input[14] & 0x0f) * 4 + udp::HEADER_LEN + 4;
            let vni = u32::from_be_bytes([0, input[vni_at], input[vni_at + 1], input[vni_at + 2]]);
            assert_eq!(t.vni_index.get(&vni), Some(&pod.net), "{name}: VNI {vni}");
        }
        Forward(UPLINK) | Action::Resolve { port: UPLINK, .. } => {
            assert!(
                out.len() >= VXLAN_OVERHEAD + ethernet::HEADER_LEN + ipv4::HEADER_LEN,
                "{name}: {} bytes",
                out.len()
            );
            check_vxlan(&name, out);
        }
        Action::Resolve { .. } => panic!("{name}: resolve for another port"),
        Forward(_) => {
            let ip = ipv4::Packet::new_checked(&out[14..]).unwrap();
            assert!(ip_sum_ok(ip.as_bytes()), "{name}: IPv4 checksum");
        }
        Reply(ReplyKind::ArpReply) => {
            assert!(arp::Packet::new_checked(&out[14..]).is_ok(), "{name}");
        }
        Reply(k) => {
            assert_ne!(port, UPLINK, "{name}: ICMP out of the uplink");
            let ip = ipv4::Packet::new_checked(&out[14..]).unwrap();
            assert!(ip_sum_ok(ip.as_bytes()), "{name}: {k:?} IPv4 checksum");
            assert_eq!(ones_sum(ip.payload()), 0xffff, "{name}: {k:?} ICMP checksum");
        }
        Action::Consumed(_) => assert_eq!(port, UPLINK, "{name}"),
        Drop(_) => {}
    }
}

#[test]
fn random_frames_never_panic() {
    let t = tables();
    let mut unresolved = tables();
    unresolved.neighbours.clear();
    // The kernel's frames for the uplink (and two ARP frames); the same
    // packets sent by the pods, and two around the tunnel's limit, for the
    // pod ports.
    let seeds: Vec<Vec<u8>> = vec![
        KERNEL_PING.to_vec(),
        KERNEL_UDP.to_vec(),
        KERNEL_PING_VNI21.to_vec(),
        who_has(NEW, NODE_IP),
        is_at_uplink(PEER),
        mirrored(&KERNEL_PING, A),
        mirrored(&KERNEL_UDP, A),
        mirrored(&KERNEL_PING_VNI21, P),
        sized(A, REMOTE_POD, ROOM, true),
        sized(A, REMOTE_POD, ROOM + 1, true),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..50_000 {
        let frame = if i % 2 == 0 {
            let len = rng.below(200);
            (0..len).map(|_| rng.byte()).collect()
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutated(&mut rng, seed)
        };
        for (t, port) in [(&t, UPLINK), (&t, POD_A_PORT), (&t, POD_P_PORT), (&unresolved, POD_A_PORT)] {
            let mut buf = TestBuf::new(&frame);
            let mut events = Neighbours::new();
            let got = catch_unwind(AssertUnwindSafe(|| process_events(t, port, &mut buf, &mut events)))
                .unwrap_or_else(|_| panic!("process panicked: port {port}, frame {frame:02x?}"));
            check_any(t, port, &frame, got, buf.data());
            if port != UPLINK {
                assert!(events.is_empty(), "events from a pod port: {frame:02x?}");
            }
            for (ip, mac) in &events {
                let o = t.overlay.as_ref().unwrap();
                assert!(
                    o.underlay.contains(*ip) && *ip != NODE_IP && mac.is_unicast(),
                    "event {ip} {mac}: {frame:02x?}"
                );
            }
            *seen.entry(format!("{port} {got:?}")).or_default() += 1;
        }
    }
    // The sweep must get deep, not stop at the first checks.
    let mut seen: Vec<_> = seen.into_iter().collect();
    seen.sort();
    for want in [
        "1 Forward(0)",
        "1 Forward(2)",
        "1 Reply(ArpReply)",
        "1 Consumed(ArpOnUplink)",
        "1 Drop(LocalNotServed)",
        "1 Drop(VxlanMalformed)",
        "1 Drop(VxlanBadFlags)",
        "1 Drop(VxlanUnknownVni)",
        "0 Forward(1)",
        "2 Forward(1)",
        "0 Resolve { port: 1, next_hop: 192.168.50.2 }",
        "0 Reply(IcmpFragNeeded)",
        "0 Drop(TooBigForTunnel)",
    ] {
        let n = seen.iter().find(|(k, _)| k == want).map_or(0, |(_, n)| *n);
        assert!(n >= 10, "sweep too shallow: {want} {n} times; {seen:?}");
    }
    eprintln!("{seen:?}");
}

// ------------------------------------------------- 6. reasons produced

/// Every overlay outcome is produced by some case above: an overlay reason
/// that stops being produced, or one whose case is lost, fails here.
#[test]
fn every_overlay_outcome_is_produced() {
    let t = tables();
    let mut seen: Vec<Action> = Vec::new();
    for c in [decap_cases(), encap_cases(), uplink_arp_cases()].iter().flatten() {
        seen.push(run(&t, c));
    }
    for (t, c) in variant_cases() {
        seen.push(run(&t, &c));
    }
    use DropReason::*;
    for r in [VxlanMalformed, VxlanBadFlags, VxlanUnknownVni, VxlanUnknownVtep, OverlayLoop, TooBigForTunnel] {
        assert!(seen.contains(&Drop(r)), "no case produces {}", r.name());
    }
    for a in [
        Reply(ReplyKind::IcmpFragNeeded),
        Reply(ReplyKind::ArpReply),
        Action::Consumed(Consumed::ArpOnUplink),
        Forward(UPLINK),
        Forward(POD_A_PORT),
        Forward(POD_P_PORT),
    ] {
        assert!(seen.contains(&a), "no case produces {a:?}");
    }
    assert!(seen.iter().any(|a| matches!(a, Action::Resolve { .. })), "no case produces Resolve");
    for k in ReplyKind::ALL {
        // (echo replies: pipeline/tests.rs; port unreachable: pipeline/nat.rs)
        let elsewhere = matches!(k, ReplyKind::IcmpEchoReply | ReplyKind::IcmpPortUnreachable | ReplyKind::TcpReset);
        assert!(seen.contains(&Reply(*k)) || elsewhere, "no case produces {}", k.name());
    }
    // (ArpOnHost: the host path's tests, pipeline/host.rs.)
    for c in Consumed::ALL.iter().filter(|c| **c != Consumed::ArpOnHost) {
        assert!(seen.contains(&Action::Consumed(*c)), "no case produces {}", c.name());
    }
}
