//! Test-only frame builders shared by `pipeline/tests.rs` and
//! `pipeline/overlay/tests.rs`: the gateway and pod-a both test nodes have,
//! Ethernet/IPv4/L4/ARP frames built with the wire `Repr`s and setters, small
//! frame edits, the byte comparison the runners use and a deterministic RNG.
//!
//! What differs between the two files (their tables, the expected outputs,
//! the UDP destination port of [`L4::Udp`]) stays in them.

use std::net::Ipv4Addr;

use crate::wire::ethernet::ethertype;
use crate::wire::ipv4::protocol;
use crate::wire::{arp, ethernet, icmp, ipv4, tcp, udp, MacAddr};

// ------------------------------------------------------------ the node

/// The pod network's gateway, 10.1.0.1 / 02:fe:00:00:00:01.
pub(crate) const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub(crate) const GW_MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 0x01]);
/// pod-a, on port 0.
pub(crate) const A_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
pub(crate) const A_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
pub(crate) const A: (MacAddr, Ipv4Addr) = (A_MAC, A_IP);
/// An address no table routes.
pub(crate) const UNROUTED: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
/// A MAC that is nobody's.
pub(crate) const OTHER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
/// The node's underlay address and its uplink's MAC.
pub(crate) const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
pub(crate) const UPLINK_MAC: MacAddr = MacAddr([0x02, 0, 0, 0xaa, 0, 0x01]);

/// The test nodes' overlay: [`NODE_IP`] on 192.168.50.0/24 through the
/// uplink on port `uplink` ([`UPLINK_MAC`]), MTU 1500, the standard VXLAN
/// port, no underlay gateway, no host port, nothing announced.
pub(crate) fn overlay(uplink: crate::tables::PortId) -> crate::tables::Overlay {
    crate::tables::Overlay {
        node_ip: NODE_IP,
        uplink,
        uplink_mac: UPLINK_MAC,
        mtu: 1500,
        vxlan_port: crate::wire::vxlan::DEFAULT_PORT,
        underlay: crate::tables::cidr::Ipv4Cidr::new(Ipv4Addr::new(192, 168, 50, 0), 24).expect("a /24"),
        gateway: None,
        host: None,
        announced: Vec::new(),
    }
}

// ---------------------------------------------------------------- builders

pub(crate) fn eth(dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0; ethernet::HEADER_LEN + payload.len()];
    ethernet::Repr { src, dst, ethertype }.emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
    f[ethernet::HEADER_LEN..].copy_from_slice(payload);
    f
}

/// An option-less IPv4 packet around `payload` (header checksum filled).
pub(crate) fn ipv4_with(repr: ipv4::Repr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0; ipv4::HEADER_LEN + payload.len()];
    p[ipv4::HEADER_LEN..].copy_from_slice(payload);
    ipv4::Repr { payload_len: payload.len(), ..repr }.emit(&mut ipv4::Packet::new_unchecked(&mut p[..]));
    p
}

/// The L4 part of a test packet; checksums are filled by [`l4_bytes_to`].
#[derive(Clone, Copy)]
pub(crate) enum L4<'a> {
    Udp(&'a [u8]),
    Tcp(&'a [u8]),
    /// type, code, rest of header, data
    Icmp(u8, u8, u32, &'a [u8]),
    /// Any protocol number, bytes as given.
    Raw(u8, &'a [u8]),
}

pub(crate) fn ping(ident: u16, seq: u16, data: &[u8]) -> L4<'_> {
    L4::Icmp(icmp::msg::ECHO_REQUEST, 0, u32::from(ident) << 16 | u32::from(seq), data)
}

/// (protocol, bytes) of an L4 segment from `src` to `dst`, checksum filled.
/// UDP goes from port 40000 to `udp_dport`, TCP from 40000 to 80.
pub(crate) fn l4_bytes_to(udp_dport: u16, src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> (u8, Vec<u8>) {
    match l4 {
        L4::Udp(data) => {
            let mut s = vec![0; udp::HEADER_LEN + data.len()];
            s[udp::HEADER_LEN..].copy_from_slice(data);
            let len = s.len() as u16;
            let mut u = udp::Packet::new_unchecked(&mut s[..]);
            u.set_src_port(40000);
            u.set_dst_port(udp_dport);
            u.set_len(len);
            u.fill_checksum(src, dst);
            (protocol::UDP, s)
        }
        L4::Tcp(data) => {
            let mut s = vec![0; tcp::HEADER_LEN + data.len()];
            s[tcp::HEADER_LEN..].copy_from_slice(data);
            let mut t = tcp::Packet::new_unchecked(&mut s[..]);
            t.set_src_port(40000);
            t.set_dst_port(80);
            t.set_seq_number(0x0102_0304);
            t.set_header_len(tcp::HEADER_LEN);
            t.set_flags(tcp::flags::PSH | tcp::flags::ACK);
            t.set_window(65535);
            t.fill_checksum(src, dst);
            (protocol::TCP, s)
        }
        L4::Icmp(ty, code, rest, data) => {
            let mut s = vec![0; icmp::HEADER_LEN + data.len()];
            s[icmp::HEADER_LEN..].copy_from_slice(data);
            let mut m = icmp::Packet::new_unchecked(&mut s[..]);
            m.set_msg_type(ty);
            m.set_code(code);
            m.set_rest_of_header(rest);
            m.fill_checksum();
            (protocol::ICMP, s)
        }
        L4::Raw(proto, bytes) => (proto, bytes.to_vec()),
    }
}

/// A frame from `from` (MAC, IP) to the gateway MAC, IPv4 to `dst`, DF set,
/// ident 0x1234; UDP in it goes to `udp_dport`.
pub(crate) fn pkt_to(udp_dport: u16, from: (MacAddr, Ipv4Addr), dst: Ipv4Addr, ttl: u8, l4: L4) -> Vec<u8> {
    let (protocol, seg) = l4_bytes_to(udp_dport, from.1, dst, l4);
    let repr =
        ipv4::Repr { src: from.1, dst, protocol, ttl, payload_len: 0, dscp_ecn: 0, ident: 0x1234, dont_frag: true };
    eth(GW_MAC, from.0, ethertype::IPV4, &ipv4_with(repr, &seg))
}

/// Applies `f` to the (outer) IPv4 header of `frame`, then refills its checksum.
pub(crate) fn edit_ip(mut frame: Vec<u8>, f: impl FnOnce(&mut ipv4::Packet<&mut [u8]>)) -> Vec<u8> {
    let mut ip = ipv4::Packet::new_unchecked(&mut frame[ethernet::HEADER_LEN..]);
    f(&mut ip);
    ip.fill_checksum();
    frame
}

/// Overwrites bytes of `frame` at `at` (no checksum refresh).
pub(crate) fn poke(mut frame: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    frame[at..at + bytes.len()].copy_from_slice(bytes);
    frame
}

pub(crate) fn padded(mut frame: Vec<u8>, to: usize) -> Vec<u8> {
    frame.resize(to, 0);
    frame
}

pub(crate) fn arp_frame(dst_mac: MacAddr, src_mac: MacAddr, r: arp::Repr) -> Vec<u8> {
    let mut body = [0u8; arp::PACKET_LEN];
    r.emit(&mut arp::Packet::new_unchecked(&mut body[..]));
    eth(dst_mac, src_mac, ethertype::ARP, &body)
}

/// Broadcast "who has `target`? tell `from`".
pub(crate) fn who_has(from: (MacAddr, Ipv4Addr), target: Ipv4Addr) -> Vec<u8> {
    let (sender_mac, sender_ip) = from;
    let r =
        arp::Repr { operation: arp::OP_REQUEST, sender_mac, sender_ip, target_mac: MacAddr::ZERO, target_ip: target };
    arp_frame(MacAddr::BROADCAST, sender_mac, r)
}

// ------------------------------------------------------------ the runners

/// Panics with the first differing byte when `got` is not `want`.
pub(crate) fn assert_bytes(name: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!(
            "{name}: output differs at byte {at} (len {} vs {})\n got: {got:02x?}\nwant: {want:02x?}",
            got.len(),
            want.len()
        );
    }
}

/// xorshift64*: deterministic, no crates.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub(crate) fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}
