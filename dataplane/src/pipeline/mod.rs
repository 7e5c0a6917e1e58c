//! The per-packet pipeline of one node, plain Rust over [`PacketBuf`].
//!
//! `process` looks at one frame that arrived on `in_port` and says what to do
//! with it ([`Action`]); when it says `Forward` or `Reply` the frame has already
//! been rewritten in place (MACs, TTL and checksum, or the whole answer). It
//! never allocates, locks or logs, and no input bytes make it panic: every
//! header is checked once (`new_checked`) before it is read.
//!
//! Stages for now (the foundation): Ethernet → ARP (answer for the gateway and,
//! as proxy, for every address routed to another port) or IPv4 (header checks,
//! ping to the gateway, TTL with ICMP time-exceeded, longest-prefix route, MAC
//! rewrite). Overlay, services and policy slot in between route lookup and
//! rewrite in later stages.

pub mod buf;
pub mod reason;

use std::net::Ipv4Addr;

pub use buf::{NoRoom, PacketBuf, TestBuf};
pub use reason::{DropReason, ReplyKind};

use crate::tables::{PortId, Tables};
use crate::wire::{arp, ethernet, icmp, ipv4, tcp, udp, MacAddr, WireError};

/// What the worker does with a packet once `process` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send out of this port.
    Forward(PortId),
    /// Send back out of the port it came in by (weir answered it).
    Reply(ReplyKind),
    /// Free it and count the reason.
    Drop(DropReason),
}

use Action::{Drop, Forward, Reply};

/// TTL of packets weir originates.
pub const LOCAL_TTL: u8 = 64;

/// Runs the pipeline on one frame.
#[inline]
pub fn process<B: PacketBuf>(t: &Tables, in_port: PortId, pkt: &mut B) -> Action {
    let ethertype = match ethernet::Frame::new_checked(pkt.data()) {
        Ok(f) => f.ethertype(),
        Err(_) => return Drop(DropReason::RuntFrame),
    };
    match ethertype {
        ethernet::ethertype::IPV4 => ipv4_input(t, in_port, pkt),
        ethernet::ethertype::ARP => arp_input(t, in_port, pkt.data_mut()),
        _ => Drop(DropReason::UnknownEthertype),
    }
}

fn arp_input(t: &Tables, in_port: PortId, frame: &mut [u8]) -> Action {
    let (eth, body) = frame.split_at_mut(ethernet::HEADER_LEN);
    let mut eth = ethernet::Frame::new_unchecked(eth);
    let dst = eth.dst();
    if !(dst.is_broadcast() || dst == t.gateway_mac) {
        return Drop(DropReason::NotForUs);
    }
    let Ok(mut req) = arp::Packet::new_checked(body) else {
        return Drop(DropReason::ArpMalformed);
    };
    if req.operation() != arp::OP_REQUEST {
        return Drop(DropReason::ArpNotForUs);
    }
    let (target, sender_ip, sender_mac) = (req.target_ip(), req.sender_ip(), req.sender_mac());
    // Answer for the gateway, and as a proxy for every address routed out of
    // another port, so pods on one subnet still reach each other through weir.
    // Never for an address routed back to the asker: that is a pod probing its
    // own address (duplicate-address detection) or a gratuitous ARP.
    let ours = target == t.gateway_ip
        || (target != sender_ip && t.routes.lookup(target).is_some_and(|r| r.port != in_port));
    if !ours || !sender_mac.is_unicast() {
        return Drop(DropReason::ArpNotForUs);
    }
    arp::Repr {
        operation: arp::OP_REPLY,
        sender_mac: t.gateway_mac,
        sender_ip: target,
        target_mac: sender_mac,
        target_ip: sender_ip,
    }
    .emit(&mut req);
    let src = eth.src();
    eth.set_dst(src);
    eth.set_src(t.gateway_mac);
    Reply(ReplyKind::ArpReply)
}

fn ip_error(e: WireError) -> DropReason {
    match e {
        WireError::Truncated => DropReason::Ipv4Truncated,
        WireError::BadVersion => DropReason::Ipv4BadVersion,
        WireError::BadHeaderLength => DropReason::Ipv4BadIhl,
        WireError::BadTotalLength | WireError::Unsupported => DropReason::Ipv4BadTotalLength,
    }
}

fn bad_source(a: Ipv4Addr) -> bool {
    a.is_multicast() || a.is_broadcast() || a.is_loopback() || a.is_unspecified()
}

/// Checks that the L4 header the protocol promises is there and consistent.
/// `whole` is false for a first fragment (more fragments follow): its UDP
/// length field covers the whole datagram, so only the header is checked.
fn l4_ok(protocol: u8, payload: &[u8], whole: bool) -> bool {
    match protocol {
        ipv4::protocol::TCP => tcp::Packet::new_checked(payload).is_ok(),
        ipv4::protocol::UDP if !whole => payload.len() >= udp::HEADER_LEN,
        ipv4::protocol::UDP => udp::Packet::new_checked(payload).is_ok(),
        ipv4::protocol::ICMP => icmp::Packet::new_checked(payload).is_ok(),
        _ => true,
    }
}

fn ipv4_input<B: PacketBuf>(t: &Tables, in_port: PortId, pkt: &mut B) -> Action {
    let frame = pkt.data_mut();
    let (eth, body) = frame.split_at_mut(ethernet::HEADER_LEN);
    if ethernet::Frame::new_unchecked(&*eth).dst() != t.gateway_mac {
        return Drop(DropReason::NotForUs);
    }
    let mut ip = match ipv4::Packet::new_checked(body) {
        Ok(ip) => ip,
        Err(e) => return Drop(ip_error(e)),
    };
    if !ip.verify_checksum() {
        return Drop(DropReason::Ipv4BadChecksum);
    }
    let (src, dst, ttl) = (ip.src_addr(), ip.dst_addr(), ip.ttl());
    if bad_source(src) {
        return Drop(DropReason::Ipv4BadSource);
    }
    if dst.is_multicast() || dst.is_broadcast() || dst.is_loopback() || dst.is_unspecified() {
        return Drop(DropReason::Ipv4BadDestination);
    }
    let first_fragment = ip.frag_offset() == 0;
    if first_fragment && !l4_ok(ip.protocol(), ip.payload(), !ip.more_frags()) {
        return Drop(DropReason::L4Malformed);
    }
    if dst == t.gateway_ip {
        return local_input(t, pkt);
    }
    if ttl <= 1 {
        return time_exceeded(t, pkt);
    }
    let Some(route) = t.routes.lookup(dst) else {
        return Drop(DropReason::NoRoute);
    };
    if t.port(route.port).is_none() {
        return Drop(DropReason::PortGone);
    }
    let _ = in_port;
    ip.decrement_ttl();
    let mut eth = ethernet::Frame::new_unchecked(eth);
    eth.set_dst(route.next_hop_mac);
    eth.set_src(t.gateway_mac);
    Forward(route.port)
}

/// Packets for the gateway address: weir answers ping, nothing else.
fn local_input<B: PacketBuf>(t: &Tables, pkt: &mut B) -> Action {
    let frame = pkt.data_mut();
    let (eth, body) = frame.split_at_mut(ethernet::HEADER_LEN);
    let mut ip = ipv4::Packet::new_unchecked(body);
    if ip.protocol() != ipv4::protocol::ICMP || ip.frag_offset() != 0 || ip.more_frags() {
        return Drop(DropReason::LocalNotServed);
    }
    let src = ip.src_addr();
    {
        let Ok(mut echo) = icmp::Packet::new_checked(ip.payload_mut()) else {
            return Drop(DropReason::L4Malformed);
        };
        if echo.msg_type() != icmp::msg::ECHO_REQUEST || echo.code() != 0 {
            return Drop(DropReason::LocalNotServed);
        }
        if !echo.verify_checksum() {
            return Drop(DropReason::L4Malformed);
        }
        echo.set_msg_type(icmp::msg::ECHO_REPLY);
        // Recomputed, not updated: RFC 1624's update gives 0x0000 (invalid)
        // when ident, seq and data are all zero; the sum is as cheap as the
        // verification above.
        echo.fill_checksum();
    }
    ip.set_dst_addr(src);
    ip.set_src_addr(t.gateway_ip);
    ip.set_ttl(LOCAL_TTL);
    ip.fill_checksum();
    let mut eth = ethernet::Frame::new_unchecked(eth);
    let client = eth.src();
    eth.set_dst(client);
    eth.set_src(t.gateway_mac);
    Reply(ReplyKind::IcmpEchoReply)
}

fn is_icmp_error(msg_type: u8) -> bool {
    // destination unreachable, source quench, redirect, time exceeded, parameter problem
    matches!(msg_type, 3 | 4 | 5 | 11 | 12)
}

/// Turns the packet, in place, into an ICMP time-exceeded for its sender
/// (RFC 792/1812: the IP header and the first 8 bytes of its payload are quoted).
fn time_exceeded<B: PacketBuf>(t: &Tables, pkt: &mut B) -> Action {
    let (client_mac, client_ip, quote) = {
        let frame = pkt.data();
        let eth = ethernet::Frame::new_unchecked(frame);
        let ip = ipv4::Packet::new_unchecked(&frame[ethernet::HEADER_LEN..]);
        // Never an ICMP error about an ICMP error or about a non-first fragment.
        let icmp_error = ip.protocol() == ipv4::protocol::ICMP
            && ip.payload().first().is_some_and(|ty| is_icmp_error(*ty));
        if ip.frag_offset() != 0 || icmp_error {
            return Drop(DropReason::TtlExceeded);
        }
        let quote = (ip.header_len() + 8).min(usize::from(ip.total_len()));
        (eth.src(), ip.src_addr(), quote)
    };
    const NEW: usize = ipv4::HEADER_LEN + icmp::HEADER_LEN;
    let want = ethernet::HEADER_LEN + NEW + quote;
    if pkt.prepend(NEW).is_err() {
        return Drop(DropReason::NoBufferRoom);
    }
    // The original IP header now starts right after the new ICMP header.
    let extra = pkt.len() - want;
    if pkt.trim(extra).is_err() {
        return Drop(DropReason::NoBufferRoom);
    }
    write_icmp_error(
        t,
        pkt.data_mut(),
        client_mac,
        client_ip,
        icmp::msg::TIME_EXCEEDED,
        icmp::code::TTL_EXCEEDED_IN_TRANSIT,
    );
    Reply(ReplyKind::IcmpTimeExceeded)
}

/// Writes Ethernet, IPv4 and ICMP headers of an error from the gateway to
/// `client` in front of the quoted bytes already at the end of `frame`.
fn write_icmp_error(
    t: &Tables,
    frame: &mut [u8],
    client_mac: MacAddr,
    client: Ipv4Addr,
    msg_type: u8,
    code: u8,
) {
    let (eth, rest) = frame.split_at_mut(ethernet::HEADER_LEN);
    ethernet::Repr {
        src: t.gateway_mac,
        dst: client_mac,
        ethertype: ethernet::ethertype::IPV4,
    }
    .emit(&mut ethernet::Frame::new_unchecked(eth));
    let icmp_len = rest.len() - ipv4::HEADER_LEN;
    let (ip_hdr, icmp_bytes) = rest.split_at_mut(ipv4::HEADER_LEN);
    ipv4::Repr {
        src: t.gateway_ip,
        dst: client,
        protocol: ipv4::protocol::ICMP,
        ttl: LOCAL_TTL,
        payload_len: icmp_len,
        dscp_ecn: 0xc0, // network control, as routers send their errors
        ident: 0,
        dont_frag: false,
    }
    .emit(&mut ipv4::Packet::new_unchecked(ip_hdr));
    let mut m = icmp::Packet::new_unchecked(icmp_bytes);
    m.set_msg_type(msg_type);
    m.set_code(code);
    m.set_rest_of_header(0);
    m.fill_checksum();
}

#[cfg(test)]
mod tests;
